"""Generated help-desk traffic, written straight into the tables, with its ground truth.

Each ticket gets a life like a real one (arrival, claim, a reply after a while, notes,
closing; some are spam, duplicates merged away, waits that close themselves, requesters
writing again, replies withdrawn or bounced) and the rows the bot itself would have
written for it: the ticket, its articles and its audit lines, with the action names the
core uses. The state machine of :mod:`bot.domain` is replayed here in plain Python to
get each ticket's state, and the history of its open/closed status, so the tests can
check the SQL of ``storage/reports.py`` against counts made without it.

Traffic follows the week (quiet weekends), has busy days, and has a slow fortnight
when answers take much longer, so a chart of it looks like a desk's.

Also a command, for the benchmark and for ``scripts/demo-stats.sh``::

    python -m tests.reports.seed --url sqlite:///tmp/desk.db --end 2026-11-23 --days 42
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.domain import SYSTEM, TicketState
from bot.routing import format_ticket_number
from storage import models as m
from storage.database import is_sqlite, open_database
from storage.migrations import migrate

SYSTEM_ID = 10


@dataclass(frozen=True)
class Volunteer:
    platform: str
    user_id: str
    name: str


@dataclass(frozen=True)
class QueueProfile:
    """How busy a queue is and how fast its volunteers are (medians, in hours)."""

    name: str
    per_day: float
    response_hours: float
    close_hours: float
    volunteers: tuple[Volunteer, ...]


ALICE = Volunteer("matrix", "@alice:example.org", "Alice")
BOB = Volunteer("matrix", "@bob:example.org", "Bob")
CAROL = Volunteer("discord", "discord:402983741234567890", "Carol")
JUERGEN = Volunteer("matrix", "@juergen:example.org", "Jürgen")
DANA = Volunteer("matrix", "@dana:example.org", "Dana")

PROFILES = (
    QueueProfile("info", 14.0, 5.0, 30.0, (ALICE, BOB, CAROL)),
    QueueProfile("info::de", 4.0, 9.0, 40.0, (JUERGEN, ALICE)),
    QueueProfile("permissions", 7.0, 14.0, 60.0, (BOB, DANA)),
    QueueProfile("press", 2.0, 3.0, 20.0, (CAROL, DANA)),
)


@dataclass
class Event:
    at: datetime
    actor: Volunteer
    action: str
    detail: str = ""


@dataclass
class ArticleRow:
    ticket_id: int
    kind: str
    created_at: datetime
    author: str
    send_state: str | None = None
    sent_at: datetime | None = None
    held: bool = False


@dataclass
class SeedTicket:
    id: int
    number: str
    queue: str
    created_at: datetime
    requester: str
    spam_at_intake: bool = False
    events: list[Event] = field(default_factory=list)
    articles: list[ArticleRow] = field(default_factory=list)
    state: str = TicketState.NEW.value
    owner: Volunteer | None = None
    merged_into: int | None = None
    pending_until: datetime | None = None
    #: (time, closed?) after every change of the open/closed status, from the replay.
    status: list[tuple[datetime, bool]] = field(default_factory=list)
    updated_at: datetime | None = None

    def closed_at(self, moment: datetime) -> bool:
        """Closed at ``moment``, by the replayed state machine (False before creation)."""
        closed = self.spam_at_intake
        for at, value in self.status:
            if at >= moment:
                break
            closed = value
        return closed


@dataclass
class Seeded:
    """Everything written, as it was written."""

    tickets: list[SeedTicket] = field(default_factory=list)
    now: datetime = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    @property
    def articles(self) -> Iterator[ArticleRow]:
        for ticket in self.tickets:
            yield from ticket.articles

    def by_id(self) -> dict[int, SeedTicket]:
        return {t.id: t for t in self.tickets}


SYSTEM_VOLUNTEER = Volunteer(SYSTEM.platform, SYSTEM.user_id, SYSTEM.display_name)


def _lognormal(rng: random.Random, median_hours: float, sigma: float = 1.0) -> timedelta:
    return timedelta(hours=median_hours * math.exp(rng.gauss(0.0, sigma)))


def _day_factor(day: date, busy: set[date]) -> float:
    weekday = day.weekday()
    factor = 0.35 if weekday >= 5 else (1.15 if weekday == 0 else 1.0)
    return factor * (2.6 if day in busy else 1.0)


def _arrival(rng: random.Random, day: date) -> datetime:
    """Mail comes in through the day, most of it in European office hours."""
    hour = min(23.99, max(0.0, rng.gauss(12.5, 4.0)))
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class Generator:
    """Makes tickets day by day; ``slow`` days stretch every answer and closing."""

    def __init__(
        self,
        rng: random.Random,
        now: datetime,
        profiles: Sequence[QueueProfile] = PROFILES,
        scale: float = 1.0,
        slow: set[date] | None = None,
        busy: set[date] | None = None,
    ) -> None:
        self.rng = rng
        self.now = now
        self.profiles = profiles
        self.scale = scale
        self.slow = slow or set()
        self.busy = busy or set()
        self.next_id = 1
        self.counters: dict[date, int] = {}
        self._people = 0

    def day(self, day: date) -> list[SeedTicket]:
        """The day's tickets, numbered in the order their mail arrived."""
        factor = _day_factor(day, self.busy) * self.scale
        arrivals = [
            (_arrival(self.rng, day), profile)
            for profile in self.profiles
            for _ in range(_poisson(self.rng, profile.per_day * factor))
        ]
        arrivals.sort(key=lambda arrival: arrival[0])
        tickets: list[SeedTicket] = []
        for created, profile in arrivals:
            if created > self.now:
                continue
            count = self.counters.get(day, 0) + 1
            self.counters[day] = count
            self._people += 1
            ticket = SeedTicket(
                id=self.next_id,
                number=format_ticket_number(day, SYSTEM_ID, count),
                queue=profile.name,
                created_at=created,
                requester=f"person{self._people}@example.net",
            )
            self.next_id += 1
            self._life(ticket, profile, day in self.slow, tickets)
            tickets.append(ticket)
        for ticket in tickets:
            replay(ticket, self.now)
        return tickets

    def _life(
        self, ticket: SeedTicket, profile: QueueProfile, slow_day: bool, earlier: list[SeedTicket]
    ) -> None:
        rng = self.rng
        slow = 4.0 if slow_day else 1.0
        created = ticket.created_at
        ticket.articles.append(ArticleRow(ticket.id, "inbound", created, ticket.requester))
        ticket.events.append(
            Event(created, SYSTEM_VOLUNTEER, "ticket.created", f"from {ticket.requester}")
        )
        fate = rng.random()
        if fate < 0.03:
            ticket.spam_at_intake = True
            ticket.events.append(Event(created, SYSTEM_VOLUNTEER, "ticket.routed", "spam"))
            return
        ticket.events.append(
            Event(created, SYSTEM_VOLUNTEER, "ticket.routed", f"routed to {profile.name}")
        )
        who = rng.choice(profile.volunteers)
        answer_at = created + _lognormal(rng, profile.response_hours * slow)
        ticket.events.append(Event(answer_at - timedelta(minutes=2), who, "ticket.claim"))
        if fate < 0.07:
            ticket.events.append(Event(answer_at, who, "ticket.spam"))
            return
        if fate < 0.10:
            targets = [t for t in earlier if t.queue == profile.name and _mergeable(t)]
            if targets:
                _merge(ticket, rng.choice(targets), answer_at, who)
                return
        if rng.random() < 0.3:
            note_at = answer_at - timedelta(minutes=1)
            ticket.events.append(Event(note_at, who, "ticket.note", "article"))
            ticket.articles.append(ArticleRow(ticket.id, "note", note_at, who.user_id))
        if fate > 0.95:  # never answered: still waiting, or given up on after a while
            if rng.random() < 0.6:
                given_up = created + _lognormal(rng, 12 * 24 * slow, 0.5)
                ticket.events.append(Event(given_up, who, "ticket.close", "unsuccessful"))
            return
        if rng.random() < 0.05:
            withdrawn = answer_at - timedelta(seconds=30)
            ticket.articles.append(
                ArticleRow(ticket.id, "reply", withdrawn, who.user_id, "cancelled")
            )
            ticket.events.append(Event(withdrawn + timedelta(seconds=5), who, "ticket.undo"))
        if rng.random() < 0.03:
            ticket.articles.append(ArticleRow(ticket.id, "reply", answer_at, who.user_id, "failed"))
            answer_at += timedelta(hours=1)
        _reply(ticket, who, answer_at)
        closing = answer_at + _lognormal(rng, profile.close_hours * slow, 0.8)
        if rng.random() < 0.1:
            wait = answer_at + timedelta(minutes=3)
            ticket.events.append(Event(wait, who, "ticket.pending", "autoclose"))
            ticket.pending_until = wait + timedelta(days=7)
            ticket.events.append(
                Event(ticket.pending_until, SYSTEM_VOLUNTEER, "ticket.autoclosed", "")
            )
            return
        ticket.events.append(Event(closing, who, "ticket.close"))
        roll = rng.random()
        if roll < 0.15:  # the requester writes again
            again = closing + timedelta(hours=rng.uniform(1, 120))
            ticket.articles.append(ArticleRow(ticket.id, "inbound", again, ticket.requester))
            ticket.events.append(Event(again, SYSTEM_VOLUNTEER, "ticket.follow_up"))
            ticket.events.append(
                Event(again + timedelta(seconds=1), SYSTEM_VOLUNTEER, "ticket.reopened")
            )
            second = again + _lognormal(rng, profile.response_hours * slow)
            _reply(ticket, who, second)
            if rng.random() < 0.8:
                ticket.events.append(Event(second + timedelta(hours=2), who, "ticket.close"))
        elif roll < 0.17:  # closed, then found to be spam after all: no change of status
            ticket.events.append(Event(closing + timedelta(hours=3), who, "ticket.spam"))
        elif roll < 0.20:  # reopened by hand and closed again
            back = closing + timedelta(hours=rng.uniform(2, 30))
            ticket.events.append(Event(back, who, "ticket.reopen"))
            ticket.events.append(Event(back + timedelta(hours=1), who, "ticket.close"))
        if rng.random() < 0.03:  # a stranger writes into the thread: held, not the requester
            stray = created + timedelta(hours=rng.uniform(1, 48))
            ticket.articles.append(
                ArticleRow(ticket.id, "inbound", stray, "stranger@example.com", held=True)
            )
            ticket.events.append(Event(stray, SYSTEM_VOLUNTEER, "ticket.held"))


