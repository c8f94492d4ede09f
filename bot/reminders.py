"""Reminders, due dates and the daily digest: what makes a desk keep its promises.

One ``tick`` runs every ``[reminders] check_seconds`` (an APScheduler job). It keeps
no state in memory: pending dates, when each ticket was last reminded about, when an
owner last acted and when the digest last went out all live in the database, so a
restart neither loses a due reminder nor repeats one.

* a pending ticket whose date came: a reminder reopens it and pings its owner (or
  the queue), an auto-close closes it;
* a claim with no action by its owner for ``[tickets] claim_idle`` lapses;
* a ticket unclaimed for ``unclaimed_after`` pings the queue: first the volunteers
  who speak its language, then, if still unclaimed, the whole queue;
* a claimed ticket whose requester has waited ``unanswered_after`` pings its owner;
* once a day at ``digest_at`` (UTC), each queue gets a summary of what is waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.actions import announce, ticket_id
from bot.admin.live import LiveConfig, as_live
from bot.config import Config, QueueConfig
from bot.domain import SYSTEM, ArticleKind, Ticket, TicketState
from bot.ports import Clock
from bot.privacy import mask
from bot.repository import Repository, Store
from bot.timeparse import format_duration

log = logging.getLogger(__name__)

_DIGEST_KEY = "digest.last_day"


@dataclass(frozen=True)
class TickReport:
    """What one tick did (for the log and for tests)."""

    fell_due: int = 0
    lapsed: int = 0
    unclaimed_pings: int = 0
    owner_pings: int = 0
    digests: int = 0

    @property
    def anything(self) -> bool:
        return any(
            (self.fell_due, self.lapsed, self.unclaimed_pings, self.owner_pings, self.digests)
        )


class ReminderService:
    def __init__(
        self, config: Config | LiveConfig, store: Store, clock: Clock, wake: Callable[[], None]
    ) -> None:
        self._live = as_live(config)
        self._store = store
        self._clock = clock
        self._wake = wake

    @property
    def _config(self) -> Config:
        """The config in force now: admins' changes apply from the next use on."""
        return self._live.current

    async def tick(self) -> TickReport:
        now = self._clock.now()
        report = await self._store.run(lambda repo: self._tick(repo, now))
        if report.anything:
            log.info("reminders: %s", report)
            self._wake()
        return report

    def _tick(self, repo: Repository, now: datetime) -> TickReport:
        fell_due = sum(
            self._fall_due(repo, t, now)
            for t in repo.due_pending(now)
            if self._config.find_queue(t.queue) is not None  # a queue removed from bot.toml
        )
        lapsed = unclaimed = owner = 0
        speakers = repo.all_volunteer_languages()
        for ticket in repo.active_tickets():
            if self._config.find_queue(ticket.queue) is None:
                continue  # a queue removed from bot.toml: nobody to remind
            if self._lapse(repo, ticket, now):
                lapsed += 1
            elif ticket.owner is None:
                unclaimed += self._remind_unclaimed(repo, ticket, now, speakers)
            else:
                owner += self._remind_owner(repo, ticket, now)
        digests = self._digest(repo, now)
        return TickReport(fell_due, lapsed, unclaimed, owner, digests)

    # --- pending -------------------------------------------------------------------------------

    def _fall_due(self, repo: Repository, ticket: Ticket, now: datetime) -> int:
        autoclose = ticket.state is TicketState.PENDING_AUTOCLOSE
        ticket.fall_due(now)
        repo.save_ticket(ticket)
        if autoclose:
            repo.audit(now, SYSTEM, "ticket.autoclosed", ticket.id, "pending date reached")
            announce(
                self._config, repo, ticket, now, "✅ Closed automatically: no answer came in time"
            )
            return 1
        repo.audit(now, SYSTEM, "ticket.reminder_due", ticket.id, "pending reminder reached")
        queue = self._config.queue(ticket.queue)
        users = [ticket.owner] if ticket.owner else list(queue.volunteers)
        announce(self._config, repo, ticket, now, "⏰ Pending reminder: this ticket is back")
        self._ping(repo, ticket, now, "⏰ Reminder due on this ticket", users, in_thread=True)
        return 1

    # --- claims --------------------------------------------------------------------------------

    def _lapse(self, repo: Repository, ticket: Ticket, now: datetime) -> bool:
        idle = self._config.tickets.claim_idle
        if idle is None or ticket.owner is None:
            return False
        since = ticket.owner_active_at or ticket.updated_at
        if now - since < idle:
            return False
        owner = ticket.owner_label
        ticket.release(now)
        repo.save_ticket(ticket)
        repo.audit(
            now,
            SYSTEM,
            "ticket.claim_lapsed",
            ticket.id,
            f"{owner} idle since {since:%Y-%m-%d %H:%M}",
        )
        announce(
            self._config,
            repo,
            ticket,
            now,
            f"⌛ {owner}'s claim lapsed after {format_duration(now - since)} without activity; "
            "the ticket is back in the queue",
        )
        return True

    def _remind_unclaimed(
        self,
        repo: Repository,
        ticket: Ticket,
        now: datetime,
        speakers: dict[str, tuple[str, ...]],
    ) -> int:
        after = self._config.reminders.unclaimed_after
        if after is None or not self._config.queue(ticket.queue).reminders:
            return 0
        waiting_since = ticket.reminded_at or ticket.created_at
        if now - waiting_since < after:
            return 0
        queue = self._config.queue(ticket.queue)
        first_time = ticket.reminded_at is None
        users = list(queue.volunteers)
        who = "the queue"
        if first_time and ticket.language:
            speaking = [v for v in queue.volunteers if ticket.language in speakers.get(v, ())]
            if speaking:
                users, who = speaking, f"volunteers who speak {ticket.language}"
        ticket.reminded_at = now
        repo.save_ticket(ticket)
        repo.audit(now, SYSTEM, "ticket.reminded", ticket.id, f"unclaimed; pinged {who}")
        waited = format_duration(now - ticket.created_at)
        language = f" ({ticket.language})" if ticket.language else ""
        self._ping(
            repo,
            ticket,
            now,
            f"🔔 Ticket {ticket.number}{language} has waited {waited} unclaimed: "
            f"{_subject(queue, ticket)[:80]}",
            users,
            in_thread=False,
        )
        return 1

    def _remind_owner(self, repo: Repository, ticket: Ticket, now: datetime) -> int:
        after = self._config.reminders.unanswered_after
        if after is None or ticket.owner is None or not self._config.queue(ticket.queue).reminders:
            return 0
        last = repo.last_article_of_kinds(
            ticket_id(ticket), [ArticleKind.INBOUND.value, ArticleKind.REPLY.value]
        )
        if last is None or last.kind is not ArticleKind.INBOUND or last.auto_kind:
            return 0  # answered last, or only automatic mail since
        if now - last.created_at < after:
            return 0
        if ticket.reminded_at is not None and now - ticket.reminded_at < after:
            return 0
        ticket.reminded_at = now
        repo.save_ticket(ticket)
        repo.audit(now, SYSTEM, "ticket.reminded", ticket.id, f"unanswered; pinged {ticket.owner}")
        self._ping(
            repo,
            ticket,
            now,
            f"🔔 The requester has waited {format_duration(now - last.created_at)} for an answer",
            [ticket.owner],
            in_thread=True,
        )
        return 1

    # --- digest --------------------------------------------------------------------------------

    def _digest(self, repo: Repository, now: datetime) -> int:
        at = self._config.reminders.digest_at
        if at is None or now.time() < at:
            return 0
        today = now.date().isoformat()
        if repo.job_state(_DIGEST_KEY) == today:
            return 0
        repo.set_job_state(_DIGEST_KEY, today)
        active = repo.active_tickets()
        pending = {q.name: repo.state_counts(q.name) for q in self._config.queues}
        sent = 0
        for queue in self._config.queues:
            if not queue.reminders:
                continue  # the queue's admin turned its reminders and digest off
            waiting = [t for t in active if t.queue == queue.name]
            counts = pending[queue.name]
            if not waiting and not any(
                counts.get(s, 0) for s in ("pending_reminder", "pending_autoclose")
            ):
                continue
            text = digest_text(queue, waiting, counts, now)
            anchor = waiting[0] if waiting else None
            if anchor is None:
                continue  # only pending tickets: nothing to anchor a post to, nothing waiting
            # pinned to this queue: the anchor ticket may move before the post goes out
            self._ping(repo, anchor, now, text, [], in_thread=False, queue=queue.name)
            sent += 1
        repo.audit(now, SYSTEM, "digest.sent", None, f"{sent} queue(s)")
        return sent

    def _ping(
        self,
        repo: Repository,
        ticket: Ticket,
        now: datetime,
        text: str,
        users: Sequence[str],
        *,
        in_thread: bool,
        queue: str | None = None,
    ) -> None:
        target = self._config.queue(queue or ticket.queue)
        payload: dict[str, object] = {"text": text, "users": list(users), "in_thread": in_thread}
        if queue is not None:
            payload["queue"] = queue
        for channel in target.bindings(self._config):
            repo.enqueue(channel, "ping", ticket_id(ticket), now, payload=payload)


def digest_text(
    queue: QueueConfig, waiting: Sequence[Ticket], counts: dict[str, int], now: datetime
) -> str:
    """``📋 info: 3 new, 2 open, 1 pending · oldest unclaimed waits 2d 4h``, plus the oldest few."""
    new = counts.get("new", 0)
    open_ = counts.get("open", 0)
    pending = counts.get("pending_reminder", 0) + counts.get("pending_autoclose", 0)
    lines = [f"📋 Daily digest for {queue.name}: {new} new, {open_} open, {pending} pending"]
    unclaimed = [t for t in waiting if t.owner is None]
    if unclaimed:
        oldest = min(unclaimed, key=lambda t: t.created_at)
        lines[0] += f" · oldest unclaimed waits {format_duration(now - oldest.created_at)}"
        for t in sorted(unclaimed, key=lambda t: (-t.priority, t.created_at))[:5]:
            lines.append(f"• {t.number} · priority {t.priority} · {_subject(queue, t)[:70]}")
    return "\n".join(lines)


def _subject(queue: QueueConfig, ticket: Ticket) -> str:
    """The subject as a reminder shows it: masked where the queue shows pseudonyms."""
    return mask(ticket.subject) if queue.pseudonymize else ticket.subject
