"""Intake throughput: messages per second from a real Dovecot INBOX, against raw baselines.

    python -m bench.intake [--count 2000] [--runs 3] [--postgres | --postgres-url URL]
                           [--profile] [--load maildir|append] [--seed N]

One throwaway Dovecot is started and given ``--count`` generated messages
(:mod:`bench.corpus`). Each run then measures, on the same messages:

(a) raw fetch
    imapclient connects, logs in, selects INBOX, ``UID SEARCH ALL`` and fetches
    ``BODY.PEEK[]`` in batches of 50 (as the bot does), doing nothing with the bytes.
(b) fetch + stdlib parse
    the same, plus ``email.message_from_bytes(raw, policy=email.policy.default)`` and
    the content of ``get_body()`` and of every ``iter_attachments()`` part.
(c) ticketbot intake
    the real :class:`~adapters.email.imap.ImapWatcher` (one ``check_once()``), the real
    parser, :class:`~bot.intake.IntakeService` and :class:`~storage.store.SqlStore` on
    a new SQLite file; with ``--postgres``/``--postgres-url`` also on a new PostgreSQL
    database. Before each (c) run ``\\Seen`` is cleared on every message; the new
    database brings a new cursor, so every run takes in every message.

Each timing runs from connecting to the last message handled (logout, and for (c)
opening and migrating the database, are outside it). The figures are messages per
second, the median of the runs, and the ratios (c)/(a) and (c)/(b). They are printed
and written to ``bench/results/intake-<timestamp>.json``. ``--profile`` adds one
instrumented (c) run (wall-clock breakdown: IMAP, parse, database) and one under
cProfile in every thread, written next to the JSON.

A benchmark, not a test: it fails only if something is broken (a server does not
start, or a run does not take in every message), never because the machine is slow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imapclient import IMAPClient

from adapters.email.imap import FETCH_BATCH, ImapSettings, ImapWatcher
from adapters.email.parse import parser_for
from bench import servers
from bench.corpus import DEFAULT_SEED, Corpus, generate
from bench.profiling import (
    ThreadProfiles,
    TimedIntake,
    TimedParse,
    TimedStore,
    TimedWatcher,
    categorise,
    top,
)
from bot.config import Config, parse_config
from bot.intake import IntakeService
from bot.mail import InboundEmail
from bot.ports import MailIntake, SystemClock
from storage import models as m
from storage.store import SqlStore
from tests.servers.dovecot import ImapAccount

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_VS_B = 0.7  # the project's goal: intake at least 0.7 of fetch + stdlib parse

RAW = "a"
STDLIB = "b"
INTAKE = "c"
INTAKE_PG = "c-pg"
LABELS = {
    RAW: "(a) raw fetch",
    STDLIB: "(b) fetch + stdlib parse",
    INTAKE: "(c) ticketbot intake, SQLite",
    INTAKE_PG: "(c) ticketbot intake, PostgreSQL",
}

SHORT = {RAW: "(a)", STDLIB: "(b)", INTAKE: "(c) SQLite", INTAKE_PG: "(c) PostgreSQL"}


@dataclass
class Run:
    variant: str
    run: int
    messages: int
    seconds: float
    checks: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


class BenchError(RuntimeError):
    """Something is broken (not slow): the figures would mean nothing."""


# --- (a) and (b): imapclient alone -------------------------------------------------------------


def stdlib_parse(raw: bytes) -> int:
    """Parse with the stdlib's modern API and read the body and every attachment."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    size = 0
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        size += len(body.get_content())
    for part in message.iter_attachments():
        size += len(part.get_content())
    return size


def fetch_all(account: ImapAccount, handle: Callable[[bytes], object] | None) -> Run:
    """Fetch every message in INBOX in batches of FETCH_BATCH; ``handle`` each one if given."""
    started = time.perf_counter()
    client = IMAPClient(account.host, account.port, ssl=False, timeout=60)
    client.login(account.username, account.password)
    client.select_folder("INBOX")
    uids = sorted(int(uid) for uid in client.search(["ALL"]))
    count = 0
    for start in range(0, len(uids), FETCH_BATCH):
        batch = uids[start : start + FETCH_BATCH]
        fetched = client.fetch(batch, [b"BODY.PEEK[]"])
        for uid in batch:
            raw = fetched[uid][b"BODY[]"]
            if handle is not None:
                handle(raw)
            count += 1
    seconds = time.perf_counter() - started
    client.logout()
    return Run(STDLIB if handle else RAW, 0, count, seconds)


