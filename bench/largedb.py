"""A desk of a million tickets: search, queue status, stats, start-up and memory.

    python -m bench.largedb --tickets 1000000 --backend sqlite|postgresql [--keep DIR]
                            [--passes 3] [--seed N] [--regenerate]

The database is generated once by :mod:`bench.gen` (the project's migrations, then a
bulk load) and kept in ``DIR`` (default ``bench/data/``, not in git), so later runs
reuse it. PostgreSQL runs in a cluster kept in ``DIR/pg``, made and started with the
test suite's helper (:mod:`tests.servers.postgres`, same settings as the tests: fsync
off, default memory settings), stopped at the end.

What is measured, always through the project's code, never a copy of it:

search
    About 110 searches as a volunteer types them (:func:`bot.search.parse_search`), run
    with ``SqlStore.run(lambda repo: repo.search(query, queues, offset, PAGE_SIZE))``
    and the listing rendered with :func:`bot.search.format_results`, as an admin who
    sees all 8 queues. The mix: rare words (a handful of hits), middling ones
    (thousands), common ones (a third of the desk), word + ``queue:`` + ``state:``,
    ``from:``, ``owner:none``, two-word phrases, filters alone, and paging (page 2 to
    page 500). One untimed pass warms the caches, then ``--passes`` timed passes;
    p50/p95 per pass, the median of the passes is quoted.
queue status
    ``repo.queue_overview(all 8 queues)`` (what ``queue status`` reads): 5 times.
stats
    A month's ``stats``: :func:`bot.reports.period.parse_stats_args` ``--month`` at the
    desk's "now" (:data:`bench.gen.END`), then ``repo.report_traffic(None, start, end)``
    and :func:`bot.reports.stats_report` (the table, both charts and the CSVs): 5 times.
start-up
    A new Python process per try: the time of ``build_app(config)`` (the store opened
    and migrated, admins' settings loaded, queues synced, every part built) and, in
    other processes, of ``open_store(config)`` alone; imports are timed apart. The
    config has the 8 queues, a Maildir intake and a files sender, console off.
memory
    A new process runs ``build_app``, one pass of the searches, queue status and the
    month's stats, and reports ``VmRSS`` (at the end) and ``VmHWM`` (the peak) from
    ``/proc/self/status``: 3 times.
why
    The statements of one more run of each (timed one by one at the driver) and the
    database's plan (``EXPLAIN QUERY PLAN`` / ``EXPLAIN (ANALYZE, BUFFERS)``) of every
    search slower than the target, written to ``bench/results/largedb-*-plans.txt``.

A benchmark, not a test: it prints figures and writes
``bench/results/largedb-<backend>-<tickets>-<timestamp>.json``; it never fails because
the machine is slow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from bench import gen

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
TARGET_SEARCH_P95_MS = 200.0
TARGET_REPORT_S = 2.0
TARGET_RSS_MB = 150.0
ADMIN = "@admin:example.org"
TIMED_RUNS = 5


# --- the searches ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    kind: str
    text: str


def search_mix(seed: int = gen.DEFAULT_SEED) -> list[Search]:
    """The searches, the same for every size and backend (so growth compares like with like)."""
    rng = random.Random(seed + 1)
    word = gen.vocabulary_word
    rare = [word(r) for r in rng.sample(range(150_000, gen.VOCABULARY_SIZE), 20)]
    middling = [word(r) for r in rng.sample(range(1_000, 5_000), 15)]
    common_synthetic = [word(r) for r in rng.sample(range(0, 20), 5)]
    common_real = ["photo", "Foto", "licence", "fotografía", "фотографии"]
    searches: list[Search] = []
    searches += [Search("rare word", w) for w in rare]
    searches += [Search("middling word", w) for w in middling]
    searches += [Search("common word", w) for w in common_synthetic + common_real]
    filtered = [
        f"{middling[0]} queue:permissions state:closed",
        f"{middling[1]} queue:info state:open",
        f"{middling[2]} queue:press state:active",
        f"{rare[0]} queue:info state:closed",
        f"{rare[1]} queue:quality state:active",
        "photo queue:permissions state:open",
        "Foto queue:info::de state:closed",
        f"{common_synthetic[0]} queue:press state:pending",
        "licence queue:permissions::de state:active",
        f"{middling[3]} queue:quality state:closed_successful",
    ]
    searches += [Search("word + queue: + state:", t) for t in filtered]
    senders = [
        "from:museum.example.de",
        "from:maria.lopez",
        "from:maria.lopez0@example.net",
        "from:uni.example",
        "from:taro",
        f"from:school.example.fr {middling[4]}",
        "from:anna.mueller1@mail.example.com",
        "from:nobody@nowhere.example",
        "from:club.example.net state:open",
        "from:ines photo",
    ]
    searches += [Search("from:", t) for t in senders]
    unowned = [
        "owner:none",
        "owner:none queue:info",
        "owner:none state:new",
        "owner:none state:active",
        f"owner:none {middling[5]}",
        "owner:none queue:press::ja",
        "owner:none photo",
        "owner:none state:closed",
        f"owner:none {rare[2]}",
        "owner:none queue:permissions state:new",
    ]
    searches += [Search("owner:none", t) for t in unowned]
    phrases = [
        '"old harbour"',
        '"freien Lizenz"',
        '"licence exacte"',
        '"fiesta de"',
        '"старого моста"',
        f'"about {middling[6]}"',
        f'"und {middling[7]}"',
        f'"{rare[3]} and"',
        '"school booklet" photo',
        '"photo credit"',
    ]
    searches += [Search("phrase", t) for t in phrases]
    paging = [
        "photo page:2",
        "photo page:5",
        "photo page:50",
        "photo page:500",
        f"{common_synthetic[1]} page:2",
        f"{common_synthetic[1]} page:100",
        f"{middling[8]} page:2",
        f"{middling[9]} page:3",
        "Foto page:20",
        "state:closed page:100",
        "queue:info page:2",
        "queue:permissions page:1000",
        "licence page:10",
        f"{rare[4]} page:2",
        "owner:none page:5",
    ]
    searches += [Search("paging", t) for t in paging]
    filters_only = [
        "tag:urgent",
        "priority:5",
        "state:pending",
        "queue:quality",
        "state:new",
        "tag:legal state:closed",
        "priority:1 queue:press",
        f"owner:{gen.Generator(1).volunteers[0][0]}",
    ]
    searches += [Search("filters only", t) for t in filters_only]
    return searches


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (p95 of 110 values is the 105th smallest)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def queue_names() -> list[str]:
    return list(gen.QUEUE_NAMES)


async def run_searches(
    store: Any,
    searches: Sequence[Search],
    timeout_ms: float | None = None,
    skip: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """One pass: every search as the ``search`` command runs it; ms and hits of each.

    On PostgreSQL a search may be cancelled by ``statement_timeout`` (see ``--pg-timeout``):
    it is recorded at the timeout, flagged ``timed_out``, as a lower bound. Searches in
    ``skip`` (timed out in the warm-up pass) are not run again and recorded the same way.
    """
    from bot.ports import StoreUnavailable
    from bot.search import PAGE_SIZE, format_results

    queues = queue_names()
    out: list[dict[str, Any]] = []
    for search in searches:
        if search.text in skip:
            assert timeout_ms is not None
            row = {"kind": search.kind, "text": search.text, "ms": timeout_ms, "total": None}
            out.append({**row, "timed_out": True})
            continue
        query, page, offset = await _parsed(store, search.text, queues)
        started = time.perf_counter()
        try:
            found = await store.run(
                lambda repo, q=query, o=offset: repo.search(q, queues, o, PAGE_SIZE)
            )
        except StoreUnavailable as exc:
            if timeout_ms is None or "statement timeout" not in str(exc):
                raise
            row = {"kind": search.kind, "text": search.text, "ms": timeout_ms, "total": None}
            out.append({**row, "timed_out": True})
            continue
        format_results(found, page, PAGE_SIZE, search.text)
        ms = (time.perf_counter() - started) * 1000
        out.append({"kind": search.kind, "text": search.text, "ms": ms, "total": found.total})
    return out


#: Keys of deep pages, found once per process (untimed): see :func:`_parsed`.
_DEEP_KEYS: dict[str, Any] = {}


async def _parsed(store: Any, text: str, queues: list[str]) -> tuple[Any, int, int]:
    """The query, page number and offset of a search as the volunteer reaches it.

    A typed ``page:N`` beyond :data:`bot.search.MAX_PAGE` is refused by the bot; a
    volunteer gets there by following the listing's ``next:`` lines, which carry the
    keyset (``after:``). So a deep page is measured as that keyset page: the key of the
    hit before it is looked up once, untimed, with OFFSET.
    """
    from dataclasses import replace

    from bot.search import MAX_PAGE, PAGE_SIZE, parse_search

    words = text.split()
    pages = [w for w in words if w.lower().startswith("page:")]
    page = int(pages[-1].split(":", 1)[1]) if pages else 1
    if page <= MAX_PAGE:
        query, page = parse_search(text, ADMIN)
        return query, page, (page - 1) * PAGE_SIZE
    query, _ = parse_search(" ".join(w for w in words if w not in pages), ADMIN)
    if text not in _DEEP_KEYS:
        before = await store.run(
            lambda repo: repo.search(query, queues, (page - 1) * PAGE_SIZE - 1, 1)
        )
        _DEEP_KEYS[text] = before.next_key
    return replace(query, after=_DEEP_KEYS[text]), page, 0


def summarise_searches(passes: list[list[dict[str, Any]]]) -> dict[str, Any]:
    per_pass = []
    for rows in passes:
        ms = [r["ms"] for r in rows]
        per_pass.append({"p50": statistics.median(ms), "p95": percentile(ms, 0.95), "max": max(ms)})
    by_text: dict[str, list[float]] = {}
    for rows in passes:
        for r in rows:
            by_text.setdefault(r["text"], []).append(r["ms"])
    queries = [
        {
            "kind": r["kind"],
            "text": r["text"],
            "total": r["total"],
            "ms_median": statistics.median(by_text[r["text"]]),
            "ms_runs": [round(x, 2) for x in by_text[r["text"]]],
            "timed_out": bool(r.get("timed_out")),
        }
        for r in passes[0]
    ]
    kinds: dict[str, list[float]] = {}
    for q in queries:
        kinds.setdefault(q["kind"], []).append(q["ms_median"])
    return {
        "count": len(queries),
        "timed_out": sum(q["timed_out"] for q in queries),
        "passes": len(passes),
        "p50_ms": statistics.median(p["p50"] for p in per_pass),
        "p95_ms": statistics.median(p["p95"] for p in per_pass),
        "per_pass": per_pass,
        "by_kind": {
            k: {"n": len(v), "p50_ms": statistics.median(v), "max_ms": max(v)}
            for k, v in kinds.items()
        },
        "queries": queries,
    }


# --- the config and the child processes ----------------------------------------------------------


def config_data(url: str, work: Path) -> dict[str, Any]:
    """What bot.toml would say for this desk: 8 queues in Matrix rooms, Maildir in, files out,
    console off. Nothing connects: build_app only builds the parts."""
    volunteers = gen.Generator(1).queue_volunteers
    queues: list[dict[str, Any]] = []
    for name in gen.QUEUE_NAMES:
        entry: dict[str, Any] = {"name": name}
        if "::" not in name:
            entry["addresses"] = [gen.QUEUE_ADDRESS[name]]
            entry["volunteers"] = [v[0] for v in volunteers[name]]
            entry["matrix_room"] = f"!{name}:example.org"
        if name == "info":
            entry["default"] = True
        queues.append(entry)
    return {
        "admins": [ADMIN],
        "storage": {"url": url},
        "mail": {
            "maildir": {"path": str(work / "maildir")},
            "files": {"path": str(work / "outgoing")},
        },
        # Matrix as a real desk has it; build_app makes the adapter, nothing connects
        "matrix": {
            "homeserver": "http://127.0.0.1:9",
            "user_id": "@ticketbot:example.org",
            "password": "not-used",
        },
        "console": {"enabled": False},
        "queue": queues,
    }


def make_config(url: str, work: Path) -> Any:
    from bot.config import parse_config

    for sub in ("maildir", "outgoing"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    return parse_config(config_data(url, work), work / "bot.toml", {})


def vm_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process, in MB (1,048,576 bytes)."""
    found: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


