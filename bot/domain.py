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
    """The states of an OTRS desk, which response teams know by these names."""

    NEW = "new"
    OPEN = "open"
    PENDING_REMINDER = "pending_reminder"  # back to the queue, with a ping, at pending_until
    PENDING_AUTOCLOSE = "pending_autoclose"  # closes itself at pending_until unless answered
    CLOSED_SUCCESSFUL = "closed_successful"
    CLOSED_UNSUCCESSFUL = "closed_unsuccessful"
    MERGED = "merged"  # folded into another ticket (merged_into)
    SPAM = "spam"  # closed without any mail to the sender

    @property
    def is_pending(self) -> bool:
        return self in (TicketState.PENDING_REMINDER, TicketState.PENDING_AUTOCLOSE)

    @property
    def is_closed(self) -> bool:
        """Finished: no reminders, not in the queue's waiting list."""
        return self in _CLOSED

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


_CLOSED = frozenset(
    {
        TicketState.CLOSED_SUCCESSFUL,
        TicketState.CLOSED_UNSUCCESSFUL,
        TicketState.MERGED,
        TicketState.SPAM,
    }
)


class ArticleKind(StrEnum):
    INBOUND = "inbound"  # an email from the requester (or anyone writing to the ticket)
    REPLY = "reply"  # an email a volunteer sent
    NOTE = "note"  # internal; never leaves the chat
    AUTO_REPLY = "auto_reply"  # an acknowledgement the bot sent by itself (RFC 3834)


class SendState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # gave up: permanent error or too many attempts
    CANCELLED = "cancelled"  # undone by the volunteer before it went out
    AWAITING_APPROVAL = "approval"  # a trainee's draft: sent once a volunteer approves


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

