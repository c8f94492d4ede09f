"""stats, activity and the weekly report through the command layer, on a real store."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.reports.weekly import WeeklyReport
from tests.core.conftest import ALICE, BOB, MALLORY, Desk, mail, make_desk

EXTRA = {
    "admins": [ALICE.user_id],
    "reports": {"weekly": "mon 08:00", "matrix_room": "!admins:example.org"},
}


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    desk = await make_desk(tmp_path, extra=EXTRA)
    yield desk
    await desk.store.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


async def seed(desk: Desk) -> dict[str, int]:
    """Three days of mail: info gets 1, 2, 3 a day, press one on the last day."""
    received = {"info": 0, "press": 0}
    for day in range(3):
        for _ in range(day + 1):
            outcome = await desk.receive(mail(f"Day {day}"))
            received["info"] += 1
            assert (await desk.command(BOB, f"!claim {outcome.ticket_number}")).ok
        desk.clock.advance(24 * 3600)
    await desk.receive(mail("Press", to="press@example.org"))
    received["press"] += 1
    return received


async def test_stats_answers_with_charts_a_table_and_csv_that_match_the_counts(
    desk: Desk,
) -> None:
    received = await seed(desk)
    result = await desk.command(ALICE, "!stats --week")
    assert result.ok, result.message
    names = [f.name for f in result.files]
    assert names == ["stats-traffic.png", "stats-times.png", "stats-traffic.csv", "stats-times.csv"]
    for file in result.files[:2]:
        width, height = png_size(file.data)
        assert 600 <= width <= 2000 and 400 <= height <= 1500
        assert 10_000 < len(file.data) < 400_000
    lines = {line.split()[0]: line.split() for line in result.message.splitlines() if line}
    assert lines["info"][1] == str(received["info"])
    assert lines["press"][1] == str(received["press"])
    csv_rows = result.files[2].data.decode().splitlines()
    info_total = sum(int(row.split(",")[2]) for row in csv_rows[1:] if row.split(",")[1] == "info")
    assert info_total == received["info"]


async def test_volunteers_see_stats_of_their_queues_only(desk: Desk) -> None:
    await seed(desk)
    refused = await desk.command(ALICE, "!stats press")
    assert refused.ok  # alice is an admin: every queue
    mine = await desk.command(MALLORY, "!stats")
    assert not mine.ok and "not a volunteer" in mine.message
    bob = await desk.command(BOB, "!stats --from 2026-13-01 --to 2026-12-01")
    assert not bob.ok and "2026-13-01" in bob.message
    nobody = await desk.command(BOB, "!stats nosuchqueue")
    assert not nobody.ok and "nosuchqueue" in nobody.message


async def test_activity_is_for_admins_and_counts_actions(desk: Desk) -> None:
    await seed(desk)
    assert not (await desk.command(BOB, "!activity")).ok
    result = await desk.command(ALICE, "!activity")
    assert result.ok, result.message
    bob_line = next(line for line in result.message.splitlines() if line.startswith("Bob"))
    assert "6" in bob_line.split()  # six claims
    assert result.files[0].name == "activity.csv"
    assert "@bob:example.org" in result.files[0].data.decode()


async def test_weekly_report_is_posted_once_at_its_time(desk: Desk) -> None:
    await seed(desk)
    assert desk.live is not None
    weekly = WeeklyReport(desk.live, desk.store, desk.clock, {"matrix": desk.chat})
    desk.clock.current = datetime(2026, 11, 30, 7, 59, tzinfo=UTC)  # a Monday
    assert await weekly.tick() is False  # last week's time passed more than a day ago
    desk.clock.current = datetime(2026, 11, 30, 8, 5, tzinfo=UTC)
    assert await weekly.tick() is True
    assert await weekly.tick() is False
    (room, text, files, _key) = desk.chat.reports[0]
    assert room == "!admins:example.org"
    assert "Weekly traffic report, week 2026-11-23 – 2026-11-29" in text
    assert [f.content_type for f in files][:2] == ["image/png", "image/png"]
    assert len(desk.chat.reports) == 1
    desk.clock.current = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)  # down over a Monday
    assert await weekly.tick() is False
    assert len(desk.chat.reports) == 1


async def test_weekly_report_retries_after_a_failed_post(desk: Desk) -> None:
    assert desk.live is not None
    weekly = WeeklyReport(desk.live, desk.store, desk.clock, {"matrix": desk.chat})
    desk.clock.current = datetime(2026, 11, 30, 8, 1, tzinfo=UTC)
    desk.chat.fail_next = 1
    with pytest.raises(ConnectionError):
        await weekly.tick()
    assert await weekly.tick() is True
    assert len(desk.chat.reports) == 1
