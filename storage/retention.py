"""Removing closed tickets after ``[retention] closed_after``, archived and verified first.

``ticketbot retention`` lists the candidates and a confirmation code and changes
nothing. ``--confirm CODE`` then, in this order:

1. makes the plan again and refuses a code that does not match it;
2. refuses when the candidates are more than ``max_share`` of all tickets;
3. writes a backup of the whole database and checks it (refuses if that fails);
4. exports every candidate, with its articles, raw mails, attachments (bytes in
   base64), tags, history, chat posts, outbox and intake records, to one JSON Lines
   file in ``archive_dir`` (written under a temporary name, flushed, renamed), and reads
   the file back: every ticket, article, attachment and history line must be in it and
   every file's bytes must match their sha256, or nothing is deleted;
5. deletes in one transaction, which first locks the tickets and makes the plan a third
   time: outbox entries, chat posts, tags, attachments (and the stored files no other
   attachment shares), articles, raw mails, tickets. Intake records, auto-response
   records and history lines stay, their ticket reference cleared; a ``data.retained``
   tombstone names the archive and its sha256.

Guards, whatever the configuration says:

- only tickets in a closed state (closed_successful, closed_unsuccessful, merged, spam)
  whose last change is older than the cutoff are candidates; the final DELETE repeats
  the state condition and the transaction is undone if a row does not match it;
- a ticket with outbox work still waiting is kept, and so is a ticket that a kept
  ticket refers to (merged into it, or continuing it), so no remaining ticket points
  at a removed one;
- a run removing more than ``max_share`` of all tickets is refused with by how much.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from peewee import Database

from storage import models as m
from storage.backup import BackupReport, backup
from storage.maintenance import (
    BackupFunction,
    MaintenanceError,
    Progress,
    StaleCode,
    backup_first,
    blob_ids_used_only_by,
    check_code,
    chunks,
    confirmation_code,
    delete_blobs,
    in_chunks,
    lock_tickets,
    maintenance_database,
    operator_name,
    quiet,
    read_transaction,
    rows,
    scrub,
    write_transaction,
)
from storage.migrations import LATEST

#: The states a ticket may be removed in; new, open and pending tickets never are.
CLOSED_STATES = ("closed_successful", "closed_unsuccessful", "merged", "spam")
ARCHIVE_FORMAT = 1
#: Tickets read and written to the archive at a time.
BATCH = 100

__all__ = [
    "CLOSED_STATES",
    "ArchiveCheck",
    "Candidate",
    "MaintenanceError",
    "RetentionPlan",
    "RetentionReport",
    "StaleCode",
    "apply_retention",
    "plan_retention",
    "verify_archive",
]


@dataclass(frozen=True)
class Candidate:
    id: int
    number: str
    state: str
    updated_at: datetime
    version: int


@dataclass(frozen=True)
class RetentionPlan:
    """The closed tickets old enough to go, and every row that goes or is unlinked with them."""

    cutoff: datetime
    max_share: float
    total_tickets: int
    tickets: tuple[Candidate, ...]
    kept_referenced: tuple[str, ...]  # old enough, but a kept ticket refers to them
    kept_busy: tuple[str, ...]  # old enough, but outbox work is still waiting
    articles: tuple[int, ...]
    raw_messages: tuple[int, ...]
    attachments: tuple[int, ...]
    blobs: tuple[int, ...]
    audit_entries: tuple[int, ...]  # kept, unlinked
    outbox: tuple[int, ...]
    outbox_detached: tuple[int, ...]  # other tickets' entries naming these articles: unlinked
    chat_posts: tuple[int, ...]
    tags: tuple[int, ...]
    intake_records: tuple[int, ...]  # kept, unlinked
    auto_responses: tuple[int, ...]  # kept, unlinked
    code: str = ""

    @property
    def ticket_ids(self) -> tuple[int, ...]:
        return tuple(t.id for t in self.tickets)

    @property
    def share(self) -> float:
        return len(self.tickets) / self.total_tickets if self.total_tickets else 0.0

    def refusal(self) -> str | None:
        """Why this plan must not run (the share guard), or None."""
        if not self.tickets or self.share <= self.max_share:
            return None
        allowed = math.floor(self.max_share * self.total_tickets)
        return (
            f"refused: {len(self.tickets)} of {self.total_tickets} tickets ({self.share:.1%}) "
            f"would be removed, more than [retention] max_share = {self.max_share:g} "
            f"({self.max_share:.0%}) allows: {len(self.tickets) - allowed} ticket(s) over the "
            f"limit of {allowed}. Check [retention] closed_after; if this is really meant, "
            "raise max_share for this run"
        )

    def counts(self) -> dict[str, int]:
        return {
            "tickets": len(self.tickets),
            "articles": len(self.articles),
            "raw_messages": len(self.raw_messages),
            "attachments": len(self.attachments),
            "attachment_blobs": len(self.blobs),
            "audit_entries_unlinked": len(self.audit_entries),
            "outbox": len(self.outbox),
            "chat_posts": len(self.chat_posts),
            "tags": len(self.tags),
            "intake_records_unlinked": len(self.intake_records),
            "auto_responses_unlinked": len(self.auto_responses),
        }

    def describe(self, archive_dir: Path, limit: int = 50) -> str:
        lines = [
            f"retention: closed tickets last changed before {self.cutoff:%Y-%m-%d %H:%M} UTC",
            f"  {len(self.tickets)} of {self.total_tickets} tickets ({self.share:.1%}; "
            f"max_share {self.max_share:.0%}) would be archived to {archive_dir} and removed",
        ]
        lines += [
            f"    {t.number}  {t.state:<19}  last changed {t.updated_at:%Y-%m-%d}"
            for t in self.tickets[:limit]
        ]
        if len(self.tickets) > limit:
            lines.append(f"    ... and {len(self.tickets) - limit} more")
        if self.kept_referenced:
            lines.append(
                "  kept although old enough, as tickets that stay were merged into them or "
                f"continue them: {len(self.kept_referenced)}"
            )
            lines.append("    " + " ".join(self.kept_referenced[:limit]))
        if self.kept_busy:
            lines.append(
                "  kept although old enough, as outbox work for them is still waiting: "
                f"{len(self.kept_busy)}"
            )
            lines.append("    " + " ".join(self.kept_busy[:limit]))
        if self.tickets:
            lines.append(
                f"  with them: {len(self.articles)} articles, {len(self.raw_messages)} raw "
                f"mails, {len(self.attachments)} attachments, {len(self.outbox)} outbox "
                f"entries, {len(self.chat_posts)} chat posts, {len(self.tags)} tags; "
                f"{len(self.audit_entries)} history lines stay, unlinked from the ticket"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class ArchiveCheck:
    path: Path
    sha256: str
    size: int
    tickets: int
    articles: int
    attachments: int
    raw_messages: int
    audit_entries: int


@dataclass(frozen=True)
class RetentionReport:
    plan: RetentionPlan
    backup: BackupReport | None
    archive: ArchiveCheck | None
    by: str
    at: datetime
    seconds: float

    def summary(self) -> str:
        if self.archive is None:
            return "retention: nothing to remove"
        done = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.plan.counts().items() if v)
        return "\n".join(
            [
                f"removed: {done}",
                f"  archive: {self.archive.path} ({self.archive.size} bytes, sha256 "
                f"{self.archive.sha256}), read back and verified before deleting",
                f"  backup taken first: {self.backup.path if self.backup else '(none)'}",
                f"  recorded in the audit log as data.retained by {self.by} at "
                f"{self.at:%Y-%m-%d %H:%M:%S} UTC ({self.seconds:.2f} s)",
            ]
        )


# --- the plan ---------------------------------------------------------------------------------


def _retention_plan(closed_after: timedelta, max_share: float, now: datetime) -> RetentionPlan:
    """Read what a run would remove (inside the caller's transaction)."""
    if closed_after <= timedelta(0):
        raise MaintenanceError(f"[retention] closed_after must be more than 0, got {closed_after}")
    cutoff = now - closed_after
    total = int(m.Ticket.select().count())
    found = {
        int(r.id): Candidate(int(r.id), r.number, r.state, r.updated_at, int(r.version))
        for r in m.Ticket.select(
            m.Ticket.id, m.Ticket.number, m.Ticket.state, m.Ticket.updated_at, m.Ticket.version
        )
        .where(m.Ticket.state.in_(CLOSED_STATES) & (m.Ticket.updated_at < cutoff))
        .order_by(m.Ticket.id)
    }
    # outbox work still waiting, for the ticket or for one of its articles
    busy = {
        int(ticket_id)
        for (ticket_id,) in rows(
            m.OutboxEntry.select(m.OutboxEntry.ticket).where(
                m.OutboxEntry.state.in_(["pending", "sending"])
            )
        )
    }
    busy |= {
        int(ticket_id)
        for (ticket_id,) in rows(
            m.Article.select(m.Article.ticket)
            .join(m.OutboxEntry, on=m.OutboxEntry.article == m.Article.id)
            .where(m.OutboxEntry.state.in_(["pending", "sending"]))
        )
    }
    kept_busy = sorted(found[i].number for i in busy if i in found)
    for ticket_id in busy:
        found.pop(ticket_id, None)
    # a kept ticket must never point at a removed one: keep what kept tickets refer to
    references = [
        (int(a), b, c)
        for a, b, c in rows(
            m.Ticket.select(m.Ticket.id, m.Ticket.merged_into_id, m.Ticket.linked_to_id).where(
                m.Ticket.merged_into_id.is_null(False) | m.Ticket.linked_to_id.is_null(False)
            )
        )
    ]
    kept_referenced: list[str] = []
    changed = True
    while changed:
        changed = False
        for ticket_id, merged_into, linked_to in references:
            if ticket_id in found:
                continue
            for target in (merged_into, linked_to):
                if target is not None and int(target) in found:
                    kept_referenced.append(found.pop(int(target)).number)
                    changed = True
    tickets = tuple(found[i] for i in sorted(found))
    ticket_ids = [t.id for t in tickets]
    article_ids = sorted(
        int(a)
        for (a,) in in_chunks(
            ticket_ids,
            lambda c: m.Article.select(m.Article.id).where(m.Article.ticket.in_(c)).tuples(),
        )
    )
    planned = set(article_ids)
    raw_ids = sorted(
        {
            int(raw)
            for (raw,) in in_chunks(
                article_ids,
                lambda c: (
                    m.Article.select(m.Article.raw_message)
                    .where(m.Article.id.in_(c) & m.Article.raw_message.is_null(False))
                    .tuples()
                ),
            )
        }
    )
    shared_raw = {
        int(raw)
        for article_id, raw in in_chunks(
            raw_ids,
            lambda c: (
                m.Article.select(m.Article.id, m.Article.raw_message)
                .where(m.Article.raw_message.in_(c))
                .tuples()
            ),
        )
        if int(article_id) not in planned
    }
    attachment_ids = _ids_where(m.Attachment, m.Attachment.article, article_ids)
    outbox = _ids_where(m.OutboxEntry, m.OutboxEntry.ticket, ticket_ids)
    naming_articles = _ids_where(m.OutboxEntry, m.OutboxEntry.article, article_ids)
    plan = RetentionPlan(
        cutoff=cutoff,
        max_share=max_share,
        total_tickets=total,
        tickets=tickets,
        kept_referenced=tuple(sorted(kept_referenced)),
        kept_busy=tuple(kept_busy),
        articles=tuple(article_ids),
        raw_messages=tuple(r for r in raw_ids if r not in shared_raw),
        attachments=attachment_ids,
        blobs=blob_ids_used_only_by(attachment_ids),
        audit_entries=_ids_where(m.AuditEntry, m.AuditEntry.ticket, ticket_ids),
        outbox=outbox,
        outbox_detached=tuple(sorted(set(naming_articles) - set(outbox))),
        chat_posts=_ids_where(m.ChatPost, m.ChatPost.ticket, ticket_ids),
        tags=_ids_where(m.TicketTag, m.TicketTag.ticket, ticket_ids),
        intake_records=_ids_where(m.IntakeRecord, m.IntakeRecord.ticket, ticket_ids),
        auto_responses=_ids_where(m.AutoResponse, m.AutoResponse.ticket, ticket_ids),
    )
    code = confirmation_code(
        "retention",
        [(t.id, t.number, t.state, t.version) for t in plan.tickets],
        plan.articles,
        plan.raw_messages,
        plan.attachments,
        plan.blobs,
        plan.audit_entries,
        plan.outbox,
        plan.outbox_detached,
        plan.chat_posts,
        plan.tags,
        plan.intake_records,
        plan.auto_responses,
    )
    return replace(plan, code=code)


def _ids_where(model: Any, column: Any, values: Sequence[int]) -> tuple[int, ...]:
    return tuple(
        sorted(
            int(i)
            for (i,) in in_chunks(
                values, lambda c: model.select(model.id).where(column.in_(c)).tuples()
            )
        )
    )


def plan_retention(
    url: str, closed_after: timedelta, max_share: float, now: datetime | None = None
) -> RetentionPlan:
    """What a run would remove now, with its confirmation code; changes nothing."""
    with maintenance_database(url) as db, read_transaction(db):
        return _retention_plan(closed_after, max_share, now or datetime.now(UTC))


# --- the run ----------------------------------------------------------------------------------


def apply_retention(
    url: str,
    closed_after: timedelta,
    max_share: float,
    code: str,
    archive_dir: Path,
    backup_dir: Path,
    *,
    by: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    backup_fn: BackupFunction = backup,
) -> RetentionReport:
    """Archive, verify and remove the plan's tickets if ``code`` confirms it.

    Raises :class:`StaleCode` for a wrong or outdated code and :class:`MaintenanceError`
    for the share guard, a failed backup or an archive that does not read back; in each
    case no ticket was removed.
    """
    say = progress or quiet
    by = by or operator_name()
    now = now or datetime.now(UTC)
    started = time.monotonic()
    with maintenance_database(url) as db:
        with read_transaction(db):
            plan = _retention_plan(closed_after, max_share, now)
        _check(plan, code)
        if not plan.tickets:
            say("no closed ticket is old enough: nothing to remove")
            return RetentionReport(plan, None, None, by, now, 0.0)
        report = backup_first(url, backup_dir, "removing old tickets", say, backup_fn)
        archive_path = _write_archive(db, plan, archive_dir, now, say)
        say(f"reading the archive back: {archive_path}")
        check = verify_archive(archive_path, plan)
        say(
            f"archive verified: {check.tickets} tickets, {check.articles} articles, "
            f"{check.attachments} attachments, {check.raw_messages} raw mails, "
            f"{check.audit_entries} history lines; sha256 {check.sha256}"
        )
        at = now
        with write_transaction(db):
            lock_tickets(db, plan.ticket_ids)
            again = _retention_plan(closed_after, max_share, now)
            if again.code != plan.code:
                raise StaleCode(
                    "the tickets changed while the archive was written (a follow-up, a "
                    f"reopen?): nothing was removed; {archive_path} is not needed, run "
                    "retention again"
                )
            _delete(db, again, check, by, at, report, say)
        say("committed")
        scrub(db, say)
    return RetentionReport(plan, report, check, by, at, time.monotonic() - started)


def _check(plan: RetentionPlan, code: str) -> None:
    check_code(code, plan.code, "retention")
    refusal = plan.refusal()
    if refusal:
        raise MaintenanceError(refusal)


def _delete(
    db: Database,
    plan: RetentionPlan,
    archive: ArchiveCheck,
    by: str,
    at: datetime,
    backup_report: BackupReport,
    say: Progress,
) -> None:
    tickets = list(plan.ticket_ids)
    say(f"removing {len(tickets)} ticket(s)")
    _delete_ids(m.OutboxEntry, plan.outbox)
    for chunk in chunks(plan.outbox_detached):
        m.OutboxEntry.update(article=None).where(m.OutboxEntry.id.in_(chunk)).execute()
    _delete_ids(m.ChatPost, plan.chat_posts)
    _delete_ids(m.TicketTag, plan.tags)
    for model, kept in (
        (m.IntakeRecord, plan.intake_records),
        (m.AutoResponse, plan.auto_responses),
        (m.AuditEntry, plan.audit_entries),
    ):
        for chunk in chunks(kept):
            model.update(ticket=None).where(model.id.in_(chunk)).execute()
    say(f"removing {len(plan.attachments)} attachment(s)")
    _delete_ids(m.Attachment, plan.attachments)
    delete_blobs(plan.blobs)
    say(f"removing {len(plan.articles)} article(s) and {len(plan.raw_messages)} raw mail(s)")
    _delete_ids(m.Article, plan.articles)
    _delete_ids(m.RawMessage, plan.raw_messages)
    removed = 0
    for chunk in chunks(tickets):
        removed += (
            m.Ticket.delete()
            .where(m.Ticket.id.in_(chunk) & m.Ticket.state.in_(CLOSED_STATES))
            .execute()
        )
    if removed != len(tickets):
        raise MaintenanceError(
            f"only {removed} of {len(tickets)} tickets were still closed: nothing was removed"
        )
    numbers = [t.number for t in plan.tickets]
    m.AuditEntry.create(
        at=at,
        actor_platform="cli",
        actor_id=by,
        actor_name=by,
        action="data.retained",
        ticket=None,
        detail=json.dumps(
            {
                "archive": str(archive.path),
                "archive_sha256": archive.sha256,
                "cutoff": plan.cutoff.isoformat(),
                "counts": plan.counts(),
                "tickets": numbers[:100],
                "more_tickets": max(0, len(numbers) - 100),
                "backup": str(backup_report.path),
            },
            sort_keys=True,
        ),
    )


def _delete_ids(model: Any, values: Sequence[int]) -> None:
    for chunk in chunks(values):
        model.delete().where(model.id.in_(chunk)).execute()


# --- the archive ------------------------------------------------------------------------------


def _write_archive(
    db: Database, plan: RetentionPlan, folder: Path, now: datetime, say: Progress
) -> Path:
    """One JSON Lines file: a header, then a line per ticket with everything of it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"ticketbot-archive-{now.astimezone(UTC):%Y%m%d-%H%M%S}.jsonl"
    if target.exists():
        raise MaintenanceError(f"{target} already exists; not replacing an archive")
    say(f"writing the archive {target}")
    with _partial_file(folder, target.name) as (partial, out), read_transaction(db):
        header = {
            "archive": "ticketbot retention",
            "format": ARCHIVE_FORMAT,
            "schema_version": LATEST,
            "created_at": now.astimezone(UTC).isoformat(),
            "cutoff": plan.cutoff.isoformat(),
            "tickets": len(plan.tickets),
        }
        out.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        done = 0
        for batch in chunks(list(plan.ticket_ids), BATCH):
            for line in _ticket_lines(db, batch):
                out.write(json.dumps(line, sort_keys=True).encode() + b"\n")
            done += len(batch)
            say(f"archived {done} of {len(plan.tickets)} tickets")
        out.flush()
        os.fsync(out.fileno())
        out.close()
        if target.exists():
            raise MaintenanceError(f"{target} appeared meanwhile; not replacing it")
        os.replace(partial, target)
    _fsync_dir(folder)
    return target


@contextlib.contextmanager
def _partial_file(folder: Path, name: str) -> Iterator[tuple[Path, IO[bytes]]]:
    """A private (0600) hidden file beside the target, removed unless renamed away."""
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    partial = Path(temp)
    try:
        with os.fdopen(fd, "wb") as out:
            yield partial, out
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _select(db: Database, table: str, column: str, values: Sequence[int]) -> list[dict[str, Any]]:
    """Every column of the rows whose ``column`` is in ``values``, by column name."""
    found: list[dict[str, Any]] = []
    for chunk in chunks(values):
        marks = ", ".join([db.param] * len(chunk))
        cursor = db.execute_sql(  # type: ignore[no-untyped-call]
            f'SELECT * FROM "{table}" WHERE "{column}" IN ({marks}) ORDER BY "id"', tuple(chunk)
        )
        names = [d[0] for d in cursor.description]
        found.extend(dict(zip(names, row, strict=True)) for row in cursor.fetchall())
    return found


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (bytes, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    return value


def _plain(row: dict[str, Any], *leave_out: str) -> dict[str, Any]:
    return {k: _json(v) for k, v in row.items() if k not in leave_out}


def _b64(value: Any) -> str | None:
    return None if value is None else base64.b64encode(bytes(value)).decode()


def _ticket_lines(db: Database, ticket_ids: list[int]) -> list[dict[str, Any]]:
    tickets = _select(db, "ticket", "id", ticket_ids)
    queues = {
        int(r["id"]): r["name"]
        for r in _select(db, "queue", "id", sorted({int(t["queue_id"]) for t in tickets}))
    }
    articles = _select(db, "article", "ticket_id", ticket_ids)
    article_ids = [int(a["id"]) for a in articles]
    raws = {
        int(r["id"]): r
        for r in _select(
            db, "raw_message", "id", sorted({int(a["raw_id"]) for a in articles if a["raw_id"]})
        )
    }
    attachments = _select(db, "attachment", "article_id", article_ids)
    blobs = {
        int(b["id"]): b
        for b in _select(
            db,
            "attachment_blob",
            "id",
            sorted({int(a["blob_id"]) for a in attachments if a["blob_id"] is not None}),
        )
    }
    files: dict[int, list[dict[str, Any]]] = {}
    for a in attachments:
        data = blobs[int(a["blob_id"])]["data"] if a["blob_id"] is not None else a["data"]
        files.setdefault(int(a["article_id"]), []).append(
            {**_plain(a, "data"), "data_base64": _b64(data)}
        )
    by_ticket: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for key, table in (
        ("tags", "ticket_tag"),
        ("audit", "audit_log"),
        ("chat_posts", "chat_post"),
        ("outbox", "outbox"),
        ("intake_records", "intake_record"),
        ("auto_responses", "auto_response"),
    ):
        grouped: dict[int, list[dict[str, Any]]] = {}
        for row in _select(db, table, "ticket_id", ticket_ids):
            grouped.setdefault(int(row["ticket_id"]), []).append(_plain(row))
        by_ticket[key] = grouped
    articles_of: dict[int, list[dict[str, Any]]] = {}
    for a in articles:
        raw = raws.get(int(a["raw_id"])) if a["raw_id"] else None
        articles_of.setdefault(int(a["ticket_id"]), []).append(
            {
                **_plain(a),
                "raw_message": None
                if raw is None
                else {**_plain(raw, "data"), "data_base64": _b64(raw["data"])},
                "attachments": files.get(int(a["id"]), []),
            }
        )
    lines = []
    for t in tickets:
        tid = int(t["id"])
        lines.append(
            {
                "ticket": _plain(t),
                "queue": queues.get(int(t["queue_id"])),
                "articles": articles_of.get(tid, []),
                **{key: grouped.get(tid, []) for key, grouped in by_ticket.items()},
            }
        )
    return lines


def verify_archive(path: Path, plan: RetentionPlan) -> ArchiveCheck:
    """Read an archive back: complete JSON, every planned row in it, every file's bytes
    matching their sha256. Raises :class:`MaintenanceError` listing what is wrong."""
    problems: list[str] = []
    seen: dict[str, set[int]] = {
        k: set() for k in ("tickets", "articles", "attachments", "raw_messages", "audit")
    }
    digest = hashlib.sha256()
    size = 0
    header: dict[str, Any] | None = None
    try:
        with open(path, "rb") as file:
            for number, raw_line in enumerate(file, 1):
                digest.update(raw_line)
                size += len(raw_line)
                if not raw_line.endswith(b"\n"):
                    problems.append(f"line {number} is cut off")
                    break
                try:
                    line = json.loads(raw_line)
                except ValueError as exc:
                    problems.append(f"line {number} is not JSON: {exc}")
                    continue
                if header is None:
                    header = line
                    if line.get("format") != ARCHIVE_FORMAT:
                        problems.append(f"line 1 is not a format {ARCHIVE_FORMAT} header")
                    continue
                _check_ticket_line(line, number, seen, problems)
    except OSError as exc:
        raise MaintenanceError(f"the archive {path} cannot be read back: {exc}") from None
    if header is None:
        problems.append("the archive is empty")
    elif header.get("tickets") != len(plan.tickets):
        problems.append(
            f"the header counts {header.get('tickets')} tickets, not {len(plan.tickets)}"
        )
    for key, wanted in (
        ("tickets", plan.ticket_ids),
        ("articles", plan.articles),
        ("attachments", plan.attachments),
        ("raw_messages", plan.raw_messages),
        ("audit", plan.audit_entries),
    ):
        missing = sorted(set(wanted) - seen[key])
        if missing:
            problems.append(f"{len(missing)} {key} missing, ids {missing[:10]}")
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        raise MaintenanceError(
            f"the archive {path} does not read back as written, so nothing was removed:\n{shown}"
        )
    return ArchiveCheck(
        path=path,
        sha256=digest.hexdigest(),
        size=size,
        tickets=len(seen["tickets"]),
        articles=len(seen["articles"]),
        attachments=len(seen["attachments"]),
        raw_messages=len(seen["raw_messages"]),
        audit_entries=len(seen["audit"]),
    )


def _check_ticket_line(
    line: dict[str, Any], number: int, seen: dict[str, set[int]], problems: list[str]
) -> None:
    try:
        seen["tickets"].add(int(line["ticket"]["id"]))
        seen["audit"].update(int(a["id"]) for a in line["audit"])
        for article in line["articles"]:
            seen["articles"].add(int(article["id"]))
            raw = article["raw_message"]
            if raw is not None:
                problem = _bytes_problem(raw)
                if problem:
                    problems.append(f"line {number}: raw mail {raw['id']}: {problem}")
                else:
                    seen["raw_messages"].add(int(raw["id"]))
            for attachment in article["attachments"]:
                problem = _bytes_problem(attachment)
                if problem:
                    problems.append(f"line {number}: attachment {attachment['id']}: {problem}")
                else:
                    seen["attachments"].add(int(attachment["id"]))
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"line {number} is not a complete ticket: {exc!r}")


def _bytes_problem(row: dict[str, Any]) -> str | None:
    try:
        data = base64.b64decode(row["data_base64"], validate=True)
    except (TypeError, ValueError):
        return "its bytes are not valid base64"
    actual = hashlib.sha256(data).hexdigest()
    if actual != row["sha256"]:
        return f"sha256 is {actual}, stored {row['sha256']}"
    if len(data) != row["size"]:
        return f"{len(data)} bytes, stored size {row['size']}"
    return None
