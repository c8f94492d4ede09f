"""The reports as text for a chat message and as CSV for a spreadsheet.

The text is a monospace table meant for a code block, kept under
:data:`MAX_TEXT_CHARS` (Discord cuts messages at 2,000): when the queues do not fit,
the last are summed up as "and N more", and the CSV files have them all.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

from bot.reports.data import ActivityData, DurationStats, TrafficData

MAX_TEXT_CHARS = 1900
NAME_WIDTH = 16
#: The kinds of action the activity table shows in columns; the rest go under "other".
ACTIVITY_COLUMNS = ("claim", "reply", "note", "close")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: A Matrix user id: a localpart of the characters the spec allows, and a server name.
_MATRIX_ID = re.compile(r"@[a-z0-9._=/+-]+:[A-Za-z0-9.:\[\]-]+")


def format_duration(seconds: float | None) -> str:
    """``45m``, ``5.2h``, ``3.1d``: short enough for a table column, precise enough to
    tell a slow week from a normal one."""
    if seconds is None:
        return "–"
    if seconds < 3600:
        return f"{max(0, round(seconds / 60))}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def format_age(seconds: int | None) -> str:
    """Whole units, as a badge says it: ``40m``, ``5h``, ``3d``."""
    if seconds is None:
        return "–"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _cut(name: str, width: int = NAME_WIDTH) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _fit(title: str, header: str, rows: Sequence[str], footer: Sequence[str], what: str) -> str:
    """Title, header, as many rows as fit, "and N more", footer: under the limit."""
    shown = list(rows)
    while True:
        hidden = len(rows) - len(shown)
        more = [f"… and {hidden} more {what} (all are in the CSV)"] if hidden else []
        text = "\n".join([title, header, *shown, *more, *footer])
        if len(text) < MAX_TEXT_CHARS or not shown:
            return text[: MAX_TEXT_CHARS - 1]
        shown.pop()


def _times(stats: DurationStats) -> str:
    return f"{format_duration(stats.median_seconds):>6} {format_duration(stats.p90_seconds):>6}"


def traffic_table(data: TrafficData, label: str) -> str:
    """Per queue: received, backlog from the period's start to its end, and the medians
    and 90th percentiles of first response and time to close."""
    header = (
        f"{'queue':<{NAME_WIDTH}} {'recv':>5} {'backlog':>9}  "
        f"{'reply':>6} {'p90':>6}  {'close':>6} {'p90':>6}"
    )

    def row(name: str, received: int, before: int, after: int, reply: str, close: str) -> str:
        backlog = f"{before}→{after}"
        return f"{_cut(name):<{NAME_WIDTH}} {received:>5} {backlog:>9}  {reply}  {close}"

    rows = [
        row(
            q.queue,
            q.total_received,
            q.backlog_before,
            q.backlog[-1] if q.backlog else q.backlog_before,
            _times(q.first_response),
            _times(q.time_to_close),
        )
        for q in data.queues
    ]
    footer: list[str] = []
    if len(data.queues) > 1:
        totals = data.backlog_per_day
        footer.append(
            row(
                "all",
                data.total_received,
                data.backlog_before,
                totals[-1] if totals else data.backlog_before,
                _times(data.all_first_response),
                _times(data.all_time_to_close),
            )
        )
    per_day = data.received_per_day
    if per_day and any(per_day):
        busiest = max(range(len(per_day)), key=lambda i: per_day[i])
        day = data.days[busiest]
        footer.append(f"busiest day: {day:%a %Y-%m-%d}, {per_day[busiest]} received")
    footer.append(
        f"of the {data.total_received} received: {data.all_first_response.count} answered, "
        f"{data.all_time_to_close.count} closed"
    )
    if not data.queues:
        return f"Traffic, {label}\nno tickets in these queues"
    return _fit(f"Traffic, {label}", header, rows, footer, "queues")


def _csv(rows: Iterable[Sequence[object]]) -> bytes:
    """UTF-8 with a byte-order mark, so spreadsheet programs read umlauts right."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_safe(value) for value in row])
    return buffer.getvalue().encode("utf-8-sig")


def _safe(value: object) -> object:
    """Text that a spreadsheet would run as a formula (a chat name like ``=HYPERLINK(…)``)
    is prefixed with a quote, as OWASP advises for CSV files. A Matrix user id starts
    with ``@`` too, but its characters cannot make a formula, so it is left readable."""
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_START)
        and not _MATRIX_ID.fullmatch(value)
    ):
        return "'" + value
    return value


def _hours(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 3600:.2f}"


def traffic_csv(data: TrafficData) -> bytes:
    """One row per day and queue: tickets received that day, backlog at its end."""
    rows: list[Sequence[object]] = [("date", "queue", "received", "backlog")]
    for i, day in enumerate(data.days):
        for q in data.queues:
            rows.append((day.isoformat(), q.queue, q.received[i], q.backlog[i]))
    return _csv(rows)


def times_csv(data: TrafficData) -> bytes:
    """One row per queue, and ``(all)``: first response and time to close, in hours."""
    rows: list[Sequence[object]] = [
        (
            "queue",
            "answered_tickets",
            "first_response_median_hours",
            "first_response_p90_hours",
            "closed_tickets",
            "close_median_hours",
            "close_p90_hours",
        )
    ]
    lines = [(q.queue, q.first_response, q.time_to_close) for q in data.queues]
    lines.append(("(all)", data.all_first_response, data.all_time_to_close))
    for name, reply, close in lines:
        rows.append(
            (
                name,
                reply.count,
                _hours(reply.median_seconds),
                _hours(reply.p90_seconds),
                close.count,
                _hours(close.median_seconds),
                _hours(close.p90_seconds),
            )
        )
    return _csv(rows)


def activity_table(data: ActivityData, label: str) -> str:
    """Per volunteer: claims, replies, notes, closes, everything else, and when they
    last did anything (also after the period)."""
    columns = "".join(f" {kind:>5}" for kind in ACTIVITY_COLUMNS)
    header = f"{'volunteer':<{NAME_WIDTH}}{columns} {'other':>5} {'total':>5}  last active"
    rows = []
    for volunteer in data.volunteers:
        shown = sum(volunteer.count(kind) for kind in ACTIVITY_COLUMNS)
        counts = "".join(f" {volunteer.count(kind):>5}" for kind in ACTIVITY_COLUMNS)
        last = f"{volunteer.last_active:%Y-%m-%d}" if volunteer.last_active else "never"
        rows.append(
            f"{_cut(volunteer.name or volunteer.actor_id):<{NAME_WIDTH}}{counts} "
            f"{volunteer.total - shown:>5} {volunteer.total:>5}  {last}"
        )
    if not rows:
        return f"Activity, {label}\nno volunteer did anything in this period"
    total = sum(v.total for v in data.volunteers)
    active = sum(1 for v in data.volunteers if v.total)
    footer = [f"{total} actions by {active} volunteer{'s' if active != 1 else ''}"]
    return _fit(f"Activity, {label}", header, rows, footer, "volunteers")


def activity_csv(data: ActivityData) -> bytes:
    """One row per volunteer, one column per kind of action seen."""
    kinds = data.kinds
    rows: list[Sequence[object]] = [("volunteer", "name", *kinds, "total", "last_active")]
    for v in data.volunteers:
        last = v.last_active.isoformat() if v.last_active else ""
        rows.append((v.actor_id, v.name, *(v.count(k) for k in kinds), v.total, last))
    return _csv(rows)