MIN_PRIORITY, DEFAULT_PRIORITY, MAX_PRIORITY = 1, 3, 5


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
    priority: int = DEFAULT_PRIORITY
    language: str = ""
    tags: tuple[str, ...] = ()
    pending_until: datetime | None = None
    merged_into: int | None = None  # ticket id
    linked_to: int | None = None  # the earlier ticket a new one continues
    #: When the owner last did something with the ticket; a claim lapses after an idle time.
    owner_active_at: datetime | None = None
    #: When a reminder about this ticket was last sent, so each falls due once.
    reminded_at: datetime | None = None

    @property
    def owner_label(self) -> str:
        return self.owner_name or self.owner or ""

    def _refuse_if_finished(self, doing: str) -> None:
        if self.state is TicketState.MERGED:
            raise TicketError(f"Ticket {self.number} was merged into another; {doing} that one.")
        if self.state.is_closed:
            raise TicketError(f"Ticket {self.number} is {self.state.label}; reopen it first.")

    def claim(self, actor: Actor, now: datetime) -> None:
        self._refuse_if_finished("claim")
        if self.owner == actor.user_id:
            raise TicketError(f"You already hold ticket {self.number}.")
        if self.owner is not None:
            raise TicketError(
                f"Ticket {self.number} is held by {self.owner_label}; "
                "they can unclaim it, or ask them to assign it to you."
            )
        self._take(actor.user_id, actor.label, now)

    def assign(self, user_id: str, name: str, now: datetime) -> None:
        """Give the ticket to a volunteer (the caller checks they belong to the queue)."""
        self._refuse_if_finished("assign")
        if self.owner == user_id:
            raise TicketError(f"Ticket {self.number} is already held by {name or user_id}.")
        self._take(user_id, name, now)

    def _take(self, user_id: str, name: str, now: datetime) -> None:
        self.owner, self.owner_name = user_id, name
        self.owner_active_at = now
        self.reminded_at = None
        if self.state is TicketState.NEW:
            self.state = TicketState.OPEN
        self.updated_at = now

    def unclaim(self, actor: Actor, now: datetime) -> None:
        if self.owner is None:
            raise TicketError(f"Ticket {self.number} is not claimed.")
        if self.owner != actor.user_id:
            raise TicketError(f"Ticket {self.number} is held by {self.owner_label}, not by you.")
        self.release(now)

    def release(self, now: datetime) -> None:
        """The ticket goes back to the queue (unclaim, or a lapsed claim)."""
        self.owner = self.owner_name = None
        self.owner_active_at = None
        self.reminded_at = None
        self.updated_at = now

    def touch_owner(self, actor: Actor, now: datetime) -> None:
        """The owner worked on the ticket: their claim does not lapse yet."""
        if self.owner == actor.user_id:
            self.owner_active_at = now

    def close(self, now: datetime, *, successful: bool = True) -> None:
        if self.state.is_closed:
            raise TicketError(f"Ticket {self.number} is already {self.state.label}.")
        self.state = (
            TicketState.CLOSED_SUCCESSFUL if successful else TicketState.CLOSED_UNSUCCESSFUL
        )
        self.pending_until = None
        self.updated_at = now

    def mark_spam(self, now: datetime) -> None:
        if self.state in (TicketState.SPAM, TicketState.MERGED):
            raise TicketError(f"Ticket {self.number} is already {self.state.label}.")
        self.state = TicketState.SPAM
        self.pending_until = None
        self.owner = self.owner_name = None
        self.updated_at = now

    def reopen(self, now: datetime) -> None:
        if self.state is TicketState.MERGED:
            raise TicketError(f"Ticket {self.number} was merged into another; it stays merged.")
        if not (self.state.is_closed or self.state.is_pending):
            raise TicketError(f"Ticket {self.number} is not closed or pending.")
        self.state = TicketState.OPEN
        self.pending_until = None
        self.reminded_at = None
        self.updated_at = now

    def set_pending(self, until: datetime, *, autoclose: bool, now: datetime) -> None:
        self._refuse_if_finished("set pending on")
        if until <= now:
            raise TicketError("The pending date must be in the future.")
        self.state = TicketState.PENDING_AUTOCLOSE if autoclose else TicketState.PENDING_REMINDER
        self.pending_until = until
        self.reminded_at = None
        self.updated_at = now

    def pending_due(self, now: datetime) -> bool:
        return (
            self.state.is_pending and self.pending_until is not None and self.pending_until <= now
        )

    def fall_due(self, now: datetime) -> None:
        """The pending date came: a reminder opens the ticket, an auto-close closes it."""
        if self.state is TicketState.PENDING_AUTOCLOSE:
            self.state = TicketState.CLOSED_SUCCESSFUL
        else:
            self.state = TicketState.OPEN
            self._owner_fresh(now)
        self.pending_until = None
        self.reminded_at = None
        self.updated_at = now

    def _owner_fresh(self, now: datetime) -> None:
        """Waiting time is not idle time: a claim's clock restarts when a ticket comes back."""
        if self.owner is not None:
            self.owner_active_at = now

    def merge_into(self, target: Ticket, now: datetime) -> None:
        if target.id == self.id:
            raise TicketError("A ticket cannot be merged into itself.")
        if self.state is TicketState.MERGED:
            raise TicketError(f"Ticket {self.number} is already merged.")
        if target.state is TicketState.MERGED:
            raise TicketError(f"Ticket {target.number} is itself merged; merge into its target.")
        self.state = TicketState.MERGED
        self.merged_into = target.id
        self.pending_until = None
        self.owner = self.owner_name = None
        self.updated_at = now

    def set_priority(self, priority: int, now: datetime) -> None:
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise TicketError(
                f"Priority must be {MIN_PRIORITY} (lowest) to {MAX_PRIORITY} (highest)."
            )
        self.priority = priority
        self.updated_at = now

    def touch_by_requester(self, now: datetime) -> bool:
        """A requester wrote again: a pending or closed ticket opens. True when it reopened.

        Spam stays spam (the sender is marked); a merged ticket's mail goes to its target.
        """
        self.updated_at = now
        if self.state in (TicketState.SPAM, TicketState.MERGED):
            return False
        if self.state.is_closed or self.state.is_pending:
            self.state = TicketState.OPEN
            self.pending_until = None
            self.reminded_at = None
            self._owner_fresh(now)
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
    #: A follow-up from someone who is not a participant of the ticket, waiting for a
    #: volunteer to attach it or open it as a new ticket.
    held: bool = False


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int
