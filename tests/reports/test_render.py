"""The stats report as a chat answer: PNG charts, CSV files, a short text table."""

from __future__ import annotations

import csv
import io
import struct
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.reports import stats_report
from bot.reports.data import DurationStats, QueueTraffic, TrafficData
from bot.reports.tables import MAX_TEXT_CHARS, format_duration, traffic_table
from storage.reports import ReportQueries
from storage.store import SqlStore
from tests.reports import expected
from tests.reports.conftest import END_DAY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


async def month(store: SqlStore) -> TrafficData:
    start = expected.midnight(END_DAY - timedelta(days=29))
    end = expected.midnight(END_DAY + timedelta(days=1))
    return await store.run(lambda repo: ReportQueries().report_traffic(None, start, end))


async def test_stats_report_is_two_charts_two_csv_files_and_a_table(store: SqlStore) -> None:
    data = await month(store)
    report = stats_report(data, "last 30 days")
    assert [(f.name, f.content_type) for f in report.files] == [
        ("stats-traffic.png", "image/png"),
        ("stats-times.png", "image/png"),
        ("stats-traffic.csv", "text/csv"),
        ("stats-times.csv", "text/csv"),
    ]
    for chart in report.files[:2]:
        assert png_size(chart.data) == (1000, 600)
        assert 15_000 < len(chart.data) < 300_000, chart.name
        assert chart.is_image
    assert len(report.text) < MAX_TEXT_CHARS
    assert report.text.startswith("Traffic, last 30 days")


async def test_the_traffic_csv_has_a_row_per_day_and_queue(store: SqlStore) -> None:
    data = await month(store)
    rows = read_csv(stats_report(data, "x").files[2].data)
    assert len(rows) == len(data.days) * len(data.queues)
    by_key = {(r["date"], r["queue"]): r for r in rows}
    for line in data.queues:
        for i, day in enumerate(data.days):
            row = by_key[(day.isoformat(), line.queue)]
            assert int(row["received"]) == line.received[i]
            assert int(row["backlog"]) == line.backlog[i]


async def test_the_times_csv_has_hours_per_queue_and_for_all(store: SqlStore) -> None:
    data = await month(store)
    rows = read_csv(stats_report(data, "x").files[3].data)
    assert [r["queue"] for r in rows] == [*(q.queue for q in data.queues), "(all)"]
    info = rows[0]
    stats = data.queues[0].first_response
    assert int(info["answered_tickets"]) == stats.count
    assert stats.median_seconds is not None
    assert float(info["first_response_median_hours"]) == pytest.approx(
        stats.median_seconds / 3600, abs=0.005
    )
    assert int(rows[-1]["closed_tickets"]) == data.all_time_to_close.count


async def test_the_table_shows_each_queue_and_the_totals(store: SqlStore) -> None:
    data = await month(store)
    text = traffic_table(data, "last 30 days")
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["queue", "recv", "backlog"]
    info = next(line for line in lines if line.startswith("info "))
    q = data.queues[0]
    assert info.split()[1:3] == [str(q.total_received), f"{q.backlog_before}→{q.backlog[-1]}"]
    assert format_duration(q.first_response.median_seconds) in info
    assert any(line.startswith("all ") for line in lines)
    assert "busiest day:" in text


def synthetic(queues: int, days: int = 7) -> TrafficData:
    first = date(2026, 11, 17)
    lines = tuple(
        QueueTraffic(
            queue=f"queue-number-{n:03d}::sub",
            received=tuple((n + d) % 5 for d in range(days)),
            backlog=tuple(n + d for d in range(days)),
            backlog_before=n,
            first_response=DurationStats(3, 1800.0 * (n + 1), 7200.0 * (n + 1)),
            time_to_close=DurationStats(0, None, None),
        )
        for n in range(queues)
    )
    return TrafficData(
        start=datetime(2026, 11, 17, tzinfo=UTC),
        end=datetime(2026, 11, 17, tzinfo=UTC) + timedelta(days=days),
        days=tuple(first + timedelta(days=d) for d in range(days)),
        queues=lines,
        all_first_response=DurationStats(3 * queues, 3600.0, 9000.0),
        all_time_to_close=DurationStats.empty(),
    )


def test_many_queues_are_cut_to_fit_a_chat_message() -> None:
    text = traffic_table(synthetic(60), "a week")
    assert len(text) < MAX_TEXT_CHARS
    assert "… and " in text and " more queues (all are in the CSV)" in text
    hidden = int(text.split("… and ")[1].split()[0])
    shown = sum(1 for line in text.splitlines() if line.startswith("queue-number-"))
    assert shown + hidden == 60
    assert "queue-number-00…" in text, "long names are shortened"


def test_many_queues_still_draw_and_a_long_period_too() -> None:
    report = stats_report(synthetic(20, days=200), "200 days")
    assert png_size(report.files[0].data) == (1000, 600)
    assert len(report.files[0].data) < 300_000
    assert png_size(report.files[1].data) == (1000, 600)


def test_an_empty_period_still_gives_charts_and_a_table() -> None:
    empty = TrafficData(
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 11, 8, tzinfo=UTC),
        days=tuple(date(2026, 11, d) for d in range(1, 8)),
        queues=(),
        all_first_response=DurationStats.empty(),
        all_time_to_close=DurationStats.empty(),
    )
    report = stats_report(empty, "a quiet week")
    assert "no tickets" in report.text
    assert png_size(report.files[0].data) == (1000, 600)
    assert read_csv(report.files[2].data) == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "–"),
        (59, "1m"),
        (2700, "45m"),
        (5 * 3600, "5.0h"),
        (47.9 * 3600, "47.9h"),
        (3 * 86400, "3.0d"),
    ],
)
def test_durations_are_short(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
