"""The peewee store: the core's :class:`bot.repository.Repository` on SQLite or PostgreSQL.

peewee is synchronous, so every unit of work runs on one database thread (SQLite
has a single writer anyway) and the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from peewee import JOIN, Database, IntegrityError, InterfaceError, OperationalError, fn

from bot import domain
from bot.mail import AttachmentData
from bot.ports import MailCursor, MailKey, StoreUnavailable
from bot.repository import AuditRecord, ChatPost, SearchPage, SearchQuery
from bot.routing import format_ticket_number
from storage import models as m
from storage.admin import AdminQueries
from storage.database import is_sqlite, open_database
from storage.instances import STARTUP_LOCK, WAITING, InstanceQueries
from storage.migrations import migrate
from storage.reports import ReportQueries
from storage.search import search_tickets

T = TypeVar("T")
log = logging.getLogger(__name__)


class SqlStore:
    """Runs units of work in transactions on a single database thread."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ticketbot-db")
        self._repository = PeeweeRepository()
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> SqlStore:
        """Open the database and bring its schema up to date."""
        store = cls(open_database(url))
        try:
            await store._call(store._setup)
        except (OperationalError, InterfaceError) as exc:
            # locked, read-only or away at start: the caller decides whether to wait
            await store.close()
            raise StoreUnavailable(str(exc)) from exc
        return store

    def _setup(self) -> None:
        m.database_proxy.initialize(self.db)
        self.db.connect(reuse_if_open=True)
        if is_sqlite(self.db):
            applied = migrate(self.db)
        else:
            # instances starting together: one upgrades the schema, the others wait and
            # then find nothing left to do
            self.db.execute_sql("SELECT pg_advisory_lock(%s)", (STARTUP_LOCK,))  # type: ignore[no-untyped-call]
            try:
                applied = migrate(self.db)
            finally:
                self.db.execute_sql("SELECT pg_advisory_unlock(%s)", (STARTUP_LOCK,))  # type: ignore[no-untyped-call]
        if applied:
            log.info("database schema upgraded (%d step(s))", applied)

    async def _call(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, work)

    async def run(self, work: Callable[[PeeweeRepository], T]) -> T:
        return await self._call(lambda: self._in_transaction(work))

    def _in_transaction(self, work: Callable[[PeeweeRepository], T]) -> T:
        try:
            self.db.connect(reuse_if_open=True)
            tx = self.db.atomic(lock_type="IMMEDIATE") if is_sqlite(self.db) else self.db.atomic()
            with tx:
                try:
                    return work(self._repository)
                except BaseException:
                    self._repository.forget_cached()
                    raise
        except (OperationalError, InterfaceError) as exc:
            # locked, or the server went away: drop the connection so the next unit of
            # work connects afresh (peewee does not reconnect by itself)
            with contextlib.suppress(Exception):
                self.db.close()
            raise StoreUnavailable(str(exc)) from exc

    async def close(self) -> None:
        """Close the database and its thread; a second close does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._call(self.db.close)
        self._executor.shutdown(wait=True)


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _tuple(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text or "[]"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Outbox states still to be carried out: "sending" is a reply an undo can no longer stop.

_MAX_KEY_BYTES = 900  # PostgreSQL's btree index rows stop at 2,704 bytes


def _message_key(message_id: str) -> str:
    """The Message-ID as stored and looked up: a very long one is stored as its hash."""
    message_id = _text(message_id)
    if len(message_id.encode()) <= _MAX_KEY_BYTES:
        return message_id
    return f"<sha256-{_sha256(message_id.encode())}@long-id.ticketbot.invalid>"


def _text(value: str) -> str:
    """PostgreSQL refuses NUL in text; mail from strangers may carry one anywhere."""
    return value.replace("\x00", "\ufffd")


class AttachmentDamaged(Exception):
    """An attachment's bytes no longer match the sha256 stored when it was received."""

    def __init__(self, attachment_id: int, filename: str, article_id: int, problem: str) -> None:
        super().__init__(
            f"attachment {attachment_id} ({filename!r}) of article {article_id} is damaged: "
            f"{problem}; restore it from a backup (ticketbot backup checks every hash)"
        )
        self.attachment_id = attachment_id
        self.problem = problem


