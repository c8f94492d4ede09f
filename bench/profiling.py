"""cProfile across threads, and a wall-clock breakdown of one intake run.

ticketbot's intake runs on three kinds of thread: the event loop (the parser runs
there), the ``asyncio.to_thread`` workers (every IMAP command) and the store's one
database thread. ``cProfile`` only sees the thread that enabled it, so
:class:`ThreadProfiles` gives every thread started while it is active a profiler of
its own, and keeps them apart so each can be read separately.

The wall-clock side (:class:`TimedWatcher`, :class:`TimedIntake`,
:class:`TimedStore`) wraps the real objects without changing them: the watcher
awaits IMAP, parse and intake one after the other, so the three add up to the
run's time (the rest is connecting and the event loop).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, ParamSpec, TypeVar

from adapters.email.imap import ImapWatcher
from bot.mail import InboundEmail
from bot.ports import IntakeOutcome, MailCursor, MailIntake, MailKey
from storage.store import PeeweeRepository, SqlStore

P = ParamSpec("P")
T = TypeVar("T")

# Functions in which a thread waits for work rather than doing any.
_IDLE = (
    "<method 'get' of '_queue.SimpleQueue' objects>",  # executor worker between jobs
    "<method 'poll' of 'select.epoll' objects>",  # event loop waiting on threads/sockets
    "<method 'acquire' of '_thread.lock' objects>",
)
# A worker thread wakes the event loop by a one-byte send on its self-pipe socket; the
# send returns only once the thread has the GIL back, which the woken loop holds first.
_WAKE = (
    "<method 'send' of '_socket.socket' objects>",
    "<method 'recv' of '_socket.socket' objects>",  # the loop reading its self-pipe
)
_SOCKET = ("'_socket.socket'", "'_ssl._SSLSocket'")
# (category, test on (filename, function name)); the first match wins.
_CATEGORIES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("idle (waiting for work)", lambda path, name: name in _IDLE),
    ("waking the event loop (incl. GIL wait)", lambda path, name: name in _WAKE),
    ("IMAP: socket I/O (Dovecot's time)", lambda path, name: any(s in name for s in _SOCKET)),
    (
        "IMAP: imapclient + imaplib + watcher",
        lambda path, name: any(p in path for p in ("/imapclient/", "imaplib", "email/imap.py")),
    ),
    ("parse: adapters/email", lambda path, name: "/adapters/email/" in path),
    ("parse: stdlib email", lambda path, name: "/email/" in path),
    ("DB: sqlite3 (C)", lambda path, name: "sqlite3" in name),
    ("DB: psycopg2 (C)", lambda path, name: "psycopg2" in name or "psycopg2" in path),
    ("DB: peewee", lambda path, name: path.endswith("peewee.py")),
    ("ticketbot: bot/ + storage/", lambda path, name: "/bot/" in path or "/storage/" in path),
    (
        "asyncio + thread hand-offs",
        lambda path, name: any(
            part in path
            for part in ("/asyncio/", "/concurrent/", "threading.py", "queue.py", "selectors.py")
        ),
    ),
    ("hashing", lambda path, name: "_hashlib" in name or "sha256" in name),
)


class ThreadProfiles:
    """Profile the calling thread and every thread started while active, each on its own."""

    def __init__(self) -> None:
        self.profiles: list[tuple[str, cProfile.Profile]] = []
        self._lock = threading.Lock()
        self._main = cProfile.Profile()

    def _start_in_thread(self, frame: FrameType, event: str, arg: Any) -> None:
        # Called once, on a new thread's first event; the C profiler then replaces it.
        profile = cProfile.Profile()
        with self._lock:
            self.profiles.append((threading.current_thread().name, profile))
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._start_in_thread)
        self.profiles.append((threading.current_thread().name, self._main))
        self._main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self._main.disable()
        threading.setprofile(None)

    def by_thread(self) -> dict[str, pstats.Stats]:
        """Stats per thread kind: the main thread, ``asyncio`` workers, ``ticketbot-db``."""
        groups: dict[str, list[cProfile.Profile]] = defaultdict(list)
        for name, profile in self.profiles:
            stem, _, number = name.rpartition("_")
            groups[stem if stem and number.isdigit() else name].append(profile)
        merged: dict[str, pstats.Stats] = {}
        for group, profiles in groups.items():
            stats = pstats.Stats(profiles[0], stream=io.StringIO())
            for profile in profiles[1:]:
                stats.add(profile)
            merged[group] = stats
        return merged

    def merged(self) -> pstats.Stats:
        stats = pstats.Stats(self.profiles[0][1], stream=io.StringIO())
        for _name, profile in self.profiles[1:]:
            stats.add(profile)
        return stats


def _category(path: str, name: str) -> str:
    return next((label for label, test in _CATEGORIES if test(path, name)), "other")


def categorise(stats: pstats.Stats) -> dict[str, float]:
    """Own time (tottime) summed by category, in seconds, largest first.

    A built-in that fits no category of its own (``str.join``, ``isinstance``, a
    regex match ...) is counted where it was called from, shared out by its callers'
    share of its time: ``isinstance`` called by peewee is peewee's time.
    """
    totals: dict[str, float] = defaultdict(float)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    for (path, _line, name), (_cc, _nc, tottime, _cum, callers) in raw.items():
        category = _category(path, name)
        if category != "other" or path != "~" or not callers:
            totals[category] += tottime
            continue
        shares = {caller: entry[2] for caller, entry in callers.items()}
        whole = sum(shares.values())
        for (caller_path, _, caller_name), share in shares.items():
            part = tottime * share / whole if whole else tottime / len(shares)
            totals[_category(caller_path, caller_name)] += part
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def top(stats: pstats.Stats, sort: str, limit: int) -> str:
    """The ``limit`` first lines of ``stats`` sorted by ``sort``, as pstats prints them."""
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(limit)
    text = out.getvalue()
    # Drop the header pstats writes before the table.
    return text[text.find("   ncalls") :] if "   ncalls" in text else text


# --- wall-clock breakdown ----------------------------------------------------------------------

_IMAP_LABELS = {
    "select_folder": "SELECT",
    "search": "UID SEARCH",
    "fetch": "UID FETCH BODY.PEEK[]",
    "_finish_sync": "UID STORE +FLAGS \\Seen",
}


class TimedWatcher(ImapWatcher):
    """The real watcher, timing each IMAP command as awaited and inside its worker thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.awaited: dict[str, float] = defaultdict(float)
        self.in_thread: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    async def _imap(self, command: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        label = _IMAP_LABELS.get(getattr(command, "__name__", ""), "other")
        started = time.perf_counter()
        try:
            return await super()._imap(command, *args, **kwargs)
        finally:
            self.awaited[label] += time.perf_counter() - started
            self.calls[label] += 1

    async def _io(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        name = getattr(function, "__name__", "")
        label = "connect + LOGIN" if name == "_connect_sync" else _IMAP_LABELS.get(name, "other")

        def timed(*a: P.args, **k: P.kwargs) -> T:
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                self.in_thread[label] += time.perf_counter() - started

        started = time.perf_counter()
        try:
            return await super()._io(timed, *args, **kwargs)
        finally:
            if label == "connect + LOGIN":
                self.awaited[label] += time.perf_counter() - started
                self.calls[label] += 1


class TimedIntake:
    """A :class:`bot.ports.MailIntake` that forwards to the real one and times each call."""

    def __init__(self, intake: MailIntake) -> None:
        self._intake = intake
        self.awaited: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def _done(self, name: str, started: float) -> None:
        self.awaited[name] += time.perf_counter() - started
        self.calls[name] += 1

    async def ingest(self, email: InboundEmail, key: MailKey) -> IntakeOutcome:
        started = time.perf_counter()
        try:
            return await self._intake.ingest(email, key)
        finally:
            self._done("ingest", started)

    async def cursor(self, source: str) -> MailCursor | None:
        started = time.perf_counter()
        try:
            return await self._intake.cursor(source)
        finally:
            self._done("cursor", started)

    async def reset_cursor(self, source: str, validity: int) -> None:
        started = time.perf_counter()
        try:
            await self._intake.reset_cursor(source, validity)
        finally:
            self._done("reset_cursor", started)

    async def pending_done(self, source: str) -> list[MailKey]:
        started = time.perf_counter()
        try:
            return await self._intake.pending_done(source)
        finally:
            self._done("pending_done", started)

    async def mark_done(self, key: MailKey) -> None:
        started = time.perf_counter()
        try:
            await self._intake.mark_done(key)
        finally:
            self._done("mark_done", started)

    async def mark_done_many(self, keys: Sequence[MailKey]) -> None:
        started = time.perf_counter()
        try:
            await self._intake.mark_done_many(keys)
        finally:
            self._done("mark_done_many", started)


class TimedStore(SqlStore):
    """The real store, timing each unit of work inside the database thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_thread = 0.0
        self.transactions = 0
        self.sql_seconds = 0.0  # inside the driver: sqlite3/psycopg2 executing, not peewee
        self.statements = 0
        self.commit_seconds = 0.0
        execute_sql: Callable[..., Any] = self.db.execute_sql
        commit: Callable[[], Any] = self.db.commit

        def timed_execute_sql(sql: str, params: Any = None) -> Any:
            started = time.perf_counter()
            try:
                return execute_sql(sql, params)
            finally:
                self.sql_seconds += time.perf_counter() - started
                self.statements += 1

        def timed_commit() -> Any:
            started = time.perf_counter()
            try:
                return commit()
            finally:
                self.commit_seconds += time.perf_counter() - started

        # Instance attributes over peewee's methods: the database's own calls go through them.
        self.db.execute_sql = timed_execute_sql  # type: ignore[method-assign]
        self.db.commit = timed_commit  # type: ignore[method-assign]

    def _in_transaction(self, work: Callable[[PeeweeRepository], T]) -> T:
        started = time.perf_counter()
        try:
            return super()._in_transaction(work)
        finally:
            self.in_thread += time.perf_counter() - started
            self.transactions += 1


class TimedParse:
    """The parser as the watcher calls it, timed (it runs on the event loop thread)."""

    def __init__(self, parse: Callable[[bytes], InboundEmail]) -> None:
        self._parse = parse
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, raw: bytes) -> InboundEmail:
        started = time.perf_counter()
        try:
            return self._parse(raw)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1
