"""A crash at any moment of intake loses no mail and makes no duplicate.

The real ``ticketbot run`` process takes mail from a real Dovecot and is killed with
SIGKILL at random moments while it works, then restarted; in the end every message is
one ticket (or one follow-up) and every message is flagged on the server.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from tests.servers.dovecot import ImapAccount

pytestmark = pytest.mark.servers

MAILS = 200


def _config(tmp_path: Path, account: ImapAccount) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f"""
[storage]
url = "sqlite:///desk.db"
{account.imap_toml("CRASH_TEST_IMAP_PASSWORD")}
[mail.files]
path = "out"
[console]
user = "@alice:example.org"
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
    if index == 7:  # a malformed one: no boundary, broken charset, 8-bit header
        return (
            b"From: =?x-unknown?q?broken?= <weird@example.net>\r\n"
            b"To: info@example.org\r\nSubject: caf\xe9 \xff\r\n"
            b"Message-ID: <crash-7@example.net>\r\n"
            b'Content-Type: multipart/mixed; boundary="nope"\r\n\r\n'
            b"--elsewhere\r\nContent-Type: text/plain; charset=klingon\r\n\r\nqapla\xe9\r\n"
        )
    return (
        f"From: requester{index}@example.net\r\nTo: info@example.org\r\n"
        f"Subject: question {index}\r\nMessage-ID: <crash-{index}@example.net>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Body of question {index}.\r\n"
    ).encode()


def _start(config: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRASH_TEST_IMAP_PASSWORD": _start.password}  # type: ignore[attr-defined]
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config), "--log-level", "INFO"],
        stdin=subprocess.PIPE,  # kept open: the console waits, the bot runs
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )


def _tickets(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return list(
                conn.execute(
                    "SELECT t.number, COUNT(a.id) FROM ticket t"
                    " JOIN article a ON a.ticket_id = t.id GROUP BY t.id"
                )
            )
        except sqlite3.OperationalError:
            return []


def test_sigkill_during_intake_loses_nothing_and_doubles_nothing(
    tmp_path: Path, imap_account: ImapAccount
) -> None:
    _start.password = imap_account.password  # type: ignore[attr-defined]
    config = _config(tmp_path, imap_account)
    rng = random.Random(20261123)
    for index in range(MAILS):
        imap_account.append(_mail(index))
    # follow-ups to a few of them, so the kills also land on follow-up intake
    for index in (1, 2, 3):
        imap_account.append(
            f"From: requester{index}@example.net\r\nTo: info@example.org\r\n"
            f"Subject: more\r\nMessage-ID: <crash-f{index}@example.net>\r\n"
            f"In-Reply-To: <crash-{index}@example.net>\r\n\r\nfollow-up {index}\r\n".encode()
        )

    log_path = tmp_path / "bot.log"

    def intake_lines() -> int:
        if not log_path.exists():
            return 0
        text = log_path.read_text(errors="replace")
        return text.count("new ticket") + text.count("follow-up to")

    kills = 0
    log = log_path.open("ab")
    process = _start(config, log)
    try:
        while kills < 10:
            # wait until this process is taking mail in, then kill it at a random moment
            seen = intake_lines()
            deadline = time.monotonic() + 15
            while intake_lines() == seen and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.12))
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            process = _start(config, log)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            flags = imap_account.flags()
            if len(flags) == MAILS + 3 and all(b"\\Seen" in f for f in flags.values()):
                break
            time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()

    # (a kill between commit and the log line can drop a line, never add one)
    assert intake_lines() <= MAILS + 3, "no mail was taken in twice"
    log = (tmp_path / "bot.log").read_text(errors="replace")
    flags = imap_account.flags()
    assert all(b"\\Seen" in f for f in flags.values()), f"unflagged mail left\n{log[-3000:]}"
    tickets = _tickets(tmp_path / "desk.db")
    assert len(tickets) == MAILS, f"expected {MAILS} tickets, got {len(tickets)}\n{log[-3000:]}"
    assert sum(count for _, count in tickets) == MAILS + 3, "each mail stored exactly once"
    with sqlite3.connect(tmp_path / "desk.db") as conn:
        subject = conn.execute(
            "SELECT subject, body FROM article WHERE message_id = '<crash-7@example.net>'"
        ).fetchone()
    assert subject is not None and "caf" in subject[0], "the malformed mail is a readable ticket"
