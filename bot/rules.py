r"""Routing rules from ``bot.toml``: ordered, the first enabled rule that matches wins.

A rule looks at a new mail (subject, body, sender, recipients, any header, the detected
language, the marks set on the sender) and decides its queue, priority, tags, or that it
is spam. Rules are checked in the order they are written; the first one whose conditions
*all* match is used and the others are ignored. Mail that no rule matches keeps the queue
of the address it was sent to.

The shape in ``bot.toml``::

    [[rule]]
    name = "German mail to info"                            # optional, shown in explanations
    match = { language = "de", to = "info@example.org" }
    queue = "info::de"

    [[rule]]
    match = { subject_regex = "\\bpress\\b|presse", "header:X-Mailer" = "Outlook" }
    priority = 4                                            # 1 (lowest) .. 5 (highest)
    tags = ["press"]

    [[rule]]
    match = { sender_mark = "spam" }
    spam = true

    [[rule]]
    name = "switched off for now"
    enabled = false
    match = { from = "@newsletter.example.com" }
    tags = ["newsletter"]

The keys of ``match`` name what is compared:

``subject``, ``body``
    the decoded subject and the text of the mail;
``from``
    the sender, written ``Name <address>``;
``to``
    every recipient (To, Cc, Delivered-To), each written ``Name <address>``; one match
    is enough;
``header:Name``
    every value of that header (any case), decoded from encoded words; one match is
    enough, and a missing header never matches;
``language``
    the detected language code (``de``, ``en``; empty when unknown);
``sender_mark``
    a mark set on the sender (``spam``, ``vip``, ...).

A plain value is a case-insensitive "contains" for the texts and an exact (case-
insensitive) comparison for ``language`` and ``sender_mark``. The suffix ``_regex``
(``subject_regex``, ``"header:X-Mailer_regex"``) makes the value a Python regular
expression, searched case-insensitively; in TOML write its backslashes twice in "..."
or use a literal string: ``subject_regex = '\bpress\b'``. Each rule needs at least
one action: ``queue`` (a defined queue, ``info::de`` for a sub-queue), ``priority``,
``tags`` or ``spam = true``.

Expressions are compiled when the configuration is read, so a broken one stops the start
with the key that holds it. A mail is hostile input, and Python's ``re`` cannot be
interrupted, so the text is bounded instead of the time: every text a rule looks at is
cut to its first :data:`MAX_MATCH_CHARS` characters, headers are read only from the first
:data:`MAX_HEADERS` header lines (each value cut to :data:`MAX_HEADER_VALUE_CHARS`), and
for expressions, lines longer than :data:`MAX_LINE_CHARS` are broken (at a space where
there is one). The last keeps an innocent-looking ``.*urgent`` or ``\w+@example\.org``,
which backtrack quadratically within a line, to well under a second on a hostile mail
instead of many seconds; an expression may therefore miss a match that spans such a
break. Nested repeats like ``(a+)+`` can backtrack exponentially on any length: do not
write them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from email.header import decode_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import cached_property
from typing import Any, Literal

from bot.config import ConfigError
from bot.domain import MAX_PRIORITY, MIN_PRIORITY
from bot.mail import Address, InboundEmail

__all__ = [
    "FIELDS",
    "Condition",
    "Decision",
    "Rule",
    "RuleInput",
    "decide",
    "explain",
    "parse_rules",
]

#: The fields a condition may look at (plus ``header:<Name>``).
FIELDS = ("subject", "body", "from", "to", "language", "sender_mark")
#: Fields compared for equality (not "contains") when given as plain text.
_EQUALS_FIELDS = frozenset({"language", "sender_mark"})
_RULE_KEYS = frozenset({"name", "match", "queue", "priority", "tags", "spam", "enabled"})
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII without ":" (RFC 5322 field name)

#: Every text a condition searches is cut to this many characters.
MAX_MATCH_CHARS = 100_000
#: For expressions, longer lines are broken (bounds quadratic backtracking per line).
MAX_LINE_CHARS = 1_000
#: Headers after this many are not looked at.
MAX_HEADERS = 200
#: The header block read from the raw mail is cut to this many bytes.
MAX_HEADER_BYTES = 512_000
#: Each header value is cut to this many characters before it is decoded.
MAX_HEADER_VALUE_CHARS = 16_000
#: Values quoted in reasons and explanations are shortened to this many characters.
SHOWN_CHARS = 60

Operator = Literal["contains", "equals", "regex"]


def _shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(text: str) -> str:
    return repr(_shorten(text))


@dataclass(frozen=True)
class Condition:
    """One comparison: ``field`` contains / equals / matches ``value``."""

    field: str
    operator: Operator
    value: str
    pattern: re.Pattern[str] | None = None

    @property
    def contains(self) -> str | None:
        return self.value if self.operator == "contains" else None

    @property
    def equals(self) -> str | None:
        return self.value if self.operator == "equals" else None

    @property
    def regex(self) -> str | None:
        return self.value if self.operator == "regex" else None

    @property
    def label(self) -> str:
        """How the field is named in explanations: ``subject``, ``header X-Mailer``."""
        if self.field.startswith("header:"):
            return "header " + self.field[len("header:") :]
        return {"to": "a recipient", "sender_mark": "sender mark"}.get(self.field, self.field)

    def check(self, item: RuleInput) -> tuple[bool, str]:
        """Whether the condition holds, and a short text saying why (for explanations)."""
        values = item.values(self.field)
        if self.field == "sender_mark" and not values:
            return False, "the sender has no marks"
        if self.field.startswith("header:") and not values:
            return False, f"{self.label} is missing"
        if self.operator == "regex":
            assert self.pattern is not None
            for value in item.regex_values(self.field):
                found = self.pattern.search(value)
                if found is not None:
                    return True, f"{self.label} matches /{_shorten(self.value)}/ at " + _quote(
                        found.group(0)
                    )
            return False, self._miss(values, "match", "matches", f"/{_shorten(self.value)}/")
        wanted = self.value.casefold()
        if self.operator == "equals":
            if any(value.casefold() == wanted for value in values):
                if self.field == "language":
                    return True, f"language {self.value}"
                return True, f"{self.label} {self.value}"
            if self.field == "language":
                return False, f"language is {values[0] or 'unknown'}, not {self.value}"
            return False, f"no sender mark {self.value!r} (marks: {', '.join(values)})"
        for value in values:
            if wanted in value[:MAX_MATCH_CHARS].casefold():
                return True, f"{self.label} contains {_quote(self.value)}"
        return False, self._miss(values, "contain", "contains", _quote(self.value))

    def _miss(self, values: Sequence[str], verb: str, verbs: str, what: str) -> str:
        """``subject does not contain 'x'``; ``no recipient contains 'x'`` for several."""
        if self.field == "to" and not values:
            return "the mail has no recipients"
        if self.field == "to" or len(values) > 1:
            several = "recipient" if self.field == "to" else f"{self.label} value"
            return f"no {several} {verbs} {what}"
        return f"{self.label} does not {verb} {what}"


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]``: all ``conditions`` must hold; then its actions apply."""

    number: int  # 1-based position in the file
    name: str
    conditions: tuple[Condition, ...]
    queue: str | None = None
    priority: int | None = None
    tags: tuple[str, ...] = ()
    spam: bool = False
    enabled: bool = True

    @property
    def title(self) -> str:
        """``rule 3 (German mail to info)``, or ``rule 3`` without a name."""
        return f"rule {self.number} ({self.name})" if self.name else f"rule {self.number}"

    def actions(self) -> str:
        """What the rule does, for explanations: ``queue info::de, priority 4``."""
        parts: list[str] = []
        if self.queue is not None:
            parts.append(f"queue {self.queue}")
        if self.priority is not None:
            parts.append(f"priority {self.priority}")
        if self.tags:
            parts.append("tags " + ", ".join(self.tags))
        if self.spam:
            parts.append("spam")
        return ", ".join(parts)

    def check(self, item: RuleInput) -> tuple[bool, list[str]]:
        """Whether every condition holds; the reasons of the matches, or the first miss."""
        reasons: list[str] = []
        for condition in self.conditions:
            ok, why = condition.check(item)
            if not ok:
                return False, [why]
            reasons.append(why)
        return True, reasons


