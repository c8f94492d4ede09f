"""What the core needs from storage, as one synchronous unit of work.

Core services are written as plain functions of a :class:`Repository`; the store
runs each one inside a single database transaction on its database thread
(``await store.run(fn)``). So every decision that reads before it writes (is this
Message-ID known? what is the next ticket number?) is atomic, and nothing done in
one call is half-committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

from bot.admin.overlay import Overlay
from bot.domain import Actor, Article, Ticket
from bot.mail import AttachmentData
from bot.ports import MailCursor, MailKey
from bot.reports.data import ActivityData, BadgeData, TrafficData

T = TypeVar("T")


@dataclass(frozen=True)
class OutboxItem:
    """One piece of work for an adapter: a chat post or an email to send.

    Written in the same transaction as the change that caused it, so a crash can
    delay it but never lose it; the adapter marks it done after it succeeded.
    """

    id: int
    channel: str  # "email" or a chat adapter's name ("matrix", "console", ...)
    kind: str  # post_ticket | post_article | update_ticket | notice | send_reply
    ticket_id: int
    article_id: int | None
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    created_at: datetime | None = None

    @property
    def key(self) -> str:
        """A stable identifier for idempotent sends (Matrix transaction ids).

        The creation time is part of it, so a recreated database, whose item ids start
        again at 1, never reuses a key the homeserver still remembers.
        """
        stamp = int(self.created_at.timestamp() * 1_000_000) if self.created_at else 0
        return f"ticketbot-{self.id}-{stamp}"


@dataclass(frozen=True)
class ChatPost:
    """Where a ticket is shown on one chat platform: its room and root message."""

    ticket_id: int
    platform: str
    room: str
    root_ref: str


@dataclass(frozen=True)
class AuditRecord:
    """One line of a ticket's history: who did what, when."""

    at: datetime
    actor_id: str
    actor_name: str
    action: str
    detail: str
    ticket_id: int | None
    #: For changes: the value replaced and the one set (admin actions).
    before: str = ""
    after: str = ""


