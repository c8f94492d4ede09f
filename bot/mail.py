"""Neutral email values that cross the boundary between the mail adapters and the core.

The email adapter parses raw bytes into :class:`InboundEmail` and turns
:class:`OutgoingEmail` into MIME; the core only ever sees these plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Address:
    """One mailbox: the address, lower-cased domain, and an optional display name."""

    email: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class AttachmentData:
    """An attachment as carried by a mail, already decoded from its transfer encoding."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class InboundEmail:
    """One received email, parsed.

    ``auto_kind`` is empty for mail written by a person; otherwise it names why the
    mail is automatic ("auto-replied", "bounce", "bulk", ...), so the core never
    answers it and can show it differently.
    """

    raw: bytes
    message_id: str
    subject: str
    sender: Address
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    delivered_to: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    date: datetime | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    text: str = ""
    attachments: tuple[AttachmentData, ...] = ()
    dropped_attachments: tuple[str, ...] = ()
    auto_kind: str = ""
    parse_defects: tuple[str, ...] = field(default=())

    @property
    def recipients(self) -> tuple[Address, ...]:
        """Every address the mail was sent to, in routing order (To, Cc, Delivered-To)."""
        return self.to + self.cc + self.delivered_to


@dataclass(frozen=True)
class OutgoingEmail:
    """A reply the core wants sent; the adapter renders it as MIME and sends it."""

    sender: Address
    to: tuple[Address, ...]
    subject: str
    text: str
    message_id: str
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    extra_headers: tuple[tuple[str, str], ...] = ()