async def _child_startup(url: str, work: Path, what: str) -> dict[str, Any]:
    from bot.app import build_app, open_store

    config = make_config(url, work)
    started = time.perf_counter()
    if what == "build_app":
        app = await build_app(config)
        seconds = time.perf_counter() - started
        await app.close()
    else:
        store = await open_store(config)
        seconds = time.perf_counter() - started
        await store.close()
    return {"seconds": seconds}


async def _child_rss(
    url: str, work: Path, timeout_ms: float | None, skip: frozenset[str]
) -> dict[str, Any]:
    from bot.app import build_app
    from bot.reports import ChartDrawer, stats_report
    from bot.reports.period import parse_stats_args

    marks = {"after_imports": vm_status()}
    config = make_config(url, work)
    app = await build_app(config)
    marks["after_build_app"] = vm_status()
    try:
        await run_searches(app.store, search_mix(), timeout_ms, skip)
        marks["after_searches"] = vm_status()
        await app.store.run(lambda repo: repo.queue_overview(queue_names()))
        stats = parse_stats_args("--month", gen.END, queue_names())
        drawer = ChartDrawer()
        traffic = await app.store.run(
            lambda repo: repo.report_traffic(None, stats.start, stats.end)
        )
        await asyncio.to_thread(stats_report, traffic, stats.label, drawer)
        marks["after_stats"] = vm_status()
    finally:
        await app.close()
    return marks