@dataclass(frozen=True)
class RuleInput:
    """What rules look at: the parsed mail, its detected language and the sender's marks."""

    email: InboundEmail
    language: str = ""
    sender_marks: frozenset[str] = frozenset()

    @cached_property
    def headers(self) -> Mapping[str, tuple[str, ...]]:
        """Decoded header values by lower-case name, read once from ``email.raw``."""
        return _read_headers(self.email.raw)

    @cached_property
    def _regex_texts(self) -> dict[str, list[str]]:
        return {}

    def regex_values(self, field: str) -> list[str]:
        """:meth:`values` prepared for expressions: cut, and long lines broken (cached)."""
        cache = self._regex_texts
        if field not in cache:
            cache[field] = [_break_lines(v[:MAX_MATCH_CHARS]) for v in self.values(field)]
        return cache[field]

    def values(self, field: str) -> list[str]:
        """The texts a field stands for (one or several)."""
        email = self.email
        if field == "subject":
            return [email.subject]
        if field == "body":
            return [email.text]
        if field == "from":
            return [_address_text(email.sender)]
        if field == "to":
            return [_address_text(a) for a in email.recipients]
        if field == "language":
            return [self.language]
        if field == "sender_mark":
            return sorted(self.sender_marks)
        if field.startswith("header:"):
            return list(self.headers.get(field[len("header:") :].lower(), ()))
        raise ValueError(f"unknown field {field!r}")


