"""Parse raw email bytes into the neutral :class:`~bot.mail.InboundEmail` value.

Everything here treats the mail as hostile or broken, because a help desk receives both:
spam with deliberately malformed MIME, and honest mail from old clients with wrong
charsets, raw 8-bit headers and missing boundaries. The rules that follow from that:

* :func:`parse_email` never raises. Each header and each MIME part is read under its own
  guard; whatever fails is skipped and noted in ``parse_defects`` so an operator can see
  why a ticket looks odd, and the rest of the mail still becomes a ticket.
* Text always decodes. A declared charset is tried first; unknown or wrong charsets fall
  back to UTF-8, then Windows-1252/Latin-1, which turns the usual "Latin-1 declared as
  UTF-8" mistake into readable text instead of replacement characters.
* Resources are bounded: nesting depth, part count, address counts, reference counts and
  attachment sizes all have caps, so one mail cannot exhaust the bot.

The MIME structure is read with ``email.policy.compat32``, not ``email.policy.default``:
on Python 3.11 the default policy runs every Content-Type header through its structured
header parser, which is quadratic (and can hit the recursion limit) on crafted values.
A 1 MB mail of such headers took 52 s to parse that way and 0.05 s with compat32. The
modern parser is still used where it is better, for address lists, but only on values
of bounded size; headers are decoded here, from the raw values, either way.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import email.utils
import hashlib
import io
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.generator import BytesGenerator, Generator
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any, TypeVar

from adapters.email.html_text import html_to_text
from bot.config import MailConfig
from bot.mail import Address, AttachmentData, InboundEmail

__all__ = ["parse_email", "synthetic_message_id"]

_T = TypeVar("_T")

#: At most this many addresses are kept per address list (To, Cc, Delivered-To, Reply-To).
MAX_ADDRESSES = 100
#: At most this many message ids are kept in References (the first and the most recent).
MAX_REFERENCES = 100
#: Multipart nesting deeper than this is not descended into.
MAX_DEPTH = 128
#: At most this many multiparts without a usable boundary get a guessed one.
MAX_BOUNDARY_GUESSES = 3
#: Parts beyond this count are ignored (protects against "zip bomb"-style MIME trees).
MAX_PARTS = 1000
#: At most this many distinct defects are recorded.
MAX_DEFECTS = 50
#: Address headers longer than this are cut before parsing (the parser is slow on huge input).
MAX_ADDRESS_HEADER_CHARS = 64_000
#: Address headers up to this size get the strict (modern, but quadratic) parser...
MAX_STRICT_ADDRESS_CHARS = 2_000
#: ...until this many characters have gone through it; the rest use the legacy parser.
STRICT_ADDRESS_BUDGET = 20_000
#: MIME headers are cut to this size before their parameters are read (quadratic, too).
MAX_MIME_HEADER_CHARS = 8_000
#: Longest filename kept for an attachment.
#: A part over the limits is still decoded when small, to name its exact size; a big one
#: is dropped on its encoded size alone, never decoded.
_DECODE_ANYWAY_BYTES = 1_000_000
MAX_FILENAME_CHARS = 200
#: Longest message id accepted (the RFC 5322 line length limit).
MAX_MESSAGE_ID_CHARS = 998

_STRUCTURE_POLICY = email.policy.compat32
_ADDRESS_PARSER = email.policy.default.header_factory
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_ENCODED_RUN = re.compile(
    r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=(?:[ \t]+=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)*"
)
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_WHITESPACE = re.compile(r"\s+")
# An RFC 2046 delimiter line ("--" and a boundary of bchars), for guessing lost boundaries.
_DELIMITER_LINE = re.compile(rb"^--([0-9A-Za-z'()+_,./:=?-]{1,70})[ \t]*\r?$", re.MULTILINE)
# C0 and C1 controls except tab and newline: invisible at best, terminal escapes at worst.
_BODY_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# In single-line values every control character, and the Unicode line separators, count.
_LINE_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Also strip bidi overrides from filenames, which can disguise "evil.exe" as "exe.pdf".
_FILENAME_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_AUTO_SUBJECT_PREFIXES = ("auto:", "automatic reply:", "out of office")
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_EML_TYPES = frozenset({"message/rfc822", "message/global"})
# Charset labels seen in mail that Python does not know by that name.
_CHARSET_ALIASES = {
    "iso-8859-6-e": "iso-8859-6",
    "iso-8859-6-i": "iso-8859-6",
    "iso-8859-8-e": "iso-8859-8",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "x-gbk": "gbk",
    "x-x-big5": "big5",
    "x-mac-roman": "mac_roman",
    "x-mac-cyrillic": "mac_cyrillic",
    "cp-850": "cp850",
}
# Labels that mail clients (and the WHATWG encoding standard) read as a superset, since
# senders routinely label Windows-1252 text "iso-8859-1", GBK text "gb2312", and so on.
_CHARSET_SUPERSETS = {
    "iso8859-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
}


# --------------------------------------------------------------------------------------
# Text decoding
# --------------------------------------------------------------------------------------


def _guess_decode(data: bytes) -> str:
    """Decode bytes of unknown charset: UTF-8, mostly-UTF-8, Windows-1252, then Latin-1.

    "Mostly UTF-8" (valid multi-byte sequences outnumber the broken bytes) keeps one
    stray byte from turning a whole UTF-8 text into mojibake; otherwise the text is
    most likely in a legacy western charset, which Windows-1252 reads best (it is what
    mail clients do with "latin-1"); Latin-1 maps every byte and so always succeeds.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lenient = data.decode("utf-8", "replace")
    broken = lenient.count("\ufffd")
    valid = sum(1 for char in lenient if char > "\x7f" and char != "\ufffd")
    if valid > broken:
        return lenient
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_bytes(data: bytes, charset: str | None, defects: _Defects | None = None) -> str:
    """Decode *data* in its declared *charset*, falling back to :func:`_guess_decode`."""
    name = (charset or "").strip().strip("\"'").lower()
    if name and name not in ("unknown-8bit", "x-unknown", "unknown"):
        try:
            codec = codecs.lookup(_CHARSET_ALIASES.get(name, name))
        except (LookupError, ValueError, TypeError):
            if defects is not None:
                defects.add(f"unknown charset {name[:40]!r}")
        else:
            try:
                # bytes.decode refuses non-text codecs (zlib, base64, ...), so no bombs.
                return data.decode(_CHARSET_SUPERSETS.get(codec.name, codec.name))
            except (UnicodeError, LookupError, ValueError, TypeError):
                if defects is not None:
                    defects.add(f"text does not match charset {name[:40]!r}")
    return _guess_decode(data)