def child_main(args: argparse.Namespace) -> int:
    imports_started = time.perf_counter()
    import bot.app  # what ticketbot run imports
    import bot.reports  # noqa: F401

    imports = time.perf_counter() - imports_started
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="ticketbot-largedb-"))
    try:
        if args.child == "rss":
            skip = (
                frozenset(json.loads(Path(args.skip_file).read_text())) if args.skip_file else None
            )
            result = asyncio.run(_child_rss(args.url, work, args.timeout_ms, skip or frozenset()))
        else:
            result = asyncio.run(_child_startup(args.url, work, args.child))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["imports_seconds"] = imports
    print(json.dumps(result))
    return 0


def run_child(what: str, url: str, extra: Sequence[str] = ()) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.largedb", "--child", what, "--url", url, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {what} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


# --- statements, one by one ----------------------------------------------------------------------


@contextlib.contextmanager
def statement_timer(db: Any) -> Iterator[list[dict[str, Any]]]:
    """Time every statement the database runs (wrapping ``execute_sql`` on this instance)."""
    recorded: list[dict[str, Any]] = []
    original = db.execute_sql

    def timed(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        cursor = original(sql, params, *args, **kwargs)
        rows = cursor.fetchall() if cursor.description else []
        seconds = time.perf_counter() - started

        class Replay:
            description = cursor.description
            rowcount = cursor.rowcount
            lastrowid = getattr(cursor, "lastrowid", None)

            def __init__(self) -> None:
                self._rows = list(rows)

            def fetchall(self) -> list[Any]:
                rest, self._rows = self._rows, []
                return rest

            def fetchmany(self, size: int = 100) -> list[Any]:
                chunk, self._rows = self._rows[:size], self._rows[size:]
                return chunk

            def fetchone(self) -> Any:
                return self._rows.pop(0) if self._rows else None

            def __iter__(self) -> Iterator[Any]:
                return iter(self.fetchall())

            def close(self) -> None:
                pass

        recorded.append({"sql": sql, "params": list(params or ()), "ms": seconds * 1000})
        return Replay()

    db.execute_sql = timed
    try:
        yield recorded
    finally:
        del db.execute_sql


async def explain_in(store: Any, db: Any, sql: str, params: Sequence[Any], postgres: bool) -> str:
    """The plan, in its own transaction; on PostgreSQL with ANALYZE unless that times out."""
    from bot.ports import StoreUnavailable

    try:
        return str(await store.run(lambda _r: explain(db, sql, params, postgres)))
    except StoreUnavailable as exc:
        if "statement timeout" not in str(exc):
            raise
    plan = await store.run(lambda _r: explain(db, sql, params, postgres, analyze=False))
    return f"(EXPLAIN ANALYZE hit the statement timeout; the plan without ANALYZE:)\n{plan}"


def explain(db: Any, sql: str, params: Sequence[Any], postgres: bool, analyze: bool = True) -> str:
    if postgres:
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
        cursor = db.execute_sql(prefix + sql, list(params))
        return "\n".join(row[0] for row in cursor.fetchall())
    cursor = db.execute_sql("EXPLAIN QUERY PLAN " + sql, list(params))
    return "\n".join(f"{row[1]:>3} {row[3]}" for row in cursor.fetchall())


# --- the benchmark -------------------------------------------------------------------------------


async def measure_in_process(
    url: str, passes: int, say: Callable[[str], None], timeout_ms: float | None
) -> dict[str, Any]:
    from bot.reports import ChartDrawer, stats_report
    from bot.reports.period import parse_stats_args
    from bot.search import PAGE_SIZE
    from storage.database import is_sqlite
    from storage.search import search_statements
    from storage.store import SqlStore

    result: dict[str, Any] = {}
    store = await SqlStore.open(url)
    try:
        searches = search_mix()
        say(f"search: {len(searches)} searches, 1 warm-up pass + {passes} timed passes")
        started = time.perf_counter()
        warm = await run_searches(store, searches, timeout_ms)
        skip = frozenset(r["text"] for r in warm if r.get("timed_out"))
        say(f"  warm-up pass {time.perf_counter() - started:.1f} s")
        if skip:
            say(
                f"  {len(skip)} searches hit the {timeout_ms / 1000:.0f} s statement timeout; "
                "they are counted at the timeout (a lower bound) and not run again"
            )
        result["skip"] = sorted(skip)
        runs = []
        for number in range(passes):
            rows = await run_searches(store, searches, timeout_ms, skip)
            ms = [r["ms"] for r in rows]
            say(
                f"  pass {number + 1}: p50 {statistics.median(ms):.1f} ms, "
                f"p95 {percentile(ms, 0.95):.1f} ms, max {max(ms):.0f} ms"
            )
            runs.append(rows)
        result["search"] = summarise_searches(runs)
        result["search"]["warm_up_ms"] = [round(r["ms"], 2) for r in warm]

        names = queue_names()
        overview_s = []
        for _ in range(TIMED_RUNS):
            started = time.perf_counter()
            await store.run(lambda repo: repo.queue_overview(names))
            overview_s.append(time.perf_counter() - started)
        result["queue_status"] = {
            "seconds_median": statistics.median(overview_s),
            "seconds": overview_s,
        }
        say(f"queue status: median {statistics.median(overview_s) * 1000:.0f} ms "
            f"({', '.join(f'{s * 1000:.0f}' for s in overview_s)})")  # fmt: skip

        stats = parse_stats_args("--month", gen.END, names)
        db_s, render_s = [], []
        report_files = 0
        for _ in range(TIMED_RUNS):
            started = time.perf_counter()
            drawer = ChartDrawer()  # as the stats command does: children start first
            traffic = await store.run(
                lambda repo: repo.report_traffic(None, stats.start, stats.end)
            )
            middle = time.perf_counter()
            report = await asyncio.to_thread(stats_report, traffic, stats.label, drawer)
            db_s.append(middle - started)
            render_s.append(time.perf_counter() - middle)
            report_files = len(report.files)
        total = [a + b for a, b in zip(db_s, render_s, strict=True)]
        result["stats"] = {
            "period": [stats.start.isoformat(), stats.end.isoformat()],
            "label": stats.label,
            "seconds_median": statistics.median(total),
            "db_seconds_median": statistics.median(db_s),
            "render_seconds_median": statistics.median(render_s),
            "seconds": total,
            # the first report starts the chart child (interpreter and matplotlib import,
            # overlapping the query); the later ones find it up (bot.reports.charts_worker)
            "first_seconds": total[0],
            "warm_seconds_median": statistics.median(total[1:]) if len(total) > 1 else None,
            "db_seconds": db_s,
            "render_seconds": render_s,
            "files": report_files,
            "received_in_period": sum(sum(q.received) for q in traffic.queues),
        }
        say(
            f"stats --month: median {statistics.median(total):.2f} s (database "
            f"{statistics.median(db_s):.2f} s, charts {statistics.median(render_s):.2f} s);"
            f" the first, starting the chart child: {total[0]:.2f} s"
        )

        # why: every statement once more, timed one by one, and the plans of slow searches
        db = store.db
        postgres = not is_sqlite(db)
        why: dict[str, Any] = {}

        def with_statements(work: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def run(repo: Any) -> list[dict[str, Any]]:
                with statement_timer(db) as recorded:
                    work(repo)
                return recorded

            return run

        why["queue_status"] = await store.run(with_statements(lambda r: r.queue_overview(names)))
        why["stats"] = await store.run(
            with_statements(lambda r: r.report_traffic(None, stats.start, stats.end))
        )
        slow = [q for q in result["search"]["queries"] if q["ms_median"] > TARGET_SEARCH_P95_MS]
        plans = []
        for q in slow:
            query, _page, offset = await _parsed(store, q["text"], names)
            statements = search_statements(db, query, names, offset, PAGE_SIZE)
            if statements is None:
                continue
            for label, statement in zip(("count", "page"), statements, strict=True):
                plan = await explain_in(store, db, statement.sql, statement.params, postgres)
                plans.append(
                    {"text": q["text"], "statement": label, "sql": statement.sql,
                     "params": [str(p) for p in statement.params], "plan": plan}
                )  # fmt: skip
        for part in ("queue_status", "stats"):
            for entry in why[part]:
                if entry["ms"] > 100:
                    entry["plan"] = await explain_in(
                        store, db, entry["sql"], entry["params"], postgres
                    )
        why["search_plans"] = plans
        result["why"] = why
    finally:
        await store.close()
    return result


#: The code a figure depends on: the work tree may hold other people's uncommitted changes.
MEASURED_CODE = (
    "storage/search.py",
    "storage/admin.py",
    "storage/reports.py",
    "storage/store.py",
    "storage/database.py",
    "bot/search.py",
    "bot/app.py",
    "bot/reports/__init__.py",
    "bot/reports/charts.py",
)


def code_fingerprint() -> dict[str, Any]:
    """sha256 (first 12) of the files measured, and whether git sees them changed."""
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", *MEASURED_CODE],
        capture_output=True, text=True, check=False, cwd=ROOT,
    ).stdout.split("\n")  # fmt: skip
    files = {}
    for name in MEASURED_CODE:
        path = ROOT / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else None
        files[name] = digest
    return {"sha256": files, "git_status": [line for line in changed if line.strip()]}


def machine(url: str) -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    versions = {}
    for package in ("peewee", "psycopg2-binary", "matplotlib"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
        cwd=ROOT,
    ).stdout.strip()  # fmt: skip
    disk = subprocess.run(
        ["df", "-h", "--output=source,size,avail", str(gen.DATA.parent)],
        capture_output=True, text=True, check=False,
    ).stdout.strip().splitlines()[-1:]  # fmt: skip
    info: dict[str, Any] = {
        "code": code_fingerprint(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "disk": disk[0] if disk else "?",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "git_commit": commit,
        "loadavg_start": os.getloadavg(),
    }
    if url.startswith("postgres"):
        from bench.intake import postgres_version

        info["postgres"] = postgres_version(url)
    return info


def measure(
    built: gen.Built, passes: int, say: Callable[[str], None], timeout_ms: float | None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "backend": built.backend,
        "tickets": built.tickets,
        "database": built.meta,
        "machine": machine(built.url),
        "targets": {
            "search_p95_ms": TARGET_SEARCH_P95_MS,
            "report_seconds": TARGET_REPORT_S,
            "rss_mb": TARGET_RSS_MB,
        },
    }
    result.update(asyncio.run(measure_in_process(built.url, passes, say, timeout_ms)))
    say("start-up: build_app and open_store, each in a new process")
    startup = {"build_app": [], "open_store": []}
    for _ in range(TIMED_RUNS):
        for what in ("build_app", "open_store"):
            startup[what].append(run_child(what, built.url))
    result["startup"] = {
        what: {
            "seconds_median": statistics.median(r["seconds"] for r in runs),
            "imports_seconds_median": statistics.median(r["imports_seconds"] for r in runs),
            "process_seconds_median": statistics.median(r["process_seconds"] for r in runs),
            "runs": runs,
        }
        for what, runs in startup.items()
    }
    say(
        f"  build_app {result['startup']['build_app']['seconds_median'] * 1000:.0f} ms, "
        f"open_store {result['startup']['open_store']['seconds_median'] * 1000:.0f} ms "
        f"(imports {result['startup']['build_app']['imports_seconds_median']:.2f} s, "
        f"whole process {result['startup']['build_app']['process_seconds_median']:.2f} s)"
    )
    say("memory: build_app + a pass of searches + queue status + stats, 3 processes")
    extra: list[str] = []
    if timeout_ms is not None:
        skip_file = Path(tempfile.mkdtemp(prefix="ticketbot-largedb-")) / "skip.json"
        skip_file.write_text(json.dumps(result["skip"]))
        extra = ["--timeout-ms", str(timeout_ms), "--skip-file", str(skip_file)]
    rss_runs = [run_child("rss", built.url, extra) for _ in range(3)]
    result["memory"] = {
        "rss_mb_median": statistics.median(r["after_stats"]["VmRSS"] for r in rss_runs),
        "hwm_mb_median": statistics.median(r["after_stats"]["VmHWM"] for r in rss_runs),
        "runs": rss_runs,
    }
    for stage in ("after_imports", "after_build_app", "after_searches", "after_stats"):
        rss = statistics.median(r[stage]["VmRSS"] for r in rss_runs)
        hwm = statistics.median(r[stage]["VmHWM"] for r in rss_runs)
        say(f"  {stage:16} VmRSS {rss:6.1f} MB  VmHWM {hwm:6.1f} MB")
    result["machine"]["loadavg_end"] = os.getloadavg()
    return result


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "search_p95": result["search"]["p95_ms"] < TARGET_SEARCH_P95_MS,
        "queue_status": result["queue_status"]["seconds_median"] < TARGET_REPORT_S,
        "stats": result["stats"]["seconds_median"] < TARGET_REPORT_S,
        "memory": result["memory"]["hwm_mb_median"] < TARGET_RSS_MB,
    }


def print_summary(result: dict[str, Any]) -> None:
    search = result["search"]
    ok = result["met"]
    print(f"\n== {result['backend']}, {result['tickets']:,} tickets ==")
    verdict = "met" if ok["search_p95"] else "MISSED"
    print(f"search        p50 {search['p50_ms']:8.1f} ms  p95 {search['p95_ms']:8.1f} ms  "
          f"(target p95 < {TARGET_SEARCH_P95_MS:.0f} ms: {verdict})")  # fmt: skip
    if search.get("timed_out"):
        print(
            f"  ({search['timed_out']} searches cancelled by the statement timeout: counted at "
            "the timeout, so p95 is a lower bound)"
        )
    for kind, v in search["by_kind"].items():
        print(
            f"  {kind:24} n={v['n']:3}  median {v['p50_ms']:8.1f} ms  slowest {v['max_ms']:8.1f} ms"
        )
    print(f"queue status  {result['queue_status']['seconds_median']:.3f} s "
          f"({'met' if ok['queue_status'] else 'MISSED'})")  # fmt: skip
    print(f"stats --month {result['stats']['seconds_median']:.3f} s "
          f"({'met' if ok['stats'] else 'MISSED'})")  # fmt: skip
    print(f"build_app     {result['startup']['build_app']['seconds_median']:.3f} s")
    print(f"memory        VmRSS {result['memory']['rss_mb_median']:.1f} MB, "
          f"VmHWM {result['memory']['hwm_mb_median']:.1f} MB "
          f"({'met' if ok['memory'] else 'MISSED'})")  # fmt: skip


def write_plans(result: dict[str, Any], path: Path) -> None:
    lines = []
    why = result["why"]
    for part in ("queue_status", "stats"):
        lines.append(f"==== {part}: statements, ms ====")
        for entry in why[part]:
            lines.append(f"-- {entry['ms']:.1f} ms: {' '.join(entry['sql'].split())[:400]}")
            if "plan" in entry:
                lines.append(entry["plan"])
    lines.append("==== searches slower than the target ====")
    for plan in why["search_plans"]:
        lines.append(f"-- {plan['text']!r} ({plan['statement']}): {plan['sql']}")
        lines.append(f"   params {plan['params']}")
        lines.append(plan["plan"])
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.largedb", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--keep", type=Path, default=gen.DATA, metavar="DIR",
        help="where generated databases are kept and reused (default bench/data/)",
    )  # fmt: skip
    parser.add_argument("--passes", type=int, default=3, help="timed passes of the searches")
    parser.add_argument("--seed", type=int, default=gen.DEFAULT_SEED)
    parser.add_argument("--regenerate", action="store_true", help="do not reuse a kept database")
    parser.add_argument(
        "--child", choices=("build_app", "open_store", "rss"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--pg-settings", default="",
        help="PostgreSQL settings for the bot's connections, e.g. work_mem=64MB (passed as "
        "libpq options in storage.url, as an operator would)",
    )  # fmt: skip
    parser.add_argument(
        "--pg-timeout", type=float, default=10.0,
        help="PostgreSQL statement_timeout in seconds (0: none): a slower search is counted "
        "at the timeout, so a run of the unindexed worst cases still ends (default 10)",
    )  # fmt: skip
    parser.add_argument("--label", default="", help="added to the results file name")
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--timeout-ms", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--skip-file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def with_pg_options(url: str, settings: Sequence[str]) -> str:
    """``url`` with libpq ``options`` setting these server settings on every connection."""
    if not settings:
        return url
    options = " ".join(f"-c {s}" for s in settings)
    return f"{url}?{urlencode({'options': options}, quote_via=quote)}"


def run(args: argparse.Namespace, built: gen.Built, started: float) -> dict[str, Any]:
    timeout_ms = None
    if built.backend == "postgresql":
        settings = [s.strip() for s in args.pg_settings.split(",") if s.strip()]
        if args.pg_timeout > 0:
            timeout_ms = args.pg_timeout * 1000
            settings.append(f"statement_timeout={int(timeout_ms)}")
        built = dataclasses.replace(built, url=with_pg_options(built.url, settings))
    result = measure(built, args.passes, gen._say, timeout_ms)
    result["url"] = built.url
    result["met"] = verdicts(result)
    result["command"] = " ".join(["python -m bench.largedb", *sys.argv[1:]])
    result["total_seconds"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    label = f"-{args.label}" if args.label else ""
    stem = RESULTS / f"largedb-{built.backend}-{built.tickets}{label}-{stamp}"
    write_plans(result, stem.with_name(stem.name + "-plans.txt"))
    stem.with_suffix(".json").write_text(
        json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n"
    )
    print_summary(result)
    print(
        f"\nwritten {stem}.json and {stem.name}-plans.txt ({result['total_seconds']:.0f} s in all)"
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    if args.backend == "sqlite":
        built = gen.sqlite_database(args.tickets, args.seed, args.keep, regenerate=args.regenerate)
        run(args, built, started)
    else:
        with gen.postgres_cluster(args.keep) as server:
            built = gen.postgres_database(
                server, args.tickets, args.seed, args.keep, regenerate=args.regenerate
            )
            run(args, built, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
