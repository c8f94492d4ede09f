"""The same reports on a real PostgreSQL: its dates, intervals and window functions.

The server is the suite's (tests/servers/postgres.py): started for the session, and a
missing PostgreSQL fails the run with what to install rather than skipping.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from storage.reports import ReportQueries
from storage.store import SqlStore
from tests.reports import expected
from tests.reports.conftest import DAYS, END_DAY, NOW, SeededDb
from tests.reports.seed import generate, seed_database

pytestmark = pytest.mark.servers

QUERIES = ReportQueries()


def assert_same(actual: Any, wanted: Any) -> None:
    """Equal, but seconds to within a millisecond: SQLite counts them through
    ``julianday``, a float of days, PostgreSQL exactly."""
    if isinstance(wanted, float):
        assert actual == pytest.approx(wanted, abs=0.001)
    elif dataclasses.is_dataclass(wanted) and not isinstance(wanted, type):
        assert type(actual) is type(wanted)
        for item in dataclasses.fields(wanted):
            assert_same(getattr(actual, item.name), getattr(wanted, item.name))
    elif isinstance(wanted, list | tuple):
        assert len(actual) == len(wanted)
        for a, w in zip(actual, wanted, strict=True):
            assert_same(a, w)
    else:
        assert actual == wanted


async def test_postgresql_gives_the_figures_sqlite_gives(
    postgres_db_url: str, seeded_db: SeededDb, store: SqlStore
) -> None:
    seeded = seed_database(postgres_db_url, generate(END_DAY, DAYS, now=NOW, seed=11))
    assert len(seeded.tickets) == len(seeded_db.seeded.tickets)
    start = expected.midnight(END_DAY - timedelta(days=29))
    end = expected.midnight(END_DAY + timedelta(days=1))
    pg = await SqlStore.open(postgres_db_url)
    try:
        for run in (
            lambda repo: QUERIES.report_traffic(None, start, end),
            lambda repo: QUERIES.report_traffic(["info"], start, end),
            lambda repo: QUERIES.report_activity(start, end, ["@zoe:example.org"]),
            lambda repo: QUERIES.report_backlog(None, NOW),
        ):
            assert_same(await pg.run(run), await store.run(run))
        traffic = await pg.run(lambda repo: QUERIES.report_traffic(None, start, end))
    finally:
        await pg.close()

    days = list(traffic.days)
    want = expected.backlog(seeded, start, end, days)
    for line in traffic.queues:
        assert (line.backlog_before, list(line.backlog)) == want[line.queue]
    replies = expected.first_responses(seeded, start, end)
    all_replies = expected.stats([s for v in replies.values() for s in v])
    assert traffic.all_first_response.count == all_replies.count
    assert traffic.all_first_response.p90_seconds == pytest.approx(
        all_replies.p90_seconds, abs=0.01
    )
