"""The reports' figures counted in plain Python from what the seeder wrote.

Deliberately naive: a loop over every ticket for every day, statuses from the seeder's
replay of the domain's state machine, percentiles from :mod:`statistics`. Nothing here
shares code with ``storage/reports.py``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from bot.reports.data import DurationStats
from tests.reports.seed import Seeded, SeedTicket

CLOSED_NOW_LEFT_OUT = ("spam", "merged")


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def in_queues(ticket: SeedTicket, queues: list[str] | None) -> bool:
    return queues is None or any(
        ticket.queue == q or ticket.queue.startswith(q + "::") for q in queues
    )


def received(
    seeded: Seeded, start: datetime, end: datetime, days: list[date]
) -> dict[str, list[int]]:
    counts = Counter(
        (t.queue, t.created_at.date()) for t in seeded.tickets if start <= t.created_at < end
    )
    queues = sorted({t.queue for t in seeded.tickets})
    return {q: [counts[(q, day)] for day in days] for q in queues}


def backlog_at(seeded: Seeded, queue: str, moment: datetime) -> int:
    return sum(
        1
        for t in seeded.tickets
        if t.queue == queue and t.created_at < moment and not t.closed_at(moment)
    )


def backlog(
    seeded: Seeded, start: datetime, end: datetime, days: list[date]
) -> dict[str, tuple[int, list[int]]]:
    """Per queue: the backlog at ``start``, and at the end of each day (or at ``end``)."""
    queues = sorted({t.queue for t in seeded.tickets})
    result = {}
    for q in queues:
        per_day = [
            backlog_at(seeded, q, min(midnight(day + timedelta(days=1)), end)) for day in days
        ]
        result[q] = (backlog_at(seeded, q, start), per_day)
    return result


def stats(values: list[float]) -> DurationStats:
    if not values:
        return DurationStats.empty()
    if len(values) == 1:
        return DurationStats(1, values[0], values[0])
    p90 = statistics.quantiles(values, n=10, method="inclusive")[8]
    return DurationStats(len(values), statistics.median(values), p90)


def first_responses(
    seeded: Seeded, start: datetime, end: datetime, queues: list[str] | None = None
) -> dict[str, list[float]]:
    """Seconds to the first sent reply, per queue, for tickets created in the period."""
    result: dict[str, list[float]] = {}
    for t in seeded.tickets:
        if not (start <= t.created_at < end) or not in_queues(t, queues):
            continue
        sent = [
            a.sent_at
            for a in t.articles
            if a.kind == "reply"
            and a.send_state == "sent"
            and a.sent_at is not None
            and a.created_at >= t.created_at
        ]
        if sent:
            result.setdefault(t.queue, []).append((min(sent) - t.created_at).total_seconds())
    return result


def times_to_close(
    seeded: Seeded, start: datetime, end: datetime, queues: list[str] | None = None
) -> dict[str, list[float]]:
    """Seconds to the first close or auto-close, for tickets created in the period that
    are not spam or merged now."""
    result: dict[str, list[float]] = {}
    for t in seeded.tickets:
        if not (start <= t.created_at < end) or not in_queues(t, queues):
            continue
        if t.state in CLOSED_NOW_LEFT_OUT:
            continue
        closes = [e.at for e in t.events if e.action in ("ticket.close", "ticket.autoclosed")]
        if closes:
            result.setdefault(t.queue, []).append((min(closes) - t.created_at).total_seconds())
    return result


def waiting(seeded: Seeded, now: datetime) -> dict[str, tuple[int, int | None]]:
    """Per queue: tickets new or open with a requester's mail that no answering reply
    came after, and the age in seconds of the longest wait (since the first such mail)."""
    since_by_queue: dict[str, list[datetime]] = {}
    for t in seeded.tickets:
        if t.state not in ("new", "open"):
            continue
        replies = [
            a.created_at
            for a in t.articles
            if a.kind == "reply" and a.send_state in (None, "queued", "sent")
        ]
        unanswered = [
            a.created_at
            for a in t.articles
            if a.kind == "inbound" and not a.held and not any(r >= a.created_at for r in replies)
        ]
        since = min(unanswered) if unanswered else None
        if since is not None:
            since_by_queue.setdefault(t.queue, []).append(since)
    result: dict[str, tuple[int, int | None]] = {}
    for q in sorted({t.queue for t in seeded.tickets}):
        times = since_by_queue.get(q, [])
        age = int((now - min(times)).total_seconds()) if times else None
        result[q] = (len(times), age)
    return result


def activity(seeded: Seeded, start: datetime, end: datetime) -> dict[str, Counter[str]]:
    """Per volunteer id: actions by kind in the period; the bot's own are not theirs."""
    result: dict[str, Counter[str]] = {}
    for t in seeded.tickets:
        for e in t.events:
            if e.actor.platform == "system" or not (start <= e.at < end):
                continue
            result.setdefault(e.actor.user_id, Counter())[e.action.removeprefix("ticket.")] += 1
    return result