def _fix_8bit(value: str) -> str:
    """Turn a header read by the bytes parser (8-bit bytes as surrogates) into real text."""
    if value.isascii():
        return value
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return _guess_decode(data)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    """The bytes of one RFC 2047 encoded word, forgiving bad padding; None if hopeless."""
    if encoding in "qQ":
        return binascii.a2b_qp(payload.encode("utf-8", "replace"), header=True)
    cleaned = _NOT_BASE64.sub("", payload)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - cleaned input always decodes
        return None


def _decode_run(run: list[tuple[str, bytes]], defects: _Defects | None) -> str:
    """Decode adjacent encoded words, joining same-charset bytes first.

    Some mailers split a multi-byte character across two encoded words, so the bytes
    must be concatenated before decoding.
    """
    out: list[str] = []
    index = 0
    while index < len(run):
        charset, data = run[index]
        index += 1
        while index < len(run) and run[index][0] == charset:
            data += run[index][1]
            index += 1
        out.append(_decode_bytes(data, charset, defects))
    return "".join(out)


def _decode_words(text: str, defects: _Defects | None = None) -> str:
    """Decode RFC 2047 encoded words in *text*; undecodable words stay as they are.

    Whitespace between adjacent encoded words is dropped, as RFC 2047 requires.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    run: list[tuple[str, bytes]] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        if gap and not (run and not gap.strip()):
            out.append(_decode_run(run, defects))
            run = []
            out.append(gap)
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:  # pragma: no cover - see _word_bytes
            out.append(_decode_run(run, defects))
            run = []
            out.append(match.group())
        else:
            run.append((match.group(1).lower(), data))
        pos = match.end()
    out.append(_decode_run(run, defects))
    out.append(text[pos:])
    return "".join(out)


def _normalise_encoded_words(text: str, defects: _Defects | None = None) -> str:
    """Re-encode each run of adjacent encoded words as one UTF-8 encoded word.

    The stdlib address parser decodes encoded words one at a time and keeps the space
    between them, so a long display name folded into several words (as Thunderbird
    does) would gain spaces and split multi-byte characters would break. Decoding the
    run here, with the charset fallbacks above, avoids both.
    """
    if "=?" not in text:
        return text

    def merge(match: re.Match[str]) -> str:
        decoded = _decode_words(match.group(), defects).encode("utf-8", "replace")
        return "=?utf-8?b?" + base64.b64encode(decoded).decode("ascii") + "?="

    return _ENCODED_RUN.sub(merge, text)


def _one_line(value: str) -> str:
    """Collapse a header value to one line: controls and whitespace runs become one space."""
    return _WHITESPACE.sub(" ", _LINE_CONTROLS.sub(" ", value)).strip()


def _clean_body(text: str) -> str:
    """Normalise body text: ``\\n`` line endings, no controls, no trailing whitespace."""
    text = _BODY_CONTROLS.sub("", _LINE_BREAKS.sub("\n", text))
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def synthetic_message_id(raw: bytes) -> str:
    """A Message-ID for mail that has none, stable across re-fetches of the same bytes."""
    return f"<sha256-{hashlib.sha256(raw).hexdigest()}@ticketbot.invalid>"


def _safe_filename(name: str | None, index: int, extension: str = ".bin") -> str:
    """A filename safe to show and to store: no directories, controls or bidi tricks."""
    cleaned = re.split(r"[/\\]", name or "")[-1]
    cleaned = " ".join(_FILENAME_UNSAFE.sub("", cleaned).split())
    if cleaned in ("", ".", ".."):
        return f"attachment-{index}{extension}"
    if extension == ".eml" and not cleaned.lower().endswith(".eml"):
        cleaned += ".eml"
    if len(cleaned) > MAX_FILENAME_CHARS:
        stem, dot, suffix = cleaned.rpartition(".")
        if dot and stem and 0 < len(suffix) <= 16:
            cleaned = stem[: MAX_FILENAME_CHARS - len(suffix) - 1] + "." + suffix
        else:
            cleaned = cleaned[:MAX_FILENAME_CHARS]
    return cleaned


# --------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------


class _Defects:
    """An ordered, de-duplicated, capped list of short problem descriptions."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        if text not in self.items and len(self.items) < MAX_DEFECTS:
            self.items.append(text)

    def add_from(self, part: Message) -> None:
        for defect in getattr(part, "defects", ()):
            self.add(type(defect).__name__)


