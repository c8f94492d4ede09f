"""The figures behind the traffic, activity and backlog reports, aggregated in SQL.

Everything is counted by the database (``GROUP BY`` queue and day, window functions for
ranks) so a month's report reads a few thousand aggregated rows however large the desk
has grown; only the answer, never the tickets, comes back to Python. The same SQL runs on
SQLite (3.25 or later, for window functions) and PostgreSQL: the two places where they
differ (seconds between two timestamps, and how a date comes back) are spelled out below.

How the figures are defined (docs/reports.md says the same for readers):

* **received**: tickets by the UTC day of their ``created_at``, under their current queue
  (a moved ticket counts where it is now); spam and merged tickets included, since they
  arrived.
* **backlog**: tickets not closed (new, open or pending) at the end of each day. A ticket's
  open/closed history is replayed from the audit log: the actions in
  :data:`CLOSING_ACTIONS` close it, those in :data:`REOPENING_ACTIONS` open it again, and
  ``ticket.merge`` does either (``merged into N`` on the ticket folded away closes it;
  ``N merged in`` on the ticket it goes into reopens that one if it was closed). Only
  actions that change the status count (a spam mark on a closed ticket changes nothing).
* **first response**: from creation to the first reply that was sent (its ``sent_at``);
  replies withdrawn, failed, still queued or awaiting approval are not responses, nor
  are notes or the bot's acknowledgements.
* **time to close**: from creation to the first ``ticket.close`` or ``ticket.autoclosed``;
  tickets that are spam or merged now are left out: closing them answered nobody.
* **waiting** (badges): new or open (not pending, not closed) and no reply since the
  requester last wrote: waiting since their first mail that no reply came after (the
  ticket's first mail, if it never had a reply). A reply counts once sent or on its way (in
  its undo delay, or retried); one withdrawn, failed, or a trainee's draft awaiting
  approval does not. Mail held from an unknown sender is not the requester writing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.domain import SYSTEM, ArticleKind, SendState, TicketState
from bot.reports.data import (
    ActivityData,
    BadgeData,
    DurationStats,
    QueueTraffic,
    TrafficData,
    VolunteerActivity,
)
from storage import models as m
from storage.database import is_sqlite

#: Audit actions after which a ticket is closed: ``!close`` and ``!spam``
#: (bot/actions/state.py, ``ticket.<command>``) and a pending auto-close falling due
#: (bot/reminders.py).
CLOSING_ACTIONS = ("ticket.close", "ticket.spam", "ticket.autoclosed")
#: Audit actions after which a closed ticket is open again: ``!reopen`` (which also ends
#: a pending wait, changing nothing here) and a requester's mail (bot/intake.py).
REOPENING_ACTIONS = ("ticket.reopen", "ticket.reopened")
#: ``!merge`` writes this on both tickets (bot/actions/moves.py); the detail tells which.
MERGE_ACTION = "ticket.merge"
#: The detail of the merge line on the ticket that was folded away (and so closed).
MERGED_AWAY = "merged into %"
STATUS_ACTIONS = (*CLOSING_ACTIONS, *REOPENING_ACTIONS, MERGE_ACTION)
#: The closings that end a volunteer's work on a ticket, for the time to close.
RESOLVING_ACTIONS = ("ticket.close", "ticket.autoclosed")
#: Not closed: what the backlog counts.
OPEN_STATES = tuple(s.value for s in TicketState if not s.is_closed)
#: Not closed and not pending: what can be waiting for an answer.
ACTIVE_STATES = (TicketState.NEW.value, TicketState.OPEN.value)
#: Replies that answer the requester: sent, or on their way (the undo delay, a retry).
#: Withdrawn, failed and drafts waiting for approval answer nobody.
ANSWERING_REPLY_STATES = (SendState.QUEUED.value, SendState.SENT.value)
#: Actors that are not volunteers: the bot itself and admin commands (erase, retention).
NOT_VOLUNTEER_PLATFORMS = (SYSTEM.platform, "cli")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; reports work in UTC")
    return value.astimezone(UTC)


def _naive(value: datetime) -> datetime:
    """As the columns hold it: naive UTC (see :class:`storage.fields.UtcDateTimeField`)."""
    return _utc(value).replace(tzinfo=None)


def _as_date(value: Any) -> date:
    """SQLite gives ``DATE(x)`` as text, PostgreSQL as a date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _as_datetime(value: Any) -> datetime:
    """An aggregate (``MIN``, ``MAX``) has no column type: SQLite returns the stored text."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _placeholders(values: Sequence[Any]) -> str:
    return "(" + ", ".join("?" for _ in values) + ")"


def _rows(sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` written with ``?`` placeholders (no literal ``?`` or ``%`` in its text)."""
    db = m.database_proxy.obj
    cursor = db.execute_sql(sql.replace("?", db.param), tuple(params))
    return [tuple(row) for row in cursor.fetchall()]


