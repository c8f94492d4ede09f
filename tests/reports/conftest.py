"""A desk with six weeks of generated traffic, written once per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from storage.store import SqlStore
from tests.reports.seed import Seeded, generate, seed_database

END_DAY = date(2026, 11, 23)
#: When the seeded desk is looked at: noon of its last day, so that day is half over.
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
DAYS = 45


@dataclass(frozen=True)
class SeededDb:
    url: str
    path: Path
    seeded: Seeded


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> SeededDb:
    folder = tmp_path_factory.mktemp("reports")
    path = folder / "desk.db"
    url = f"sqlite:///{path}"
    seeded = seed_database(url, generate(END_DAY, DAYS, now=NOW, seed=11))
    seeded.now = NOW
    return SeededDb(url, path, seeded)


@pytest.fixture
async def store(seeded_db: SeededDb) -> AsyncIterator[SqlStore]:
    store = await SqlStore.open(seeded_db.url)
    yield store
    await store.close()