class _Parser:
    """State for parsing one mail: the defects seen and the attachments collected."""

    def __init__(self, raw: bytes, max_attachment_bytes: int, max_total_bytes: int) -> None:
        self.raw = raw
        self.max_attachment_bytes = max_attachment_bytes
        self.max_total_bytes = max_total_bytes
        self.defects = _Defects()
        self.attachments: list[AttachmentData] = []
        self.dropped: list[str] = []
        self.total_bytes = 0
        self.attachment_count = 0
        self.part_count = 0
        self.has_dsn = False
        self.strict_budget = STRICT_ADDRESS_BUDGET
        self.boundary_guesses = 0

    def guard(self, label: str, func: Callable[[], _T], default: _T) -> _T:
        """Run *func*; on any error record it under *label* and return *default*."""
        try:
            return func()
        except Exception as exc:
            self.defects.add(f"{label}: {type(exc).__name__}")
            return default

    # Headers -------------------------------------------------------------------------

    def raw_values(self, msg: Message, name: str) -> list[str]:
        """Every raw value of header *name*, unfolded, with 8-bit bytes decoded."""

        def read() -> list[str]:
            wanted = name.lower()
            return [
                _fix_8bit(_LINE_BREAKS.sub("", str(value)))
                for key, value in msg.raw_items()
                if key.lower() == wanted
            ]

        return self.guard(name, read, [])

    def first(self, msg: Message, name: str) -> str:
        values = self.raw_values(msg, name)
        return values[0] if values else ""

    def text_header(self, msg: Message, name: str) -> str:
        """An unstructured header (Subject): decoded and collapsed to one line."""
        return _one_line(_decode_words(self.first(msg, name), self.defects))

    def param(self, msg: Message, header: str, key: str) -> str:
        """A parameter of a MIME header, RFC 2231 and RFC 2047 decoded; "" if absent.

        The header is copied, cut to :data:`MAX_MIME_HEADER_CHARS`, into a scratch
        message so that the legacy parameter parser never sees a huge value.
        """
        value = self.first(msg, header)
        if not value:
            return ""

        def read() -> str:
            scratch = Message()
            scratch[header] = value[:MAX_MIME_HEADER_CHARS]
            found = scratch.get_param(key, None, header=header)
            if isinstance(found, tuple):  # RFC 2231: (charset, language, %-decoded text)
                charset, _language, text = found
                try:
                    return _decode_bytes(text.encode("latin-1"), charset, self.defects)
                except UnicodeEncodeError:
                    return str(text)
            return str(found or "")

        return _decode_words(self.guard(header, read, ""), self.defects)

    def addresses(self, msg: Message, *names: str) -> tuple[Address, ...]:
        """All addresses in the headers *names*, capped at :data:`MAX_ADDRESSES`."""
        found: list[Address] = []
        for name in names:
            for value in self.raw_values(msg, name):
                if len(found) > MAX_ADDRESSES:
                    break
                if len(value) > MAX_ADDRESS_HEADER_CHARS:
                    self.defects.add(f"{name} header too long; truncated")
                    value = value[:MAX_ADDRESS_HEADER_CHARS]
                found.extend(self.parse_addresses(name, value))
        if len(found) > MAX_ADDRESSES:
            self.defects.add(f"more than {MAX_ADDRESSES} addresses in {'/'.join(names)}")
            found = found[:MAX_ADDRESSES]
        return tuple(found)

    def parse_addresses(self, name: str, value: str) -> list[Address]:
        """Parse one address-list header.

        The modern parser understands groups, comments and encoded words best, but it is
        quadratic on crafted input, so it only gets short values within a per-mail budget;
        the legacy parser (linear, but it leaves encoded words alone) does the rest and
        is the fallback when the modern one fails.
        """

        def strict() -> list[tuple[str, str]] | None:
            if len(value) > MAX_STRICT_ADDRESS_CHARS or self.strict_budget < len(value):
                return None
            self.strict_budget -= len(value)
            header: Any = _ADDRESS_PARSER("to", _normalise_encoded_words(value))
            return [(item.display_name, item.addr_spec) for item in header.addresses]

        def lenient() -> list[tuple[str, str]]:
            # The legacy parser leaves encoded words alone; the strict one has decoded
            # them already, and decoding twice would unpack text that was literal.
            pairs = email.utils.getaddresses([value])
            return [(_decode_words(display, self.defects), spec) for display, spec in pairs]

        pairs = self.guard(f"{name} address parser", strict, None)
        if pairs is None:
            pairs = self.guard(name, lenient, list[tuple[str, str]]())
        result: list[Address] = []
        for display, spec in pairs:
            address = _WHITESPACE.sub("", _LINE_CONTROLS.sub("", spec)).lower()
            if address and address != "<>":
                result.append(Address(address, _one_line(display)))
        return result

    def message_id(self, msg: Message) -> str:
        """Message-ID as ``<...>``; synthesised from the bytes when missing or unusable."""
        value = _WHITESPACE.sub("", _LINE_CONTROLS.sub("", self.first(msg, "message-id")))
        match = _MESSAGE_ID.search(value)
        if match and len(match.group()) <= MAX_MESSAGE_ID_CHARS:
            return match.group()
        bare = value.replace("<", "").replace(">", "")
        if bare and len(bare) + 2 <= MAX_MESSAGE_ID_CHARS:
            self.defects.add("Message-ID without angle brackets")
            return f"<{bare}>"
        self.defects.add("missing or unusable Message-ID")
        return synthetic_message_id(self.raw)

    def ids(self, msg: Message, name: str) -> tuple[str, ...]:
        """The ``<...>`` message ids in header *name*, de-duplicated, in order."""
        found = _MESSAGE_ID.findall(_LINE_CONTROLS.sub(" ", " ".join(self.raw_values(msg, name))))
        unique = list(dict.fromkeys(item for item in found if len(item) <= MAX_MESSAGE_ID_CHARS))
        if len(unique) > MAX_REFERENCES:
            # Keep the thread root and the most recent ancestors: those are what threading uses.
            self.defects.add(f"more than {MAX_REFERENCES} ids in {name}")
            unique = unique[:1] + unique[-(MAX_REFERENCES - 1) :]
        return tuple(unique)

    def date(self, msg: Message) -> datetime | None:
        """The Date header as an aware datetime; ``-0000`` (unknown zone) is read as UTC."""
        value = self.first(msg, "date").strip()
        if not value:
            return None

        def parse() -> datetime:
            parsed = email.utils.parsedate_to_datetime(value)
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

        return self.guard("unparseable Date", parse, None)

    # Body and attachments ------------------------------------------------------------

    def content_type(self, part: Message) -> str:
        value = self.guard("Content-Type", part.get_content_type, "text/plain")
        return _LINE_CONTROLS.sub("", value)[:200] or "application/octet-stream"

    def walk(self, part: Message, depth: int) -> list[tuple[str, str]]:
        """Collect readable text segments ``(kind, text)`` and attachments under *part*.

        Kind is "plain" or "html" (already converted); multipart/alternative uses it to
        prefer the plain version. Attachments are collected from every branch, even an
        alternative not shown, so that no pasted screenshot is lost.
        """
        self.part_count += 1
        if self.part_count > MAX_PARTS:
            self.defects.add(f"more than {MAX_PARTS} MIME parts; rest ignored")
            return []
        self.defects.add_from(part)
        ctype = self.content_type(part)
        maintype = ctype.partition("/")[0]
        if ctype in _DSN_TYPES:
            self.has_dsn = True
        if maintype == "message":
            self.attach(part, ctype)
            return []
        if part.is_multipart():
            if depth >= MAX_DEPTH:
                self.defects.add(f"MIME nesting deeper than {MAX_DEPTH}; inner parts ignored")
                return []
            children: Any = self.guard("multipart", part.get_payload, None)
            if not isinstance(children, list):  # pragma: no cover - is_multipart() says list
                return []
            results = [self.walk(child, depth + 1) for child in children]
            if ctype == "multipart/alternative":
                return _choose_alternative(results)
            return [segment for result in results for segment in result]
        if maintype == "multipart":
            recovered = self.guard("boundary", lambda: self.recover_boundary(part, ctype), None)
            if recovered is not None:
                self.defects.add("multipart without boundary; boundary guessed from body")
                return self.walk(recovered, depth + 1)
            self.defects.add("multipart without usable boundary; body shown as text")
            return self.text_segment(part, "plain")
        filename = self.filename(part)
        if ctype in ("text/plain", "text/html") and not self.is_attachment(part, filename):
            return self.text_segment(part, "plain" if ctype == "text/plain" else "html")
        self.attach(part, ctype, filename)
        return []

    def recover_boundary(self, part: Message, ctype: str) -> Message | None:
        """Re-read a multipart whose boundary parameter is missing or wrong.

        Some broken mailers omit the parameter but still write the delimiter lines, so
        the first ``--token`` line of the body is taken as the boundary. Each guess
        re-parses the body, so only a few are made per mail.
        """
        if self.boundary_guesses >= MAX_BOUNDARY_GUESSES:
            return None
        self.boundary_guesses += 1
        body = self.payload(part)
        match = _DELIMITER_LINE.search(body)
        if match is None:
            return None
        header = b'Content-Type: %s; boundary="%s"\r\n\r\n' % (ctype.encode(), match.group(1))
        recovered = email.message_from_bytes(header + body, policy=_STRUCTURE_POLICY)
        return recovered if recovered.is_multipart() else None

    def is_attachment(self, part: Message, filename: str) -> bool:
        """Text parts with a filename or ``attachment`` disposition are files, not body."""
        disposition = self.guard("Content-Disposition", part.get_content_disposition, None)
        return disposition == "attachment" or bool(filename)

    def filename(self, part: Message) -> str:
        return self.param(part, "content-disposition", "filename") or self.param(
            part, "content-type", "name"
        )

    def encoded_size(self, part: Message) -> int:
        """A lower bound of the decoded size, read from the encoded text without decoding."""
        raw: Any = part.get_payload()
        if not isinstance(raw, str):
            return 0
        encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
        if encoding == "base64":
            return (len(raw) * 3) // 4 * 76 // 78  # less the line breaks
        if encoding == "quoted-printable":
            return len(raw) // 3
        return len(raw)

    def payload(self, part: Message) -> bytes:
        """The part's body with its transfer encoding undone (lenient for broken base64)."""
        data: Any = self.guard("payload", lambda: part.get_payload(decode=True), None)
        return data if isinstance(data, bytes) else b""

    def text_segment(self, part: Message, kind: str) -> list[tuple[str, str]]:
        cut = _cut_size(part)
        if cut is not None:
            note = f"[ticketbot: a text part of about {cut} bytes was over the size limit]"
            return [(kind, note)]
        text = _decode_bytes(
            self.payload(part), self.param(part, "content-type", "charset"), self.defects
        )
        if kind == "html":
            text = html_to_text(text)
        text = _clean_body(text)
        return [(kind, text)] if text.strip() else []

    def serialize(self, part: Message) -> bytes:
        """Bytes of a message/* part's content (an attached mail becomes an .eml file)."""
        payload = part.get_payload()
        if not isinstance(payload, list):
            return self.payload(part)
        return b"".join(_flatten(inner) for inner in payload if isinstance(inner, Message))

    def attach(self, part: Message, ctype: str, filename: str | None = None) -> None:
        """Keep *part* as an attachment, unless it would break the size limits."""
        self.attachment_count += 1
        extension = ".eml" if ctype in _EML_TYPES else ".bin"
        if filename is None:
            filename = self.filename(part)
        name = _safe_filename(filename, self.attachment_count, extension)
        if ctype.startswith("message/"):
            data = self.guard("attached message", lambda: self.serialize(part), None)
            if data is None:
                return
        else:
            cut = _cut_size(part)
            if cut is not None:
                self.dropped.append(f"{name} (about {cut} bytes, over the limit)")
                return
            estimate = self.encoded_size(part)
            too_big = estimate > self.max_attachment_bytes or (
                self.total_bytes + estimate > self.max_total_bytes
            )
            if too_big and estimate > _DECODE_ANYWAY_BYTES:
                # known to be too big from its encoded length: never decode it
                self.dropped.append(f"{name} (about {estimate} bytes, over the limit)")
                return
            data = self.payload(part)
        size = len(data)
        if size > self.max_attachment_bytes or self.total_bytes + size > self.max_total_bytes:
            self.dropped.append(f"{name} ({size} bytes, over the limit)")
            return
        self.total_bytes += size
        self.attachments.append(AttachmentData(name, ctype, data))

    # Whole message -------------------------------------------------------------------

    def auto_kind(self, msg: Message, ctype: str, sender: Address, subject: str) -> str:
        """Why the mail is automatic ("bounce", "auto-replied", "bulk"), or "" for a person.

        Order matters: a vacation reply is often sent with ``Return-Path: <>`` too (RFC
        3834), so the explicit auto-reply markers are checked before the null sender.
        """
        if ctype == "multipart/report":
            report = self.param(msg, "content-type", "report-type").lower()
            return "bounce" if report == "delivery-status" else "auto-replied"
        local = sender.email.partition("@")[0]
        if local in ("mailer-daemon", "postmaster") and self.has_dsn:
            return "bounce"
        submitted = self.first(msg, "auto-submitted").partition(";")[0].strip().lower()
        if submitted and submitted != "no":
            return "auto-replied"
        if self.raw_values(msg, "x-autoreply") or self.raw_values(msg, "x-autorespond"):
            return "auto-replied"
        if subject.lower().startswith(_AUTO_SUBJECT_PREFIXES):
            return "auto-replied"
        precedence = self.first(msg, "precedence").strip().lower()
        if precedence == "auto_reply":
            return "auto-replied"
        if any(value.strip() == "<>" for value in self.raw_values(msg, "return-path")):
            return "bounce"
        if precedence in ("bulk", "junk", "list"):
            return "bulk"
        if self.raw_values(msg, "list-id") or self.raw_values(msg, "list-unsubscribe"):
            return "bulk"
        return ""

    def read_message(self) -> tuple[Message, bool]:
        """The parsed message and whether its body is usable (False: headers only)."""
        try:
            source = _shrink_big_blocks(self.raw, self.max_attachment_bytes)
            return email.message_from_bytes(source, policy=_STRUCTURE_POLICY), True
        except Exception as exc:  # e.g. RecursionError on absurdly nested MIME
            self.defects.add(f"MIME structure unreadable ({type(exc).__name__}); headers only")
        try:
            return BytesHeaderParser(policy=_STRUCTURE_POLICY).parsebytes(self.raw), False
        except Exception as exc:  # pragma: no cover - the header parser is very lenient
            self.defects.add(f"headers unreadable ({type(exc).__name__})")
            return Message(), False

    def parse(self) -> InboundEmail:
        msg, body_ok = self.read_message()
        sender_list = (
            self.addresses(msg, "from")
            or self.addresses(msg, "sender")
            or self.addresses(msg, "return-path")
        )
        sender = sender_list[0] if sender_list else Address("", "")
        subject = self.text_header(msg, "subject")
        segments = self.walk(msg, 0) if body_ok else []
        ctype = self.content_type(msg)
        return InboundEmail(
            raw=self.raw,
            message_id=self.message_id(msg),
            subject=subject,
            sender=sender,
            to=self.addresses(msg, "to"),
            cc=self.addresses(msg, "cc"),
            delivered_to=self.addresses(msg, "delivered-to", "x-original-to"),
            reply_to=self.addresses(msg, "reply-to"),
            date=self.date(msg),
            in_reply_to=self.ids(msg, "in-reply-to"),
            references=self.ids(msg, "references"),
            text="\n\n".join(text for _, text in segments),
            attachments=tuple(self.attachments),
            dropped_attachments=tuple(self.dropped),
            auto_kind=self.auto_kind(msg, ctype, sender, subject),
            parse_defects=tuple(self.defects.items),
        )