def _seconds(later: str, earlier: str) -> str:
    """SQL for the seconds from ``earlier`` to ``later``, two timestamp expressions."""
    if is_sqlite(m.database_proxy.obj):
        return f"((julianday({later}) - julianday({earlier})) * 86400.0)"
    return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"


def _filter_only(column: str, number: bool = False) -> str:
    """``column`` as an expression no index can serve (in SQLite and PostgreSQL alike).

    SQLite's planner has no statistics unless someone ran ANALYZE, and then prefers an
    equality lookup to a range: it would take ``ticket.queue_id IN (...)`` (every
    ticket of those queues, ever) over a month's range of ticket numbers, and
    ``audit_log.action IN (...)`` (every close the desk ever made) over a month of
    ``audit_log.at``. Where another index must lead, these are only filtered on.
    """
    return f"({column} + 0)" if number else f"({column} || '')"


def _number_day(day: date) -> str:
    return f"{day:%Y%m%d}"


def _created_in(alias: str, start: datetime, end: datetime) -> tuple[str, list[Any]]:
    """SQL selecting tickets created in ``[start, end)``, through the ticket-number index.

    ``created_at`` has no index, and a month among a million tickets should not read the
    whole table. Every ticket number starts with the UTC day it was created on
    (:func:`bot.routing.format_ticket_number`, called with the intake's clock), and
    numbers are unique, so indexed: the range of numbers of the days around the period
    finds the candidates, and ``created_at`` then decides exactly. The day of margin on
    either side keeps a ticket numbered just across midnight.
    """
    low = _number_day((start - timedelta(days=1)).date())
    high = _number_day((end + timedelta(days=2)).date())
    sql = (
        f"{alias}.number >= ? AND {alias}.number < ? "
        f"AND {alias}.created_at >= ? AND {alias}.created_at < ?"
    )
    return sql, [low, high, _naive(start), _naive(end)]


def _days(start: datetime, end: datetime) -> tuple[date, ...]:
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return tuple(first + timedelta(days=n) for n in range((last - first).days + 1))


def _percentile(ranked: dict[int, float], count: int, tenths: int) -> float | None:
    """Linear interpolation between the ranks around ``tenths``/10 of ``count`` values.

    In integers, as the SQL picks the ranks: ``(n - 1) * tenths / 10`` and its ceiling.
    """
    if count == 0:
        return None
    scaled = (count - 1) * tenths
    low, rest = divmod(scaled, 10)
    high = low + (1 if rest else 0)
    below, above = ranked[low], ranked[high]
    return below + (above - below) * rest / 10


