"""``activity``: what each volunteer did in a period, and when they last did anything."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

from bot.domain import SYSTEM, Actor
from bot.reports import activity_report
from bot.reports.tables import MAX_TEXT_CHARS
from storage.reports import ReportQueries
from storage.store import PeeweeRepository, SqlStore
from tests.core.conftest import ALICE, BOB, mail, make_desk
from tests.reports import expected
from tests.reports.conftest import END_DAY, SeededDb

QUERIES = ReportQueries()


async def test_counts_by_volunteer_and_kind_agree_with_a_plain_count(
    store: SqlStore, seeded_db: SeededDb
) -> None:
    start = expected.midnight(END_DAY - timedelta(days=20))
    end = expected.midnight(END_DAY - timedelta(days=6))
    data = await store.run(lambda repo: QUERIES.report_activity(start, end))
    want = expected.activity(seeded_db.seeded, start, end)
    assert {v.actor_id: dict(v.counts) for v in data.volunteers} == {
        actor: dict(counts) for actor, counts in want.items()
    }
    assert SYSTEM.user_id not in {v.actor_id for v in data.volunteers}
    totals = [v.total for v in data.volunteers]
    assert totals == sorted(totals, reverse=True), "busiest first"
    last_seen = {
        e.actor.user_id: e.at
        for t in sorted(seeded_db.seeded.tickets, key=lambda t: t.created_at)
        for e in t.events
    }
    for volunteer in data.volunteers:
        latest = max(
            e.at
            for t in seeded_db.seeded.tickets
            for e in t.events
            if e.actor.user_id == volunteer.actor_id
        )
        assert volunteer.last_active == latest, "their last action, also after the period"
        assert volunteer.actor_id in last_seen
    assert {v.name for v in data.volunteers} == {"Alice", "Bob", "Carol", "Dana", "Jürgen"}


async def test_volunteers_who_did_nothing_are_listed_when_asked_for(store: SqlStore) -> None:
    start = expected.midnight(END_DAY - timedelta(days=3))
    data = await store.run(
        lambda repo: QUERIES.report_activity(
            start, start + timedelta(days=1), volunteers=["@zoe:example.org", ALICE.user_id]
        )
    )
    zoe = next(v for v in data.volunteers if v.actor_id == "@zoe:example.org")
    assert (zoe.total, zoe.last_active, zoe.name) == (0, None, "@zoe:example.org")
    assert data.volunteers[-1] is zoe
    alice = next(v for v in data.volunteers if v.actor_id == ALICE.user_id)
    assert alice.last_active is not None


async def test_a_quiet_volunteer_shows_when_they_last_acted(
    store: SqlStore, seeded_db: SeededDb
) -> None:
    later = expected.midnight(END_DAY + timedelta(days=10))
    data = await store.run(
        lambda repo: QUERIES.report_activity(
            later, later + timedelta(days=1), volunteers=[ALICE.user_id]
        )
    )
    (alice,) = data.volunteers
    assert (alice.actor_id, alice.name, alice.total) == (ALICE.user_id, "Alice", 0)
    assert alice.last_active == max(
        e.at for t in seeded_db.seeded.tickets for e in t.events if e.actor.user_id == ALICE.user_id
    )


async def test_the_real_commands_are_counted_and_admin_work_is_not(tmp_path: Path) -> None:
    desk = await make_desk(tmp_path)
    try:
        start = desk.clock.now()
        number = (await desk.receive(mail())).ticket_number
        assert (await desk.command(ALICE, f"!claim {number}")).ok
        assert (await desk.command(ALICE, f"!note {number} asked the photographer")).ok
        assert (await desk.command(ALICE, f"!reply {number} Yes, with credit.")).ok
        assert (await desk.command(BOB, f"!note {number} fine by me")).ok
        assert (await desk.command(ALICE, f"!close {number}")).ok
        assert (await desk.command(BOB, "!languages de fr")).ok
        hostile = Actor("matrix", "@eve:example.org", '=HYPERLINK("http://x")')

        def admin_and_stranger(repo: PeeweeRepository) -> None:
            repo.audit(desk.clock.now(), Actor("cli", "root", "root"), "data.erased", None)
            repo.audit(desk.clock.now(), hostile, "ticket.note", None)

        await desk.store.run(admin_and_stranger)
        desk.clock.advance(60)
        data = await desk.store.run(lambda repo: QUERIES.report_activity(start, desk.clock.now()))
    finally:
        await desk.store.close()
    counts = {v.actor_id: dict(v.counts) for v in data.volunteers}
    assert counts == {
        ALICE.user_id: {"claim": 1, "note": 1, "reply": 1, "close": 1},
        BOB.user_id: {"note": 1, "languages": 1},
        "@eve:example.org": {"note": 1},
    }

    report = activity_report(data, "today")
    assert len(report.text) < MAX_TEXT_CHARS
    lines = report.text.splitlines()
    assert lines[0] == "Activity, today"
    assert lines[1].split()[:7] == [
        "volunteer",
        "claim",
        "reply",
        "note",
        "close",
        "other",
        "total",
    ]
    assert lines[2].split()[:7] == ["Alice", "1", "1", "1", "1", "0", "4"]
    assert report.text.endswith("7 actions by 3 volunteers")
    (csv_file,) = report.files
    assert (csv_file.name, csv_file.content_type) == ("activity.csv", "text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_file.data.decode("utf-8-sig"))))
    alice = next(r for r in rows if r["volunteer"] == ALICE.user_id)
    assert (alice["claim"], alice["reply"], alice["languages"], alice["total"]) == (
        "1",
        "1",
        "0",
        "4",
    )
    eve = next(r for r in rows if r["volunteer"] == "@eve:example.org")
    assert eve["name"].startswith("'="), "a name a spreadsheet would run is defused"


def test_an_idle_period_says_so() -> None:
    from datetime import UTC, datetime

    from bot.reports.data import ActivityData

    quiet = ActivityData(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC), ())
    report = activity_report(quiet)
    assert (
        report.text == "Activity, 2026-11-01 – 2026-11-01\nno volunteer did anything in this period"
    )
