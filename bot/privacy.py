"""Less personal data on screen: stable pseudonyms for requesters, masked addresses and phones.

A queue with ``privacy pseudonymize on`` shows "Requester #4F2A9C" instead of a name and
address, and masks addresses and phone numbers in the mail text shown in chat. The
ticket itself keeps everything (replies still go to the real address); ``reveal``
shows the address to one volunteer, and the audit log records who asked.

The pseudonym is an HMAC of the address under a key kept in the database, so the
same requester has the same pseudonym across tickets while nobody can compute it
from an address they guess.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.chat import ArticleView, TicketView

if TYPE_CHECKING:
    from bot.repository import Repository

_KEY = "privacy.pseudonym_key"
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
#: Phone-like runs: an international (+49 ..., 0049 ...) or national (030 ..., (030) ...)
#: prefix, then 6 or more digits with spaces, dots, dashes, slashes or brackets between.
#: Ticket numbers (20261124...) and dates start with neither, so they stay readable.
_PHONE = re.compile(r"(?<![\w+])(?:\+|\(?0)\d?(?:[\s./()-]{0,2}\d){6,}(?!\w)")


def pseudonym_key(repo: Repository) -> bytes:
    """The desk's pseudonym key, made once on first use."""
    value = repo.desk_setting(_KEY)
    if not isinstance(value, str):
        value = secrets.token_hex(32)
        repo.set_desk_setting(_KEY, value, _now(), "ticketbot")
    return bytes.fromhex(value)


def pseudonym(address: str, key: bytes) -> str:
    """Six hex digits (16.7 million values): two requesters of one desk practically never
    share one."""
    digest = hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"Requester #{digest[:6].upper()}"


def mask(text: str) -> str:
    """Addresses and phone numbers in ``text`` replaced by placeholders."""
    return _PHONE.sub("[phone]", _EMAIL.sub("[address]", text))


def hide_requester(text: str, email: str, name: str, alias: str) -> str:
    """``text`` with the requester's address and name replaced by their pseudonym, and
    other addresses and phone numbers masked (notices, replies' salutations)."""
    if email:
        text = re.sub(re.escape(email), alias, text, flags=re.IGNORECASE)
    name = name.strip()
    if len(name) >= 3:
        text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", alias, text)
    return mask(text)


def mask_ticket(view: TicketView, name: str) -> TicketView:
    return replace(view, requester=name, subject=mask(view.subject), preview=mask(view.preview))


def mask_article(view: ArticleView, name: str) -> ArticleView:
    author = name if view.kind == "inbound" else view.author
    return replace(view, author=author, subject=mask(view.subject), body=mask(view.body))


def _now() -> datetime:
    return datetime.now(UTC)
