"""Less personal data on screen: stable pseudonyms for requesters, masked addresses and phones.

A queue with ``privacy pseudonymize on`` shows "Requester #4F2A" instead of a name and
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
#: Phone-like runs: an optional +, then 7 or more digits with spaces, dots, dashes,
#: slashes or brackets between them.
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d(?:[\s./()-]{0,2}\d){6,}(?!\w)")


def pseudonym_key(repo: Repository) -> bytes:
    """The desk's pseudonym key, made once on first use."""
    value = repo.desk_setting(_KEY)
    if not isinstance(value, str):
        value = secrets.token_hex(32)
        repo.set_desk_setting(_KEY, value, _now(), "ticketbot")
    return bytes.fromhex(value)


def pseudonym(address: str, key: bytes) -> str:
    digest = hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"Requester #{digest[:4].upper()}"


def mask(text: str) -> str:
    """Addresses and phone numbers in ``text`` replaced by placeholders."""
    return _PHONE.sub("[phone]", _EMAIL.sub("[address]", text))


def mask_ticket(view: TicketView, name: str) -> TicketView:
    return replace(view, requester=name, subject=mask(view.subject), preview=mask(view.preview))


def mask_article(view: ArticleView, name: str) -> ArticleView:
    author = name if view.kind == "inbound" else view.author
    return replace(view, author=author, subject=mask(view.subject), body=mask(view.body))


def _now() -> datetime:
    return datetime.now(UTC)