def _attachment_problem(sha256: str, size: int, data: bytes | None) -> str | None:
    if data is None:
        return "its bytes are missing"
    actual = _sha256(data)
    if actual != sha256:
        return f"sha256 is {actual}, stored {sha256}"
    if len(data) != size:
        return f"{len(data)} bytes, stored size {size}"
    return None


class PeeweeRepository(AdminQueries, ReportQueries, InstanceQueries):
    """Implements :class:`bot.repository.Repository`; every method runs inside a transaction.

    Intake writes about a dozen rows a mail, so the statements on that path are kept few:
    queue ids are cached, and inserts that may meet an existing row do not look first.
    """

    def __init__(self) -> None:
        self._queue_ids: dict[str, int] = {}

    def forget_cached(self) -> None:
        """After a rollback: ids seen inside it may not exist."""
        self._queue_ids.clear()

    # --- tickets -----------------------------------------------------------------------------

    def _ticket(self, row: m.Ticket) -> domain.Ticket:
        tags = tuple(
            t.name
            for t in m.TicketTag.select(m.TicketTag.name)
            .where(m.TicketTag.ticket == row.id)
            .order_by(m.TicketTag.name)
        )
        return domain.Ticket(
            id=row.id,
            number=row.number,
            queue=row.queue.name,
            subject=row.subject,
            requester_email=row.requester_email,
            requester_name=row.requester_name,
            created_at=row.created_at,
            updated_at=row.updated_at,
            state=domain.TicketState(row.state),
            owner=row.owner,
            owner_name=row.owner_name,
            version=row.version,
            priority=row.priority,
            language=row.language,
            tags=tags,
            pending_until=row.pending_until,
            merged_into=row.merged_into_id,
            linked_to=row.linked_to_id,
            owner_active_at=row.owner_active_at,
            reminded_at=row.reminded_at,
        )

    def _ticket_query(self) -> Any:
        return m.Ticket.select(m.Ticket, m.Queue).join(m.Queue)

    def ticket_by_id(self, ticket_id: int) -> domain.Ticket:
        return self._ticket(self._ticket_query().where(m.Ticket.id == ticket_id).get())

    def ticket_by_number(self, number: str) -> domain.Ticket | None:
        row = self._ticket_query().where(m.Ticket.number == number).first()
        return self._ticket(row) if row else None

    def ticket_by_message_ids(self, message_ids: Sequence[str]) -> domain.Ticket | None:
        ids = [_message_key(i) for i in message_ids if i][:100]
        if not ids:
            return None
        article = (
            m.Article.select(m.Article.ticket)
            .where(m.Article.message_id.in_(ids))
            .order_by(m.Article.id.desc())
            .first()
        )
        return self.ticket_by_id(article.ticket_id) if article else None

    def message_id_exists(self, message_id: str) -> bool:
        key = _message_key(message_id)
        return bool(m.Article.select().where(m.Article.message_id == key).exists())

    def next_ticket_number(self, day: date, system_id: int) -> str:
        key = day.isoformat()
        rows = list(
            m.TicketCounter.update(value=m.TicketCounter.value + 1)
            .where(m.TicketCounter.day == key)
            .returning(m.TicketCounter.value)
            .execute()
        )
        if rows:
            value = int(rows[0].value)
        else:
            m.TicketCounter.create(day=key, value=1)
            value = 1
        return format_ticket_number(day, system_id, value)

    def _queue_id(self, name: str) -> int:
        cached = self._queue_ids.get(name)
        if cached is not None:
            return cached
        row = m.Queue.get_or_none(m.Queue.name == name)
        if row is None:
            row = m.Queue.create(name=name, created_at=datetime.now(UTC))
        self._queue_ids[name] = int(row.id)
        return int(row.id)

    def add_ticket(self, ticket: domain.Ticket) -> domain.Ticket:
        row = m.Ticket.create(
            number=ticket.number,
            queue=self._queue_id(ticket.queue),
            state=ticket.state.value,
            owner=ticket.owner,
            owner_name=ticket.owner_name,
            subject=_text(ticket.subject),
            requester_email=_text(ticket.requester_email),
            requester_name=_text(ticket.requester_name),
            created_at=ticket.created_at,
            updated_at=ticket.updated_at,
            version=0,
            **self._ticket_extras(ticket),
        )
        ticket.id = row.id
        ticket.version = 0
        for name in sorted(set(ticket.tags)):  # a new ticket has none to compare with
            m.TicketTag.create(ticket=row.id, name=name)
        return ticket

    @staticmethod
    def _ticket_extras(ticket: domain.Ticket) -> dict[str, Any]:
        return {
            "priority": ticket.priority,
            "language": ticket.language,
            "pending_until": ticket.pending_until,
            "merged_into_id": ticket.merged_into,
            "linked_to_id": ticket.linked_to,
            "owner_active_at": ticket.owner_active_at,
            "reminded_at": ticket.reminded_at,
        }

    @staticmethod
    def _save_tags(ticket_id: int, tags: Sequence[str]) -> None:
        wanted = set(tags)
        have = {
            t.name
            for t in m.TicketTag.select(m.TicketTag.name).where(m.TicketTag.ticket == ticket_id)
        }
        if have - wanted:
            m.TicketTag.delete().where(
                (m.TicketTag.ticket == ticket_id) & m.TicketTag.name.in_(sorted(have - wanted))
            ).execute()
        for name in sorted(wanted - have):
            m.TicketTag.create(ticket=ticket_id, name=name)

    def save_ticket(self, ticket: domain.Ticket) -> None:
        updated = (
            m.Ticket.update(
                queue=self._queue_id(ticket.queue),
                state=ticket.state.value,
                owner=ticket.owner,
                owner_name=ticket.owner_name,
                subject=_text(ticket.subject),
                updated_at=ticket.updated_at,
                version=ticket.version + 1,
                **self._ticket_extras(ticket),
            )
            .where((m.Ticket.id == ticket.id) & (m.Ticket.version == ticket.version))
            .execute()
        )
        if updated != 1:
            raise domain.ConcurrentUpdate()
        ticket.version += 1
        assert ticket.id is not None
        self._save_tags(ticket.id, ticket.tags)

    # --- articles ----------------------------------------------------------------------------

    def add_article(
        self,
        article: domain.Article,
        raw: bytes | None = None,
        attachments: Sequence[AttachmentData] = (),
    ) -> domain.Article:
        raw_row = None
        if raw is not None:
            raw_row = m.RawMessage.create(sha256=_sha256(raw), size=len(raw), data=raw)
        row = m.Article.create(
            ticket=article.ticket_id,
            kind=article.kind.value,
            author=_text(article.author),
            author_name=_text(article.author_name),
            subject=_text(article.subject),
            body=_text(article.body),
            message_id=_message_key(article.message_id) if article.message_id else None,
            in_reply_to=_text(article.in_reply_to),
            references=_json_list([_text(r) for r in article.references]),
            to_addrs=_json_list([_text(a) for a in article.to]),
            cc_addrs=_json_list([_text(a) for a in article.cc]),
            auto_kind=article.auto_kind,
            raw_message=raw_row,
            send_state=article.send_state.value if article.send_state else None,
            send_attempts=article.send_attempts,
            sent_at=article.sent_at,
            last_error=article.last_error,
            created_at=article.created_at,
            held=int(article.held),
        )
        for attachment in attachments:
            digest = _sha256(attachment.data)
            blob_id = self._blob_id(digest, attachment.data)
            m.Attachment.create(
                article=row,
                filename=_text(attachment.filename),
                content_type=_text(attachment.content_type),
                size=len(attachment.data),
                sha256=digest,
                # a blob that cannot be trusted is not shared: these bytes stay with the row
                data=attachment.data if blob_id is None else None,
                blob=blob_id,
            )
            article.attachments.append(
                domain.AttachmentInfo(
                    attachment.filename, attachment.content_type, len(attachment.data)
                )
            )
        article.id = row.id
        return article

    @staticmethod
    def _blob_id(digest: str, data: bytes) -> int | None:
        """The id of the blob holding ``data``, stored now if this content is new.

        Looked up first: most repeated content (logos, signatures) is found without
        sending its bytes again. Two intakes storing the same new content at once on
        PostgreSQL: the second ``INSERT ... ON CONFLICT DO NOTHING`` waits for the
        first's transaction and then inserts nothing, and the select after it (a new
        snapshot at READ COMMITTED) finds the first's row. None when the stored blob's
        size disagrees with these bytes: it is damaged, and the caller keeps the bytes
        in the attachment row rather than point at it.
        """
        found = (
            m.AttachmentBlob.select(m.AttachmentBlob.id, m.AttachmentBlob.size)
            .where(m.AttachmentBlob.sha256 == digest)
            .first()
        )
        if found is None:
            m.AttachmentBlob.insert(sha256=digest, size=len(data), data=data).on_conflict_ignore(
                True
            ).execute()
            found = (
                m.AttachmentBlob.select(m.AttachmentBlob.id, m.AttachmentBlob.size)
                .where(m.AttachmentBlob.sha256 == digest)
                .get()
            )
        if found.size != len(data):
            log.error(
                "attachment blob %s (sha256 %s) holds %d bytes, the content is %d: the blob is "
                "damaged; storing this attachment's bytes in its own row instead",
                found.id,
                digest,
                found.size,
                len(data),
            )
            return None
        return int(found.id)

    @staticmethod
    def _article(row: m.Article, files: list[domain.AttachmentInfo]) -> domain.Article:
        return domain.Article(
            id=row.id,
            ticket_id=row.ticket_id,
            kind=domain.ArticleKind(row.kind),
            author=row.author,
            author_name=row.author_name,
            subject=row.subject,
            body=row.body,
            created_at=row.created_at,
            message_id=row.message_id,
            in_reply_to=row.in_reply_to,
            references=_tuple(row.references),
            to=_tuple(row.to_addrs),
            cc=_tuple(row.cc_addrs),
            auto_kind=row.auto_kind,
            send_state=domain.SendState(row.send_state) if row.send_state else None,
            send_attempts=row.send_attempts,
            sent_at=row.sent_at,
            last_error=row.last_error,
            attachments=files,
            held=bool(row.held),
        )

    def _attachment_infos(self, article_ids: list[int]) -> dict[int, list[domain.AttachmentInfo]]:
        found: dict[int, list[domain.AttachmentInfo]] = {}
        if not article_ids:
            return found
        query = (
            m.Attachment.select(
                m.Attachment.article,
                m.Attachment.filename,
                m.Attachment.content_type,
                m.Attachment.size,
            )
            .where(m.Attachment.article.in_(article_ids))
            .order_by(m.Attachment.id)
        )
        for row in query:
            found.setdefault(row.article_id, []).append(
                domain.AttachmentInfo(row.filename, row.content_type, row.size)
            )
        return found

    def article(self, article_id: int) -> domain.Article:
        row = m.Article.get_by_id(article_id)
        return self._article(row, self._attachment_infos([row.id]).get(row.id, []))

    def articles(self, ticket_id: int) -> list[domain.Article]:
        rows = list(m.Article.select().where(m.Article.ticket == ticket_id).order_by(m.Article.id))
        files = self._attachment_infos([r.id for r in rows])
        return [self._article(r, files.get(r.id, [])) for r in rows]

    def attachment_files(self, article_id: int) -> list[AttachmentData]:
        """The article's files, each checked against its stored sha256 and size.

        Raises :class:`AttachmentDamaged` (and logs) rather than hand out bytes that are
        not what was received.
        """
        rows: Any = (
            m.Attachment.select(
                m.Attachment.id,
                m.Attachment.filename,
                m.Attachment.content_type,
                m.Attachment.size,
                m.Attachment.sha256,
                m.Attachment.data,
                m.Attachment.blob,
                m.AttachmentBlob.data,
            )
            .join(m.AttachmentBlob, JOIN.LEFT_OUTER)
            .where(m.Attachment.article == article_id)
            .order_by(m.Attachment.id)
            .tuples()
        )
        files = []
        for row_id, filename, content_type, size, sha256, own, blob_id, shared in rows:
            stored = shared if blob_id is not None else own
            data = bytes(stored) if stored is not None else None
            problem = _attachment_problem(sha256, size, data)
            if problem is not None:
                log.error(
                    "attachment %s (%r) of article %s is damaged: %s",
                    row_id,
                    filename,
                    article_id,
                    problem,
                )
                raise AttachmentDamaged(row_id, filename, article_id, problem)
            assert data is not None
            files.append(AttachmentData(filename, content_type, data))
        return files

    def first_article(self, ticket_id: int) -> domain.Article | None:
        row = m.Article.select().where(m.Article.ticket == ticket_id).order_by(m.Article.id).first()
        if row is None:
            return None
        return self._article(row, self._attachment_infos([row.id]).get(row.id, []))

    def save_article_sending(self, article: domain.Article) -> None:
        m.Article.update(
            send_state=article.send_state.value if article.send_state else None,
            send_attempts=article.send_attempts,
            sent_at=article.sent_at,
            last_error=article.last_error,
        ).where(m.Article.id == article.id).execute()

    # --- outbox ------------------------------------------------------------------------------

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
        m.OutboxEntry.create(
            channel=channel,
            kind=kind,
            ticket=ticket_id,
            article=article_id,
            payload=json.dumps(payload or {}),
            state="pending",
            attempts=0,
            next_attempt_at=due_at or now,
            last_error="",
            created_at=now,
        )

    def begin_send(self, item_id: int) -> bool:
        """Mark a reply's item as being sent, so an undo can no longer withdraw it.

        False when it was withdrawn first. A ``sending`` item left by a crash is taken
        again at the next start, like a pending one.
        """
        updated = (
            m.OutboxEntry.update(state="sending")
            .where((m.OutboxEntry.id == item_id) & m.OutboxEntry.state.in_(WAITING))
            .execute()
        )
        return bool(updated)

    def cancel_send(self, article_id: int, now: datetime) -> bool:
        """Withdraw a reply's pending send; False when it is already being sent or gone."""
        cancelled = (
            m.OutboxEntry.update(state="cancelled", done_at=now)
            .where(
                (m.OutboxEntry.article == article_id)
                & (m.OutboxEntry.channel == "email")
                & (m.OutboxEntry.state == "pending")
            )
            .execute()
        )
        return bool(cancelled)

    def outbox_done(self, item_id: int, now: datetime) -> None:
        m.OutboxEntry.update(state="done", done_at=now, claimed_by=None).where(
            m.OutboxEntry.id == item_id
        ).execute()

    def outbox_retry(self, item_id: int, error: str, retry_at: datetime) -> None:
        # back to pending: a reply the server refused for now was not sent, so an undo
        # or !spam may still withdraw it before its retry
        m.OutboxEntry.update(
            state="pending",
            attempts=m.OutboxEntry.attempts + 1,
            last_error=error,
            next_attempt_at=retry_at,
            # the claim stays: a reply the server took but not yet recorded must be
            # retried (recorded, not sent) by this same process
        ).where(m.OutboxEntry.id == item_id).execute()

    def outbox_failed(self, item_id: int, error: str, now: datetime) -> None:
        m.OutboxEntry.update(
            state="failed",
            attempts=m.OutboxEntry.attempts + 1,
            last_error=error,
            done_at=now,
            claimed_by=None,
        ).where(m.OutboxEntry.id == item_id).execute()

    def outbox_pending_count(self, channel: str | None = None) -> int:
        query = m.OutboxEntry.select().where(m.OutboxEntry.state.in_(WAITING))
        if channel is not None:
            query = query.where(m.OutboxEntry.channel == channel)
        return int(query.count())

    def next_outbox_due(self, channel: str) -> datetime | None:
        value = (
            m.OutboxEntry.select(fn.MIN(m.OutboxEntry.next_attempt_at))
            .where((m.OutboxEntry.channel == channel) & m.OutboxEntry.state.in_(WAITING))
            .scalar()
        )
        if isinstance(value, str):  # SQLite aggregate: no column type to convert with
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value if isinstance(value, datetime) else None

    # --- chat posts --------------------------------------------------------------------------

    def chat_post(self, ticket_id: int, platform: str) -> ChatPost | None:
        row = m.ChatPost.get_or_none(
            (m.ChatPost.ticket == ticket_id) & (m.ChatPost.platform == platform)
        )
        return ChatPost(row.ticket_id, row.platform, row.room, row.root_ref) if row else None

    def add_chat_post(self, post: ChatPost, now: datetime) -> None:
        m.ChatPost.create(
            ticket=post.ticket_id,
            platform=post.platform,
            room=post.room,
            root_ref=post.root_ref,
            created_at=now,
        )

    def replace_chat_post(self, post: ChatPost, now: datetime) -> None:
        """The ticket moved to another room on this platform: its post there is the root now."""
        updated = (
            m.ChatPost.update(room=post.room, root_ref=post.root_ref, created_at=now)
            .where((m.ChatPost.ticket == post.ticket_id) & (m.ChatPost.platform == post.platform))
            .execute()
        )
        if not updated:
            self.add_chat_post(post, now)

    def ticket_by_chat_ref(self, platform: str, ref: str) -> domain.Ticket | None:
        row = m.ChatPost.get_or_none(
            (m.ChatPost.platform == platform) & (m.ChatPost.root_ref == ref)
        )
        return self.ticket_by_id(row.ticket_id) if row else None

    # --- audit -------------------------------------------------------------------------------

    def audit(
        self,
        at: datetime,
        actor: domain.Actor,
        action: str,
        ticket_id: int | None,
        detail: str = "",
        *,
        before: str = "",
        after: str = "",
    ) -> None:
        m.AuditEntry.create(
            at=at,
            actor_platform=actor.platform,
            actor_id=actor.user_id,
            actor_name=actor.display_name,
            action=action,
            ticket=ticket_id,
            detail=_text(detail),
            before=_text(before),
            after=_text(after),
        )

    def history(self, ticket_id: int) -> list[AuditRecord]:
        rows = (
            m.AuditEntry.select().where(m.AuditEntry.ticket == ticket_id).order_by(m.AuditEntry.id)
        )
        return [
            AuditRecord(r.at, r.actor_id, r.actor_name, r.action, r.detail, r.ticket_id)
            for r in rows
        ]

    # --- lifecycle ---------------------------------------------------------------------------

    def move_articles(self, from_ticket: int, to_ticket: int) -> list[int]:
        """Merge: the articles of one ticket become the other's; returns their ids."""
        ids = [
            r.id
            for r in m.Article.select(m.Article.id)
            .where(m.Article.ticket == from_ticket)
            .order_by(m.Article.id)
        ]
        m.Article.update(ticket=to_ticket).where(m.Article.ticket == from_ticket).execute()
        return ids

    def move_article(self, article_id: int, to_ticket: int) -> None:
        m.Article.update(ticket=to_ticket, held=0).where(m.Article.id == article_id).execute()

    def set_article_held(self, article_id: int, held: bool) -> None:
        m.Article.update(held=int(held)).where(m.Article.id == article_id).execute()

    def tickets_of_requester(self, address: str, limit: int) -> list[domain.Ticket]:
        rows = (
            self._ticket_query()
            .where(fn.LOWER(m.Ticket.requester_email) == address.strip().lower())
            .order_by(m.Ticket.id.desc())
            .limit(limit)
        )
        return [self._ticket(r) for r in rows]

    def due_pending(self, now: datetime) -> list[domain.Ticket]:
        rows = self._ticket_query().where(
            m.Ticket.state.in_(["pending_reminder", "pending_autoclose"])
            & (m.Ticket.pending_until <= now)
        )
        return [self._ticket(r) for r in rows.order_by(m.Ticket.id)]

    def active_tickets(self, limit: int = 5000) -> list[domain.Ticket]:
        """New and open tickets (not pending, not closed), oldest first: what reminders look at."""
        rows = (
            self._ticket_query()
            .where(m.Ticket.state.in_(["new", "open"]))
            .order_by(m.Ticket.id)
            .limit(limit)
        )
        return [self._ticket(r) for r in rows]

    def state_counts(self, queue: str) -> dict[str, int]:
        rows: Any = (
            m.Ticket.select(m.Ticket.state, fn.COUNT(m.Ticket.id))
            .join(m.Queue)
            .where(m.Queue.name == queue)
            .group_by(m.Ticket.state)
            .tuples()
        )
        return {str(state): int(count) for state, count in rows}

    def last_article_of_kinds(self, ticket_id: int, kinds: Sequence[str]) -> domain.Article | None:
        row = (
            m.Article.select()
            .where(
                (m.Article.ticket == ticket_id)
                & m.Article.kind.in_(list(kinds))
                & (m.Article.held == 0)
            )
            .order_by(m.Article.id.desc())
            .first()
        )
        if row is None:
            return None
        return self._article(row, self._attachment_infos([row.id]).get(row.id, []))

    def tickets_from_since(self, address: str, since: datetime) -> int:
        return int(
            m.Ticket.select()
            .where((m.Ticket.requester_email == _text(address)) & (m.Ticket.created_at >= since))
            .count()
        )

    def flood_ticket(self, address: str, since: datetime) -> domain.Ticket | None:
        row = (
            self._ticket_query()
            .join_from(m.Ticket, m.TicketTag)
            .where(
                (m.Ticket.requester_email == _text(address))
                & (m.Ticket.created_at >= since)
                & (m.TicketTag.name == "flood")
                & (m.Ticket.state != "merged")
            )
            .order_by(m.Ticket.id.desc())
            .first()
        )
        return self._ticket(row) if row else None

    def article_count(self, ticket_id: int) -> int:
        return int(m.Article.select().where(m.Article.ticket == ticket_id).count())

    def mark_sender(self, address: str, kind: str, at: datetime, detail: str = "") -> None:
        m.SenderMark.insert(
            address=_text(address.lower()), kind=kind, at=at, detail=_text(detail)
        ).on_conflict_ignore().execute()

    def sender_marks(self, address: str) -> set[str]:
        rows = m.SenderMark.select(m.SenderMark.kind).where(
            m.SenderMark.address == _text(address.lower())
        )
        return {r.kind for r in rows}

    def auto_responses_since(self, address: str, since: datetime) -> int:
        return int(
            m.AutoResponse.select()
            .where(
                (m.AutoResponse.address == _text(address.lower()))
                & (m.AutoResponse.sent_at >= since)
            )
            .count()
        )

    def record_auto_response(self, address: str, at: datetime, ticket_id: int | None) -> None:
        m.AutoResponse.create(address=_text(address.lower()), sent_at=at, ticket=ticket_id)

    def volunteer_languages(self, user_id: str) -> tuple[str, ...]:
        row = m.Volunteer.get_or_none(m.Volunteer.user_id == user_id)
        return _tuple(row.languages) if row else ()

    def set_volunteer_languages(
        self, user_id: str, languages: Sequence[str], now: datetime
    ) -> None:
        updated = (
            m.Volunteer.update(languages=_json_list(languages), updated_at=now)
            .where(m.Volunteer.user_id == user_id)
            .execute()
        )
        if not updated:
            m.Volunteer.create(user_id=user_id, languages=_json_list(languages), updated_at=now)

    def all_volunteer_languages(self) -> dict[str, tuple[str, ...]]:
        return {r.user_id: _tuple(r.languages) for r in m.Volunteer.select()}

    def job_state(self, key: str) -> str | None:
        row = m.JobState.get_or_none(m.JobState.key == key)
        return row.value if row else None

    def set_job_state(self, key: str, value: str) -> None:
        updated = m.JobState.update(value=value).where(m.JobState.key == key).execute()
        if not updated:
            m.JobState.create(key=key, value=value)

    # --- search ------------------------------------------------------------------------------

    def search(
        self, query: SearchQuery, queues: Sequence[str], offset: int, limit: int
    ) -> SearchPage:
        return search_tickets(m.database_proxy.obj, query, queues, offset, limit)

    # --- mail sources ------------------------------------------------------------------------

    def cursor(self, source: str) -> MailCursor | None:
        row = m.MailboxCursor.get_or_none(m.MailboxCursor.source == source)
        return MailCursor(row.validity, row.last_uid) if row else None

    def advance_cursor(self, source: str, validity: int, uid: int) -> None:
        moved = (
            m.MailboxCursor.update(last_uid=uid)
            .where(
                (m.MailboxCursor.source == source)
                & (m.MailboxCursor.validity == validity)
                & (m.MailboxCursor.last_uid < uid)
            )
            .execute()
        )
        if moved:
            return
        cursor = self.cursor(source)
        if cursor is None or cursor.validity != validity:
            self.set_cursor(source, validity, uid)

    def set_cursor(self, source: str, validity: int, last_uid: int) -> None:
        updated = (
            m.MailboxCursor.update(validity=validity, last_uid=last_uid)
            .where(m.MailboxCursor.source == source)
            .execute()
        )
        if not updated:
            m.MailboxCursor.create(source=source, validity=validity, last_uid=last_uid)

    def record_intake(
        self, key: MailKey, message_id: str, ticket_id: int | None, now: datetime
    ) -> None:
        m.IntakeRecord.insert(
            source=key.source,
            validity=key.validity,
            item=_text(key.item),
            message_id=_text(message_id),
            ticket=ticket_id,
            committed_at=now,
        ).on_conflict_ignore().execute()

    def intake_pending(self, source: str) -> list[MailKey]:
        rows = (
            m.IntakeRecord.select()
            .where((m.IntakeRecord.source == source) & (m.IntakeRecord.done_at.is_null()))
            .order_by(m.IntakeRecord.id)
        )
        return [MailKey(r.source, r.validity, r.item) for r in rows]

    def intake_done(self, key: MailKey, now: datetime) -> None:
        m.IntakeRecord.update(done_at=now).where(
            (m.IntakeRecord.source == key.source)
            & (m.IntakeRecord.validity == key.validity)
            & (m.IntakeRecord.item == key.item)
        ).execute()

    def intake_done_many(self, keys: Sequence[MailKey], now: datetime) -> None:
        by_source: dict[tuple[str, int], list[str]] = {}
        for key in keys:
            by_source.setdefault((key.source, key.validity), []).append(_text(key.item))
        for (source, validity), items in by_source.items():
            for start in range(0, len(items), 500):
                m.IntakeRecord.update(done_at=now).where(
                    (m.IntakeRecord.source == source)
                    & (m.IntakeRecord.validity == validity)
                    & m.IntakeRecord.item.in_(items[start : start + 500])
                ).execute()

    # --- queues ------------------------------------------------------------------------------

    def sync_queues(self, names: Sequence[str]) -> None:
        for name in names:
            self._queue_id(name)

    # --- counts for tests and status ------------------------------------------------------

    def count_tickets(self) -> int:
        return int(m.Ticket.select().count())


__all__ = ["AttachmentDamaged", "IntegrityError", "PeeweeRepository", "SqlStore"]
