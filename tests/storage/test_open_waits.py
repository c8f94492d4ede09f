"""At start, a database that cannot be opened is waited for, not a crash (and a restart loop)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.app import open_store
from tests.core.conftest import desk_config


async def test_the_bot_waits_for_its_database_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a directory where the database file should be: SQLite cannot open it, as with a
    # file system not mounted yet or a file the bot may not open
    blocker = tmp_path / "desk.db"
    blocker.mkdir()
    config = desk_config(tmp_path, f"sqlite:///{blocker}")

    async def mount_later() -> None:
        await asyncio.sleep(1.5)
        blocker.rmdir()

    caplog.set_level(logging.WARNING)
    mounting = asyncio.create_task(mount_later())
    store = await asyncio.wait_for(open_store(config, longest_wait=1.0), timeout=20)
    await mounting
    try:
        assert await store.run(lambda repo: repo.count_tickets()) == 0
    finally:
        await store.close()
    waits = [r.getMessage() for r in caplog.records if "database is unavailable" in r.getMessage()]
    assert waits, "the wait is logged"
    assert len(waits) <= 4, "no busy loop"
