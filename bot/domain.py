"""Tickets, articles and the state changes volunteers make.

State changes live here, as methods that refuse illegal transitions, so every
adapter gets the same rules. The store saves a ticket with a version check, so two
volunteers claiming at once on two platforms resolve to exactly one owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class TicketState(StrEnum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class ArticleKind(StrEnum):
    INBOUND = "inbound"  # an email from the requester (or anyone writing to the ticket)
    REPLY = "reply"  # an email a volunteer sent
    NOTE = "note"  # internal; never leaves the chat


class SendState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # gave up: permanent error or too many attempts


class TicketError(Exception):
    """A command that cannot be carried out; the message is shown to the volunteer."""


class ConcurrentUpdate(TicketError):
    """Someone changed the ticket between our read and our write."""

    def __init__(self) -> None:
        super().__init__("The ticket changed meanwhile; please try again.")


@dataclass(frozen=True)
class Actor:
    """Who did something: a chat user (``platform`` matrix, console, ...) or the system."""

    platform: str
    user_id: str
    display_name: str = ""
    #: Platform-qualified groups the user belongs to ("discord-role:1234"), for queues
    #: that grant access by role rather than by person.
    roles: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return self.display_name or self.user_id


SYSTEM = Actor("system", "ticketbot", "ticketbot")


@dataclass
class Ticket:
    id: int | None
    number: str
    queue: str
    subject: str
    requester_email: str
    requester_name: str
    created_at: datetime
    updated_at: datetime
    state: TicketState = TicketState.NEW
    owner: str | None = None
    owner_name: str | None = None
    version: int = 0

    def claim(self, actor: Actor, now: datetime) -> None:
        if self.state is TicketState.CLOSED:
            raise TicketError(f"Ticket {self.number} is closed; reopen it first.")
        if self.owner == actor.user_id:
            raise TicketError(f"You already hold ticket {self.number}.")
        if self.owner is not None:
            raise TicketError(
                f"Ticket {self.number} is held by {self.owner_name or self.owner}; "
                "they can unclaim it."
            )
        self.owner, self.owner_name = actor.user_id, actor.label
        if self.state is TicketState.NEW:
            self.state = TicketState.OPEN
        self.updated_at = now

    def unclaim(self, actor: Actor, now: datetime) -> None:
        if self.owner is None:
            raise TicketError(f"Ticket {self.number} is not claimed.")
        if self.owner != actor.user_id:
            raise TicketError(
                f"Ticket {self.number} is held by {self.owner_name or self.owner}, not by you."
            )
        self.owner = self.owner_name = None
        self.updated_at = now

    def close(self, now: datetime) -> None:
        if self.state is TicketState.CLOSED:
            raise TicketError(f"Ticket {self.number} is already closed.")
        self.state = TicketState.CLOSED
        self.updated_at = now

    def reopen(self, now: datetime) -> None:
        if self.state is not TicketState.CLOSED:
            raise TicketError(f"Ticket {self.number} is not closed.")
        self.state = TicketState.OPEN
        self.updated_at = now

    def touch_by_requester(self, now: datetime) -> bool:
        """A requester wrote again: a closed ticket opens. Returns True when it was reopened."""
        self.updated_at = now
        if self.state is TicketState.CLOSED:
            self.state = TicketState.OPEN
            return True
        return False

    def mark_answered(self, now: datetime) -> None:
        """A reply went out: a new ticket is now being worked on."""
        if self.state is TicketState.NEW:
            self.state = TicketState.OPEN
        self.updated_at = now


@dataclass
class Article:
    id: int | None
    ticket_id: int
    kind: ArticleKind
    author: str  # an email address for inbound mail, an actor id for replies and notes
    author_name: str
    subject: str
    body: str
    created_at: datetime
    message_id: str | None = None
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    auto_kind: str = ""
    send_state: SendState | None = None
    send_attempts: int = 0
    sent_at: datetime | None = None
    last_error: str = ""
    attachments: list[AttachmentInfo] = field(default_factory=list)


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int
