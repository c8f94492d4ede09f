"""The traffic and response-time charts, as PNG bytes.

Drawn on a :class:`matplotlib.figure.Figure` with its own Agg canvas, never through
``pyplot``: pyplot keeps global state (current figure, a GUI backend) that two reports
drawn at once on the bot's worker threads would share. matplotlib is imported when a
chart is drawn, not when the bot starts, since most runs never draw one.

1000 x 600 pixels, 40-120 KB: readable in a chat client's preview, small to upload.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date
from typing import Any

from bot.reports.data import DurationStats, QueueTraffic, TrafficData

WIDTH_INCHES, HEIGHT_INCHES, DPI = 10.0, 6.0, 100
#: More queues than this are drawn as the busiest ones and "other".
MAX_SERIES = 8
#: Weekends are shaded up to this many days; beyond, the shading would be noise.
SHADE_WEEKENDS_UP_TO = 92
COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
)
OTHER_COLOUR = "#bab0ac"


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    return figure, FigureCanvasAgg(figure)


def _png(figure: Any, canvas: Any) -> bytes:
    buffer = io.BytesIO()
    # no "Software" text chunk: the same data gives the same bytes on every version
    canvas.print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def _series(queues: Sequence[QueueTraffic]) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """(name, received, backlog) per line drawn: the busiest queues, the rest as "other"."""
    if len(queues) <= MAX_SERIES:
        return [(q.queue, q.received, q.backlog) for q in queues]
    ranked = sorted(queues, key=lambda q: (-q.total_received, -max(q.backlog or (0,)), q.queue))
    shown, rest = ranked[: MAX_SERIES - 1], ranked[MAX_SERIES - 1 :]
    shown.sort(key=lambda q: q.queue)
    lines = [(q.queue, q.received, q.backlog) for q in shown]
    received = tuple(sum(day) for day in zip(*(q.received for q in rest), strict=True))
    backlog = tuple(sum(day) for day in zip(*(q.backlog for q in rest), strict=True))
    lines.append((f"{len(rest)} other queues", received, backlog))
    return lines


def _colour(index: int, name: str) -> str:
    if name.endswith("other queues"):
        return OTHER_COLOUR
    return COLOURS[index % len(COLOURS)]


def _shade_weekends(axes: Any, days: Sequence[date]) -> None:
    if len(days) > SHADE_WEEKENDS_UP_TO:
        return
    for i, day in enumerate(days):
        if day.weekday() >= 5:
            axes.axvspan(i - 0.5, i + 0.5, color="#f2f2f2", zorder=0, linewidth=0)


def _day_ticks(days: Sequence[date]) -> tuple[list[int], list[str]]:
    """Every day for a week or two, Mondays for a few months, first days of months beyond."""
    if len(days) <= 16:
        chosen = list(range(len(days)))
        return chosen, [f"{days[i]:%a}\n{days[i].day} {days[i]:%b}" for i in chosen]
    if len(days) <= 120:
        chosen = [i for i, day in enumerate(days) if day.weekday() == 0]
        return chosen, [f"{days[i].day} {days[i]:%b}" for i in chosen]
    chosen = [i for i, day in enumerate(days) if day.day == 1]
    return chosen, [f"{days[i]:%b}\n{days[i]:%Y}" for i in chosen]


def _stacked_bars(
    axes: Any,
    heights: Sequence[int],
    bottoms: Sequence[int],
    width: float,
    colour: str,
    *,
    label: str,
) -> None:
    """One series of stacked day bars as a single artist.

    ``axes.bar`` makes one patch per bar and updates the data limits after each: for
    a month of eight queues that was a third of the drawing time. The limits are set
    by the caller anyway, so the bars go in as one collection without touching them.
    """
    from matplotlib.collections import PolyCollection

    half = width / 2
    boxes = [
        ((i - half, low), (i - half, low + high), (i + half, low + high), (i + half, low))
        for i, (high, low) in enumerate(zip(heights, bottoms, strict=True))
        if high
    ]
    bars = PolyCollection(boxes, facecolors=colour, linewidths=0, zorder=2, label=label)
    axes.add_collection(bars, autolim=False)


def traffic_chart(data: TrafficData, label: str) -> bytes:
    """Tickets received per queue per day (stacked bars), and the backlog at the end of
    each day (one line per queue and the total), one panel above the other."""
    figure, canvas = _figure()
    grid = figure.add_gridspec(2, 1, height_ratios=(3, 2), hspace=0.08)
    received_axes = figure.add_subplot(grid[0])
    backlog_axes = figure.add_subplot(grid[1], sharex=received_axes)
    days = list(data.days)
    x = list(range(len(days)))
    series = _series(data.queues)
    width = 0.8 if len(days) <= 120 else 1.0
    bottom = [0] * len(days)
    for index, (name, received, backlog) in enumerate(series):
        colour = _colour(index, name)
        _stacked_bars(
            received_axes, received, bottom, width, colour, label=f"{name} ({sum(received)})"
        )
        bottom = [b + r for b, r in zip(bottom, received, strict=True)]
        if len(series) > 1:
            backlog_axes.plot(x, backlog, color=colour, linewidth=1.4, zorder=3)
    total_backlog = data.backlog_per_day
    backlog_axes.plot(
        x, total_backlog, color="#222222", linewidth=2.4, label="all queues", zorder=4
    )
    if total_backlog:
        backlog_axes.annotate(
            str(total_backlog[-1]),
            (x[-1], total_backlog[-1]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=9,
        )
    for axes in (received_axes, backlog_axes):
        _shade_weekends(axes, days)
        axes.grid(axis="y", color="#dddddd", linewidth=0.8, zorder=1)
        axes.set_axisbelow(True)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
        axes.yaxis.get_major_locator().set_params(integer=True)
    received_axes.set_ylabel("received per day")
    backlog_axes.set_ylabel("backlog (not closed)")
    received_axes.set_ylim(bottom=0, top=max([*bottom, 1]) * 1.3)  # room for the legend
    backlog_axes.set_ylim(bottom=0, top=max([*total_backlog, 1]) * 1.25)
    received_axes.tick_params(labelbottom=False)
    ticks, labels = _day_ticks(days)
    backlog_axes.set_xticks(ticks, labels, fontsize=8)
    backlog_axes.set_xlim(-0.6, len(days) - 0.4)
    if series:
        received_axes.legend(
            loc="upper left",
            fontsize=8,
            ncol=min(4, max(1, len(series))),
            frameon=False,
            title="queue (received in the period)",
            title_fontsize=8,
        )
    if len(series) > 1:
        # the queues' thin lines take the bars' colours; one grey line stands for them
        backlog_axes.plot([], [], color="#999999", linewidth=1.4, label="each queue")
    backlog_axes.legend(loc="upper left", fontsize=8, frameon=False, ncol=2)
    figure.suptitle(f"Tickets received per day, and backlog at the end of each day\n{label}")
    figure.subplots_adjust(left=0.07, right=0.96, top=0.88, bottom=0.1)
    if not data.queues:
        received_axes.text(
            0.5, 0.5, "no tickets", transform=received_axes.transAxes, ha="center", fontsize=14
        )
    return _png(figure, canvas)


def _hours(value: float | None) -> float:
    return 0.0 if value is None else value / 3600


def _bar_label(value: float | None) -> str:
    if value is None:
        return "–"
    hours = value / 3600
    return f"{hours:.1f}" if hours < 10 else f"{hours:.0f}"


def response_chart(data: TrafficData, label: str) -> bytes:
    """Time to first response and time to close per queue: median and 90th percentile
    side by side, in hours, with the number of tickets each figure is drawn from."""
    figure, canvas = _figure()
    groups: list[tuple[str, DurationStats, DurationStats]] = [
        (q.queue, q.first_response, q.time_to_close)
        for q in sorted(data.queues, key=lambda q: -q.total_received)[: MAX_SERIES + 4]
    ]
    groups.sort(key=lambda group: group[0])
    if len(data.queues) > 1:
        groups.append(("all", data.all_first_response, data.all_time_to_close))
    panels = (
        (figure.add_subplot(1, 2, 1), "time to first response", [g[1] for g in groups]),
        (figure.add_subplot(1, 2, 2), "time to close", [g[2] for g in groups]),
    )
    positions = list(range(len(groups)))
    bar = 0.38
    for axes, title, stats in panels:
        medians = [_hours(s.median_seconds) for s in stats]
        p90s = [_hours(s.p90_seconds) for s in stats]
        left = axes.bar(
            [p - bar / 2 for p in positions],
            medians,
            width=bar,
            color="#4e79a7",
            label="median",
            zorder=2,
        )
        right = axes.bar(
            [p + bar / 2 for p in positions],
            p90s,
            width=bar,
            color="#a0cbe8",
            label="90th percentile",
            zorder=2,
        )
        axes.bar_label(
            left,
            labels=[_bar_label(s.median_seconds) for s in stats],
            fontsize=8,
            padding=2,
        )
        axes.bar_label(
            right,
            labels=[_bar_label(s.p90_seconds) for s in stats],
            fontsize=8,
            padding=2,
        )
        axes.set_xticks(
            positions,
            [f"{g[0]}\nn={s.count}" for g, s in zip(groups, stats, strict=True)],
            fontsize=8,
            rotation=0 if len(groups) <= 6 else 30,
        )
        axes.set_title(title, fontsize=11)
        axes.set_ylabel("hours")
        axes.set_ylim(bottom=0, top=max([*p90s, *medians, 1.0]) * 1.15)
        axes.grid(axis="y", color="#dddddd", linewidth=0.8, zorder=1)
        axes.set_axisbelow(True)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
        axes.legend(loc="upper left", fontsize=8, frameon=False)
    figure.suptitle(
        f"Time to first response and to close · tickets received: {label}\n"
        "median and 90th percentile in hours; n = tickets measured",
        fontsize=11,
    )
    figure.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.14, wspace=0.22)
    return _png(figure, canvas)