def _flatten(msg: Message) -> bytes:
    """Serialise a parsed message again, raw 8-bit bytes included.

    The bytes generator cannot write text that the parser had to decode lossily (it
    only round-trips surrogate-escaped bytes); the text generator plus UTF-8 can.
    """
    policy = email.policy.compat32.clone(linesep="\r\n")
    out = io.BytesIO()
    try:
        BytesGenerator(out, mangle_from_=False, policy=policy).flatten(msg)
        return out.getvalue()
    except UnicodeEncodeError:
        text = io.StringIO()
        Generator(text, mangle_from_=False, policy=policy).flatten(msg)
        return text.getvalue().encode("utf-8", "surrogateescape")


def _choose_alternative(results: Iterable[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """Pick the alternative to show: the first with plain text, else the last non-empty."""
    options = list(results)
    for option in options:
        if any(kind == "plain" for kind, _ in option):
            return option
    for option in reversed(options):
        if option:
            return option
    return []


_CUT_MARK = "ticketbotcut"
_CUT_LINE = re.compile(rb"[A-Za-z0-9+/=]{40,100}\r?\n")


def _shrink_big_blocks(raw: bytes, keep_bytes: int) -> bytes:
    """``raw`` with every base64 block too big to keep replaced by a one-line mark.

    Python's mail parser holds a part in several copies, so a 50 MB attachment costs
    half a gigabyte to parse only to be dropped. A block of base64 lines longer than
    any attachment may be is cut here, before parsing, into ``ticketbotcutNNN`` (its
    decoded size); :meth:`_Parser.attach` names it as dropped. Small mail is returned as
    it is; the stored original is never this copy.
    """
    encoded_limit = keep_bytes * 4 // 3 + 4096
    if len(raw) <= 2 * encoded_limit:
        return raw
    pieces: list[bytes] = []
    kept_from = 0
    block_start = -1
    pos = 0
    size = len(raw)
    while pos < size:
        end = raw.find(b"\n", pos)
        end = size if end == -1 else end + 1
        match = _CUT_LINE.match(raw, pos, end)
        if match is not None and match.end() == end:
            if block_start < 0:
                block_start = pos
        elif block_start >= 0:
            if pos - block_start > encoded_limit:
                pieces.append(raw[kept_from:block_start])
                pieces.append(f"{_CUT_MARK}{(pos - block_start) * 3 // 4 * 76 // 78}\r\n".encode())
                kept_from = pos
            block_start = -1
        pos = end
    if block_start >= 0 and size - block_start > encoded_limit:
        pieces.append(raw[kept_from:block_start])
        pieces.append(f"{_CUT_MARK}{(size - block_start) * 3 // 4 * 76 // 78}\r\n".encode())
        kept_from = size
    if not pieces:
        return raw
    pieces.append(raw[kept_from:])
    return b"".join(pieces)


def _cut_size(part: Message) -> int | None:
    """The size of a block :func:`_shrink_big_blocks` cut out of this part, if it did."""
    payload: Any = part.get_payload()
    if isinstance(payload, str) and payload.startswith(_CUT_MARK):
        digits = payload[len(_CUT_MARK) :].partition("\n")[0].strip()
        return int(digits) if digits.isdigit() else 0
    return None


def parse_email(
    raw: bytes,
    *,
    max_attachment_bytes: int = 10_000_000,
    max_total_attachment_bytes: int = 25_000_000,
) -> InboundEmail:
    """Parse one raw mail into an :class:`InboundEmail`; never raises for any bytes.

    Attachments over *max_attachment_bytes*, or that would take the kept total over
    *max_total_attachment_bytes*, are listed in ``dropped_attachments`` instead of kept,
    so a huge upload cannot fill the database while the ticket still says it existed.
    """
    parser = _Parser(raw, max_attachment_bytes, max_total_attachment_bytes)
    try:
        return parser.parse()
    except Exception as exc:  # last line of defence: a ticket with no body beats none
        return InboundEmail(
            raw=raw,
            message_id=synthetic_message_id(raw),
            subject="",
            sender=Address("", ""),
            parse_defects=(*parser.defects.items, f"unparseable mail ({type(exc).__name__})"),
        )


class MailParser:
    """:func:`parse_email` with the attachment limits of the ``[mail]`` section.

    A class rather than a closure so the IMAP watcher can hand a huge mail, with the
    same limits, to a child process (``adapters/email/parse_worker.py``).
    """

    def __init__(self, max_attachment_bytes: int, max_total_attachment_bytes: int) -> None:
        self.max_attachment_bytes = max_attachment_bytes
        self.max_total_attachment_bytes = max_total_attachment_bytes

    def __call__(self, raw: bytes) -> InboundEmail:
        return parse_email(
            raw,
            max_attachment_bytes=self.max_attachment_bytes,
            max_total_attachment_bytes=self.max_total_attachment_bytes,
        )


def parser_for(limits: MailConfig) -> MailParser:
    """:func:`parse_email` with the attachment limits of the ``[mail]`` section."""
    return MailParser(limits.max_attachment_bytes, limits.max_total_attachment_bytes)
