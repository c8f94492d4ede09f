"""Leases and outbox claims on a real PostgreSQL, and on SQLite files.

Two processes sharing a database are played by two lease holders with connections of
their own (PostgreSQL frees advisory locks per connection, exactly as when a process
dies), and by real subprocesses where the kernel must free a file lock.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from bot import domain
from bot.ports import LeasesLost
from storage.leases import FileLeases, PgLeases
from storage.store import PeeweeRepository, SqlStore

pytestmark = pytest.mark.servers

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _terminate(url: str, application_name: str) -> int:
    """Kill the server side of a lease connection, as if its process had died."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (application_name,),
            )
            return len(cur.fetchall())
    finally:
        conn.close()


async def test_a_role_has_one_holder_and_passes_on_when_its_connection_dies(
    postgres_db_url: str,
) -> None:
    first, second = PgLeases(postgres_db_url, "first"), PgLeases(postgres_db_url, "second")
    try:
        await first.start(101)
        await second.start(102)
        assert await first.try_acquire("intake")
        assert await first.try_acquire("matrix")
        assert not await second.try_acquire("intake"), "held by the first"
        assert await second.try_acquire("scheduler"), "nobody held it"
        assert await first.try_acquire("intake"), "a holder asking again still holds it"
        assert await second.alive([101, 102, 103]) == {101, 102}
        holders = await second.holders()
        assert sorted(holders.values()) == [
            "ticketbot leases first",
            "ticketbot leases first",
            "ticketbot leases second",
        ]

        assert _terminate(postgres_db_url, "ticketbot leases first") == 1
        # the dead one's roles and liveness are free as soon as its backend has gone
        # (pg_terminate_backend only signals it)
        for _ in range(50):
            if await second.try_acquire("intake"):
                break
            await asyncio.sleep(0.1)
        assert await second.try_acquire("intake")
        assert await second.try_acquire("matrix")
        assert await second.alive([101, 102]) == {102}
        # and the first, cut off, must stop: it can no longer tell who holds what
        with pytest.raises(LeasesLost):
            await first.check()
        with pytest.raises(LeasesLost):
            await first.try_acquire("discord")
    finally:
        await first.close()
        await second.close()


async def test_a_clean_close_frees_the_roles(postgres_db_url: str) -> None:
    first, second = PgLeases(postgres_db_url, "a"), PgLeases(postgres_db_url, "b")
    try:
        await first.start(1)
        await second.start(2)
        assert await first.try_acquire("intake")
        assert not await second.try_acquire("intake")
        await first.close()
        for _ in range(50):
            if await second.try_acquire("intake"):
                break
            await asyncio.sleep(0.1)
        assert await second.try_acquire("intake")
        assert await second.alive([1]) == set()
    finally:
        await second.close()


