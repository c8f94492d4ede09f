"""Erasing one requester's personal data, on an admin's explicit, confirmed word.

``ticketbot erase --requester ADDRESS`` first shows what would go and a confirmation
code; nothing changes. ``--confirm CODE`` then erases, in this order:

1. the plan is made again, and a code that does not match it is refused: a wrong code,
   or one from a dry run after which anything of theirs changed (a new mail, a reply);
2. a backup of the whole database is written and checked; if that fails, nothing is
   changed;
3. in one transaction (which first locks their tickets and makes the plan a third
   time), their data is replaced: articles' subjects, bodies, authors and recipients
   become ``[erased]``, their mails' raw bytes and their attachments are deleted (an
   attachment's stored bytes only once no other attachment shares them), the tickets'
   requester becomes ``erased-<hash>@erased.invalid``, the address is cut out of the
   history lines and other tickets' outbox entries that name it, outbox entries of
   those tickets are emptied (pending ones cancelled), and what the desk knew about
   the address (sender marks, auto-response log) is deleted; a tombstone
   ``data.erased`` goes into the audit log with who, when, the counts and a hash of
   the address, never the address itself.

Tickets themselves stay, with their numbers, states and history, so the desk's record
of what it did is intact. On SQLite the full-text index follows the articles through
its triggers; on PostgreSQL the index is an expression over the columns themselves.

The parts it shares with :mod:`storage.retention` are in :mod:`storage.maintenance`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peewee import fn

from storage import models as m
from storage.backup import BackupReport, backup
from storage.maintenance import (
    BackupFunction,
    InvalidInput,
    Progress,
    backup_first,
    blob_ids_used_only_by,
    check_code,
    chunks,
    confirmation_code,
    delete_blobs,
    ids,
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

ERASED = "[erased]"
ERASED_DOMAIN = "erased.invalid"


# --- erase ------------------------------------------------------------------------------------


def normalise_address(address: str) -> str:
    text = address.strip().lower()
    if text.count("@") != 1 or any(c.isspace() for c in text) or text.startswith("@"):
        raise InvalidInput(f"--requester: {address!r} is not an email address")
    return text


def address_hash(address: str) -> str:
    """The sha256 of the normalised address: the tombstone names the person by this."""
    return hashlib.sha256(normalise_address(address).encode()).hexdigest()


def erased_address(address: str) -> str:
    return f"erased-{address_hash(address)[:16]}@{ERASED_DOMAIN}"


@dataclass(frozen=True)
class TicketRef:
    id: int
    number: str
    state: str


@dataclass(frozen=True)
class ErasurePlan:
    """Everything an erase of one address touches, by id; ``code`` confirms it."""

    address_sha256: str
    replacement: str
    tickets: tuple[TicketRef, ...]  # where they are the requester
    elsewhere: tuple[tuple[int, str], ...]  # (article id, ticket number): their mail on others
    articles: tuple[int, ...]  # blanked: every article of their tickets, and the ones above
    raw_messages: tuple[int, ...]  # deleted
    attachments: tuple[int, ...]  # deleted
    blobs: tuple[int, ...]  # stored files no other attachment shares: deleted
    audit_entries: tuple[int, ...]  # history lines naming the address: redacted
    outbox: tuple[int, ...]  # entries of their tickets and articles: emptied
    outbox_pending: tuple[int, ...]  # of those, waiting to go out: cancelled
    outbox_redacted: tuple[int, ...]  # other entries whose text names the address
    sender_marks: tuple[int, ...]  # deleted
    auto_responses: tuple[int, ...]  # deleted
    other_tickets: tuple[int, ...] = ()  # the tickets of ``elsewhere``
    code: str = ""

    @property
    def empty(self) -> bool:
        return not (
            self.tickets
            or self.articles
            or self.audit_entries
            or self.outbox_redacted
            or self.sender_marks
            or self.auto_responses
        )

    @property
    def affected_tickets(self) -> tuple[int, ...]:
        """Their tickets, and the tickets their mail was found on."""
        return tuple(sorted({t.id for t in self.tickets} | set(self.other_tickets)))

    def counts(self) -> dict[str, int]:
        return {
            "tickets": len(self.tickets),
            "articles_on_other_tickets": len(self.elsewhere),
            "articles": len(self.articles),
            "raw_messages": len(self.raw_messages),
            "attachments": len(self.attachments),
            "attachment_blobs": len(self.blobs),
            "audit_entries": len(self.audit_entries),
            "outbox": len(self.outbox),
            "outbox_cancelled": len(self.outbox_pending),
            "outbox_redacted": len(self.outbox_redacted),
            "sender_marks": len(self.sender_marks),
            "auto_responses": len(self.auto_responses),
        }

    def describe(self, address: str, limit: int = 50) -> str:
        lines = [
            f"erasing {address} (sha256 {self.address_sha256[:16]}...) would change:",
            f"  tickets where they are the requester (kept; the requester becomes "
            f"{self.replacement}): {len(self.tickets)}",
        ]
        lines += [f"    {t.number} ({t.state})" for t in self.tickets[:limit]]
        if len(self.tickets) > limit:
            lines.append(f"    ... and {len(self.tickets) - limit} more")
        lines.append(f"  their mail on other tickets: {len(self.elsewhere)}")
        lines += [f"    article {a} on {n}" for a, n in self.elsewhere[:limit]]
        if len(self.elsewhere) > limit:
            lines.append(f"    ... and {len(self.elsewhere) - limit} more")
        lines += [
            f'  articles blanked (subject, body, author, recipients -> "{ERASED}"): '
            f"{len(self.articles)}",
            f"  raw mails deleted: {len(self.raw_messages)}",
            f"  attachments deleted: {len(self.attachments)} (stored files deleted, used by "
            f"no one else: {len(self.blobs)})",
            f"  history lines with the address cut out: {len(self.audit_entries)}",
            f"  outbox entries emptied: {len(self.outbox)} (waiting ones cancelled: "
            f"{len(self.outbox_pending)})",
            f"  other outbox entries with the address cut out: {len(self.outbox_redacted)}",
            f"  sender marks deleted: {len(self.sender_marks)}; auto-response records "
            f"deleted: {len(self.auto_responses)}",
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class ErasureReport:
    plan: ErasurePlan
    backup: BackupReport | None
    by: str
    at: datetime
    seconds: float

    def summary(self) -> str:
        plan = self.plan
        return "\n".join(
            [
                f"erased: {len(plan.tickets)} ticket(s) now without their requester, "
                f"{len(plan.articles)} article(s) blanked ({len(plan.elsewhere)} on other "
                f"tickets), {len(plan.raw_messages)} raw mail(s) and {len(plan.attachments)} "
                f"attachment(s) deleted, the address cut out of {len(plan.audit_entries)} "
                f"history line(s) and {len(plan.outbox_redacted)} outbox entr(ies), "
                f"{len(plan.outbox)} outbox entr(ies) emptied, {len(plan.sender_marks)} sender "
                f"mark(s) and {len(plan.auto_responses)} auto-response record(s) deleted",
                f"  backup taken first: {self.backup.path if self.backup else '(none needed)'}",
                f"  recorded in the audit log as data.erased by {self.by} at "
                f"{self.at:%Y-%m-%d %H:%M:%S} UTC ({self.seconds:.2f} s)",
            ]
        )


def _erasure_plan(address: str) -> ErasurePlan:
    """Read what an erase of ``address`` touches (inside the caller's transaction)."""
    address = normalise_address(address)
    tickets = tuple(
        TicketRef(int(r.id), r.number, r.state)
        for r in m.Ticket.select(m.Ticket.id, m.Ticket.number, m.Ticket.state)
        .where(fn.LOWER(m.Ticket.requester_email) == address)
        .order_by(m.Ticket.id)
    )
    ticket_ids = [t.id for t in tickets]
    own_articles = {
        int(r.id)
        for r in in_chunks(
            ticket_ids,
            lambda c: m.Article.select(m.Article.id).where(m.Article.ticket.in_(c)),
        )
    }
    elsewhere_rows: list[tuple[int, int, str]] = [
        (int(article_id), int(ticket_id), str(number))
        for article_id, ticket_id, number in rows(
            m.Article.select(m.Article.id, m.Article.ticket, m.Ticket.number)
            .join(m.Ticket)
            .where(
                (m.Article.kind == "inbound")
                & (fn.LOWER(m.Article.author) == address)
                & (fn.LOWER(m.Ticket.requester_email) != address)
            )
            .order_by(m.Article.id)
        )
    ]
    elsewhere = tuple((article_id, number) for article_id, _, number in elsewhere_rows)
    article_ids = sorted(own_articles | {a for a, _ in elsewhere})
    planned = set(article_ids)
    raw_of: list[tuple[int, int]] = in_chunks(
        article_ids,
        lambda c: (
            m.Article.select(m.Article.id, m.Article.raw_message)
            .where(m.Article.id.in_(c) & m.Article.raw_message.is_null(False))
            .tuples()
        ),
    )
    raw_ids = sorted({int(raw_id) for _, raw_id in raw_of})
    # a raw mail is one article's; should another article name it too, it stays
    naming: list[tuple[int, int]] = in_chunks(
        raw_ids,
        lambda c: (
            m.Article.select(m.Article.id, m.Article.raw_message)
            .where(m.Article.raw_message.in_(c))
            .tuples()
        ),
    )
    shared_raw = {int(raw_id) for article_id, raw_id in naming if int(article_id) not in planned}
    attachment_ids = ids(
        in_chunks(
            article_ids,
            lambda c: m.Attachment.select(m.Attachment.id).where(m.Attachment.article.in_(c)),
        )
    )
    outbox_rows = {
        int(r.id): r
        for r in in_chunks(
            ticket_ids,
            lambda c: m.OutboxEntry.select(m.OutboxEntry.id, m.OutboxEntry.state).where(
                m.OutboxEntry.ticket.in_(c)
            ),
        )
        + in_chunks(
            article_ids,
            lambda c: m.OutboxEntry.select(m.OutboxEntry.id, m.OutboxEntry.state).where(
                m.OutboxEntry.article.in_(c)
            ),
        )
        if r.state != "sending"  # being sent this very moment: the bot finishes it
    }
    audit_ids = tuple(
        sorted(
            int(r.id)
            for r in m.AuditEntry.select(
                m.AuditEntry.id, m.AuditEntry.detail, m.AuditEntry.before, m.AuditEntry.after
            ).where(
                fn.LOWER(m.AuditEntry.detail).contains(address)
                | fn.LOWER(m.AuditEntry.before).contains(address)
                | fn.LOWER(m.AuditEntry.after).contains(address)
            )
            if address in f"{r.detail}\n{r.before}\n{r.after}".lower()
        )
    )
    plan = ErasurePlan(
        address_sha256=hashlib.sha256(address.encode()).hexdigest(),
        replacement=erased_address(address),
        tickets=tickets,
        elsewhere=elsewhere,
        articles=tuple(article_ids),
        raw_messages=tuple(r for r in raw_ids if r not in shared_raw),
        attachments=attachment_ids,
        blobs=blob_ids_used_only_by(attachment_ids),
        audit_entries=audit_ids,
        outbox=tuple(sorted(outbox_rows)),
        outbox_pending=tuple(sorted(i for i, r in outbox_rows.items() if r.state == "pending")),
        outbox_redacted=tuple(
            sorted(
                int(r.id)
                for r in m.OutboxEntry.select(
                    m.OutboxEntry.id, m.OutboxEntry.state, m.OutboxEntry.payload
                ).where(fn.LOWER(m.OutboxEntry.payload).contains(address))
                if int(r.id) not in outbox_rows
                and r.state != "sending"
                and address in str(r.payload).lower()
            )
        ),
        sender_marks=ids(m.SenderMark.select().where(m.SenderMark.address == address)),
        auto_responses=ids(m.AutoResponse.select().where(m.AutoResponse.address == address)),
        other_tickets=tuple(sorted({ticket_id for _, ticket_id, _ in elsewhere_rows})),
    )
    code = confirmation_code(
        "erase",
        plan.address_sha256,
        [(t.id, t.number) for t in plan.tickets],
        plan.articles,
        plan.raw_messages,
        plan.attachments,
        plan.blobs,
        plan.audit_entries,
        plan.outbox,
        plan.outbox_pending,
        plan.outbox_redacted,
        plan.sender_marks,
        plan.auto_responses,
    )
    return _with_code(plan, code)


def _with_code(plan: ErasurePlan, code: str) -> ErasurePlan:
    return replace(plan, code=code)


def plan_erasure(url: str, address: str) -> ErasurePlan:
    """What ``erase`` would do for ``address``, with its confirmation code; changes nothing."""
    normalise_address(address)
    with maintenance_database(url) as db, read_transaction(db):
        return _erasure_plan(address)


def erase(
    url: str,
    address: str,
    code: str,
    backup_dir: Path,
    *,
    by: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    backup_fn: BackupFunction = backup,
) -> ErasureReport:
    """Erase ``address``'s personal data if ``code`` confirms the plan as it is now.

    Raises :class:`StaleCode` for a wrong or outdated code and :class:`MaintenanceError`
    when the backup fails; in either case nothing was changed.
    """
    say = progress or quiet
    address = normalise_address(address)
    by = by or operator_name()
    started = time.monotonic()
    with maintenance_database(url) as db:
        with read_transaction(db):
            plan = _erasure_plan(address)
        check_code(code, plan.code, "erase")
        if plan.empty:
            say("nothing of this address is stored: nothing to erase")
            return ErasureReport(plan, None, by, now or datetime.now(UTC), 0.0)
        report = backup_first(url, backup_dir, "erasing", say, backup_fn)
        at = now or datetime.now(UTC)
        with write_transaction(db):
            lock_tickets(db, plan.affected_tickets)
            again = _erasure_plan(address)
            check_code(code, again.code, "erase")
            _apply_erasure(again, address, by, at, report, say)
        say("committed")
        scrub(db, say)
    return ErasureReport(again, report, by, at, time.monotonic() - started)


def _apply_erasure(
    plan: ErasurePlan,
    address: str,
    by: str,
    at: datetime,
    backup_report: BackupReport,
    say: Progress,
) -> None:
    say(f"blanking {len(plan.articles)} article(s)")
    for chunk in chunks(plan.articles):
        m.Article.update(
            subject=ERASED,
            body=ERASED,
            author=ERASED,
            author_name=ERASED,
            to_addrs="[]",
            cc_addrs="[]",
            last_error="",
            raw_message=None,
        ).where(m.Article.id.in_(chunk)).execute()
    for chunk in chunks(plan.articles):
        # a reply to them still waiting is not sent any more (its outbox entry is cancelled)
        m.Article.update(send_state="cancelled").where(
            m.Article.id.in_(chunk) & (m.Article.send_state == "queued")
        ).execute()
    say(f"deleting {len(plan.attachments)} attachment(s)")
    for chunk in chunks(plan.attachments):
        m.Attachment.delete().where(m.Attachment.id.in_(chunk)).execute()
    delete_blobs(plan.blobs)
    say(f"deleting {len(plan.raw_messages)} raw mail(s)")
    for chunk in chunks(plan.raw_messages):
        m.RawMessage.delete().where(m.RawMessage.id.in_(chunk)).execute()
    say(f"replacing the requester of {len(plan.tickets)} ticket(s)")
    for chunk in chunks([t.id for t in plan.tickets]):
        # the version moves on: a volunteer's command holding the old ticket must not
        # write its subject back
        m.Ticket.update(
            requester_email=plan.replacement,
            requester_name="",
            subject=ERASED,
            version=m.Ticket.version + 1,
        ).where(m.Ticket.id.in_(chunk)).execute()
    say(f"cutting the address out of {len(plan.audit_entries)} history line(s)")
    pattern = re.compile(re.escape(address), re.IGNORECASE)
    for chunk in chunks(plan.audit_entries):
        for row in m.AuditEntry.select(
            m.AuditEntry.id, m.AuditEntry.detail, m.AuditEntry.before, m.AuditEntry.after
        ).where(m.AuditEntry.id.in_(chunk)):
            m.AuditEntry.update(
                detail=pattern.sub(plan.replacement, row.detail),
                before=pattern.sub(plan.replacement, row.before),
                after=pattern.sub(plan.replacement, row.after),
            ).where(m.AuditEntry.id == row.id).execute()
    say(f"emptying {len(plan.outbox)} outbox entries")
    for chunk in chunks(plan.outbox_pending):
        m.OutboxEntry.update(state="cancelled", done_at=at).where(
            m.OutboxEntry.id.in_(chunk) & (m.OutboxEntry.state == "pending")
        ).execute()
    for chunk in chunks(plan.outbox):
        m.OutboxEntry.update(payload="{}", last_error="").where(
            m.OutboxEntry.id.in_(chunk) & (m.OutboxEntry.state != "sending")
        ).execute()
    for chunk in chunks(plan.outbox_redacted):
        for entry in m.OutboxEntry.select(m.OutboxEntry.id, m.OutboxEntry.payload).where(
            m.OutboxEntry.id.in_(chunk)
        ):
            payload = _redact_json(json.loads(entry.payload or "{}"), pattern, plan.replacement)
            m.OutboxEntry.update(payload=json.dumps(payload)).where(
                m.OutboxEntry.id == entry.id
            ).execute()
    for chunk in chunks(plan.sender_marks):
        m.SenderMark.delete().where(m.SenderMark.id.in_(chunk)).execute()
    for chunk in chunks(plan.auto_responses):
        m.AutoResponse.delete().where(m.AutoResponse.id.in_(chunk)).execute()
    counts = plan.counts()
    for ticket_id in plan.affected_tickets:
        m.AuditEntry.create(
            at=at,
            actor_platform="cli",
            actor_id=by,
            actor_name=by,
            action="data.erased",
            ticket=ticket_id,
            detail="personal data of a requester erased (ticketbot erase)",
        )
    m.AuditEntry.create(
        at=at,
        actor_platform="cli",
        actor_id=by,
        actor_name=by,
        action="data.erased",
        ticket=None,
        detail=json.dumps(
            {
                "address_sha256": plan.address_sha256,
                "tickets": [t.number for t in plan.tickets],
                "counts": counts,
                "backup": str(backup_report.path),
            },
            sort_keys=True,
        ),
    )


def _redact_json(value: Any, pattern: re.Pattern[str], replacement: str) -> Any:
    """``value`` with the address replaced in every string inside it."""
    if isinstance(value, str):
        return pattern.sub(replacement, value)
    if isinstance(value, list):
        return [_redact_json(v, pattern, replacement) for v in value]
    if isinstance(value, dict):
        return {k: _redact_json(v, pattern, replacement) for k, v in value.items()}
    return value