# --- (c): ticketbot ----------------------------------------------------------------------------


def bench_config(account: ImapAccount, storage_url: str, workdir: Path) -> Config:
    """Three queues shown on the console (no Matrix), IMAP on the bench Dovecot."""
    data: dict[str, Any] = {
        "storage": {"url": storage_url},
        "mail": {
            "imap": {
                "host": account.host,
                "port": account.port,
                "security": "none",
                "username": account.username,
                "password": account.password,
                "idle": False,
            },
            "files": {"path": "outgoing"},
        },
        "console": {"enabled": True},
        "queue": [
            {"name": "info", "addresses": ["info@example.org"], "default": True},
            {"name": "press", "addresses": ["press@example.org"]},
            {"name": "permissions", "addresses": ["permissions@example.org"]},
        ],
    }
    return parse_config(data, workdir / "bot.toml", {})


def watcher_for(
    config: Config,
    intake: MailIntake,
    parse: Callable[[bytes], InboundEmail],
    kind: type[ImapWatcher] = ImapWatcher,
) -> ImapWatcher:
    """The watcher as :func:`bot.app.build_app` makes it."""
    assert config.mail.imap is not None
    return kind(ImapSettings.from_config(config.mail.imap), intake, parse)


def real_parse(config: Config) -> Callable[[bytes], InboundEmail]:
    """The parser with the configured attachment limits, as build_app wires it."""
    return parser_for(config.mail)


@dataclass
class Instruments:
    """What an instrumented (c) run records; see :mod:`bench.profiling`."""

    watcher: TimedWatcher | None = None
    intake: TimedIntake | None = None
    store: TimedStore | None = None
    parse: TimedParse | None = None


async def ticketbot_intake(
    server: servers.BenchDovecot,
    storage_url: str,
    workdir: Path,
    expected: int,
    instruments: Instruments | None = None,
) -> Run:
    """One ``check_once()`` of the real watcher into a new database; checks what it stored."""
    config = bench_config(server.account, storage_url, workdir)
    store_kind = TimedStore if instruments is not None else SqlStore
    store = await store_kind.open(config.storage.url)
    try:
        await store.run(lambda repo: repo.sync_queues([q.name for q in config.queues]))
        service = IntakeService(config, store, SystemClock(), wake=lambda: None)
        intake: MailIntake = service
        parse = real_parse(config)
        watcher_kind: type[ImapWatcher] = ImapWatcher
        if instruments is not None:
            assert isinstance(store, TimedStore)
            instruments.store = store
            instruments.intake = TimedIntake(service)
            instruments.parse = TimedParse(parse)
            intake, parse, watcher_kind = instruments.intake, instruments.parse, TimedWatcher
        watcher = watcher_for(config, intake, parse, watcher_kind)
        if instruments is not None:
            assert isinstance(watcher, TimedWatcher)
            instruments.watcher = watcher
        started = time.perf_counter()
        count = await watcher.check_once()
        seconds = time.perf_counter() - started
        await watcher.close()

        def counts(_repo: object) -> dict[str, int]:
            return {
                "ingested": count,
                "tickets": int(m.Ticket.select().count()),
                "articles": int(m.Article.select().count()),
                "attachments": int(m.Attachment.select().count()),
                "outbox": int(m.OutboxEntry.select().count()),
                "pending": int(
                    m.IntakeRecord.select().where(m.IntakeRecord.done_at.is_null()).count()
                ),
            }

        checks = await store.run(counts)
    finally:
        await store.close()
    if checks["ingested"] != expected or checks["articles"] != expected or checks["pending"]:
        raise BenchError(f"intake did not take in every message exactly once: {checks}")
    variant = INTAKE if storage_url.startswith("sqlite") else INTAKE_PG
    return Run(variant, 0, count, seconds, checks)


