"""The figures the reports are drawn from, as plain frozen values.

Storage computes them (``storage/reports.py``) and the core renders them (charts,
tables, badges), so neither side needs the other's types: these hold only numbers,
queue names, dates and volunteer ids, never a requester's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class DurationStats:
    """Median and 90th percentile of one kind of waiting time, over ``count`` tickets.

    Percentiles are interpolated linearly between the two nearest ranks (as numpy's
    default and ``statistics.quantiles(method="inclusive")`` do), so a report of a
    handful of tickets still gives a figure that lies between real values.
    """

    count: int
    median_seconds: float | None
    p90_seconds: float | None

    @classmethod
    def empty(cls) -> DurationStats:
        return cls(0, None, None)


@dataclass(frozen=True)
class QueueTraffic:
    """One queue over the report's days; ``received`` and ``backlog`` align with its days."""

    queue: str
    received: tuple[int, ...]
    #: Tickets not closed (new, open or pending) at the end of each day.
    backlog: tuple[int, ...]
    #: Backlog at the start of the period (the end of the day before), for "12 -> 9".
    backlog_before: int
    first_response: DurationStats
    time_to_close: DurationStats

    @property
    def total_received(self) -> int:
        return sum(self.received)

    @property
    def is_empty(self) -> bool:
        return (
            not any(self.received)
            and not any(self.backlog)
            and not self.backlog_before
            and not self.first_response.count
            and not self.time_to_close.count
        )


@dataclass(frozen=True)
class TrafficData:
    """Tickets received and backlog per queue per day, and response times, for a period.

    The period is ``[start, end)`` in UTC; ``days`` are the UTC dates it covers. The
    ``all_*`` statistics are over every ticket of the selected queues together (a
    median of medians would not be one).
    """

    start: datetime
    end: datetime
    days: tuple[date, ...]
    queues: tuple[QueueTraffic, ...]
    all_first_response: DurationStats
    all_time_to_close: DurationStats

    @property
    def received_per_day(self) -> tuple[int, ...]:
        return tuple(sum(q.received[i] for q in self.queues) for i in range(len(self.days)))

    @property
    def backlog_per_day(self) -> tuple[int, ...]:
        return tuple(sum(q.backlog[i] for q in self.queues) for i in range(len(self.days)))

    @property
    def total_received(self) -> int:
        return sum(q.total_received for q in self.queues)

    @property
    def backlog_before(self) -> int:
        return sum(q.backlog_before for q in self.queues)


@dataclass(frozen=True)
class VolunteerActivity:
    """What one volunteer did in the period, by kind of action."""

    actor_id: str
    name: str
    #: (kind, count) pairs, most frequent first; kinds are audit actions without the
    #: ``ticket.`` prefix: claim, reply, note, close, ...
    counts: tuple[tuple[str, int], ...]
    #: Their last action of any kind, also after the period; None if they never acted.
    last_active: datetime | None

    @property
    def total(self) -> int:
        return sum(count for _, count in self.counts)

    def count(self, kind: str) -> int:
        return dict(self.counts).get(kind, 0)


@dataclass(frozen=True)
class ActivityData:
    """Volunteers' actions in ``[start, end)``, busiest first."""

    start: datetime
    end: datetime
    volunteers: tuple[VolunteerActivity, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind of action seen, most frequent first (the CSV's columns)."""
        totals: dict[str, int] = {}
        for volunteer in self.volunteers:
            for kind, count in volunteer.counts:
                totals[kind] = totals.get(kind, 0) + count
        return tuple(sorted(totals, key=lambda k: (-totals[k], k)))


@dataclass(frozen=True)
class BadgeData:
    """How many tickets of one queue wait for an answer, and for how long the oldest has.

    Counts and an age only: a badge may be shown on a public page.
    """

    queue: str
    waiting: int
    oldest_age_seconds: int | None
    generated_at: datetime
