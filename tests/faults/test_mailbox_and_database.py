"""The mailbox renumbered under the bot, and a database it cannot write: nothing lost or doubled.

The real app runs in this process (``build_app`` + ``app.run()`` as a task) against a
Dovecot of its own and a SQLite file in ``tmp_path``.

* UIDVALIDITY changes after 20 mails are tickets, two ways:

  - ``renumbered``: with bot and Dovecot stopped, Dovecot's ``dovecot-uidlist`` and
    ``dovecot.index*`` are deleted from the Maildir (Dovecot 2.3 then rebuilds them and
    hands out the next UIDVALIDITY from ``dovecot-uidvalidity``; the messages keep their
    ``\\Seen`` flag, which Maildir keeps in the file name) and 5 new mails are delivered
    into ``new/``; then both start again;
  - ``recreated``: the watched folder is deleted over IMAP while the bot runs and created
    again with the same 20 raw messages, now unflagged, plus 5 new ones. (Dovecot tells
    the bot's IDLE session only ``* NO Internal error``, its index id having changed;
    the watcher sees the new folder when it renews IDLE, after ``poll_seconds``.)

  Either way the bot logs the change once, reads the folder from the start, finds the
  20 to be duplicates (no ticket, no second acknowledgement), makes exactly 5 new
  tickets, flags all 25 and keeps the new UIDVALIDITY in its cursor.
* A locked database: a connection of the test's holds ``BEGIN IMMEDIATE`` while mail
  arrives. Each unit of work waits out SQLite's busy timeout (10 s,
  storage/database.py) and fails; the watcher logs ``StoreUnavailable: database is
  locked``, leaves the mail unflagged and backs off. After the lock is gone the mail is
  taken in once and flagged.
* A read-only database: the bot is stopped, its database file made read-only (as root,
  where permission bits do not stop writes, with ``chattr +i``, which stops root too;
  otherwise ``chmod 0444``), mail arrives, the bot starts again. Reading works, writing
  does not: each mail fails with ``attempt to write a readonly database``, stays
  unflagged, the watcher backs off 1, 2, 4 s; once the file is writable again the next
  try opens the database afresh and takes everything in once.

  The bot is restarted rather than left running because a running bot does not notice:
  its SQLite connection keeps the file descriptor it opened read-write, its commits go
  to the WAL, and the checkpoints into the read-only file fail silently. The new
  permissions bite when the file is opened again: at a start, or after any database
  error (the store then reconnects). Conversely a connection opened while the file was
  read-only stays read-only until a write fails on it, so the test counts tickets past
  the bot during that time (a read through the bot's store would open such a connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from bot.app import App, build_app
from bot.config import Config, parse_config
from bot.ports import MailCursor, MailKey
from tests.faults.test_servers_away import Console, OwnDovecot, base_config, running, wait_for
from tests.servers.dovecot import LOOPBACK, ImapAccount, _identities, _write_users, make_workdir
from tests.servers.ports import free_port

pytestmark = pytest.mark.servers

IMAP_LOGGER = "adapters.email.imap"
INTAKE_LOGGER = "bot.intake"
SEEN = b"\\Seen"
BUSY_TIMEOUT_SECONDS = 10.0  # storage/database.py: busy_timeout 10_000 ms
ACK = "Thank you, your mail is ticket {ticket_number}."


# --- helpers -------------------------------------------------------------------------------


def message_id(tag: str) -> str:
    return f"<{tag}@faults.example.net>"


def mail(tag: str) -> bytes:
    """A mail from its own sender (one sender's 20 mails would count as a flood)."""
    return (
        f"From: Person {tag} <person.{tag}@example.net>\r\n"
        "To: info@example.org\r\n"
        f"Subject: Question {tag}\r\n"
        f"Message-ID: {message_id(tag)}\r\n"
        "Date: Mon, 23 Nov 2026 09:12:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Hello, this is question {tag}.\r\n"
    ).encode()


def append_all(account: ImapAccount, raws: Sequence[bytes], folder: str = "INBOX") -> None:
    """APPEND every message, unflagged, over one connection (creating the folder)."""
    with account.client() as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for raw in raws:
            client.append(folder, raw, flags=())


def raw_messages(account: ImapAccount, folder: str) -> list[bytes]:
    """The messages of ``folder`` as the server keeps them, in UID order (flags untouched)."""
    with account.client() as client:
        client.select_folder(folder, readonly=True)
        uids = sorted(client.search(["ALL"]))
        fetched = client.fetch(uids, [b"BODY.PEEK[]"])
        return [bytes(fetched[uid][b"BODY[]"]) for uid in uids]


def all_seen(account: ImapAccount, count: int, folder: str = "INBOX") -> bool:
    flags = account.flags(folder)
    return len(flags) == count and all(SEEN in f for f in flags.values())


def seen_count(account: ImapAccount, folder: str = "INBOX") -> int:
    return sum(SEEN in f for f in account.flags(folder).values())


def acknowledgements(out: Path) -> int:
    return len(list(out.glob("*.eml"))) if out.exists() else 0


def make_config(tmp_path: Path, account: ImapAccount, folder: str = "INBOX") -> Config:
    settings = base_config(
        tmp_path, account, console={"user": "@alice:example.org"}, queue={"autoresponse_new": ACK}
    )
    settings["mail"]["imap"]["folder"] = folder
    return parse_config(settings, tmp_path / "bot.toml", {})


@contextlib.asynccontextmanager
async def bot(config: Config) -> AsyncIterator[App]:
    """The app built and running, its console on a pipe held open and a StringIO."""
    console = Console.open()
    try:
        # bounded: a bot that cannot open its database waits for it, which here would
        # wait for ever
        app = await asyncio.wait_for(
            build_app(config, stdin=console.read_end, stdout=console.out), timeout=30
        )
        async with running(app):
            yield app
    finally:
        console.close()


def app_task() -> asyncio.Task[Any]:
    return next(t for t in asyncio.all_tasks() if t.get_name() == "app")


async def count_tickets(app: App) -> int:
    return int(await app.store.run(lambda repo: repo.count_tickets()))


async def wait_tickets(app: App, count: int, timeout: float, log: pytest.LogCaptureFixture) -> None:
    deadline = time.monotonic() + timeout
    while (have := await count_tickets(app)) < count:
        assert time.monotonic() < deadline, f"{have} of {count} tickets\n{log.text[-4000:]}"
        await asyncio.sleep(0.1)


async def numbers_by_message_id(app: App, tags: Sequence[str]) -> dict[str, str | None]:
    def look(repo: Any) -> dict[str, str | None]:
        found = {}
        for tag in tags:
            ticket = repo.ticket_by_message_ids([message_id(tag)])
            found[tag] = ticket.number if ticket else None
        return found

    result: dict[str, str | None] = await app.store.run(look)
    return result


def messages(log: pytest.LogCaptureFixture, logger: str, part: str) -> list[logging.LogRecord]:
    return [r for r in log.records if r.name == logger and part in r.getMessage()]


def retry_delays(records: Sequence[logging.LogRecord]) -> list[float]:
    return [float(r.getMessage().rsplit("retrying in ", 1)[1].split()[0]) for r in records]


@pytest.fixture
def dovecot_here() -> Iterator[OwnDovecot]:
    """A Dovecot for this test alone, to stop, tamper with on disk and start again."""
    ids = _identities()
    workdir = make_workdir("ticketbot-faults-mailbox-", ids)
    account = ImapAccount(LOOPBACK, free_port(), "mailbox", uuid.uuid4().hex)
    _write_users(workdir / "users", {account.username: account.password})
    server = OwnDovecot(workdir, account.port, account, ids)
    try:
        server.start()
        yield server
    finally:
        server.stop("crash")
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


def maildir_of(server: OwnDovecot) -> Path:
    return server.workdir / "home" / server.account.username / "Maildir"


# --- UIDVALIDITY changes -------------------------------------------------------------------


OLD = [f"old{n:02d}" for n in range(20)]
NEW = [f"new{n}" for n in range(5)]


@dataclass
class Outcome:
    """What the bot's database and the server say once everything has settled."""

    tickets: int
    numbers: dict[str, str | None]
    cursor: MailCursor | None
    pending: list[MailKey]
    acknowledgements: int


async def settled(app: App, source: str, out: Path, tags: Sequence[str]) -> Outcome:
    await wait_for("25 acknowledgements", lambda: acknowledgements(out) >= 25, 10)
    await asyncio.sleep(1.0)  # a doubled ticket or acknowledgement would show now
    return Outcome(
        tickets=await count_tickets(app),
        numbers=await numbers_by_message_id(app, tags),
        cursor=await app.store.run(lambda repo: repo.cursor(source)),
        pending=await app.store.run(lambda repo: repo.intake_pending(source)),
        acknowledgements=acknowledgements(out),
    )


@pytest.mark.parametrize("how", ["renumbered", "recreated"])
async def test_new_uidvalidity_reads_the_folder_again_without_doubling(
    tmp_path: Path,
    dovecot_here: OwnDovecot,
    caplog: pytest.LogCaptureFixture,
    how: Literal["renumbered", "recreated"],
) -> None:
    caplog.set_level(logging.INFO)
    account = dovecot_here.account
    folder = "INBOX" if how == "renumbered" else "Tickets"
    config = make_config(tmp_path, account, folder)
    out = tmp_path / "out"

    # --- 20 mails become tickets ----------------------------------------------------------
    await asyncio.to_thread(append_all, account, [mail(tag) for tag in OLD], folder)
    async with bot(config) as app:
        assert app.imap is not None
        source = app.imap.source
        await wait_tickets(app, 20, 20, caplog)
        await wait_for("the 20 mails flagged", lambda: all_seen(account, 20, folder), 10)
        await wait_for("20 acknowledgements", lambda: acknowledgements(out) == 20, 10)
        before = await numbers_by_message_id(app, OLD)
        old_cursor = await app.store.run(lambda repo: repo.cursor(source))
        assert old_cursor is not None and old_cursor.last_uid == 20

        if how == "recreated":
            # --- deleted and created again under the running bot ----------------------
            saved = await asyncio.to_thread(raw_messages, account, folder)
            assert all(message_id(t).encode() in r for r, t in zip(saved, OLD, strict=True))
            await asyncio.to_thread(account.delete_folder, folder)
            await asyncio.to_thread(append_all, account, [*saved, *(mail(t) for t in NEW)], folder)
            new_validity = await asyncio.to_thread(account.uidvalidity, folder)
            await wait_tickets(app, 25, 20, caplog)
            await wait_for("all 25 flagged", lambda: all_seen(account, 25, folder), 15)
            outcome = await settled(app, source, out, [*OLD, *NEW])

    if how == "renumbered":
        # --- Dovecot's UID list and index thrown away while everything is stopped -----
        await asyncio.to_thread(dovecot_here.stop, "kick")
        maildir = maildir_of(dovecot_here)
        removed = [
            p.name
            for p in maildir.iterdir()
            if p.name == "dovecot-uidlist" or p.name.startswith("dovecot.index")
        ]
        for name in removed:
            (maildir / name).unlink()
        assert "dovecot-uidlist" in removed, removed
        for tag in NEW:
            dovecot_here.deliver(mail(tag))
        await asyncio.to_thread(dovecot_here.start)
        new_validity = await asyncio.to_thread(account.uidvalidity, folder)
        flags = await asyncio.to_thread(account.flags, folder)
        assert len(flags) == 25
        assert sum(SEEN in f for f in flags.values()) == 20, "the old mails keep \\Seen"

        async with bot(config) as app:
            await wait_tickets(app, 25, 20, caplog)
            await wait_for("all 25 flagged", lambda: all_seen(account, 25, folder), 15)
            outcome = await settled(app, source, out, [*OLD, *NEW])

    flags = await asyncio.to_thread(account.flags, folder)
    log_text = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert new_validity != old_cursor.validity
    assert outcome.tickets == 25, f"5 new tickets, the 20 old mails not again\n{log_text[-4000:]}"
    assert {t: outcome.numbers[t] for t in OLD} == before, "the old mails keep their tickets"
    assert None not in outcome.numbers.values()
    assert len(set(outcome.numbers.values())) == 25
    assert outcome.acknowledgements == 25, "no second acknowledgement for a mail read again"
    assert len(flags) == 25 and all(SEEN in f for f in flags.values()), flags
    assert outcome.cursor == MailCursor(new_validity, max(flags)), outcome.cursor
    assert outcome.pending == [], "every message taken in is marked done"

    changed = messages(caplog, IMAP_LOGGER, "UIDVALIDITY changed")
    assert len(changed) == 1, log_text
    assert f"from {old_cursor.validity} to {new_validity}" in changed[0].getMessage()
    duplicates = messages(caplog, INTAKE_LOGGER, "already stored")
    assert sorted(r.getMessage().split()[1] for r in duplicates) == sorted(
        message_id(tag) for tag in OLD
    ), log_text
    assert len(messages(caplog, INTAKE_LOGGER, "new ticket")) == 25, log_text


# --- a locked database ---------------------------------------------------------------------


def hold_write_lock(db_path: Path) -> sqlite3.Connection:
    """Another writer (a backup, an admin's sqlite3 shell) holding the write lock.

    In this process, but SQLite keeps its locks per file across connections, so the
    bot's connection sees the lock exactly as it would see another process's.
    """
    connection = sqlite3.connect(db_path, timeout=5, isolation_level=None, check_same_thread=False)
    connection.execute("BEGIN IMMEDIATE")
    return connection


async def test_locked_database_intake_waits_then_takes_mail_in_once(
    tmp_path: Path,
    dovecot_here: OwnDovecot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    account = dovecot_here.account
    tags = ["lock1", "lock2", "lock3"]
    lock_seconds = BUSY_TIMEOUT_SECONDS + 3.0  # one unit of work fails, the next one waits

    async with bot(make_config(tmp_path, account)) as app:
        task = app_task()
        await asyncio.to_thread(account.append, mail("before"))
        await wait_tickets(app, 1, 15, caplog)
        await wait_for("the first mail flagged", lambda: all_seen(account, 1), 10)
        await asyncio.sleep(0.5)  # back in IDLE

        lock = await asyncio.to_thread(hold_write_lock, tmp_path / "desk.db")
        locked_at = time.monotonic()
        try:
            await asyncio.to_thread(append_all, account, [mail(tag) for tag in tags])
            await wait_for(
                "the watcher to report the locked database",
                lambda: messages(caplog, IMAP_LOGGER, "database is locked"),
                timeout=BUSY_TIMEOUT_SECONDS + 4,
                interval=0.1,
            )
            failed_at = time.monotonic()
            seen_while_locked = await asyncio.to_thread(seen_count, account)
            tickets_while_locked = lock.execute("SELECT count(*) FROM ticket").fetchone()[0]
            assert not task.done(), "the bot is still running"
            await asyncio.sleep(max(0.0, lock_seconds - (time.monotonic() - locked_at)))
        finally:
            lock.rollback()
            lock.close()
        released_at = time.monotonic()

        await wait_tickets(app, 4, 15, caplog)
        await wait_for("all four flagged", lambda: all_seen(account, 4), 10)
        caught_up = time.monotonic() - released_at
        await asyncio.sleep(1.0)  # a doubled ticket would show now
        count = await count_tickets(app)
        numbers = await numbers_by_message_id(app, tags)
        assert not task.done()

    log_text = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert seen_while_locked == 1, "the mail stays unflagged while the database is locked"
    assert tickets_while_locked == 1
    assert failed_at - locked_at >= BUSY_TIMEOUT_SECONDS - 1, "each try waits the busy timeout"
    assert count == 4, log_text
    assert None not in numbers.values() and len(set(numbers.values())) == 3
    assert caught_up < 5, f"took {caught_up:.1f} s after the lock was released\n{log_text}"

    failures = messages(caplog, IMAP_LOGGER, "check failed")
    assert failures, log_text
    assert all("StoreUnavailable: database is locked" in r.getMessage() for r in failures)
    # with a 10 s busy timeout a 13 s lock leaves room for one failed try, two at most
    assert 1 <= len(failures) <= 2, log_text
    assert retry_delays(failures) == [2.0**i for i in range(len(failures))], log_text
    assert len(messages(caplog, IMAP_LOGGER, ": connected")) == 1, "the IMAP login was kept"


# --- a read-only database ------------------------------------------------------------------


def _cannot(reason: str) -> None:
    """Under CI a test is never skipped: it fails and says why; elsewhere it is skipped."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def make_read_only(path: Path) -> None:
    # Everything in the write-ahead log goes into the file first: otherwise opening it
    # needs a write (the log's recovery), and the bot, rightly, waits at start for a
    # database it cannot open instead of starting on one it can read but not write.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if os.geteuid() == 0:
        # root writes through permission bits; the immutable attribute stops root too
        chattr = shutil.which("chattr")
        if chattr is None:
            _cannot("running as root without chattr (e2fsprogs): no way to make the file read-only")
        done = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            _cannot(f"chattr +i is not supported here: {done.stderr.strip()}")
    else:
        path.chmod(0o444)


def make_writable(path: Path) -> None:
    if os.geteuid() == 0:
        chattr = shutil.which("chattr") or "chattr"
        subprocess.run([chattr, "-i", str(path)], check=True, capture_output=True)
        return
    # A read-only connection creates -wal and -shm with the file's mode (0444): unless
    # they are made writable too, the bot stays read-only (what an admin must know).
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        with contextlib.suppress(FileNotFoundError):
            (path.parent / name).chmod(0o644)


def count_rows(path: Path, table: str) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        connection.close()


def can_write(path: Path) -> bool:
    try:
        with path.open("r+b"):
            return True
    except OSError:
        return False


async def test_read_only_database_intake_stops_and_catches_up(
    tmp_path: Path,
    dovecot_here: OwnDovecot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    account = dovecot_here.account
    config = make_config(tmp_path, account)
    db_path = tmp_path / "desk.db"
    tags = ["ro1", "ro2"]
    read_only_seconds = 5.0

    async with bot(config) as app:
        await asyncio.to_thread(account.append, mail("before"))
        await wait_tickets(app, 1, 15, caplog)
        await wait_for("the first mail flagged", lambda: all_seen(account, 1), 10)

    make_read_only(db_path)
    try:
        assert not can_write(db_path), "the database file is read-only now"
        await asyncio.to_thread(append_all, account, [mail(tag) for tag in tags])
        caplog.clear()
        # a start on a database it can read but not write
        async with bot(config) as app:
            task = app_task()
            started_at = time.monotonic()
            await wait_for(
                "the watcher to report the read-only database",
                lambda: messages(caplog, IMAP_LOGGER, "check failed"),
                timeout=10,
                interval=0.1,
            )
            await asyncio.sleep(max(0.0, read_only_seconds - (time.monotonic() - started_at)))
            seen_while_read_only = await asyncio.to_thread(seen_count, account)
            # read past the bot: a read through its store would open a connection now, while
            # the file is read-only, and SQLite would keep that connection read-only
            tickets_while_read_only = await asyncio.to_thread(count_rows, db_path, "ticket")
            failures = messages(caplog, IMAP_LOGGER, "check failed")
            unflagged = messages(caplog, IMAP_LOGGER, "stays unflagged")
            assert not task.done(), "the bot is still running"

            make_writable(db_path)
            writable_at = time.monotonic()
            await wait_tickets(app, 3, 20, caplog)
            await wait_for("all three flagged", lambda: all_seen(account, 3), 10)
            caught_up = time.monotonic() - writable_at
            await asyncio.sleep(1.0)  # a doubled ticket would show now
            count = await count_tickets(app)
            numbers = await numbers_by_message_id(app, tags)
            assert not task.done()
    finally:
        with contextlib.suppress(Exception):
            make_writable(db_path)

    log_text = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert seen_while_read_only == 1, "the new mail stays unflagged"
    assert tickets_while_read_only == 1
    assert failures, log_text
    assert all(
        "StoreUnavailable: attempt to write a readonly database" in r.getMessage() for r in failures
    ), log_text
    # each try stops at the first new mail (UID 2) and names it; UID 3 is not tried past it
    assert len(unflagged) == len(failures), log_text
    assert all("taking in UID 2 failed" in r.getMessage() for r in unflagged), log_text
    # 1, 2, 4 s apart over 5 s: no busy loop
    delays = retry_delays(failures)
    assert delays == [2.0**i for i in range(len(failures))], log_text
    assert 2 <= len(failures) <= 4, log_text
    assert count == 3, log_text
    assert None not in numbers.values() and len(set(numbers.values())) == 2
    # nothing tells the watcher the database is back: the next try comes after its backoff
    # (twice that if a connection opened while the file was read-only is still open)
    assert caught_up < 2 * delays[-1] + 3, f"{caught_up:.1f} s\n{log_text}"
