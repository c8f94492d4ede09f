"""``report_traffic``: tickets received and backlog per queue per day, and response times.

The seeded desk's figures are counted again in plain Python (tests/reports/expected.py)
and must agree exactly; a small desk driven through the real commands checks that the
audit actions the report replays are the ones the bot writes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain import SYSTEM
from bot.reports.data import DurationStats, TrafficData
from storage.reports import ReportQueries
from storage.store import SqlStore
from tests.core.conftest import ALICE, mail, make_desk
from tests.reports import expected
from tests.reports.conftest import END_DAY, SeededDb

QUERIES = ReportQueries()


async def traffic(
    store: SqlStore, queues: list[str] | None, start: datetime, end: datetime
) -> TrafficData:
    return await store.run(lambda repo: QUERIES.report_traffic(queues, start, end))


def assert_stats(actual: DurationStats, values: list[float]) -> None:
    want = expected.stats(values)
    assert actual.count == want.count
    if want.count:
        assert actual.median_seconds == pytest.approx(want.median_seconds, abs=0.01)
        assert actual.p90_seconds == pytest.approx(want.p90_seconds, abs=0.01)
    else:
        assert actual.median_seconds is None and actual.p90_seconds is None


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (END_DAY - timedelta(days=6), END_DAY),  # the last week, today half over
        (END_DAY - timedelta(days=29), END_DAY),  # the last 30 days
        (date(2026, 10, 20), date(2026, 11, 2)),  # in the middle, across a month's end
    ],
)
async def test_every_figure_agrees_with_a_plain_count(
    store: SqlStore, seeded_db: SeededDb, first: date, last: date
) -> None:
    start, end = expected.midnight(first), expected.midnight(last + timedelta(days=1))
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    data = await traffic(store, None, start, end)
    seeded = seeded_db.seeded

    assert data.days == tuple(days)
    assert [q.queue for q in data.queues] == ["info", "info::de", "permissions", "press"]
    want_received = expected.received(seeded, start, end, days)
    want_backlog = expected.backlog(seeded, start, end, days)
    replies = expected.first_responses(seeded, start, end)
    closes = expected.times_to_close(seeded, start, end)
    for line in data.queues:
        assert list(line.received) == want_received[line.queue], line.queue
        before, per_day = want_backlog[line.queue]
        assert line.backlog_before == before, line.queue
        assert list(line.backlog) == per_day, line.queue
        assert_stats(line.first_response, replies.get(line.queue, []))
        assert_stats(line.time_to_close, closes.get(line.queue, []))
    assert_stats(data.all_first_response, [s for v in replies.values() for s in v])
    assert_stats(data.all_time_to_close, [s for v in closes.values() for s in v])
    assert sum(data.received_per_day) == sum(
        1 for t in seeded.tickets if start <= t.created_at < end
    )


async def test_the_seeded_desk_has_what_the_report_must_handle(seeded_db: SeededDb) -> None:
    """The comparison above is only as good as the data: every kind of history is in it."""
    actions = {e.action for t in seeded_db.seeded.tickets for e in t.events}
    assert {
        "ticket.close",
        "ticket.spam",
        "ticket.autoclosed",
        "ticket.reopen",
        "ticket.reopened",
        "ticket.merge",
        "ticket.pending",
    } <= actions
    states = {t.state for t in seeded_db.seeded.tickets}
    assert {"new", "open", "pending_autoclose", "closed_successful", "spam", "merged"} <= states
    assert any(t.spam_at_intake for t in seeded_db.seeded.tickets)
    closed_twice = [
        t for t in seeded_db.seeded.tickets if sum(1 for _, closed in t.status if closed) > 1
    ]
    assert closed_twice, "reopened and closed again"
    sends = {a.send_state for a in seeded_db.seeded.articles if a.kind == "reply"}
    assert {"sent", "cancelled", "failed"} <= sends


async def test_a_queue_brings_its_sub_queues_and_the_same_figures(store: SqlStore) -> None:
    start = expected.midnight(END_DAY - timedelta(days=13))
    end = expected.midnight(END_DAY + timedelta(days=1))
    everything = await traffic(store, None, start, end)
    info = await traffic(store, ["info"], start, end)
    press = await traffic(store, ["press"], start, end)
    assert [q.queue for q in info.queues] == ["info", "info::de"]
    assert [q.queue for q in press.queues] == ["press"]
    by_name = {q.queue: q for q in everything.queues}
    for line in info.queues:
        assert line == by_name[line.queue]
    # all-queue statistics cover just the queues asked for
    assert info.all_first_response.count == sum(q.first_response.count for q in info.queues)
    assert press.all_time_to_close == press.queues[0].time_to_close


async def test_a_named_queue_without_tickets_gets_an_empty_line(store: SqlStore) -> None:
    start = expected.midnight(END_DAY - timedelta(days=6))
    data = await traffic(store, ["board"], start, start + timedelta(days=7))
    assert [q.queue for q in data.queues] == ["board"]
    line = data.queues[0]
    assert line.received == (0,) * 7 and line.backlog == (0,) * 7
    assert line.first_response == DurationStats.empty()
    assert data.all_time_to_close == DurationStats.empty()


async def test_a_period_before_any_ticket_is_empty(store: SqlStore) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    data = await traffic(store, None, start, start + timedelta(days=30))
    assert data.queues == () and len(data.days) == 30
    assert data.received_per_day == (0,) * 30 and data.backlog_per_day == (0,) * 30


async def test_a_period_must_have_a_length_and_a_time_zone(store: SqlStore) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="before it starts"):
        await traffic(store, None, start, start)
    with pytest.raises(ValueError, match="time zone"):
        await traffic(store, None, datetime(2026, 11, 1), datetime(2026, 11, 8))


# --- the real commands ---------------------------------------------------------------------------


async def test_the_backlog_follows_what_the_commands_write(tmp_path: Path) -> None:
    """Close, spam, merge, pending auto-close, a requester's reopening mail, ``!reopen``:
    each through the real desk, and the backlog at the end of each day follows."""
    desk = await make_desk(tmp_path)
    try:
        day0 = desk.clock.now().date()  # 2026-11-23, 10:00
        numbers = [
            (await desk.receive(mail(f"question {i}", sender=f"p{i}@example.net"))).ticket_number
            for i in range(7)
        ]
        first_mail = mail("with an id", sender="g@example.net", message_id="<g@example.net>")
        numbers.append((await desk.receive(first_mail)).ticket_number)
        a, b, c, d, e, f, _h, g = numbers  # h is never touched: open all along
        assert (await desk.command(ALICE, f"!reply {a} Here you are")).ok
        await desk.flush()
        assert (await desk.command(ALICE, f"!close {a}")).ok
        assert (await desk.command(ALICE, f"!spam {b}")).ok
        # day 0 ends with c, d, e, f, g, h: 6
        desk.clock.advance(24 * 3600)
        assert (await desk.command(ALICE, f"!merge {c} {d}")).ok
        assert (await desk.command(ALICE, f"!close {g}")).ok
        assert (await desk.command(ALICE, f"!pending {e} 1d autoclose")).ok
        # day 1 ends with d, e (pending counts), f, h: 4
        desk.clock.advance(24 * 3600)
        assert (await desk.command(ALICE, f"!close {d}")).ok
        assert (await desk.reminders.tick()).fell_due == 1  # e closes itself
        again = mail("thanks, but", sender="g@example.net", in_reply_to="<g@example.net>")
        assert (await desk.receive(again)).ticket_number == g  # g reopens
        assert (await desk.command(ALICE, f"!close {f}")).ok
        assert (await desk.command(ALICE, f"!reopen {f}")).ok
        assert (await desk.command(ALICE, f"!spam {a}")).ok  # closed already: no change
        # day 2 ends with f, g, h: 3
        desk.clock.advance(24 * 3600)
        assert (await desk.command(ALICE, f"!close {g}")).ok
        assert (await desk.command(ALICE, f"!merge {f} {g}")).ok  # g reopens, f goes
        # day 3 ends with g, h: 2
        # retention leaves history lines of removed tickets, unlinked: they change nothing
        await desk.store.run(
            lambda repo: repo.audit(desk.clock.now(), SYSTEM, "ticket.close", None, "removed")
        )

        start = expected.midnight(day0)
        data = await desk.store.run(
            lambda repo: QUERIES.report_traffic(["info"], start, start + timedelta(days=5))
        )
        line = data.queues[0]
        assert list(line.backlog) == [6, 4, 3, 2, 2]
        assert line.backlog_before == 0
        assert line.received == (8, 0, 0, 0, 0)
        # closed (not spam or merged now): d, e (auto-closed) and g; only a was answered
        assert line.time_to_close.count == 3
        assert line.first_response.count == 1
        assert line.time_to_close.median_seconds == pytest.approx(2 * 86400, abs=60)
    finally:
        await desk.store.close()