@contextlib.contextmanager
def sqlite_url() -> Iterator[tuple[str, Path]]:
    workdir = Path(tempfile.mkdtemp(prefix="ticketbot-bench-db-"))
    try:
        yield f"sqlite:///{workdir}/intake.db", workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[tuple[str, Path]]:
    """A new, empty database on the server of ``server_url``, dropped afterwards."""
    from tests.servers.postgres import _drop_database, connect

    name = f"ticketbot_bench_{uuid.uuid4().hex[:12]}"
    conn = connect(server_url)
    workdir = Path(tempfile.mkdtemp(prefix="ticketbot-bench-pg-"))
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield urlsplit(server_url)._replace(path=f"/{name}").geturl(), workdir
    finally:
        try:
            _drop_database(conn, name)
        finally:
            conn.close()
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster started the way the test suite starts one (fsync off)."""
    import pytest

    from tests.servers.postgres import start_cluster

    try:
        cluster, _seconds = start_cluster()
    except pytest.fail.Exception as exc:
        raise servers.ServerUnavailable(str(exc)) from None
    try:
        yield cluster.url
    finally:
        cluster.stop()
        shutil.rmtree(cluster.basedir, ignore_errors=True)


def postgres_version(url: str) -> str:
    from tests.servers.postgres import connect

    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            row = cur.fetchone()
            cur.execute("SHOW fsync")
            fsync = cur.fetchone()
            cur.execute("SHOW synchronous_commit")
            sync = cur.fetchone()
    finally:
        conn.close()
    return (
        f"{row[0] if row else '?'} (fsync={fsync[0] if fsync else '?'}, "
        f"synchronous_commit={sync[0] if sync else '?'})"
    )


# --- profiling ---------------------------------------------------------------------------------


def breakdown(instruments: Instruments, run: Run) -> dict[str, Any]:
    """Where the wall-clock time of an instrumented run went."""
    watcher, intake, store, parse = (
        instruments.watcher,
        instruments.intake,
        instruments.store,
        instruments.parse,
    )
    assert watcher and intake and store and parse
    imap = sum(watcher.awaited.values())
    database = sum(intake.awaited.values())
    rest = run.seconds - imap - database - parse.seconds
    per_message = 1000.0 / run.messages
    return {
        "seconds": run.seconds,
        "messages": run.messages,
        "ms_per_message": run.seconds * per_message,
        "parts_ms_per_message": {
            "IMAP commands (awaited)": imap * per_message,
            "parse_email (event loop)": parse.seconds * per_message,
            "IntakeService calls (awaited)": database * per_message,
            "rest (event loop, logging, loop glue)": rest * per_message,
        },
        "imap_ms_per_message": {
            label: {
                "awaited": seconds * per_message,
                "in_thread": watcher.in_thread.get(label, 0.0) * per_message,
                "calls": watcher.calls[label],
            }
            for label, seconds in sorted(watcher.awaited.items(), key=lambda i: -i[1])
        },
        "intake_ms_per_message": {
            name: {"awaited": seconds * per_message, "calls": intake.calls[name]}
            for name, seconds in sorted(intake.awaited.items(), key=lambda i: -i[1])
        },
        "database_thread_ms_per_message": store.in_thread * per_message,
        "database_driver_ms_per_message": {
            "execute (statements; BEGIN untimed)": store.sql_seconds * per_message,
            "COMMIT": store.commit_seconds * per_message,
        },
        "statements_per_message": store.statements / run.messages,
        "transactions": store.transactions,
    }


def print_breakdown(data: dict[str, Any]) -> None:
    print(f"\nwhere (c)'s time goes, one instrumented run: {data['ms_per_message']:.3f} ms/message")
    for label, value in data["parts_ms_per_message"].items():
        print(f"  {label:<42} {value:7.3f} ms  {value / data['ms_per_message']:6.1%}")
    print("  IMAP commands, ms/message (awaited / inside the worker thread, calls):")
    for label, value in data["imap_ms_per_message"].items():
        print(
            f"    {label:<40} {value['awaited']:7.3f} / {value['in_thread']:7.3f}"
            f"  ({value['calls']})"
        )
    print("  IntakeService calls, ms/message (awaited, calls):")
    for label, value in data["intake_ms_per_message"].items():
        print(f"    {label:<40} {value['awaited']:7.3f}  ({value['calls']})")
    print(
        f"    database thread, inside transactions:    "
        f"{data['database_thread_ms_per_message']:7.3f}  ({data['transactions']} transactions)"
    )
    for label, value in data["database_driver_ms_per_message"].items():
        print(f"      of which in the driver: {label:<36} {value:7.3f}")
    print(f"      SQL statements per message: {data['statements_per_message']:.1f}")


def profile_intake(server: servers.BenchDovecot, expected: int, stem: Path) -> dict[str, Any]:
    """One (c) run under cProfile in every thread; writes ``<stem>-profile.txt`` and ``.pstats``."""
    servers.reset_seen(server)
    with sqlite_url() as (url, workdir), ThreadProfiles() as profiles:
        run = asyncio.run(ticketbot_intake(server, url, workdir, expected))
    report: list[str] = []
    summary: dict[str, Any] = {"seconds_under_profiler": run.seconds, "threads": {}}
    report.append(
        "cProfile of one (c) run, every thread profiled on its own (see bench/profiling.py).\n"
        "Own time (tottime) per thread; built-ins are counted with their callers. 'idle' is\n"
        "a thread waiting for work: the event loop in epoll while a worker thread runs, a\n"
        "worker waiting for its next job. The profiler slows Python code down several times\n"
        "more than C code, so compare categories within a thread, not with wall-clock runs.\n"
    )
    for group, stats in profiles.by_thread().items():
        categories = categorise(stats)
        if sum(v for k, v in categories.items() if not k.startswith("idle")) < 0.01:
            continue  # e.g. the executor's shutdown thread
        summary["threads"][group] = {k: round(v, 4) for k, v in categories.items()}
        report.append(f"==== thread {group}: own time by category (s) ====")
        report.extend(f"{v:9.3f}  {k}" for k, v in categories.items())
        report.append(f"\n---- thread {group}: top by own time ----")
        report.append(top(stats, "tottime", 30))
        report.append(f"---- thread {group}: top by cumulative time ----")
        report.append(top(stats, "cumulative", 40))
    merged = profiles.merged()
    merged.dump_stats(str(stem.with_name(stem.name + "-profile.pstats")))
    text_path = stem.with_name(stem.name + "-profile.txt")
    text_path.write_text("\n".join(report))
    summary["report"] = str(text_path)
    return summary


# --- the benchmark -----------------------------------------------------------------------------


def machine(dovecot_version: str) -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("IMAPClient", "peewee", "psycopg2-binary"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "dovecot": dovecot_version,
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "git_commit": commit,
    }


def summarise(runs: Sequence[Run]) -> dict[str, Any]:
    medians: dict[str, float] = {}
    for variant in LABELS:
        rates = [r.rate for r in runs if r.variant == variant]
        if rates:
            medians[variant] = statistics.median(rates)
    ratios: dict[str, float] = {}
    for variant in (INTAKE, INTAKE_PG):
        if variant in medians:
            ratios[f"{variant}/a"] = medians[variant] / medians[RAW]
            ratios[f"{variant}/b"] = medians[variant] / medians[STDLIB]
    return {"median_messages_per_second": medians, "ratios": ratios}


def print_table(runs: Sequence[Run], summary: dict[str, Any]) -> None:
    medians = summary["median_messages_per_second"]
    print(
        f"\n{'variant':<34} {'msg/s (median)':>14} {'ms/msg':>8} {'vs (a)':>7} {'vs (b)':>7}"
        "   seconds per run"
    )
    for variant, rate in medians.items():
        seconds = " ".join(f"{r.seconds:.2f}" for r in runs if r.variant == variant)
        print(
            f"{LABELS[variant]:<34} {rate:14.0f} {1000 / rate:8.3f} "
            f"{rate / medians[RAW]:7.3f} {rate / medians[STDLIB]:7.3f}   {seconds}"
        )
    ratio = summary["ratios"][f"{INTAKE}/b"]
    verdict = "met" if ratio >= TARGET_VS_B else "not met"
    print(
        f"\ntarget (c) >= {TARGET_VS_B} x (b): {verdict} "
        f"((c)/(b) = {ratio:.3f}; (c) would need {TARGET_VS_B * medians[STDLIB]:.0f} msg/s, "
        f"{TARGET_VS_B * medians[STDLIB] / medians[INTAKE]:.2f} x its speed now)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.intake", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--count", type=int, default=2000, help="messages (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (default 3)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="corpus seed")
    parser.add_argument(
        "--load",
        choices=("maildir", "append"),
        default="maildir",
        help="how the messages get into the INBOX (default maildir: files in new/)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--postgres-url",
        help="also measure (c) on PostgreSQL; a new database is created on this server per run"
        " (the role needs CREATEDB)",
    )
    group.add_argument(
        "--postgres",
        action="store_true",
        help="also measure (c) on a throwaway PostgreSQL cluster started like the tests' one",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the runs: one instrumented (c) run and one under cProfile",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if args.count < 1 or args.runs < 1:
        parser.error("--count and --runs must be at least 1")
    return args


def run_benchmark(args: argparse.Namespace, postgres_url: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    timestamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    load_start = os.getloadavg()  # others' work on the machine shows up as noise
    t0 = time.perf_counter()
    corpus: Corpus = generate(args.count, args.seed)
    corpus_seconds = time.perf_counter() - t0
    print(
        f"corpus: {args.count} messages, {corpus.total_bytes / 1e6:.1f} MB, "
        f"{corpus.follow_ups} follow-ups, {corpus.attachments} attachments "
        f"(generated in {corpus_seconds:.1f} s)"
    )
    with servers.dovecot() as server:
        version = server.version()
        load_seconds = servers.load(server, corpus.messages, args.load)
        t0 = time.perf_counter()
        servers.verify(server, corpus.message_ids)
        verify_seconds = time.perf_counter() - t0
        print(
            f"dovecot {version} on {server.account.host}:{server.account.port}: "
            f"loaded by {args.load} in {load_seconds:.2f} s, seen over IMAP "
            f"(first SELECT + Message-ID check) in {verify_seconds:.2f} s"
        )
        fetch_all(server.account, None)  # warm-up: page cache, Dovecot's index
        runs: list[Run] = []
        for number in range(1, args.runs + 1):
            batch = [fetch_all(server.account, None), fetch_all(server.account, stdlib_parse)]
            servers.reset_seen(server)
            with sqlite_url() as (url, workdir):
                batch.append(asyncio.run(ticketbot_intake(server, url, workdir, args.count)))
            if postgres_url:
                servers.reset_seen(server)
                with postgres_database(postgres_url) as (url, workdir):
                    batch.append(asyncio.run(ticketbot_intake(server, url, workdir, args.count)))
            for run in batch:
                run.run = number
                if run.messages != args.count:
                    raise BenchError(f"{LABELS[run.variant]} saw {run.messages} messages")
            runs.extend(batch)
            print(
                f"run {number}/{args.runs}: "
                + ", ".join(f"{SHORT[r.variant]} {r.rate:.0f} msg/s" for r in batch)
            )
        checks = next(r.checks for r in runs if r.variant == INTAKE)
        summary = summarise(runs)
        print(
            f"(c) stored {checks['tickets']} tickets, {checks['articles']} articles, "
            f"{checks['attachments']} attachments, {checks['outbox']} console posts per run"
        )
        print_table(runs, summary)
        args.results.mkdir(parents=True, exist_ok=True)
        stem = args.results / f"intake-{timestamp}"
        result: dict[str, Any] = {
            "benchmark": "intake",
            "timestamp": timestamp,
            "command": " ".join(["python -m bench.intake", *sys.argv[1:]]),
            "machine": machine(version),
            "postgres": postgres_version(postgres_url) if postgres_url else None,
            "corpus": corpus.summary(),
            "setup_seconds": {
                "corpus": corpus_seconds,
                "load": load_seconds,
                "load_method": args.load,
                "first_select_and_check": verify_seconds,
                "dovecot_startup": server.startup_seconds,
            },
            "runs": [asdict(r) | {"rate": r.rate} for r in runs],
            **summary,
            "target": {
                "c/b": TARGET_VS_B,
                "met": summary["ratios"][f"{INTAKE}/b"] >= TARGET_VS_B,
            },
            "intake_checks": checks,
        }
        if args.profile:
            servers.reset_seen(server)
            instruments = Instruments()
            with sqlite_url() as (url, workdir):
                run = asyncio.run(ticketbot_intake(server, url, workdir, args.count, instruments))
            result["breakdown"] = breakdown(instruments, run)
            print_breakdown(result["breakdown"])
            result["profile"] = profile_intake(server, args.count, stem)
            print("\ncProfile, own time by category (s), idle left out:")
            for group, categories in result["profile"]["threads"].items():
                busy = {k: v for k, v in categories.items() if not k.startswith("idle") and v}
                print(f"  thread {group}: " + ", ".join(f"{k} {v:.2f}" for k, v in busy.items()))
            print(f"full profile: {result['profile']['report']}")
    result["machine"]["loadavg_start"] = load_start
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["total_seconds"] = time.perf_counter() - started
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(
        f"\nwritten {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
        f" ({result['total_seconds']:.0f} s in all)"
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # ticketbot logs one INFO line per message; the benchmark shows warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Every run starts a new database, which bot.intake rightly warns about (new UIDVALIDITY).
    logging.getLogger("bot.intake").setLevel(logging.ERROR)
    try:
        with contextlib.ExitStack() as stack:
            postgres_url = args.postgres_url
            if args.postgres:
                postgres_url = stack.enter_context(throwaway_postgres())
            run_benchmark(args, postgres_url)
    except (servers.ServerUnavailable, BenchError) as exc:
        print(f"bench.intake: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
