"""Render an :class:`~bot.mail.OutgoingEmail` as a MIME message ready to send.

The values in an outgoing mail come partly from strangers (a subject or display name
copied from the mail being answered), so every header must be immune to header
injection. Replacing CR and LF is not enough on its own: the stdlib policy *decodes*
RFC 2047 encoded words in values it is given, so a subject such as
``=?utf-8?q?x=0D=0ABcc:_evil@example.org?=`` would come out of Python 3.11's folder as
a real line break and a forged ``Bcc`` header. This module therefore

* replaces every control character (and Unicode line separator) with a space,
* encodes headers that carry free text itself with :class:`email.header.Header`
  (RFC 2047 for anything non-ASCII or anything that looks like an encoded word), and
  stores the finished, pre-folded ASCII with ``set_raw`` so no later step re-decodes it,
* validates addresses and message ids strictly and raises :class:`ValueError` for
  anything that still does not parse, rather than sending a mangled mail.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage

from bot.mail import Address, OutgoingEmail

__all__ = ["build_message", "message_bytes"]

# Headers we pre-fold ourselves must be written as they are: refold_source="none" stops
# the generator from re-parsing (and re-decoding) them on the way out.
_POLICY = email.policy.default.clone(refold_source="none")

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_BODY_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A message id: printable ASCII without angle brackets or spaces, in angle brackets.
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+>")
# RFC 5322 field names: printable ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")
# Headers the composer owns, plus Bcc, which must never be written into the message.
_RESERVED = frozenset(
    {
        "bcc",
        "content-disposition",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "in-reply-to",
        "message-id",
        "mime-version",
        "references",
        "subject",
        "to",
    }
)
_MAX_ID_CHARS = 900
_MAX_ADDRESS_CHARS = 254
# Display names longer than this are RFC 2047 encoded too, because encoding is the only
# way to fold a long name without changing it.
_MAX_PLAIN_NAME_CHARS = 60
_MAX_PLAIN_WORD_CHARS = 70


def _clean(value: str) -> str:
    """*value* on one line: controls and line separators become spaces; lone surrogates,
    which cannot be encoded at all, become U+FFFD."""
    return _UNSAFE.sub(" ", _SURROGATES.sub("\ufffd", value)).strip()


def _encode_text(name: str, value: str) -> str:
    """A free-text header value as folded ASCII that decodes back to exactly *value*.

    Plain ASCII stays readable; anything non-ASCII, containing ``=?`` (which a reader
    would take for an encoded word) or with a word too long to fold is RFC 2047 encoded
    as UTF-8.
    """
    plain = value.isascii() and "=?" not in value
    # Header can only fold ASCII at spaces; encoded words can be split anywhere, which
    # keeps a long URL or token under the hard 998-character line limit.
    plain = plain and all(len(word) <= _MAX_PLAIN_WORD_CHARS for word in value.split())
    charset = "us-ascii" if plain else "utf-8"
    try:
        # Fold only at whitespace, so that unfolding gives back exactly the same text.
        return Header(value, charset, header_name=name).encode(splitchars=" \t", linesep="\n")
    except Exception as exc:  # pragma: no cover - cleaned values always encode
        raise ValueError(f"cannot encode {name} header: {exc}") from exc


def _addr_spec(address: Address, field: str) -> str:
    """The validated ASCII ``local@domain`` of *address* (IDNA for non-ASCII domains)."""
    spec = _clean(address.email)
    local, at, domain = spec.rpartition("@")
    try:
        if not at or not local or not domain:
            raise ValueError("it needs a local part and a domain")
        if len(spec) > _MAX_ADDRESS_CHARS:
            raise ValueError("it is too long")
        if not local.isascii():
            raise ValueError("a non-ASCII local part needs SMTPUTF8, which is not supported")
        if not domain.isascii():
            domain = domain.encode("idna").decode("ascii")
        parsed = HeaderAddress(addr_spec=f"{local}@{domain}")
        if not parsed.username or not parsed.domain:
            raise ValueError("it needs a local part and a domain")
    except Exception as exc:
        raise ValueError(f"invalid {field} address {address.email!r}: {exc}") from exc
    return parsed.addr_spec


def _format_address(address: Address, field: str) -> str:
    """One mailbox for an address header, with a quoted or RFC 2047 encoded name."""
    spec = _addr_spec(address, field)
    name = " ".join(_clean(address.name).split())
    if not name:
        return spec
    if name.isascii() and "=?" not in name and len(name) <= _MAX_PLAIN_NAME_CHARS:
        return email.utils.formataddr((name, spec))
    return f"{_encode_text(field, name)} <{spec}>"


def _message_id(value: str, field: str) -> str:
    """A validated ``<id>``; a bare ``id@host`` is accepted and bracketed."""
    cleaned = _clean(value)
    if cleaned and not cleaned.startswith("<"):
        cleaned = f"<{cleaned}>"
    if not _MESSAGE_ID.fullmatch(cleaned) or len(cleaned) > _MAX_ID_CHARS:
        raise ValueError(f"invalid {field} {value!r}: expected '<id@host>'")
    return cleaned


def _references(values: tuple[str, ...]) -> str:
    """Well-formed ids found in *values*, folded one per line; anything else is skipped.

    In-Reply-To and References are copied from received mail, so they are treated
    leniently: a damaged id only costs threading, while refusing would lose the reply.
    """
    ids = [match for value in values for match in _MESSAGE_ID.findall(_clean(value))]
    return "\n ".join(item for item in dict.fromkeys(ids) if len(item) <= _MAX_ID_CHARS)


def _body(text: str) -> tuple[str, str | None]:
    """The body with normalised line ends and its transfer encoding.

    Non-ASCII or long lines go quoted-printable: 8bit is only safe when every hop
    advertises 8BITMIME, and a readable QP body beats base64 for anyone debugging.
    """
    text = _SURROGATES.sub("\ufffd", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _BODY_CONTROLS.sub("", text)
    if not text.endswith("\n"):
        text += "\n"
    simple = text.isascii() and all(len(line) <= 78 for line in text.split("\n"))
    return text, (None if simple else "quoted-printable")


def build_message(out: OutgoingEmail, *, date: datetime | None = None) -> EmailMessage:
    """Build the MIME message for *out*: a single text/plain UTF-8 part.

    *date* defaults to now; a naive datetime is taken as UTC. ``Auto-Submitted`` is not
    set: these are human replies (the core may add it through ``extra_headers``).
    Raises :class:`ValueError` for an address, Message-ID or extra header name that is
    unusable even after control characters were replaced; In-Reply-To and References
    keep only their well-formed ``<id>`` tokens.
    """
    if not out.to:
        raise ValueError("an outgoing email needs at least one recipient")
    msg = EmailMessage(policy=_POLICY)
    msg.set_raw("From", _format_address(out.sender, "From"))
    msg.set_raw("To", ",\n ".join(_format_address(item, "To") for item in out.to))
    msg.set_raw("Subject", _encode_text("Subject", _clean(out.subject)))
    when = date or datetime.now(UTC)
    msg["Date"] = email.utils.format_datetime(
        when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    )
    msg.set_raw("Message-ID", _message_id(out.message_id, "Message-ID"))
    in_reply_to = _references((out.in_reply_to,)).partition("\n")[0]
    if in_reply_to:
        msg.set_raw("In-Reply-To", in_reply_to)
    references = _references(out.references)
    if references:
        msg.set_raw("References", references)
    for name, value in out.extra_headers:
        if not _FIELD_NAME.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in _RESERVED:
            raise ValueError(f"header {name!r} is set by the composer and cannot be overridden")
        msg.set_raw(name, _encode_text(name, _clean(value)))
    text, cte = _body(out.text)
    msg.set_content(text, subtype="plain", charset="utf-8", cte=cte)
    return msg


def message_bytes(out: OutgoingEmail, *, date: datetime | None = None) -> bytes:
    """The message for *out* as bytes with CRLF line ends, as SMTP and IMAP APPEND want."""
    return build_message(out, date=date).as_bytes(policy=_POLICY.clone(linesep="\r\n"))
