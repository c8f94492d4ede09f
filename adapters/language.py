"""Offline language detection with py3langid (its model ships inside the wheel).

Mail is a poor sample of a language: quoted replies, signatures, URLs and addresses say
little about what the requester wrote. So before classifying, quoted lines (``>``), URLs
and email addresses are removed and only the first :data:`MAX_CHARS` characters are
used. Texts with fewer than :data:`MIN_LETTERS` letters, and guesses below
``min_probability``, give "" (unknown) rather than a wild guess.

The model (a few MB) is loaded on first use, once, under a lock; classifying is then
well under a millisecond per mail and also runs under the lock, so the detector may be
shared between threads (intake calls it from a worker thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

__all__ = ["MAX_CHARS", "MIN_LETTERS", "Py3LangidDetector", "clean_text"]

log = logging.getLogger(__name__)

#: Only this much of the cleaned text is classified.
MAX_CHARS = 2000
#: Texts with fewer letters than this are not classified.
MIN_LETTERS = 20
#: At most this much of the raw text is cleaned (the rest cannot reach MAX_CHARS anyway
#: unless nearly all of it is quotes; enough is enough).
_MAX_INPUT_CHARS = 50_000
#: Labels of the model that are not a language.
_NOT_LANGUAGES = frozenset({"und", "zxx", "mis", "mul"})


class _Identifier(Protocol):
    """The part of ``py3langid.langid.LanguageIdentifier`` used here."""

    def classify(self, text: str) -> tuple[str, float]: ...

    def set_languages(self, langs: Sequence[str] | None = None) -> None: ...


def clean_text(text: str) -> str:
    """The text without quoted lines, URLs and addresses, on one line, cut to MAX_CHARS.

    Word by word rather than with regular expressions: it stops as soon as it has
    enough, so a long mail costs no more than a short one.
    """
    words: list[str] = []
    size = 0
    for line in text[:_MAX_INPUT_CHARS].splitlines():
        if line.lstrip().startswith(">"):
            continue
        for word in line.split():
            if "@" in word or "://" in word or word[:4].lower() == "www.":
                continue
            words.append(word)
            size += len(word) + 1
            if size > MAX_CHARS:
                return " ".join(words)[:MAX_CHARS]
    return " ".join(words)


def _load_identifier() -> _Identifier:
    from py3langid import langid  # heavy (numpy, model file): imported on first use

    cls: Any = langid.LanguageIdentifier
    model: Any = langid.MODEL_FILE
    if hasattr(cls, "from_model_file"):  # py3langid >= 0.4: LZMA-compressed npz
        return cast(_Identifier, cls.from_model_file(model, norm_probs=True))
    return cast(_Identifier, cls.from_pickled_model(model, norm_probs=True))  # 0.3


class Py3LangidDetector:
    """:class:`bot.ports.LanguageDetector` backed by py3langid's bundled model.

    ``languages`` restricts the guesses to these codes (say, the languages the team
    answers), which makes short texts far more reliable; ``min_probability`` is the
    confidence below which the answer is "".
    """

    def __init__(
        self, languages: Sequence[str] | None = None, *, min_probability: float = 0.5
    ) -> None:
        self._languages = tuple(code.strip().lower() for code in languages) if languages else None
        self._min_probability = min_probability
        self._identifier: _Identifier | None = None
        self._lock = threading.Lock()
        #: Seconds the model took to load (None until it is loaded).
        self.load_seconds: float | None = None

    def load(self) -> None:
        """Load the model now (otherwise the first :meth:`detect` does)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> _Identifier:
        if self._identifier is None:
            started = time.perf_counter()
            identifier = _load_identifier()
            if self._languages:
                identifier.set_languages(list(self._languages))  # ValueError for unknown codes
            self._identifier = identifier
            self.load_seconds = time.perf_counter() - started
            log.info("language model loaded in %.2f s", self.load_seconds)
        return self._identifier

    def detect(self, text: str) -> str:
        """An ISO 639 code ("de", "en") or "" when the text is too short or unclear."""
        sample = clean_text(text)
        if sum(ch.isalpha() for ch in sample) < MIN_LETTERS:
            return ""
        with self._lock:
            identifier = self._load_locked()
            language, probability = identifier.classify(sample)
        if probability < self._min_probability or language in _NOT_LANGUAGES:
            return ""
        return str(language)