def _break_lines(text: str, width: int = MAX_LINE_CHARS) -> str:
    """The text with every line longer than ``width`` broken, after a space where possible."""
    if len(text) <= width:
        return text
    lines: list[str] = []
    for line in text.split("\n"):
        while len(line) > width:
            cut = line.rfind(" ", width // 2, width) + 1 or width
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    return "\n".join(lines)


def _address_text(address: Address) -> str:
    return f"{address.name} <{address.email}>" if address.name else address.email


def _decode_value(value: str) -> str:
    """A raw header value as text: unfolded, 8-bit bytes as UTF-8, encoded words decoded."""
    if any("\udc80" <= ch <= "\udcff" for ch in value):  # raw 8-bit bytes, surrogate-escaped
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    value = re.sub(r"\r?\n(?=[ \t])", "", value).strip()
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
    except Exception:
        return value
    text: list[str] = []
    for data, charset in parts:
        if isinstance(data, str):
            text.append(data)
            continue
        try:
            if charset is None:
                text.append(data.decode("raw-unicode-escape"))
            else:
                text.append(data.decode(charset, "replace"))
        except (LookupError, UnicodeError, ValueError):
            text.append(data.decode("utf-8", "replace"))
    return "".join(text)


def _read_headers(raw: bytes) -> dict[str, tuple[str, ...]]:
    """The first :data:`MAX_HEADERS` headers of a raw mail; never raises."""
    block = raw[:MAX_HEADER_BYTES]
    ends = [i for i in (block.find(b"\r\n\r\n"), block.find(b"\n\n")) if i >= 0]
    if ends:
        block = block[: min(ends)]
    found: dict[str, list[str]] = {}
    try:
        message = BytesHeaderParser(policy=compat32).parsebytes(block)
        items = message.raw_items()
        for count, (name, value) in enumerate(items):
            if count >= MAX_HEADERS:
                break
            try:
                text = _decode_value(str(value)[:MAX_HEADER_VALUE_CHARS])
            except Exception:
                continue
            found.setdefault(name.strip().lower(), []).append(text)
    except Exception:
        pass
    return {name: tuple(values) for name, values in found.items()}


@dataclass(frozen=True)
class Decision:
    """The rule that decided a mail (None: no rule matched) and why, in words."""

    rule: Rule | None
    reason: str

    @property
    def queue(self) -> str | None:
        return self.rule.queue if self.rule else None

    @property
    def priority(self) -> int | None:
        return self.rule.priority if self.rule else None

    @property
    def tags(self) -> tuple[str, ...]:
        return self.rule.tags if self.rule else ()

    @property
    def spam(self) -> bool:
        return self.rule.spam if self.rule else False


def decide(rules: Iterable[Rule], item: RuleInput) -> Decision | None:
    """The first enabled rule whose conditions all hold, or None."""
    for rule in rules:
        if not rule.enabled:
            continue
        ok, reasons = rule.check(item)
        if ok:
            return Decision(rule, f"{rule.title}: {', '.join(reasons)}")
    return None


def explain(rules: Iterable[Rule], item: RuleInput) -> list[str]:
    """One line per rule saying whether it fires and why, then the verdict."""
    lines: list[str] = []
    winner: Rule | None = None
    for rule in rules:
        if not rule.enabled:
            lines.append(f"{rule.title}: disabled")
            continue
        ok, reasons = rule.check(item)
        if not ok:
            lines.append(f"{rule.title}: no — {reasons[0]}")
        elif winner is None:
            winner = rule
            lines.append(f"{rule.title}: fires — {', '.join(reasons)} => {rule.actions()}")
        else:
            lines.append(
                f"{rule.title}: would fire — {', '.join(reasons)} "
                f"(not used: rule {winner.number} came first)"
            )
    if winner is None:
        lines.append("verdict: no rule matched")
    else:
        lines.append(f"verdict: {winner.title} => {winner.actions()}")
    return lines


# --- reading [[rule]] ------------------------------------------------------------------------


def parse_rules(raw: Any, queues: Set[str]) -> tuple[Rule, ...]:
    """Read and check the ``[[rule]]`` tables; :class:`ConfigError` names the bad key."""
    if not isinstance(raw, list) or not all(isinstance(table, dict) for table in raw):
        raise ConfigError("rule", "must be written as [[rule]] tables")
    return tuple(_parse_rule(table, index, queues) for index, table in enumerate(raw))


def _parse_rule(table: Mapping[str, Any], index: int, queues: Set[str]) -> Rule:
    key = f"rule[{index}]"
    unknown = sorted(set(table) - _RULE_KEYS)
    if unknown:
        known = ", ".join(sorted(_RULE_KEYS))
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown setting (known: {known})")

    name = table.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{key}.name", f"must be a string, got {name!r}")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{key}.enabled", f"must be true or false, got {enabled!r}")

    if "match" not in table:
        raise ConfigError(f"{key}.match", 'is required, e.g. match = { subject = "invoice" }')
    match = table["match"]
    if not isinstance(match, dict):
        raise ConfigError(f"{key}.match", 'must be a table, e.g. match = { subject = "invoice" }')
    if not match:
        raise ConfigError(f"{key}.match", "needs at least one condition")
    conditions = tuple(
        _parse_condition(f"{key}.match.{field}", field, value) for field, value in match.items()
    )

    queue = table.get("queue")
    if queue is not None:
        if not isinstance(queue, str):
            raise ConfigError(f"{key}.queue", f"must be a string, got {queue!r}")
        if queue not in queues:
            known = ", ".join(sorted(queues))
            raise ConfigError(f"{key}.queue", f"no queue named {queue!r} (queues: {known})")

    priority = table.get("priority")
    if priority is not None and (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise ConfigError(
            f"{key}.priority",
            f"must be {MIN_PRIORITY} (lowest) to {MAX_PRIORITY} (highest), got {priority!r}",
        )

    tags_raw = table.get("tags", [])
    if not isinstance(tags_raw, list) or not all(isinstance(t, str) for t in tags_raw):
        raise ConfigError(f"{key}.tags", f"must be a list of strings, got {tags_raw!r}")
    tags = tuple(dict.fromkeys(t.strip().lower() for t in tags_raw))
    for tag in tags:
        if not tag or any(ch.isspace() for ch in tag):
            raise ConfigError(f"{key}.tags", f"{tag!r} is not a tag (one word, not empty)")

    spam = table.get("spam", False)
    if not isinstance(spam, bool):
        raise ConfigError(f"{key}.spam", f"must be true or false, got {spam!r}")

    if queue is None and priority is None and not tags and not spam:
        raise ConfigError(key, "does nothing: give queue, priority, tags or spam = true")
    return Rule(
        number=index + 1,
        name=name.strip(),
        conditions=conditions,
        queue=queue,
        priority=priority,
        tags=tags,
        spam=spam,
        enabled=enabled,
    )


def _parse_condition(key: str, field: str, value: Any) -> Condition:
    regex = field.endswith("_regex")
    base = field[: -len("_regex")] if regex else field
    if base.startswith("header:"):
        header = base[len("header:") :]
        if not _HEADER_NAME.fullmatch(header):
            raise ConfigError(key, f"{header!r} is not a header name")
    elif base not in FIELDS:
        known = ", ".join((*FIELDS, "header:<Name>"))
        raise ConfigError(key, f"unknown field {base!r} (known: {known}; add _regex for a regex)")
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {value!r}")
    if not value.strip():
        raise ConfigError(key, "must not be empty")
    if regex:
        try:
            pattern = re.compile(value, re.IGNORECASE)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ConfigError(key, f"not a valid regular expression: {exc}") from None
        return Condition(base, "regex", value, pattern)
    if base in _EQUALS_FIELDS:
        return Condition(base, "equals", value.strip().lower())
    return Condition(base, "contains", value)
