"""Reports on the desk: traffic and response times, volunteers' activity, backlog badges.

The figures come from storage (``storage/reports.py``, as :mod:`bot.reports.data`
values); this package turns them into what a command answers with: a short text table
and files (charts, CSV, badges). It imports no storage and no adapter, so the command
layer can call it with data fetched in ``store.run`` and hand the files to any platform.

Drawing a chart takes a few tenths of a second of CPU: call :func:`stats_report` off the
event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.files import ResultFile
from bot.reports.badge import badge_json, badge_svg, file_stems
from bot.reports.charts_worker import ChartDrawer, draw_stats_charts
from bot.reports.data import ActivityData, BadgeData, TrafficData
from bot.reports.tables import (
    activity_csv,
    activity_table,
    times_csv,
    traffic_csv,
    traffic_table,
)

TRAFFIC_PNG = "stats-traffic.png"
TIMES_PNG = "stats-times.png"
TRAFFIC_CSV = "stats-traffic.csv"
TIMES_CSV = "stats-times.csv"
ACTIVITY_CSV = "activity.csv"

CSV = "text/csv"
PNG = "image/png"


@dataclass(frozen=True)
class Report:
    """A command's answer: the text to show and the files to attach."""

    text: str
    files: tuple[ResultFile, ...]


def stats_report(data: TrafficData, label: str, drawer: ChartDrawer | None = None) -> Report:
    """``stats``: the table, the traffic and response-time charts, and both as CSV.

    The charts are drawn in a child process that stays up between reports
    (:mod:`bot.reports.charts_worker`) so the bot itself never imports matplotlib (about
    55 MB it would keep for good); pass a ``drawer`` made before the figures were read
    so a child not yet running starts while they are.
    """
    if drawer is None:
        traffic_png, times_png = draw_stats_charts(data, label)
    else:
        traffic_png, times_png = drawer.draw(data, label)
    return Report(
        text=traffic_table(data, label),
        files=(
            ResultFile(TRAFFIC_PNG, PNG, traffic_png),
            ResultFile(TIMES_PNG, PNG, times_png),
            ResultFile(TRAFFIC_CSV, CSV, traffic_csv(data)),
            ResultFile(TIMES_CSV, CSV, times_csv(data)),
        ),
    )


def activity_report(data: ActivityData, label: str | None = None) -> Report:
    """``activity``: the table and the CSV with every kind of action."""
    if label is None:
        last = data.end - timedelta(microseconds=1)
        label = f"{data.start:%Y-%m-%d} – {last:%Y-%m-%d}"
    return Report(
        text=activity_table(data, label),
        files=(ResultFile(ACTIVITY_CSV, CSV, activity_csv(data)),),
    )


def badge_files(badges: Sequence[BadgeData]) -> list[ResultFile]:
    """``NAME.svg`` and ``NAME.json`` per queue, with file-safe names (``info--de``)."""
    files: list[ResultFile] = []
    stems = file_stems([badge.queue for badge in badges])
    for stem, badge in zip(stems, badges, strict=True):
        files.append(ResultFile(f"{stem}.svg", "image/svg+xml", badge_svg(badge).encode()))
        files.append(ResultFile(f"{stem}.json", "application/json", badge_json(badge).encode()))
    return files


__all__ = [
    "ChartDrawer",
    "Report",
    "activity_report",
    "badge_files",
    "stats_report",
]
