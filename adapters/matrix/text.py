"""Making untrusted email text safe to show in Matrix, and measuring what it will cost.

Everything a ticket shows came from an email, so anyone on the internet chooses it.
Two things must never happen: the text pinging people (``@room``, a Matrix id) and
the text producing markup. ``m.mentions: {}`` switches off the body-based push
rules in current clients; :func:`defang` covers clients and servers that predate
intentional mentions, and :func:`escape` keeps the HTML body inert.

The size helpers exist because a Matrix event is capped at 65,536 bytes of JSON,
and HTML-escaping can multiply the size of hostile text several times over.
"""

from __future__ import annotations

import html
import json
import re

#: Inserted after an ``@`` that could start a mention; invisible, and it breaks the match.
ZWJ = "\u200d"

# "@room" anywhere (push rules match it case-insensitively), and "@" starting something
# that looks like a Matrix id or a bare "@name", unless a word character precedes it:
# that keeps email addresses (alice@example.org) intact and copyable.
_MENTION = re.compile(r"@(?=room)|(?<!\w)@(?=[a-z0-9._=/+-])", re.IGNORECASE)
# Control characters other than tab and newline render as garbage or not at all.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    """Normalise newlines and drop what cannot be sent.

    Lone surrogates (from undecodable mail bytes) would make the homeserver reject
    the event forever, so they become U+FFFD instead.
    """
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def defang(text: str) -> str:
    """Keep ``@room`` and Matrix ids readable but unable to trigger a legacy ping."""
    return _MENTION.sub("@" + ZWJ, text)


def safe(text: str) -> str:
    """Untrusted text ready for a plain ``body``: cleaned and defanged."""
    return defang(clean(text))


def escape(text: str) -> str:
    """Untrusted text ready for ``formatted_body``: cleaned, defanged, HTML-escaped."""
    return html.escape(safe(text), quote=True)


def shorten(text: str, limit: int) -> str:
    """Cut a header-like field (subject, sender) so one field cannot fill an event."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def json_len(text: str) -> int:
    """Bytes ``text`` takes inside a JSON string, as the homeserver stores it (UTF-8)."""
    return utf8_len(json.dumps(text, ensure_ascii=False)) - 2


def content_len(content: dict[str, object]) -> int:
    """Bytes of an event content as JSON; what counts against the event size limit."""
    return utf8_len(json.dumps(content, ensure_ascii=False, separators=(",", ":")))
