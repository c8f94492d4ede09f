"""A process whose event loop stands still ends itself, so its roles pass on.

The unit tests drive :class:`bot.watchdog.LoopWatchdog` on a real event loop blocked by
a real ``time.sleep``. The process test starts the real ``ticketbot run`` on a real
Dovecot with ``TICKETBOT_HANG_AT=stored:2``: the event loop stops for good after the
second mail's ticket is committed, its database and IMAP connections open. The watchdog
must end it with exit status 70 and a dump of every thread on stderr; the next start
takes the rest of the mail in, and every mail is one ticket.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from bot.config import ConfigError, parse_config
from bot.watchdog import EXIT_STUCK, LoopWatchdog
from tests.servers.dovecot import ImapAccount

REPO_ROOT = Path(__file__).resolve().parents[2]
MAILS = 6


async def test_a_loop_that_stands_still_is_noticed() -> None:
    noticed: list[float] = []
    watchdog = LoopWatchdog(2.5, on_stuck=noticed.append)
    task = asyncio.create_task(watchdog.run())
    await asyncio.sleep(1.2)
    assert noticed == []
    time.sleep(4.0)  # the event loop stands still: no beat for 4 s
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(noticed) == 1 and noticed[0] >= 2.5, noticed


async def test_a_turning_loop_is_left_alone_and_the_watch_ends_with_it() -> None:
    noticed: list[float] = []
    watchdog = LoopWatchdog(2.5, on_stuck=noticed.append)
    task = asyncio.create_task(watchdog.run())
    for _ in range(40):  # 4 s of short waits and short work
        await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(1.5)  # the thread checks again after its task ended
    assert noticed == []


async def test_a_stopped_process_is_not_taken_for_a_stuck_loop() -> None:
    """SIGSTOP, Ctrl-Z, docker pause: the monotonic clock runs on while nothing does."""
    offset = [0.0]
    noticed: list[float] = []
    watchdog = LoopWatchdog(
        3.0, on_stuck=noticed.append, clock=lambda: time.monotonic() + offset[0]
    )
    task = asyncio.create_task(watchdog.run())
    await asyncio.sleep(1.2)
    offset[0] += 10.0  # the whole process was stopped for 10 s, thread and loop alike
    await asyncio.sleep(2.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert noticed == []


async def test_zero_turns_it_off() -> None:
    watchdog = LoopWatchdog(0)
    assert not watchdog.enabled
    await asyncio.wait_for(watchdog.run(), 1)  # returns at once


def _instance_config(tmp_path: Path, instance: str) -> object:
    data = {
        "storage": {"url": f"sqlite:///{tmp_path}/desk.db"},
        "mail": {"maildir": {"path": "mail"}, "files": {"path": "out"}},
        "instance": {} if not instance else {"watchdog_seconds": float(instance)},
        "console": {"user": "@alice:example.org"},
        "queue": [{"name": "info", "addresses": ["info@example.org"], "default": True}],
    }
    return parse_config(data, tmp_path / "bot.toml", {})


def test_the_limit_defaults_to_a_minute_and_is_checked(tmp_path: Path) -> None:
    assert _instance_config(tmp_path, "").instance.watchdog_seconds == 60  # type: ignore[attr-defined]
    assert _instance_config(tmp_path, "0").instance.watchdog_seconds == 0  # type: ignore[attr-defined]
    for bad in ("3", "-1", "7200"):
        with pytest.raises(ConfigError, match=r"instance\.watchdog_seconds.*0 \(off\) or from 5"):
            _instance_config(tmp_path, bad)


# --- the real process --------------------------------------------------------------------------


def _write_config(tmp_path: Path, account: ImapAccount) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f"""
[storage]
url = "sqlite:///desk.db"
{account.imap_toml("WATCHDOG_TEST_IMAP_PASSWORD")}
[mail.files]
path = "out"
[console]
user = "@alice:example.org"
[instance]
watchdog_seconds = 5
[reminders]
digest_at = "off"
[[queue]]
name = "info"
addresses = ["info@example.org"]
volunteers = ["@alice:example.org"]
default = true
""",
        encoding="utf-8",
    )
    return path


def _mail(index: int) -> bytes:
    return (
        f"From: requester{index}@example.net\r\nTo: info@example.org\r\n"
        f"Subject: question {index}\r\nMessage-ID: <watchdog-{index}@example.net>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Body of question {index}.\r\n"
    ).encode()


def _start(
    config: Path, account: ImapAccount, hang: str | None, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETBOT_")}
    env["WATCHDOG_TEST_IMAP_PASSWORD"] = account.password
    if hang:
        env["TICKETBOT_HANG_AT"] = hang
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config), "--log-level", "INFO"],
        stdin=subprocess.PIPE,  # kept open: the console waits, the bot runs
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        cwd=REPO_ROOT,
    )


def _stored(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT message_id FROM article")]
        except sqlite3.OperationalError:
            return []


@pytest.mark.servers
def test_a_process_stuck_on_its_event_loop_ends_itself_and_the_next_one_finishes(
    tmp_path: Path, imap_account: ImapAccount
) -> None:
    config = _write_config(tmp_path, imap_account)
    db = tmp_path / "desk.db"
    for index in range(MAILS):
        imap_account.append(_mail(index))

    log_path = tmp_path / "bot.log"
    with log_path.open("ab") as log:
        stuck = _start(config, imap_account, "stored:2", log)
        started = time.monotonic()
        try:
            stuck.wait(timeout=90)
        except subprocess.TimeoutExpired:
            stuck.kill()
            stuck.wait()
            pytest.fail("the stuck process was not ended by its watchdog:\n" + _tail(log_path))
        finally:
            assert stuck.stdin is not None
            stuck.stdin.close()
        took = time.monotonic() - started
        text = log_path.read_text(errors="replace")
        assert stuck.returncode == EXIT_STUCK, f"{stuck.returncode}\n{_tail(log_path)}"
        assert "the event loop has not turned for" in text
        assert "most recent call first" in text and "bot/faults.py" in text, _tail(log_path)
        assert len(_stored(db)) == 2, "it stood still after the second ticket"
        print(f"\nwatchdog: a process stuck after 2 tickets ended itself {took:.1f} s after start")

        # the next process takes the rest in; nothing lost, nothing doubled
        log.write(b"\n=== the next process ===\n")
        log.flush()
        after = _start(config, imap_account, None, log)
        try:
            deadline = time.monotonic() + 60
            while len(_stored(db)) < MAILS and time.monotonic() < deadline:
                assert after.poll() is None, "the next process ended by itself"
                time.sleep(0.3)
        finally:
            after.terminate()
            after.wait(timeout=30)
            assert after.stdin is not None
            after.stdin.close()
    assert after.returncode == 0, _tail(log_path)
    stored = _stored(db)
    assert sorted(stored) == sorted(f"<watchdog-{i}@example.net>" for i in range(MAILS))


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]