def _reply(ticket: SeedTicket, who: Volunteer, at: datetime) -> None:
    ticket.articles.append(
        ArticleRow(ticket.id, "reply", at, who.user_id, "sent", at + timedelta(seconds=12))
    )
    ticket.events.append(Event(at, who, "ticket.reply", "article"))


def _mergeable(ticket: SeedTicket) -> bool:
    """``!merge`` refuses a target that is spam or itself merged; keep clear of both."""
    return not ticket.spam_at_intake and not any(
        e.action == "ticket.spam" or e.detail.startswith("merged into") for e in ticket.events
    )


def _merge(source: SeedTicket, target: SeedTicket, at: datetime, who: Volunteer) -> None:
    """``!merge``: the source closes as merged, its mail moves, a closed target reopens
    (and is closed again a little later, as a volunteer would after answering)."""
    target_was_closed = _closed_before(target, at)
    source.events.append(Event(at, who, "ticket.merge", f"merged into {target.number}"))
    target.events.append(
        Event(at, who, "ticket.merge", f"{source.number} merged in (1 article(s))")
    )
    source.merged_into = target.id
    for article in source.articles:
        article.ticket_id = target.id
    target.articles.extend(source.articles)
    source.articles = []
    if target_was_closed:
        target.events.append(Event(at + timedelta(hours=2), who, "ticket.close"))


