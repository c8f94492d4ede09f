"""An instance whose lease connection breaks stops at once, and a standby carries on.

Two real ``ticketbot run`` processes share a PostgreSQL database and a Maildir. The
server side of the active one's lease connection is terminated (what a network cut
or a database failover does): that process can no longer tell whether someone else
holds its roles, so it must exit (status 75, for its supervisor to restart it as a
standby) rather than go on taking in mail beside the new holder. The standby takes
intake over, and every mail becomes one ticket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.servers

REPO_ROOT = Path(__file__).resolve().parents[2]


def drop(maildir: Path, index: int) -> None:
    raw = (
        f"From: Requester {index} <r{index}@example.net>\r\nTo: info@example.org\r\n"
        f"Subject: question {index}\r\nMessage-ID: <lease-{index}@example.net>\r\n\r\n"
        f"Text {index}\r\n"
    ).encode()
    tmp = maildir / "tmp" / f"{index}.eml"
    tmp.write_bytes(raw)
    tmp.rename(maildir / "new" / f"{index}.eml")


def sql(url: str, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []
    except psycopg2.errors.UndefinedTable:
        return []
    finally:
        conn.close()


def wait(what: str, probe: object, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def test_a_broken_lease_connection_stops_the_instance_and_the_standby_takes_over(
    tmp_path: Path, postgres_db_url: str, synapse: SynapseServer
) -> None:
    url = postgres_db_url
    suffix = uuid.uuid4().hex[:8]
    bot_id, _ = synapse.register(f"leasebot{suffix}", "lease-bot-pw")
    _, owner = synapse.register(f"leaseowner{suffix}", "owner-pw")
    room_id = synapse.create_room(owner, [bot_id], f"lease {suffix}")
    maildir = tmp_path / "maildir"
    for part in ("new", "cur", "tmp"):
        (maildir / part).mkdir(parents=True)
    config = tmp_path / "bot.toml"
    config.write_text(
        f"""
[storage]
url = "{url}"
[mail.maildir]
path = "{maildir}"
poll_seconds = 0.5
[mail.files]
path = "{tmp_path / "out"}"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot_id}"
password_env = "LEASE_TEST_MATRIX_PASSWORD"
device_id = "TICKETBOT-LEASE"
[instance]
lease_check_seconds = 0.5
[[queue]]
name = "info"
addresses = ["info@example.org"]
matrix_room = "{room_id}"
default = true
""",
        encoding="utf-8",
    )
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes: list[subprocess.Popen[bytes]] = []

    def start(log: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            env={**os.environ, "LEASE_TEST_MATRIX_PASSWORD": "lease-bot-pw"},
            cwd=REPO_ROOT,
        )
        processes.append(process)
        return process

    def holder() -> str | None:
        rows = sql(
            url,
            "SELECT name FROM instance WHERE stopped_at IS NULL AND roles LIKE %s",
            ("%intake%",),
        )
        return str(rows[0][0]) if rows else None

    def tickets() -> int:
        rows = sql(url, "SELECT COUNT(*) FROM ticket")
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    try:
        first = start(logs[0])
        wait("the first instance to take intake", lambda: holder() is not None, 60, logs)
        first_name = holder()
        second = start(logs[1])
        wait(
            "the second instance to register",
            lambda: len(sql(url, "SELECT id FROM instance WHERE stopped_at IS NULL")) == 2,
            60,
            logs,
        )
        for index in range(10):
            drop(maildir, index)
        wait("ten tickets", lambda: tickets() == 10, 60, logs)

        cut = sql(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"ticketbot leases {first_name}"[:63],),
        )
        assert len(cut) == 1, "the first instance's lease connection was found"
        assert first.wait(30) == 75, "it stops: its roles may be someone else's now"
        assert "stopping: the database connection holding" in logs[0].read_text()

        wait(
            "the second instance to take intake",
            lambda: holder() not in (None, first_name),
            30,
            logs,
        )
        for index in range(10, 20):
            drop(maildir, index)
        wait("twenty tickets", lambda: tickets() == 20, 60, logs)
        rows = sql(url, "SELECT message_id, COUNT(*) FROM article GROUP BY message_id")
        assert len(rows) == 20 and {r[1] for r in rows} == {1}, "each mail once"
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