class ReportQueries:
    """The reports' queries, as a mixin of :class:`storage.store.PeeweeRepository`.

    Read-only and stateless, so they run inside ``store.run(lambda repo: ...)`` on the
    store's thread, or on any thread whose models point at a database (the ``ticketbot
    stats`` command uses :func:`storage.maintenance.maintenance_database`).
    """

    # --- queues --------------------------------------------------------------------------------

    @staticmethod
    def _report_queues(queues: Sequence[str] | None) -> tuple[list[str], dict[int, str]]:
        """The queue names to report on, and the ids of those that exist.

        ``None`` is every queue the database knows; a name brings its sub-queues
        (``info`` -> ``info``, ``info::de``), each reported under its own name; a name
        given but never used still gets its (empty) line.
        """
        known = {
            int(queue_id): str(name)
            for queue_id, name in _rows("SELECT q.id, q.name FROM queue q", ())
        }
        if queues is None:
            return sorted(known.values()), known
        wanted = [q.strip() for q in queues if q.strip()]
        ids = {
            queue_id: name
            for queue_id, name in known.items()
            if any(name == w or name.startswith(f"{w}::") for w in wanted)
        }
        return sorted(set(ids.values()) | set(wanted)), ids

    # --- traffic -------------------------------------------------------------------------------

    def report_traffic(
        self, queues: Sequence[str] | None, start: datetime, end: datetime
    ) -> TrafficData:
        """Received, backlog and response times per queue for ``[start, end)`` (UTC).

        With ``queues`` None, queues with nothing at all in the period (old names no
        longer used) are left out; named queues are always shown.
        """
        start, end = _utc(start), _utc(end)
        if end <= start:
            raise ValueError(f"the period ends ({end:%Y-%m-%d %H:%M}) before it starts")
        days = _days(start, end)
        names, ids = self._report_queues(queues)
        received = self._traffic_received(ids, start, end)
        backlog_before, backlog_changes = self._traffic_backlog(ids, start, end)
        first_response = self._traffic_first_response(ids, start, end)
        time_to_close = self._traffic_time_to_close(ids, start, end)
        by_name = {name: queue_id for queue_id, name in ids.items()}
        lines: list[QueueTraffic] = []
        empty = DurationStats.empty()
        for name in names:
            queue_id = by_name.get(name, 0)  # 0: a queue named but never used, no id
            level = backlog_before.get(queue_id, 0)
            backlog: list[int] = []
            for day in days:
                level += backlog_changes.get((queue_id, day), 0)
                backlog.append(level)
            line = QueueTraffic(
                queue=name,
                received=tuple(received.get((queue_id, day), 0) for day in days),
                backlog=tuple(backlog),
                backlog_before=backlog_before.get(queue_id, 0),
                first_response=first_response.get(queue_id, empty),
                time_to_close=time_to_close.get(queue_id, empty),
            )
            if queues is not None or not line.is_empty:
                lines.append(line)
        return TrafficData(
            start=start,
            end=end,
            days=days,
            queues=tuple(lines),
            all_first_response=first_response.get(-1, DurationStats.empty()),
            all_time_to_close=time_to_close.get(-1, DurationStats.empty()),
        )

    @staticmethod
    def _traffic_received(
        ids: dict[int, str], start: datetime, end: datetime
    ) -> dict[tuple[int, date], int]:
        if not ids:
            return {}
        period, params = _created_in("t", start, end)
        rows = _rows(
            f"""
            SELECT t.queue_id, DATE(t.created_at) AS bucket, COUNT(*)
            FROM ticket t
            WHERE {period} AND {_filter_only("t.queue_id", True)} IN {_placeholders(list(ids))}
            GROUP BY t.queue_id, DATE(t.created_at)
            """,
            [*params, *ids],
        )
        return {(int(queue_id), _as_date(day)): int(n) for queue_id, day, n in rows}

    @staticmethod
    def _traffic_backlog(
        ids: dict[int, str], start: datetime, end: datetime
    ) -> tuple[dict[int, int], dict[tuple[int, date], int]]:
        """The backlog at ``start`` per queue, and its change on each day of the period.

        Only tickets whose status changed on or after ``start`` (by the audit log) need
        their history replayed; every other ticket has kept its current state since the
        period began, or since it was created in it. So the work grows with the tickets
        touched since the period's start, not with the size of the desk:

        * ``recent``: status actions since ``start``, through the ``at`` index;
        * ``earlier``: the status actions before ``start`` of the touched tickets that
          existed then, which decide whether they were open when the period began;
        * ``changes``: a ``LAG`` over each ticket's actions keeps those that changed its
          status: -1 on the day it closed, +1 on the day it opened again;
        * +1 on the day each touched ticket was created, and the day each ticket open now
          and untouched since ``start`` was (found through the state index).

        Days before the period are summed into the starting level. ``CROSS JOIN`` is an
        inner join whose left side SQLite always reads first: the few rows found through
        an index lead, and the big tables are only looked up (PostgreSQL plans it as any
        join).
        """
        if not ids:
            return {}, {}
        status = _placeholders(STATUS_ACTIONS)
        action = _filter_only("a.action")
        rows = _rows(
            f"""
            WITH recent AS (
                SELECT a.ticket_id, a.at, a.id, a.action, a.detail FROM audit_log a
                WHERE a.at >= ? AND {_filter_only("a.ticket_id", True)} IS NOT NULL
                    AND {action} IN {status}
            ),
            touched AS (SELECT DISTINCT ticket_id FROM recent),
            earlier AS (
                SELECT a.ticket_id, a.at, a.id, a.action, a.detail
                FROM touched CROSS JOIN ticket t CROSS JOIN audit_log a
                WHERE t.id = touched.ticket_id AND t.created_at < ?
                    AND a.ticket_id = t.id AND a.at < ? AND {action} IN {status}
            ),
            steps AS (
                SELECT e.ticket_id, e.at, e.id,
                    CASE WHEN e.action IN {_placeholders(CLOSING_ACTIONS)}
                        OR (e.action = ? AND e.detail LIKE ?) THEN 1 ELSE 0 END AS closed
                FROM (SELECT * FROM recent UNION ALL SELECT * FROM earlier) e
            ),
            changes AS (
                SELECT ticket_id, at, closed,
                    LAG(closed, 1, 0) OVER (PARTITION BY ticket_id ORDER BY at, id) AS was_closed
                FROM steps
            ),
            moves AS (
                SELECT t.queue_id AS q, c.at AS at, c.was_closed - c.closed AS delta
                FROM changes c CROSS JOIN ticket t
                WHERE t.id = c.ticket_id AND c.closed <> c.was_closed
                UNION ALL
                SELECT t.queue_id, t.created_at, 1 FROM touched CROSS JOIN ticket t
                WHERE t.id = touched.ticket_id
                UNION ALL
                SELECT t.queue_id, t.created_at, 1 FROM ticket t
                WHERE t.state IN {_placeholders(OPEN_STATES)}
                    AND t.id NOT IN (SELECT ticket_id FROM touched)
            )
            SELECT q, CASE WHEN at < ? THEN NULL ELSE DATE(at) END AS bucket, SUM(delta)
            FROM moves
            WHERE at < ? AND {_filter_only("q", True)} IN {_placeholders(list(ids))}
            GROUP BY q, bucket
            """,
            [
                _naive(start),
                *STATUS_ACTIONS,
                _naive(start),
                _naive(start),
                *STATUS_ACTIONS,
                *CLOSING_ACTIONS,
                MERGE_ACTION,
                MERGED_AWAY,
                *OPEN_STATES,
                _naive(start),
                _naive(end),
                *ids,
            ],
        )
        before: dict[int, int] = {}
        per_day: dict[tuple[int, date], int] = {}
        for queue_id, day, n in rows:
            if day is None:
                before[int(queue_id)] = before.get(int(queue_id), 0) + int(n)
            else:
                per_day[(int(queue_id), _as_date(day))] = int(n)
        return before, per_day

    @staticmethod
    def _report_durations(durations_sql: str, params: Sequence[Any]) -> dict[int, DurationStats]:
        """Median and p90 per queue (and for all, under id -1) of ``(q, s)`` rows: queue id
        and seconds.

        The database ranks the durations; only the (at most four) ranks the two
        percentiles interpolate between come back per queue.
        """
        rows = _rows(
            f"""
            WITH d AS ({durations_sql}),
            pooled AS (SELECT q, s FROM d UNION ALL SELECT -1, s FROM d),
            ranked AS (
                SELECT q, s,
                    ROW_NUMBER() OVER (PARTITION BY q ORDER BY s) - 1 AS i,
                    COUNT(*) OVER (PARTITION BY q) AS n
                FROM pooled
            )
            SELECT q, n, i, s FROM ranked
            WHERE i = (n - 1) / 2 OR i = n / 2
                OR i = ((n - 1) * 9) / 10 OR i = ((n - 1) * 9 + 9) / 10
            """,
            params,
        )
        counts: dict[int, int] = {}
        ranked: dict[int, dict[int, float]] = {}
        for queue_id, n, i, seconds in rows:
            counts[int(queue_id)] = int(n)
            ranked.setdefault(int(queue_id), {})[int(i)] = max(0.0, float(seconds))
        return {
            queue_id: DurationStats(
                count=n,
                median_seconds=_percentile(ranked[queue_id], n, 5),
                p90_seconds=_percentile(ranked[queue_id], n, 9),
            )
            for queue_id, n in counts.items()
        }

    def _traffic_first_response(
        self, ids: dict[int, str], start: datetime, end: datetime
    ) -> dict[int, DurationStats]:
        """Grouped by ``t.id + 0``, which no index orders, so SQLite cannot choose to walk
        every ticket in id order to save a sort: the period's tickets lead."""
        if not ids:
            return {}
        period, params = _created_in("t", start, end)
        sent = "MIN(COALESCE(a.sent_at, a.created_at))"
        return self._report_durations(
            f"""
            SELECT MIN(t.queue_id) AS q, {_seconds(sent, "MIN(t.created_at)")} AS s
            FROM ticket t CROSS JOIN article a
            WHERE a.ticket_id = t.id AND {period}
                AND {_filter_only("t.queue_id", True)} IN {_placeholders(list(ids))}
                AND a.kind = ? AND a.send_state = ? AND a.created_at >= t.created_at
            GROUP BY {_filter_only("t.id", True)}
            """,
            [*params, *ids, ArticleKind.REPLY.value, SendState.SENT.value],
        )

    def _traffic_time_to_close(
        self, ids: dict[int, str], start: datetime, end: datetime
    ) -> dict[int, DurationStats]:
        if not ids:
            return {}
        period, params = _created_in("t", start, end)
        left_out = (TicketState.SPAM.value, TicketState.MERGED.value)
        return self._report_durations(
            f"""
            SELECT MIN(t.queue_id) AS q, {_seconds("MIN(a.at)", "MIN(t.created_at)")} AS s
            FROM ticket t CROSS JOIN audit_log a
            WHERE a.ticket_id = t.id AND {period}
                AND {_filter_only("t.queue_id", True)} IN {_placeholders(list(ids))}
                AND t.state NOT IN {_placeholders(left_out)}
                AND {_filter_only("a.action")} IN {_placeholders(RESOLVING_ACTIONS)}
            GROUP BY {_filter_only("t.id", True)}
            """,
            [*params, *ids, *left_out, *RESOLVING_ACTIONS],
        )

    # --- activity ------------------------------------------------------------------------------

    def report_activity(
        self, start: datetime, end: datetime, volunteers: Sequence[str] = ()
    ) -> ActivityData:
        """Each volunteer's actions in ``[start, end)`` by kind, busiest first.

        The bot's own actions and admin commands (erase, retention) are not volunteer
        work and are left out. ``volunteers`` (ids from the configuration) are listed even
        with nothing in the period, so a team sees who has gone quiet.
        """
        start, end = _utc(start), _utc(end)
        # the ``at`` index leads; actor and action only filter and group (see _filter_only)
        actor, action = _filter_only("a.actor_id"), _filter_only("a.action")
        volunteer_only = (
            f"{_filter_only('a.actor_platform')} NOT IN "
            f"{_placeholders(NOT_VOLUNTEER_PLATFORMS)} AND {actor} <> ?"
        )
        not_bot = [*NOT_VOLUNTEER_PLATFORMS, SYSTEM.user_id]
        rows = _rows(
            f"""
            SELECT {actor}, MAX(a.actor_name), {action}, COUNT(*)
            FROM audit_log a
            WHERE a.at >= ? AND a.at < ? AND {volunteer_only}
            GROUP BY {actor}, {action}
            """,
            [_naive(start), _naive(end), *not_bot],
        )
        names: dict[str, str] = {}
        counts: dict[str, dict[str, int]] = {}
        for actor_id, name, done, n in rows:
            names.setdefault(actor_id, name or actor_id)
            kind = _kind(str(done))
            actor_counts = counts.setdefault(actor_id, {})
            actor_counts[kind] = actor_counts.get(kind, 0) + int(n)
        for volunteer in volunteers:
            counts.setdefault(volunteer, {})
        # whoever acted in the period last acted since its start: one more range read
        last = {
            str(actor_id): _as_datetime(at)
            for actor_id, at in _rows(
                f"""
                SELECT {actor}, MAX(a.at) FROM audit_log a
                WHERE a.at >= ? AND {volunteer_only}
                GROUP BY {actor}
                """,
                [_naive(start), *not_bot],
            )
        }
        for quiet in sorted(set(counts) - set(last)):  # named, and nothing since the start
            at, name = _rows(
                f"""
                SELECT MAX(a.at), MAX(a.actor_name) FROM audit_log a
                WHERE a.actor_id = ? AND {_filter_only("a.actor_platform")} NOT IN
                    {_placeholders(NOT_VOLUNTEER_PLATFORMS)}
                """,
                [quiet, *NOT_VOLUNTEER_PLATFORMS],
            )[0]
            if at is not None:
                last[quiet] = _as_datetime(at)
                names.setdefault(quiet, name or quiet)
        people = [
            VolunteerActivity(
                actor_id=actor_id,
                name=names.get(actor_id, actor_id),
                counts=tuple(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
                last_active=last.get(actor_id),
            )
            for actor_id, kinds in counts.items()
        ]
        people.sort(key=lambda v: (-v.total, v.name.lower(), v.actor_id))
        return ActivityData(start=start, end=end, volunteers=tuple(people))

    # --- backlog badges ------------------------------------------------------------------------

    def report_backlog(self, queues: Sequence[str] | None, now: datetime) -> list[BadgeData]:
        """Per queue: tickets waiting for an answer, and how long the oldest has waited.

        Read through the state index: only new and open tickets are looked at, and
        each one's articles through the article index. A ticket without any mail from
        its requester (there is none such in practice) is not waiting for an answer.
        """
        now = _utc(now)
        names, ids = self._report_queues(queues)
        found: dict[int, tuple[int, datetime]] = {}
        if ids:
            # waiting since the requester's first mail that no reply has answered: no
            # answering reply at or after it
            rows = _rows(
                f"""
                WITH waiting AS (
                    SELECT MIN(t.queue_id) AS q, MIN(i.created_at) AS since
                    FROM ticket t CROSS JOIN article i
                    WHERE t.state IN {_placeholders(ACTIVE_STATES)}
                        AND {_filter_only("t.queue_id", True)} IN {_placeholders(list(ids))}
                        AND i.ticket_id = t.id AND i.kind = ? AND i.held = 0
                        AND NOT EXISTS (
                            SELECT 1 FROM article r
                            WHERE r.ticket_id = t.id AND r.kind = ?
                                AND r.created_at >= i.created_at
                                AND (r.send_state IS NULL
                                    OR r.send_state IN {_placeholders(ANSWERING_REPLY_STATES)})
                        )
                    GROUP BY {_filter_only("t.id", True)}
                )
                SELECT q, COUNT(*), MIN(since) FROM waiting GROUP BY q
                """,
                [
                    *ACTIVE_STATES,
                    *ids,
                    ArticleKind.INBOUND.value,
                    ArticleKind.REPLY.value,
                    *ANSWERING_REPLY_STATES,
                ],
            )
            found = {int(q): (int(n), _as_datetime(since)) for q, n, since in rows}
        by_name = {name: queue_id for queue_id, name in ids.items()}
        badges = []
        for name in names:
            waiting, oldest = found.get(by_name.get(name, 0), (0, None))
            age = None if oldest is None else max(0, int((now - oldest).total_seconds()))
            badges.append(BadgeData(name, waiting, age, now))
        return badges


def _kind(action: str) -> str:
    """``ticket.claim`` -> ``claim``, ``volunteer.languages`` -> ``languages``."""
    prefix, _, rest = action.partition(".")
    return rest if prefix in ("ticket", "volunteer") and rest else action


__all__ = ["ReportQueries"]