def _closed_before(ticket: SeedTicket, at: datetime) -> bool:
    closed = False
    for _, state in _states(sorted((e for e in ticket.events if e.at < at), key=_when), False):
        closed = state.is_closed
    return closed


def _when(event: Event) -> datetime:
    return event.at


def _states(events: Sequence[Event], spam_at_intake: bool) -> Iterator[tuple[Event, TicketState]]:
    """The domain's state machine (bot/domain.py) over audit lines, as the bot writes them."""
    state = TicketState.SPAM if spam_at_intake else TicketState.NEW
    for event in events:
        action = event.action
        if action in ("ticket.claim", "ticket.reply") and state is TicketState.NEW:
            state = TicketState.OPEN
        elif action == "ticket.pending":
            state = TicketState.PENDING_AUTOCLOSE
        elif action in ("ticket.close", "ticket.autoclosed"):
            state = TicketState.CLOSED_SUCCESSFUL
        elif action == "ticket.spam":
            state = TicketState.SPAM
        elif action in ("ticket.reopen", "ticket.reopened"):
            state = TicketState.OPEN
        elif action == "ticket.merge":
            if event.detail.startswith("merged into "):
                state = TicketState.MERGED
            elif state.is_closed:
                state = TicketState.OPEN
        yield event, state


def replay(ticket: SeedTicket, now: datetime) -> None:
    """Drop what lies after ``now`` and run the domain's state machine over the rest."""
    ticket.events = sorted((e for e in ticket.events if e.at <= now), key=_when)
    ticket.articles = [a for a in ticket.articles if a.created_at <= now]
    for article in ticket.articles:
        if article.sent_at is not None and article.sent_at > now:
            article.send_state, article.sent_at = "queued", None
    state = TicketState.SPAM if ticket.spam_at_intake else TicketState.NEW
    owner: Volunteer | None = None
    status: list[tuple[datetime, bool]] = []
    for event, after in _states(ticket.events, ticket.spam_at_intake):
        if event.action == "ticket.claim":
            owner = event.actor
        elif after in (TicketState.SPAM, TicketState.MERGED):
            owner = None
        if after.is_closed != state.is_closed:
            status.append((event.at, after.is_closed))
        state = after
    ticket.state = state.value
    ticket.owner = owner
    ticket.status = status
    if not state.is_pending:
        ticket.pending_until = None
    ticket.updated_at = max([ticket.created_at, *(e.at for e in ticket.events)])


