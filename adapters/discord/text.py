"""Making untrusted email text inert in Discord, and measuring it the way Discord does.

Everything a ticket shows came from an email, so anyone on the internet chooses it.
In Discord that text must not:

* ping anyone: ``@everyone``, ``@here``, ``<@id>``, ``<@&id>`` (every send also passes
  ``AllowedMentions.none()``, or for a reminder one naming only the volunteers it is
  for; escaping keeps the text from even *looking* like a ping);
* render as markup: bold, headings, quotes, code blocks, spoilers (``||hidden||``);
* forge a masked link ``[your bank](https://evil)``: brackets are escaped, so the real
  address is always what is shown;
* render channel links, timestamps, emoji or command mentions (``<#id>``, ``<t:..>``):
  every ``<`` and ``>`` of the email is escaped;
* hide text: zero-width and other invisible format characters are removed;
* unfurl a link preview chosen by the sender: URLs are wrapped in ``<...>``.

``discord.utils.escape_markdown`` and ``escape_mentions`` do most of the work; the
rest is done here because they leave brackets, ``<#id>`` and short ids alone.
"""

from __future__ import annotations

import re

from discord.utils import escape_markdown, escape_mentions

#: Discord's limit for a message's ``content``.
MESSAGE_LIMIT = 2000
ELLIPSIS = "…"

# What is removed: control characters other than tab and newline (garbage or nothing
# on screen); every format character (Unicode category Cf: zero-width spaces and
# joiners, bidi overrides, invisible "tag" letters), listed as ranges because ``re``
# has no \p{Cf}; and blank letters (Hangul fillers, the braille blank) popular for
# hiding text.
_HIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e007f"
    "\u115f\u1160\u3164\uffa0\u2800]"
)
# A URL as Discord would auto-link it. ``<`` and ``>`` end it because we wrap it in
# them; so do brackets, backslashes, pipes and backticks, which real URLs encode and
# which then get escaped like any other text (no spoiler or escape inside a link).
_URL = re.compile(r"(?:https?|steam|discord)://[^\s<>\[\]\\|`]+", re.IGNORECASE)
_SCHEME = re.compile(r"(https?|steam|discord):(?=//)", re.IGNORECASE)
_TRAILING_PUNCT = ".,:;!?'\"*_~|`"
# Characters we always escape ourselves: link brackets and the angle brackets of
# ``<@id>``, ``<#id>``, ``<t:...>``, ``<:emoji:id>``, ``</command:id>``.
_PLACEHOLDERS = "\ue000\ue001\ue002\ue003"
_TO_PLACEHOLDER = str.maketrans(dict(zip("[]<>", _PLACEHOLDERS, strict=True)))
_FROM_PLACEHOLDER = str.maketrans({p: "\\" + b for p, b in zip(_PLACEHOLDERS, "[]<>", strict=True)})
_NO_PLACEHOLDERS = str.maketrans(dict.fromkeys(_PLACEHOLDERS, "\ufffd"))
_ORDERED_LIST = re.compile(r"^(\s*\d{1,9})\.(?=\s|$)", re.MULTILINE)


def clean(text: str) -> str:
    """Normalise newlines and remove what cannot be shown or would hide text.

    Lone surrogates (from undecodable mail bytes) would make the request fail
    forever, so they become U+FFFD. Format characters (Unicode category Cf: zero-width
    spaces and joiners, bidi overrides, invisible tag characters) are dropped.
    """
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_NO_PLACEHOLDERS)
    return _HIDDEN.sub("", text)


def escape(text: str) -> str:
    """Untrusted text ready for a message or an embed: cleaned, inert, URLs unfurl-proof."""
    text = clean(text)
    out: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        url, start = _trim_url(match.group()), match.start()
        if not url:
            continue
        out.append(_escape_plain(text[pos:start]))
        out.append(f"<{escape_mentions(url)}>")
        pos = start + len(url)
    out.append(_escape_plain(text[pos:]))
    return _ORDERED_LIST.sub(r"\1\\.", "".join(out))


def _escape_plain(text: str) -> str:
    """Text without URLs: brackets by hand, everything else by discord.py's helpers.

    The brackets are swapped for private-use placeholders while discord.py escapes
    the rest (its own bracket rule would leave a masked link half escaped), then
    written back escaped.
    """
    if not text:
        return ""
    text = text.translate(_TO_PLACEHOLDER)
    text = escape_mentions(escape_markdown(text, ignore_links=False))
    # what is left of a scheme ("https://" with no address) must not become a link either
    text = _SCHEME.sub(r"\1\\:", text)
    return text.translate(_FROM_PLACEHOLDER)


def _trim_url(url: str) -> str:
    """Drop trailing punctuation and an unbalanced closing bracket, as Discord does."""
    while url:
        last = url[-1]
        if last in _TRAILING_PUNCT or (last == ")" and url.count("(") < url.count(")")):
            url = url[:-1]
        else:
            break
    return url if "://" in url and not url.endswith("://") else ""


def dlen(text: str) -> int:
    """Length as Discord counts it (UTF-16 code units; never less than code points)."""
    return len(text.encode("utf-16-le")) // 2


def one_line(text: str) -> str:
    """A header-like field (subject, sender, name) on one line with single spaces."""
    return " ".join(clean(text).split())


def fit(text: str, limit: int) -> str:
    """``escape(text)``, cut (with "…") so that it is at most ``limit`` long.

    The raw text is cut, never the escaped one, so an escape sequence or a wrapped
    URL is never torn apart.
    """
    text = clean(text)
    whole = escape(text)
    if dlen(whole) <= limit:
        return whole
    low, high = 0, min(len(text), limit)  # escaping never shortens cleaned text
    while low < high:  # the longest raw prefix whose escaped form fits with the ellipsis
        mid = (low + high + 1) // 2
        if dlen(escape(text[:mid]).rstrip()) + len(ELLIPSIS) <= limit:
            low = mid
        else:
            high = mid - 1
    cut = escape(text[:low]).rstrip() + ELLIPSIS
    return cut if dlen(cut) <= limit else ELLIPSIS[:limit]


def cut_raw(text: str, limit: int) -> tuple[str, str]:
    """Split cleaned ``text`` into a head whose escaped form fits ``limit``, and the rest.

    Prefers to cut after a space in the second half of the head, so words stay
    whole; always makes progress (at least one character).
    """
    low, high = 1, max(1, min(len(text), limit))  # escaping never shortens cleaned text
    while low < high:
        mid = (low + high + 1) // 2
        if dlen(escape(text[:mid])) <= limit:
            low = mid
        else:
            high = mid - 1
    end = low
    space = text.rfind(" ", end // 2, end)
    if space > 0 and end < len(text):
        end = space + 1
    return text[:end], text[end:]


def cap(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """A last guard before sending: never more than ``limit``, whatever went before.

    Rendering already keeps within the limits; this only exists so that a mistake
    there costs a few characters instead of a post Discord rejects on every retry.
    """
    if dlen(text) <= limit:
        return text
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text
