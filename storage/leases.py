"""Leases on roles, held through the database's own locks (see ``bot/roles.py``).

PostgreSQL: session advisory locks on one connection of the process's own, opened for
nothing else. The server frees them the moment that connection ends, so a killed or
crashed process loses its roles at once and a standby takes them at its next check;
TCP keepalives (client and server side) bound how long a vanished machine keeps them.
Each instance also holds a lock on its own id: ``pg_locks`` then tells the others
whether the instance behind an outbox claim still runs.

SQLite: locks (``flock``) on files beside the database, freed by the kernel when the
process ends. Several processes only share a SQLite database on one machine, and a
second one is a standby for all roles together (pinning roles needs PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bot.ports import InstanceIdTaken, Leases, LeasesLost, SoleLeases
from storage.database import open_database

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Advisory lock namespaces (first key): "tb" "rl" and "tb" "in" in ASCII.
ROLE_SPACE = 0x7462726C
INSTANCE_SPACE = 0x7462696E
#: Advisory locks are per database, but pg_locks shows the whole cluster: two desks on
#: one server must not see each other's instances.
_THIS_DATABASE = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
#: How long the lease connection may stay silent before it counts as lost (seconds).
CHECK_TIMEOUT = 10.0


def role_key(role: str) -> int:
    """A role's lock key: stable across versions and processes."""
    return zlib.crc32(role.encode()) & 0x7FFFFFFF


def leases_for(url: str, name: str) -> Leases:
    """The leases fitting the database of ``url``."""
    if url.startswith(("postgresql://", "postgres://")):
        return PgLeases(url, name)
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        return SoleLeases()
    return FileLeases(Path(path))


class PgLeases:
    def __init__(self, url: str, name: str) -> None:
        self._url = url
        self._name = name
        self._conn: Any = None
        # one thread owns the connection: psycopg2 calls block
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ticketbot-lease")
        self._lost = False

    async def _call(self, work: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        # asyncio.timeout, not wait_for: on 3.11 that can swallow the keeper's
        # cancellation at shutdown (bot/waiting.py)
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await loop.run_in_executor(self._thread, work, *args)

    def _connect(self) -> None:
        import psycopg2

        db = open_database(self._url)
        # our defaults first: options in the URL (connect_timeout=5, sslmode=...) win,
        # except the name, which the others look for in pg_stat_activity
        params: dict[str, Any] = {
            "connect_timeout": 10,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            # unacknowledged data (a black-holed network) fails in 10 s, not ~15 min
            "tcp_user_timeout": 10_000,
        }
        params.update(db.connect_params)
        params["application_name"] = f"ticketbot leases {self._name}"[:63]
        conn = psycopg2.connect(dbname=db.database, **params)
        conn.autocommit = True
        with conn.cursor() as cur:
            # the server notices a vanished client within ~25 s and frees its locks
            cur.execute("SET tcp_keepalives_idle = 10")
            cur.execute("SET tcp_keepalives_interval = 5")
            cur.execute("SET tcp_keepalives_count = 3")
        self._conn = conn

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._conn is None:
            self._connect()
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    async def _ask(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._lost:
            raise LeasesLost("the database connection holding this instance's roles was lost")
        held = self._conn is not None
        try:
            rows: list[tuple[Any, ...]] = await self._call(self._query, sql, params)
            return rows
        except Exception as exc:
            if held:
                # whatever it held may be held by another instance by now
                self._lost = True
                raise LeasesLost(
                    f"the database connection holding this instance's roles failed: {exc}"
                ) from exc
            raise

    def held(self) -> None:
        """Raise :class:`LeasesLost` at once if the lease connection is known to be lost
        (no round trip: called before each outbox item)."""
        if self._lost:
            raise LeasesLost("the database connection holding this instance's roles was lost")

    async def start(self, instance_id: int) -> None:
        delay = 1.0
        while True:  # the first connection: wait for the server as open_store does
            try:
                await self._call(self._query, "SELECT 1", ())
                break
            except Exception as exc:
                log.warning(
                    "cannot open the lease connection (%s); trying again in %.0f s", exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        rows = await self._ask("SELECT pg_try_advisory_lock(%s, %s)", (INSTANCE_SPACE, instance_id))
        if not rows[0][0]:
            raise InstanceIdTaken(f"instance id {instance_id} is locked by another process")

    async def try_acquire(self, role: str) -> bool:
        rows = await self._ask("SELECT pg_try_advisory_lock(%s, %s)", (ROLE_SPACE, role_key(role)))
        return bool(rows[0][0])

    async def check(self) -> None:
        if self._conn is None:
            return
        await self._ask("SELECT 1")

    async def alive(self, instance_ids: Sequence[int]) -> set[int]:
        if not instance_ids:
            return set()
        rows = await self._ask(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objsubid = 2 AND granted AND objid::bigint = ANY(%s) AND " + _THIS_DATABASE,
            (INSTANCE_SPACE, list(instance_ids)),
        )
        return {int(row[0]) for row in rows}

    async def holders(self) -> dict[str, str]:
        """Which connection (its application name) holds each role now, for the logs."""
        rows = await self._ask(
            "SELECT l.objid::bigint, a.application_name FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2 AND l.granted "
            "AND l." + _THIS_DATABASE,
            (ROLE_SPACE,),
        )
        return {str(row[0]): str(row[1]) for row in rows}

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(self._thread, conn.close),
                    timeout=CHECK_TIMEOUT,
                )
        self._thread.shutdown(wait=False)


class FileLeases:
    """Locks on files in ``<database>.locks/``: ``roles.lock`` for all roles together and
    one ``instance-<id>.lock`` per running instance."""

    def __init__(self, database: Path) -> None:
        self._folder = database.parent / f"{database.name}.locks"
        self._files: dict[str, int] = {}
        self._instance = 0

    def _take(self, name: str) -> bool:
        if name in self._files:
            return True
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._folder / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._files[name] = fd
        return True

    async def start(self, instance_id: int) -> None:
        self._instance = instance_id
        if not self._take(f"instance-{instance_id}.lock"):
            raise InstanceIdTaken(f"instance id {instance_id} is locked by another process")

    async def try_acquire(self, role: str) -> bool:
        return self._take("roles.lock")

    def held(self) -> None:
        return None  # the kernel keeps a file lock for as long as the process lives

    async def check(self) -> None:
        return None

    async def alive(self, instance_ids: Sequence[int]) -> set[int]:
        found = set()
        for instance_id in instance_ids:
            if instance_id == self._instance:
                found.add(instance_id)
                continue
            path = self._folder / f"instance-{instance_id}.lock"
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # stopped cleanly, or never ran here
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                found.add(instance_id)  # its process holds it: alive
            else:
                with contextlib.suppress(OSError):
                    path.unlink()  # dead: its file is no longer needed
            finally:
                os.close(fd)
        return found

    async def close(self) -> None:
        for name, fd in list(self._files.items()):
            if name.startswith("instance-"):
                with contextlib.suppress(OSError):
                    (self._folder / name).unlink()
            os.close(fd)
        self._files.clear()
