"""The database side of ``ticketbot import-otrs``: reading an OTRS/Znuny database, and
what the import needs of ours beyond the repository.

:class:`OtrsReader` reads the published OTRS 6 / Znuny 6.x schema on PostgreSQL
(``scripts/database/otrs-schema.postgresql.sql``) in one read-only REPEATABLE READ
transaction, so the counts it reports and the rows it hands out are one snapshot even
while OTRS keeps running. OTRS on PostgreSQL keeps binary content (attachments, raw
mails) base64-encoded in TEXT columns; a ``bytea`` column (a hand-converted database)
is read as it is. Timestamps are OTRS's local time (``OTRSTimeZone``, UTC by default
since OTRS 6); they are read in the zone given.

Only the ArticleStorageDB backend is read: with ArticleStorageFS, attachments live in
files on the OTRS host (switch first: ``otrs.Console.pl Admin::Article::StorageSwitch
--target ArticleStorageDB``).

The functions at the end run inside our store's transaction (``store.run``), where the
models are bound.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2
import psycopg2.extensions

from bot.importing.otrs import (
    AUDIT_PREFIX,
    OtrsArticle,
    OtrsAttachment,
    OtrsHistory,
    OtrsTicket,
    StoredTicket,
)
from bot.routing import format_ticket_number
from storage import models as m

#: Ticket ids per ``IN (...)`` list: a batch's worth, far below any parameter limit.
_CHUNK = 500


class OtrsReadError(Exception):
    """The OTRS database cannot be read (connection, permissions, not an OTRS schema)."""


def _content(value: Any) -> bytes:
    """Attachment or raw-mail bytes: base64 TEXT (OTRS on PostgreSQL) or bytea."""
    if value is None:
        return b""
    if isinstance(value, memoryview | bytes | bytearray):
        return bytes(value)
    text = str(value)
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return text.encode("utf-8", "surrogateescape")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class OtrsReader:
    """One OTRS database, read as one snapshot."""

    def __init__(self, dsn: str, timezone: str = "UTC") -> None:
        self.zone = ZoneInfo(timezone)
        try:
            self.conn = psycopg2.connect(dsn)
            self.conn.set_session(
                isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ,
                readonly=True,
            )
        except psycopg2.Error as exc:
            raise OtrsReadError(f"cannot connect to the OTRS database: {exc}".strip()) from None

    def close(self) -> None:
        self.conn.close()

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(query, tuple(params))
                return list(cur.fetchall())
        except psycopg2.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OtrsReadError(f"reading the OTRS database failed: {message}") from None

    def _utc(self, value: datetime | None) -> datetime:
        if value is None:
            return datetime.fromtimestamp(0, UTC)
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.zone)
        return value.astimezone(UTC)

    # --- what there is ---------------------------------------------------------------------

    def queues_in_use(self) -> dict[str, int]:
        """Each OTRS queue that holds tickets, with how many."""
        rows = self._rows(
            "SELECT q.name, count(t.id) FROM ticket t JOIN queue q ON q.id = t.queue_id "
            "GROUP BY q.name ORDER BY q.name"
        )
        return {str(name): int(count) for name, count in rows}

    def tickets(self) -> list[tuple[int, str]]:
        """(id, tn) of every ticket, oldest first."""
        return [(int(i), str(tn)) for i, tn in self._rows("SELECT id, tn FROM ticket ORDER BY id")]

    def article_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM article")[0][0])

    # --- whole tickets ---------------------------------------------------------------------

    def load(self, ticket_ids: Sequence[int]) -> list[OtrsTicket]:
        """These tickets with their articles, attachments and history, in this order."""
        ids = list(ticket_ids)
        if not ids:
            return []
        attachments = self._attachments(ids)
        articles = self._articles(ids, attachments)
        history = self._history(ids)
        rows = self._rows(
            "SELECT t.id, t.tn, t.title, q.name, s.name, st.name, p.name, t.customer_user_id, "
            "t.create_time, t.change_time, t.until_time "
            "FROM ticket t JOIN queue q ON q.id = t.queue_id "
            "JOIN ticket_state s ON s.id = t.ticket_state_id "
            "JOIN ticket_state_type st ON st.id = s.type_id "
            "LEFT JOIN ticket_priority p ON p.id = t.ticket_priority_id "
            "WHERE t.id = ANY(%s)",
            (ids,),
        )
        by_id: dict[int, OtrsTicket] = {}
        for tid, tn, title, queue, state, stype, prio, cust, created, changed, until in rows:
            by_id[int(tid)] = OtrsTicket(
                id=int(tid),
                tn=str(tn),
                title=_text(title),
                queue=str(queue),
                state=str(state),
                state_type=str(stype),
                priority=_text(prio),
                customer_user_id=_text(cust),
                created_at=self._utc(created),
                changed_at=self._utc(changed),
                pending_until=datetime.fromtimestamp(int(until), UTC) if until else None,
                articles=tuple(articles.get(int(tid), ())),
                history=tuple(history.get(int(tid), ())),
            )
        return [by_id[i] for i in ids if i in by_id]

    def _articles(
        self, ids: list[int], attachments: dict[int, list[OtrsAttachment]]
    ) -> dict[int, list[OtrsArticle]]:
        rows = self._rows(
            "SELECT a.id, a.ticket_id, ast.name, cc.name, a.is_visible_for_customer, "
            "a.create_time, u.login, u.first_name, u.last_name, "
            "m.id, m.a_from, m.a_reply_to, m.a_to, m.a_cc, m.a_subject, m.a_message_id, "
            "m.a_in_reply_to, m.a_references, m.a_content_type, m.a_body, "
            "(SELECT pl.body FROM article_data_mime_plain pl WHERE pl.article_id = a.id "
            " ORDER BY pl.id LIMIT 1) "
            "FROM article a "
            "JOIN article_sender_type ast ON ast.id = a.article_sender_type_id "
            "JOIN communication_channel cc ON cc.id = a.communication_channel_id "
            "LEFT JOIN users u ON u.id = a.create_by "
            "LEFT JOIN article_data_mime m ON m.article_id = a.id "
            "WHERE a.ticket_id = ANY(%s) ORDER BY a.ticket_id, a.create_time, a.id",
            (ids,),
        )
        result: dict[int, list[OtrsArticle]] = {}
        for row in rows:
            (aid, tid, sender, channel, visible, created, login, first, last, mime_id) = row[:10]
            (a_from, reply_to, a_to, a_cc, subject, message_id) = row[10:16]
            (in_reply_to, references, content_type, body, plain) = row[16:21]
            result.setdefault(int(tid), []).append(
                OtrsArticle(
                    id=int(aid),
                    sender_type=str(sender),
                    channel=str(channel),
                    visible_for_customer=bool(visible),
                    created_at=self._utc(created),
                    created_by=_text(login),
                    created_by_name=" ".join(p for p in (_text(first), _text(last)) if p),
                    has_mime=mime_id is not None,
                    a_from=_text(a_from),
                    a_reply_to=_text(reply_to),
                    a_to=_text(a_to),
                    a_cc=_text(a_cc),
                    subject=_text(subject),
                    message_id=_text(message_id).strip(),
                    in_reply_to=_text(in_reply_to),
                    references=_text(references),
                    content_type=_text(content_type),
                    body=_text(body),
                    raw=_content(plain) if plain is not None else None,
                    attachments=tuple(attachments.get(int(aid), ())),
                )
            )
        return result

    def _attachments(self, ids: list[int]) -> dict[int, list[OtrsAttachment]]:
        rows = self._rows(
            "SELECT at.article_id, at.filename, at.content_type, at.disposition, at.content "
            "FROM article_data_mime_attachment at JOIN article a ON a.id = at.article_id "
            "WHERE a.ticket_id = ANY(%s) ORDER BY at.article_id, at.id",
            (ids,),
        )
        result: dict[int, list[OtrsAttachment]] = {}
        for aid, filename, content_type, disposition, content in rows:
            result.setdefault(int(aid), []).append(
                OtrsAttachment(
                    filename=_text(filename) or "attachment",
                    # OTRS keeps the parameters: 'image/png; name="a.png"'
                    content_type=_text(content_type).split(";")[0].strip()
                    or "application/octet-stream",
                    data=_content(content),
                    disposition=_text(disposition),
                )
            )
        return result

    def _history(self, ids: list[int]) -> dict[int, list[OtrsHistory]]:
        rows = self._rows(
            "SELECT h.ticket_id, ht.name, h.name, st.name, h.create_time, u.login, "
            "u.first_name, u.last_name "
            "FROM ticket_history h JOIN ticket_history_type ht ON ht.id = h.history_type_id "
            "JOIN ticket_state s ON s.id = h.state_id "
            "JOIN ticket_state_type st ON st.id = s.type_id "
            "LEFT JOIN users u ON u.id = h.create_by "
            "WHERE h.ticket_id = ANY(%s) ORDER BY h.ticket_id, h.create_time, h.id",
            (ids,),
        )
        result: dict[int, list[OtrsHistory]] = {}
        for tid, htype, name, stype, created, login, first, last in rows:
            result.setdefault(int(tid), []).append(
                OtrsHistory(
                    type=str(htype),
                    name=_text(name),
                    state_type=str(stype),
                    created_at=self._utc(created),
                    created_by=_text(login),
                    created_by_name=" ".join(p for p in (_text(first), _text(last)) if p),
                )
            )
        return result


# --- our database (inside store.run) -------------------------------------------------------------


def database_counts() -> tuple[int, int]:
    """(tickets, articles) in our database now."""
    return int(m.Ticket.select().count()), int(m.Article.select().count())


def stored_tickets(numbers: Iterable[str]) -> dict[str, StoredTicket]:
    """The tickets stored under these numbers, with what the importer checks of each, in
    three queries for a whole batch instead of several per ticket."""
    wanted = list(dict.fromkeys(numbers))
    ids: dict[int, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = m.Ticket.select(m.Ticket.id, m.Ticket.number).where(m.Ticket.number.in_(chunk))
        ids.update({int(row.id): str(row.number) for row in query})
    imported: set[int] = set()
    message_ids: dict[int, set[str]] = {tid: set() for tid in ids}
    keys = list(ids)
    for start in range(0, len(keys), _CHUNK):
        chunk_ids = keys[start : start + _CHUNK]
        audit = m.AuditEntry.select(m.AuditEntry.ticket).where(
            m.AuditEntry.ticket.in_(chunk_ids),
            m.AuditEntry.action == "ticket.imported",
            m.AuditEntry.detail.startswith(AUDIT_PREFIX),
        )
        imported.update(int(row.ticket_id) for row in audit)
        articles = m.Article.select(m.Article.ticket, m.Article.message_id).where(
            m.Article.ticket.in_(chunk_ids), m.Article.message_id.is_null(False)
        )
        for row in articles:
            message_ids[int(row.ticket_id)].add(str(row.message_id))
    return {
        number: StoredTicket(tid, tid in imported, frozenset(message_ids[tid]))
        for tid, number in ids.items()
    }


def numbers_stored(numbers: Iterable[str]) -> int:
    """How many of these ticket numbers our database holds."""
    wanted = list(dict.fromkeys(numbers))
    found = 0
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found += int(m.Ticket.select().where(m.Ticket.number.in_(chunk)).count())
    return found


def raise_ticket_counters(numbers: Iterable[str], system_id: int) -> int:
    """Move each day's counter past imported numbers that look like ours.

    An OTRS number with the date-based generators (``YYYYMMDD`` + system id + counter)
    and the same system id as this desk would otherwise be handed out again on that day
    by intake. Returns how many day counters were raised.
    """
    highest: dict[str, int] = {}
    for number in numbers:
        if len(number) != 16 or not number.isdigit():
            continue
        try:
            day = datetime.strptime(number[:8], "%Y%m%d").date()
        except ValueError:
            continue
        counter = int(number[10:])
        if format_ticket_number(day, system_id, counter) != number:
            continue  # another system id
        key = day.isoformat()
        highest[key] = max(highest.get(key, 0), counter)
    raised = 0
    for key, value in highest.items():
        row = m.TicketCounter.get_or_none(m.TicketCounter.day == key)
        if row is None:
            m.TicketCounter.create(day=key, value=value)
            raised += 1
        elif int(row.value) < value:
            m.TicketCounter.update(value=value).where(m.TicketCounter.day == key).execute()
            raised += 1
    return raised