class Repository(Protocol):
    # tickets
    def ticket_by_id(self, ticket_id: int) -> Ticket: ...

    def ticket_by_number(self, number: str) -> Ticket | None: ...

    def ticket_by_message_ids(self, message_ids: Sequence[str]) -> Ticket | None: ...

    def message_id_exists(self, message_id: str) -> bool: ...

    def next_ticket_number(self, day: date, system_id: int) -> str: ...

    def add_ticket(self, ticket: Ticket) -> Ticket: ...

    def save_ticket(self, ticket: Ticket) -> None:
        """Save with a version check; raises ConcurrentUpdate if someone saved first."""

    # articles
    def add_article(
        self,
        article: Article,
        raw: bytes | None = None,
        attachments: Sequence[AttachmentData] = (),
    ) -> Article: ...

    def article(self, article_id: int) -> Article: ...

    def articles(self, ticket_id: int) -> list[Article]: ...

    def first_article(self, ticket_id: int) -> Article | None: ...

    def save_article_sending(self, article: Article) -> None: ...

    def attachment_files(self, article_id: int) -> list[AttachmentData]: ...

    # outbox
    def enqueue(
        self,
        channel: str,
        kind: str,
        ticket_id: int,
        now: datetime,
        article_id: int | None = None,
        payload: dict[str, Any] | None = None,
        due_at: datetime | None = None,
    ) -> None:
        """Add work for an adapter; ``due_at`` delays it (a reply's undo window)."""

    def begin_send(self, item_id: int) -> bool:
        """Mark a reply as being sent (no undo from here on); False if it was withdrawn."""

    def cancel_send(self, article_id: int, now: datetime) -> bool:
        """Withdraw a reply's pending, never-attempted send; False when too late."""

    def claim_outbox(
        self,
        channel: str,
        now: datetime,
        limit: int,
        instance_id: int,
        gone: Sequence[int] = (),
    ) -> list[OutboxItem]:
        """Due items claimed for ``instance_id`` (free ones, its own, and those of ``gone``)."""

    def outbox_claimants(self, channel: str, instance_id: int) -> list[int]:
        """Other instances holding claims on waiting items of ``channel``."""

    # instances
    def register_instance(self, instance_id: int, name: str, now: datetime) -> None: ...

    def instance_seen(
        self, instance_id: int, now: datetime, roles: Sequence[str], name: str = ""
    ) -> None: ...

    def instance_stopped(self, instance_id: int, now: datetime) -> int: ...

    def lock_startup(self) -> None: ...

    def defer_outbox_of_requester(self, address: str, since: datetime) -> int: ...

    def others_seen_since(self, instance_id: int, since: datetime) -> bool: ...

    def prune_instances(self, before: datetime) -> int: ...

    def outbox_done(self, item_id: int, now: datetime) -> None: ...

    def outbox_retry(self, item_id: int, error: str, retry_at: datetime) -> None: ...

    def outbox_failed(self, item_id: int, error: str, now: datetime) -> None: ...

    def outbox_pending_count(self, channel: str | None = None) -> int: ...

    def next_outbox_due(self, channel: str) -> datetime | None: ...

    # chat posts
    def chat_post(self, ticket_id: int, platform: str) -> ChatPost | None: ...

    def add_chat_post(self, post: ChatPost, now: datetime) -> None: ...

    def replace_chat_post(self, post: ChatPost, now: datetime) -> None: ...

    def ticket_by_chat_ref(self, platform: str, ref: str) -> Ticket | None: ...

    # audit
    def audit(
        self,
        at: datetime,
        actor: Actor,
        action: str,
        ticket_id: int | None,
        detail: str = "",
        *,
        before: str = "",
        after: str = "",
    ) -> None: ...

    # what admins change at run time (storage/admin.py)
    def lock_settings(self) -> None: ...

    def load_overlay(self) -> Overlay: ...

    def desk_setting(self, key: str) -> Any: ...

    def set_desk_setting(self, key: str, value: Any, now: datetime, by: str) -> None: ...

    def set_access(
        self,
        subject: str,
        queue: str,
        level: str | None,
        subqueues: bool,
        now: datetime,
        by: str,
    ) -> None: ...

    def set_admin(self, user_id: str, granted: bool, now: datetime, by: str) -> None: ...

    def rename_queue(self, old: str, new: str) -> None: ...

    def queue_ticket_counts(self, queue: str) -> tuple[int, int]: ...

    def move_closed_tickets(self, source: str, target: str) -> int: ...

    def queue_overview(self, queues: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def tickets_owned(self, owner: str, limit: int) -> list[Ticket]: ...

    def raw_message_of(self, article_id: int) -> bytes | None: ...

    def take_draft(self, article_id: int) -> bool: ...

    def ticket_counts(self) -> list[tuple[str, str, int]]: ...

    def outbox_depths(self) -> dict[str, int]: ...

    # reports (storage/reports.py)
    def report_traffic(
        self, queues: Sequence[str] | None, start: datetime, end: datetime
    ) -> TrafficData: ...

    def report_activity(
        self, start: datetime, end: datetime, volunteers: Sequence[str] = ()
    ) -> ActivityData: ...

    def report_backlog(self, queues: Sequence[str] | None, now: datetime) -> list[BadgeData]: ...

    def audit_log(
        self,
        *,
        user: str | None = None,
        ticket_id: int | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[AuditRecord]: ...

    def history(self, ticket_id: int) -> list[AuditRecord]: ...

    # lifecycle
    def move_articles(self, from_ticket: int, to_ticket: int) -> list[int]: ...

    def move_article(self, article_id: int, to_ticket: int) -> None: ...

    def set_article_held(self, article_id: int, held: bool) -> None: ...

    def tickets_of_requester(self, address: str, limit: int) -> list[Ticket]: ...

    def due_pending(self, now: datetime) -> list[Ticket]: ...

    def active_tickets(self, limit: int = 5000) -> list[Ticket]: ...

    def state_counts(self, queue: str) -> dict[str, int]: ...

    def last_article_of_kinds(self, ticket_id: int, kinds: Sequence[str]) -> Article | None: ...

    def tickets_from_since(self, address: str, since: datetime) -> int:
        """How many tickets this requester address opened since then (flood detection)."""

    def flood_ticket(self, address: str, since: datetime) -> Ticket | None:
        """The newest ticket tagged ``flood`` of this requester opened since then."""

    def article_count(self, ticket_id: int) -> int: ...

    def mark_sender(self, address: str, kind: str, at: datetime, detail: str = "") -> None: ...

    def sender_marks(self, address: str) -> set[str]: ...

    def auto_responses_since(self, address: str, since: datetime) -> int: ...

    def record_auto_response(self, address: str, at: datetime, ticket_id: int | None) -> None: ...

    def volunteer_languages(self, user_id: str) -> tuple[str, ...]: ...

    def set_volunteer_languages(
        self, user_id: str, languages: Sequence[str], now: datetime
    ) -> None: ...

    def all_volunteer_languages(self) -> dict[str, tuple[str, ...]]: ...

    def job_state(self, key: str) -> str | None: ...

    def set_job_state(self, key: str, value: str) -> None: ...

    # search
    def search(
        self, query: SearchQuery, queues: Sequence[str], offset: int, limit: int
    ) -> SearchPage:
        """Tickets matching ``query`` in the given queues only, newest first."""

    # mail sources
    def cursor(self, source: str) -> MailCursor | None: ...

    def set_cursor(self, source: str, validity: int, last_uid: int) -> None: ...

    def advance_cursor(self, source: str, validity: int, uid: int) -> None:
        """Move the cursor to ``uid`` if that is further (a new validity starts it afresh)."""

    def record_intake(
        self, key: MailKey, message_id: str, ticket_id: int | None, now: datetime
    ) -> None: ...

    def intake_pending(self, source: str) -> list[MailKey]: ...

    def intake_done(self, key: MailKey, now: datetime) -> None: ...

    def intake_done_many(self, keys: Sequence[MailKey], now: datetime) -> None: ...

    # queues
    def sync_queues(self, names: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class SearchQuery:
    """What a volunteer searches for: words, and filters (``queue:info state:open``)."""

    text: str = ""
    queue: str | None = None  # this queue and its sub-queues
    state: str | None = None  # a state, or "open"/"closed"/"pending" for the groups
    sender: str | None = None  # requester address or part of it
    owner: str | None = None  # owner id or name, or "none"
    tag: str | None = None
    priority: int | None = None
    #: Keyset paging: only tickets after this one in the listing's order (newest first).
    after: SearchKey | None = None


@dataclass(frozen=True)
class SearchKey:
    """A place in the search listing: a ticket's ``updated_at`` and id, the sort key.

    The next page starts after the last hit's key, so a deep page costs what the first
    does (no OFFSET walking past every earlier hit) and a ticket changed meanwhile
    neither repeats nor is skipped silently: it moves to the top.
    """

    updated_at: datetime
    ticket_id: int


@dataclass(frozen=True)
class SearchHit:
    number: str
    queue: str
    state: str
    subject: str
    requester_email: str
    owner: str
    priority: int
    updated_at: datetime


@dataclass(frozen=True)
class SearchPage:
    total: int  # counted up to bot.search.COUNT_CAP only; see ``capped``
    hits: list[SearchHit]
    #: More tickets match than were counted: ``total`` is a lower bound ("10,000+").
    capped: bool = False
    #: Where the next page starts, or None when this page is the last.
    next_key: SearchKey | None = None


class Store(Protocol):
    """Runs units of work in transactions, off the event loop."""

    async def run(self, work: Callable[[Repository], T]) -> T: ...

    async def close(self) -> None: ...
