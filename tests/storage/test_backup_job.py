"""The daily backup the bot takes itself, driven by a clock the test moves.

Once a day after ``[backup] at``: a checked backup, then old ones pruned; the day is
remembered in the database, so a restart neither repeats nor skips it; a failure is
logged, retried an hour later, and never stops the bot.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import BACKUP_CHECK_SECONDS, DailyBackup, build_app
from bot.config import BackupConfig, ConfigError, load_config
from bot.ports import StoreUnavailable
from storage.backup import BackupError, backup, backup_kind
from storage.store import SqlStore
from tests.cli_runs import write_desk_config as write_config
from tests.core.conftest import desk_config, mail, make_desk
from tests.fakes import FakeClock

NIGHT = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    desk = await make_desk(tmp_path)
    await desk.receive(mail("Something to back up"))
    yield desk.store
    await desk.store.close()


def job(
    tmp_path: Path, store: SqlStore, clock: FakeClock, keep: int = 14, **kwargs: Any
) -> DailyBackup:
    config = BackupConfig(path=tmp_path / "backups", keep=keep, at=time(2, 15))
    return DailyBackup(config, f"sqlite:///{tmp_path}/desk.db", store, clock, **kwargs)


def written(tmp_path: Path) -> list[str]:
    folder = tmp_path / "backups"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_once_a_day_after_the_time_and_not_again_after_a_restart(
    tmp_path: Path, store: SqlStore
) -> None:
    clock = FakeClock(NIGHT)
    daily = job(tmp_path, store, clock)

    assert await daily.tick() is None, "before 02:15 nothing happens"
    assert written(tmp_path) == []

    clock.current = NIGHT.replace(hour=2, minute=20)
    report = await daily.tick()
    assert report is not None and report.tickets == 1
    assert written(tmp_path) == ["ticketbot-20261123-022000.db"]
    assert backup_kind(report.path) == "sqlite"
    assert (tmp_path / "backups").stat().st_mode & 0o077 == 0
    assert await store.run(lambda repo: repo.job_state("backup.last_day")) == "2026-11-23"

    clock.advance(BACKUP_CHECK_SECONDS)
    assert await daily.tick() is None, "once a day"
    restarted = job(tmp_path, store, clock)
    assert await restarted.tick() is None, "a restart does not repeat the day's backup"

    clock.current = NIGHT + timedelta(days=1)  # the next night, before the time
    assert await restarted.tick() is None
    clock.advance(3600 + 15 * 60)
    assert await restarted.tick() is not None
    assert len(written(tmp_path)) == 2


async def test_old_backups_are_pruned_to_keep(tmp_path: Path, store: SqlStore) -> None:
    clock = FakeClock(NIGHT.replace(hour=3))
    daily = job(tmp_path, store, clock, keep=2)
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "notes.txt").write_text("not a backup: never touched")
    for _ in range(4):
        assert await daily.tick() is not None
        clock.advance(24 * 3600)
    assert written(tmp_path) == [
        "notes.txt",
        "ticketbot-20261125-030000.db",
        "ticketbot-20261126-030000.db",
    ]


async def test_a_failure_is_logged_retried_an_hour_later_and_never_raised(
    tmp_path: Path, store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NIGHT.replace(hour=2, minute=30))
    calls: list[str] = []
    threads: list[threading.Thread] = []
    failing = [True]

    def flaky_backup(url: str, target: Path, **kwargs: Any) -> Any:
        calls.append(target.name)
        threads.append(threading.current_thread())
        if failing[0]:
            raise BackupError(f"{target.parent}: no space left on device")
        return backup(url, target, **kwargs)

    daily = job(tmp_path, store, clock, backup_fn=flaky_backup)
    with caplog.at_level(logging.ERROR):
        assert await daily.tick() is None
    assert daily.failures == 1 and len(calls) == 1
    assert "daily backup failed" in caplog.text and "no space left on device" in caplog.text
    assert threads[0] is not threading.main_thread(), "the copy runs off the event loop"
    assert await store.run(lambda repo: repo.job_state("backup.last_day")) is None

    clock.advance(30 * 60)
    assert await daily.tick() is None and len(calls) == 1, "not every five minutes"
    failing[0] = False
    clock.advance(31 * 60)
    assert await daily.tick() is not None and len(calls) == 2
    assert await store.run(lambda repo: repo.job_state("backup.last_day")) == "2026-11-23"


async def test_an_unreachable_database_does_not_stop_the_bot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Away:
        async def run(self, work: Any) -> Any:
            raise StoreUnavailable("could not connect to server")

    daily = job(tmp_path, Away(), FakeClock(NIGHT.replace(hour=4)))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        assert await daily.tick() is None
    assert "could not connect to server" in caplog.text


async def test_off_and_in_memory_databases_take_no_backup(tmp_path: Path) -> None:
    clock = FakeClock(NIGHT.replace(hour=12))
    off = DailyBackup(BackupConfig(path=tmp_path, at=None), "sqlite:///x.db", None, clock)  # type: ignore[arg-type]
    memory = DailyBackup(BackupConfig(path=tmp_path), "sqlite:///:memory:", None, clock)  # type: ignore[arg-type]
    assert not off.enabled and not memory.enabled
    assert await off.tick() is None and await memory.tick() is None


def test_backup_settings_are_read(tmp_path: Path) -> None:
    default = desk_config(tmp_path).backup
    assert default == BackupConfig(path=tmp_path / "var" / "backups", keep=14, at=time(2, 15))
    config = desk_config(
        tmp_path, extra={"backup": {"path": "/srv/backups", "keep": 3, "at": "23:05"}}
    ).backup
    assert config == BackupConfig(path=Path("/srv/backups"), keep=3, at=time(23, 5))
    assert desk_config(tmp_path, extra={"backup": {"at": "off"}}).backup.at is None
    with pytest.raises(ConfigError, match=r'backup\.at: must be a UTC time like "02:15"'):
        desk_config(tmp_path, extra={"backup": {"at": "2am"}})
    with pytest.raises(ConfigError, match=r"backup\.keep: must be greater than 0"):
        desk_config(tmp_path, extra={"backup": {"keep": 0}})


async def test_the_bot_schedules_the_backup_job(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, f"sqlite:///{tmp_path}/bot.db"))
    app = await build_app(config, stdin=io.StringIO(""), stdout=io.StringIO())
    scheduled: dict[str, float] = {}
    app.scheduler.every = lambda key, seconds, work: scheduled.__setitem__(key, seconds)  # type: ignore[method-assign]
    await app.run()  # the console's input ends at once
    assert scheduled["daily-backup"] == BACKUP_CHECK_SECONDS
    assert app.backups is not None and app.backups.enabled