def generate(
    end: date,
    days: int,
    *,
    now: datetime | None = None,
    seed: int = 7,
    scale: float = 1.0,
    profiles: Sequence[QueueProfile] = PROFILES,
    first_id: int = 1,
) -> Iterator[list[SeedTicket]]:
    """Tickets for the ``days`` days up to and including ``end``, one list per day.

    ``now`` (default: noon of ``end``) is when the data is looked at: what would happen
    later has not happened yet, so recent tickets are still open.
    """
    now = now or datetime(end.year, end.month, end.day, 12, tzinfo=UTC)
    rng = random.Random(seed)
    first = end - timedelta(days=days - 1)
    all_days = [first + timedelta(days=n) for n in range(days)]
    busy = {d for d in all_days if rng.random() < 0.05}
    slow: set[date] = set()
    if days >= 28:  # a slow fortnight two thirds of the way through: the backlog grows
        slow_start = first + timedelta(days=days * 2 // 3 - 7)
        slow = {slow_start + timedelta(days=n) for n in range(14)}
    generator = Generator(rng, now, profiles, scale, slow, busy)
    generator.next_id = first_id
    for day in all_days:
        yield generator.day(day)


# --- writing the rows ----------------------------------------------------------------------------


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def insert(tickets: Sequence[SeedTicket]) -> None:
    """Write the tickets, their articles and audit lines (inside the caller's transaction).

    Ids of tickets are the generator's: a desk already holding tickets gets the new ones
    after its highest id.
    """
    if not tickets:
        return
    queue_ids: dict[str, int] = {}
    for name in sorted({t.queue for t in tickets}):
        row = m.Queue.get_or_none(m.Queue.name == name)
        if row is None:
            row = m.Queue.create(name=name, created_at=datetime(2020, 1, 1, tzinfo=UTC))
        queue_ids[name] = int(row.id)
    ticket_rows: list[dict[str, Any]] = [
        {
            "id": t.id,
            "number": t.number,
            "queue": queue_ids[t.queue],
            "state": t.state,
            "owner": t.owner.user_id if t.owner else None,
            "owner_name": t.owner.name if t.owner else None,
            "subject": f"Question {t.number[-4:]}",
            "requester_email": t.requester,
            "requester_name": "Requester",
            "created_at": t.created_at,
            "updated_at": t.updated_at or t.created_at,
            "version": len(t.events),
            "priority": 3,
            "language": "en",
            "pending_until": t.pending_until,
            "merged_into_id": t.merged_into,
            "linked_to_id": None,
            "owner_active_at": None,
            "reminded_at": None,
        }
        for t in tickets
    ]
    for chunk in _chunks(ticket_rows, 1000):
        m.Ticket.insert_many(chunk).execute()
    article_rows: list[dict[str, Any]] = [
        {
            "ticket": a.ticket_id,
            "kind": a.kind,
            "author": a.author,
            "author_name": "",
            "subject": "Re: question" if a.kind == "reply" else "Question",
            "body": "text",
            "message_id": None,
            "in_reply_to": "",
            "references": "[]",
            "to_addrs": "[]",
            "cc_addrs": "[]",
            "auto_kind": "",
            "raw_message": None,
            "send_state": a.send_state,
            "send_attempts": 1 if a.send_state else 0,
            "sent_at": a.sent_at,
            "last_error": "",
            "created_at": a.created_at,
            "held": int(a.held),
        }
        for t in tickets
        for a in t.articles
    ]
    article_rows.sort(key=lambda r: r["created_at"])
    for chunk in _chunks(article_rows, 1000):
        m.Article.insert_many(chunk).execute()
    audit_rows: list[dict[str, Any]] = [
        {
            "at": e.at,
            "actor_platform": e.actor.platform,
            "actor_id": e.actor.user_id,
            "actor_name": e.actor.name,
            "action": e.action,
            "ticket": t.id,
            "detail": e.detail,
        }
        for t in tickets
        for e in t.events
    ]
    audit_rows.sort(key=lambda r: r["at"])
    for chunk in _chunks(audit_rows, 2000):
        m.AuditEntry.insert_many(chunk).execute()


def finish(counters: dict[date, int]) -> None:
    """Day counters as the bot keeps them, and PostgreSQL's id sequence past our ids."""
    for day, value in counters.items():
        m.TicketCounter.insert(day=day.isoformat(), value=value).on_conflict(
            conflict_target=[m.TicketCounter.day], update={m.TicketCounter.value: value}
        ).execute()
    db = m.database_proxy.obj
    if not is_sqlite(db):
        db.execute_sql(
            "SELECT setval(pg_get_serial_sequence('ticket', 'id'), "
            "(SELECT COALESCE(MAX(id), 1) FROM ticket))"
        )


def seed_database(url: str, days: Iterable[list[SeedTicket]], keep: bool = True) -> Seeded:
    """Write generated days into the database at ``url`` (migrated first), 20,000 tickets
    a transaction; the tickets are kept in the result only if ``keep``."""
    db = open_database(url)
    db.connect()
    previous = m.database_proxy.obj
    try:
        migrate(db)
        m.database_proxy.initialize(db)
        seeded = Seeded()
        batch: list[SeedTicket] = []
        counters: dict[date, int] = {}
        for day_tickets in days:
            batch.extend(day_tickets)
            if keep:
                seeded.tickets.extend(day_tickets)
            for ticket in day_tickets:
                day = ticket.created_at.date()
                counters[day] = max(counters.get(day, 0), int(ticket.number[-6:]))
            if len(batch) >= 20_000:
                with db.atomic():
                    insert(batch)
                batch.clear()
        with db.atomic():
            insert(batch)
            finish(counters)
        return seeded
    finally:
        m.database_proxy.obj = previous
        db.close()


def _next_ticket_id(url: str) -> int:
    """After the highest ticket id of a database that has tickets already, so another run
    can add days before (or after) those it holds."""
    db = open_database(url)
    try:
        db.connect()
        if not db.table_exists("ticket"):
            return 1
        cursor = db.execute_sql("SELECT COALESCE(MAX(id), 0) + 1 FROM ticket")  # type: ignore[no-untyped-call]
        return int(cursor.fetchone()[0])
    finally:
        db.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reports.seed",
        description="Fill a ticketbot database with generated traffic (for the benchmark "
        "and the demo chart). The database is created if missing; a second run may add "
        "days before or after those a first one wrote.",
    )
    parser.add_argument("--url", required=True, help="storage url, e.g. sqlite:///tmp/desk.db")
    parser.add_argument("--end", type=date.fromisoformat, default=datetime.now(UTC).date())
    parser.add_argument("--days", type=int, default=42)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every queue's rate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--now", help="ISO time the data is looked at (default: noon UTC of --end)")
    args = parser.parse_args(argv)
    now = datetime.fromisoformat(args.now).astimezone(UTC) if args.now else None
    started = time.monotonic()
    days = generate(
        args.end,
        args.days,
        now=now,
        seed=args.seed,
        scale=args.scale,
        first_id=_next_ticket_id(args.url),
    )
    seed_database(args.url, days, keep=False)
    print(f"seeded in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