HOLDER = """
import fcntl, os, sys, time
folder = sys.argv[1]
os.makedirs(folder, exist_ok=True)
fd = os.open(os.path.join(folder, "roles.lock"), os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
fd2 = os.open(os.path.join(folder, "instance-7.lock"), os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd2, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


async def test_sqlite_file_locks_pass_on_when_the_holder_is_killed(tmp_path: Path) -> None:
    database = tmp_path / "desk.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "desk.db.locks")],
        stdout=subprocess.PIPE,
    )
    leases = FileLeases(database)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        await leases.start(8)
        assert not await leases.try_acquire("intake"), "the other process holds the roles"
        assert await leases.alive([7, 8]) == {7, 8}
        holder.kill()
        holder.wait()
        assert await leases.try_acquire("intake")
        assert await leases.try_acquire("matrix"), "one lock covers every role on SQLite"
        assert await leases.alive([7, 8]) == {8}
        assert not (tmp_path / "desk.db.locks" / "instance-7.lock").exists(), "tidied"
    finally:
        holder.kill()
        await leases.close()
    assert not (tmp_path / "desk.db.locks" / "instance-8.lock").exists()


# --- outbox claims ----------------------------------------------------------------------------


def _seed(repo: PeeweeRepository, tickets: int, per_ticket: int) -> None:
    repo.sync_queues(["info"])
    for index in range(tickets):
        ticket = repo.add_ticket(
            domain.Ticket(
                id=None,
                number=f"2026112410{index:06d}",
                queue="info",
                subject=f"question {index}",
                requester_email=f"r{index}@example.net",
                requester_name="",
                state=domain.TicketState.NEW,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        for _ in range(per_ticket):
            repo.enqueue("email", "notice", ticket.id, NOW - timedelta(minutes=1))


def _claim_all(
    url: str, instance_id: int, got: list[tuple[int, int]], start: threading.Barrier
) -> None:
    async def claim() -> None:
        store = await SqlStore.open(url)
        try:
            start.wait()
            while True:
                items = await store.run(
                    lambda repo: repo.claim_outbox("email", NOW, 5, instance_id)
                )
                if not items:
                    return
                for item in items:
                    got.append((instance_id, item.id))
                    await store.run(lambda repo, i=item.id: repo.outbox_done(i, NOW))
        finally:
            await store.close()

    asyncio.run(claim())


async def test_two_instances_claiming_at_once_never_take_the_same_item(
    postgres_db_url: str,
) -> None:
    store = await SqlStore.open(postgres_db_url)
    try:
        await store.run(lambda repo: _seed(repo, 120, 2))
    finally:
        await store.close()
    got: list[tuple[int, int]] = []
    start = threading.Barrier(3)
    workers = [
        threading.Thread(target=_claim_all, args=(postgres_db_url, n, got, start))
        for n in (1, 2, 3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    times = Counter(item for _, item in got)
    assert len(times) == 240 and set(times.values()) == {1}, "every item once, none twice"
    by = Counter(instance for instance, _ in got)
    assert len(by) >= 2, f"the work was shared: {by}"


async def test_claims_of_a_live_instance_are_left_and_a_dead_ones_taken_over(
    postgres_db_url: str,
) -> None:
    store = await SqlStore.open(postgres_db_url)
    try:
        await store.run(lambda repo: _seed(repo, 3, 2))
        first = await store.run(lambda repo: repo.claim_outbox("email", NOW, 10, 1))
        # the oldest item of each ticket only: the second waits behind the first
        assert len(first) == 3
        assert await store.run(lambda repo: repo.claim_outbox("email", NOW, 10, 2)) == []
        assert await store.run(lambda repo: repo.outbox_claimants("email", 2)) == [1]
        taken = await store.run(lambda repo: repo.claim_outbox("email", NOW, 10, 2, gone=[1]))
        assert sorted(i.id for i in taken) == sorted(i.id for i in first)
        # a clean stop gives claims back
        assert await store.run(lambda repo: repo.instance_stopped(2, NOW)) == 3
        assert await store.run(lambda repo: repo.outbox_claimants("email", 9)) == []
    finally:
        await store.close()


async def test_the_app_gives_its_outbox_the_same_leases_that_hold_its_roles(
    tmp_path: Path, postgres_db_url: str
) -> None:
    """A dispatcher asking other leases than the roles' would find every other instance
    dead and take over its claims: replies sent twice (found by the failover test)."""
    from bot.app import build_app
    from bot.config import parse_config

    config = parse_config(
        {
            "storage": {"url": postgres_db_url},
            "mail": {"maildir": {"path": str(tmp_path / "md")}, "files": {"path": "out"}},
            "console": {"enabled": True},
            "queue": [{"name": "info", "addresses": ["info@example.org"], "default": True}],
        },
        tmp_path / "bot.toml",
        {},
    )
    app = await build_app(config)
    try:
        assert isinstance(app.leases, PgLeases)
        assert app.dispatcher._leases is app.leases
    finally:
        await app.close()


async def test_imap_numbers_past_two_to_the_31_fit_on_postgresql(postgres_db_url: str) -> None:
    """UIDVALIDITY and UIDs are unsigned 32-bit: schema step 6 widened the columns."""
    from bot.ports import MailKey

    store = await SqlStore.open(postgres_db_url)
    try:
        big = 2**32 - 1
        await store.run(lambda repo: repo.set_cursor("imap:desk", big, big - 5))
        cursor = await store.run(lambda repo: repo.cursor("imap:desk"))
        assert cursor is not None and (cursor.validity, cursor.last_uid) == (big, big - 5)
        key = MailKey("imap:desk", big, str(big - 4))
        await store.run(lambda repo: repo.record_intake(key, "<big@example.net>", None, NOW))
        assert [k.validity for k in await store.run(lambda r: r.intake_pending("imap:desk"))] == [
            big
        ]
    finally:
        await store.close()
