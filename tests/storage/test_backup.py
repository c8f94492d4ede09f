"""Backups and restores, on SQLite and on a real PostgreSQL.

A backup is only worth something if it is consistent while the bot writes, comes back
byte for byte, and a restore never lands on top of data. These tests fill a desk through
the real core, back it up while units of work are running, restore it into a second,
empty database, and compare every row; they damage backups and check the damage is
caught before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
from psycopg2 import sql

from bot import domain
from bot.cli import main
from bot.mail import AttachmentData
from storage.backup import (
    BackupError,
    TargetNotEmpty,
    VerificationFailed,
    backup,
    backup_kind,
    backup_name,
    choose_pg_tool,
    find_pg_tool,
    prune_backups,
    restore,
)
from storage.migrations import LATEST
from tests.cli_runs import write_desk_config
from tests.core.conftest import ALICE, Desk, mail, make_desk
from tests.servers.postgres import connect

PHOTO = random.Random(7).randbytes(200_000)  # incompressible, spans many pages
NOTES = "Grüße aus Köln\x00\nzweite Zeile\n".encode()


@dataclass(frozen=True)
class Backend:
    kind: str
    source: str  # the desk's database
    target: str  # an empty database to restore into


@pytest.fixture
def spare_postgres_db_url(postgres_url: str) -> Iterator[str]:
    """A second empty database on the test server (postgres_db_url is one per test)."""
    name = f"t_spare_{uuid.uuid4().hex[:12]}"
    conn = connect(postgres_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(
            "sqlite", f"sqlite:///{tmp_path}/desk.db", f"sqlite:///{tmp_path}/restored/desk.db"
        )
    return Backend(
        "postgresql",
        request.getfixturevalue("postgres_db_url"),
        request.getfixturevalue("spare_postgres_db_url"),
    )


def backup_path(tmp_path: Path, backend: Backend) -> Path:
    folder = tmp_path / "backups"
    folder.mkdir(exist_ok=True)
    return folder / backup_name(backend.kind)


# --- building and reading desks ----------------------------------------------------------------


async def fill(desk: Desk) -> list[str]:
    """Tickets in two queues, a follow-up, a reply that was sent, a note, attachments."""
    first = await desk.receive(
        replace(
            mail("Photo question", message_id="<photo@example.net>"),
            attachments=(
                AttachmentData("photo.jpg", "image/jpeg", PHOTO),
                AttachmentData("notes.txt", "text/plain; charset=utf-8", NOTES),
            ),
        )
    )
    second = await desk.receive(mail("Press request", to="press@example.org"))
    await desk.receive(mail("Re: Photo question", in_reply_to="<photo@example.net>"))
    await desk.command(ALICE, f"!claim {first.ticket_number}")
    await desk.command(ALICE, f"!reply {first.ticket_number} Yes, with credit, please.")
    await desk.command(ALICE, f"!note {first.ticket_number} Asked the photographer too")
    await desk.flush()
    return [first.ticket_number, second.ticket_number]


async def filled_desk(tmp_path: Path, url: str) -> tuple[list[str], Any]:
    """Fill a desk, read it back through the bot's own repository, and close it.

    Closed because every store shares peewee's one database proxy: two open at once
    would both talk to whichever opened last.
    """
    desk = await make_desk(tmp_path, url)
    try:
        numbers = await fill(desk)
        view = await desk_view(desk, numbers)
    finally:
        await desk.store.close()
    return numbers, view


async def desk_view(desk: Desk, numbers: list[str]) -> Any:
    """Tickets, articles (body, message id ...) and attachment bytes, as the bot sees them."""

    def read(repo: Any) -> Any:
        view = []
        for number in numbers:
            ticket = repo.ticket_by_number(number)
            articles = [
                (
                    a.kind,
                    a.author,
                    a.subject,
                    a.body,
                    a.message_id,
                    a.send_state,
                    a.created_at,
                    repo.attachment_files(a.id),
                )
                for a in repo.articles(ticket.id)
            ]
            view.append((ticket.number, ticket.queue, ticket.state, ticket.owner, articles))
        return view

    return await desk.store.run(read)


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, by id: the restored database must equal the source."""
    if url.startswith("sqlite:///"):
        conn: Any = sqlite3.connect(url[len("sqlite:///") :])
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
    else:
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [r[0] for r in cur.fetchall()]
    try:
        rows = {}
        for table in sorted(tables):
            cur = conn.cursor()
            cur.execute(f'SELECT * FROM "{table}" ORDER BY "id"')
            rows[table] = [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in cur.fetchall()
            ]
            cur.close()
        return rows
    finally:
        conn.close()


def execute(url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        with conn:
            conn.execute(statement, params)
        conn.close()
    else:
        pg = psycopg2.connect(url)
        with pg, pg.cursor() as cur:
            cur.execute(statement.replace("?", "%s"), params)
        pg.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".partial", "-journal")))


# --- backup and restore --------------------------------------------------------------------------


async def test_restore_gives_back_every_ticket_article_and_attachment(
    backend: Backend, tmp_path: Path
) -> None:
    numbers, view = await filled_desk(tmp_path, backend.source)
    before = table_rows(backend.source)
    target = backup_path(tmp_path, backend)
    messages: list[str] = []

    started = time.monotonic()
    report = backup(backend.source, target, progress=messages.append)
    backup_seconds = time.monotonic() - started

    assert backup_kind(target) == backend.kind
    assert target.suffix == (".db" if backend.kind == "sqlite" else ".dump")
    assert target.stat().st_mode & 0o077 == 0, "a backup of personal data must be private"
    assert (report.tickets, report.articles, report.attachments) == (2, 5, 2)
    assert report.contents.raw_messages == 3 and report.schema_version == LATEST
    assert report.size == target.stat().st_size and messages
    assert any("sha256 of 5 raw messages and attachments ok" in c for c in report.checks)
    assert leftovers(target.parent) == []

    started = time.monotonic()
    restored = restore(backend.target, target, progress=messages.append)
    restore_seconds = time.monotonic() - started

    assert restored.contents == report.contents
    assert table_rows(backend.target) == before  # every row of every table, ids included
    desk = await make_desk(tmp_path, backend.target)
    try:
        assert await desk_view(desk, numbers) == view
        files = view[0][4][0][7]
        assert [f.data for f in files] == [PHOTO, NOTES]
        # the restored database goes on: ids and the day's ticket counter carry on
        outcome = await desk.receive(mail("After the restore"))
        assert outcome.created and outcome.ticket_number.endswith("000003")
    finally:
        await desk.store.close()
    print(
        f"\n{backend.kind}: backup {backup_seconds:.3f} s, restore {restore_seconds:.3f} s, "
        f"{report.size} bytes"
    )


async def test_backup_neither_waits_for_nor_includes_an_unfinished_unit_of_work(
    backend: Backend, tmp_path: Path
) -> None:
    desk = await make_desk(tmp_path, backend.source)
    written, release = threading.Event(), threading.Event()
    now = desk.clock.now()

    def unfinished(repo: Any) -> None:
        ticket = repo.add_ticket(
            domain.Ticket(None, "2026112310999999", "info", "held", "x@example.net", "X", now, now)
        )
        repo.add_article(
            domain.Article(
                None,
                ticket.id,
                domain.ArticleKind.INBOUND,
                "x@example.net",
                "X",
                "held",
                "not committed yet",
                now,
                message_id="<held@example.net>",
            ),
            raw=b"held raw",
            attachments=[AttachmentData("held.bin", "application/octet-stream", b"held")],
        )
        written.set()
        if not release.wait(60):
            raise RuntimeError("the test never released the unit of work")

    try:
        await fill(desk)
        holding = asyncio.create_task(desk.store.run(unfinished))
        assert await asyncio.to_thread(written.wait, 10)
        target = backup_path(tmp_path, backend)
        # the writer holds its transaction open: the backup must not wait for it
        report = await asyncio.wait_for(asyncio.to_thread(backup, backend.source, target), 60)
    finally:
        release.set()
    await holding
    after = await desk.store.run(lambda repo: repo.count_tickets())
    await desk.store.close()

    assert (report.tickets, after) == (2, 3)
    restore(backend.target, target)
    rows = table_rows(backend.target)
    assert len(rows["ticket"]) == 2
    assert all(r[3] != b"held raw" for r in rows["raw_message"])
    assert not any("<held@example.net>" in r for r in rows["article"])


async def test_backup_taken_while_tickets_are_committed_is_one_moment(
    backend: Backend, tmp_path: Path
) -> None:
    desk = await make_desk(tmp_path, backend.source)
    await fill(desk)
    started, enough, done = threading.Event(), threading.Event(), threading.Event()

    def progress(message: str) -> None:
        # Hold the copy once it has begun (SQLite: a page is copied; pg_dump: it is
        # copying table data in its snapshot) until the desk has committed more tickets.
        begun = message.startswith("copied") or "dumping contents of table" in message
        if begun and not started.is_set():
            started.set()
            assert enough.wait(30), "the desk did not write during the backup"

    async def keep_writing() -> int:
        written = since_start = 0
        while not done.is_set() and written < 300:
            # a sender each: one sender's 20+ new tickets an hour would be grouped as a flood
            sender = f"writer{written}@example.net"
            await desk.receive(
                replace(mail(sender=sender), attachments=(AttachmentData("a", "b", PHOTO),))
            )
            written += 1
            if started.is_set():
                since_start += 1
                if since_start >= 5:
                    enough.set()
        return since_start

    writer = asyncio.create_task(keep_writing())
    target = backup_path(tmp_path, backend)
    try:
        report = await asyncio.wait_for(
            asyncio.to_thread(backup, backend.source, target, progress=progress, pages_per_step=1),
            120,
        )
    finally:
        done.set()
        enough.set()
        written_meanwhile = await writer
    total = await desk.store.run(lambda repo: repo.count_tickets())
    await desk.store.close()

    assert written_meanwhile >= 5
    assert report.tickets < total, "tickets committed during the backup are not in it"
    restored = restore(backend.target, target)
    assert restored.contents == report.contents
    rows = table_rows(backend.target)
    # one moment: every ticket numbered so far is there, with its mail, intake record,
    # attachment and counter, and nothing of any ticket after it
    numbers = sorted(int(r[1][-6:]) for r in rows["ticket"])
    assert numbers == list(range(1, len(numbers) + 1)) == list(range(1, report.tickets + 1))
    assert [r[2] for r in rows["ticket_counter"]] == [report.tickets]
    assert len(rows["intake_record"]) == len(rows["raw_message"]) == report.contents.raw_messages
    ticket_ids = {r[0] for r in rows["ticket"]}
    assert {r[1] for r in rows["article"]} == ticket_ids
    assert len(rows["attachment"]) == report.attachments == 2 + report.tickets - 2


async def test_restore_refuses_a_database_with_tickets_and_changes_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    await filled_desk(tmp_path / "other", backend.target)  # someone's live desk
    await filled_desk(tmp_path, backend.source)
    execute(backend.source, "UPDATE ticket SET subject = ?", ("from the backup",))
    target = backup_path(tmp_path, backend)
    backup(backend.source, target)
    before = table_rows(backend.target)

    with pytest.raises(TargetNotEmpty) as refused:
        restore(backend.target, target)

    message = str(refused.value)
    assert "holds 2 tickets" in message
    name = backend.target.rsplit("/", 1)[-1]
    assert name in message
    assert table_rows(backend.target) == before


async def test_restore_replaces_an_empty_postgresql_schema_the_bot_created(
    tmp_path: Path, postgres_db_url: str, spare_postgres_db_url: str
) -> None:
    await filled_desk(tmp_path, postgres_db_url)
    desk = await make_desk(tmp_path, spare_postgres_db_url)  # migrated, no tickets yet
    await desk.store.close()
    target = tmp_path / "desk.dump"
    report = backup(postgres_db_url, target)
    messages: list[str] = []

    restored = restore(spare_postgres_db_url, target, progress=messages.append)

    assert restored.contents == report.contents
    assert any("empty ticketbot schema" in m for m in messages)
    assert table_rows(spare_postgres_db_url) == table_rows(postgres_db_url)


async def test_restore_refuses_a_postgresql_database_with_other_tables(
    tmp_path: Path, postgres_db_url: str, spare_postgres_db_url: str
) -> None:
    await filled_desk(tmp_path, postgres_db_url)
    execute(spare_postgres_db_url, "CREATE TABLE payroll (id INTEGER)")
    target = tmp_path / "desk.dump"
    backup(postgres_db_url, target)

    with pytest.raises(TargetNotEmpty, match=r"not ticketbot's \(public\.payroll\)"):
        restore(spare_postgres_db_url, target)


async def test_sqlite_restore_never_replaces_an_existing_database_file(tmp_path: Path) -> None:
    await filled_desk(tmp_path, f"sqlite:///{tmp_path}/desk.db")
    desk = await make_desk(tmp_path, f"sqlite:///{tmp_path}/fresh.db")  # migrated, empty
    await desk.store.close()
    fresh = (tmp_path / "fresh.db").read_bytes()
    target = tmp_path / "desk-backup.db"
    backup(f"sqlite:///{tmp_path}/desk.db", target)

    with pytest.raises(TargetNotEmpty, match=r"fresh\.db: it is not empty \(it holds 0 tickets"):
        restore(f"sqlite:///{tmp_path}/fresh.db", target)
    assert (tmp_path / "fresh.db").read_bytes() == fresh

    (tmp_path / "placeholder.db").touch()  # an empty file is no database: it may be filled
    assert restore(f"sqlite:///{tmp_path}/placeholder.db", target).tickets == 2


async def test_restore_takes_a_copy_of_a_stopped_bots_database_file(tmp_path: Path) -> None:
    """A file copied by hand (WAL mode) restores like a backup; nothing is left beside it."""
    await filled_desk(tmp_path, f"sqlite:///{tmp_path}/desk.db")
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(tmp_path / "desk.db", copies / "by-hand.db")
    assert (copies / "by-hand.db").read_bytes()[18:20] == b"\x02\x02"  # WAL mode

    restored = restore(f"sqlite:///{tmp_path}/restored/desk.db", copies / "by-hand.db")

    assert restored.tickets == 2
    assert sorted(p.name for p in copies.iterdir()) == ["by-hand.db"]
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == ["desk.db"]
    assert (tmp_path / "restored" / "desk.db").read_bytes()[18:20] == b"\x01\x01"


async def test_a_kind_of_backup_cannot_be_restored_into_the_other_kind(tmp_path: Path) -> None:
    await filled_desk(tmp_path, f"sqlite:///{tmp_path}/desk.db")
    target = tmp_path / "desk-backup.db"
    backup(f"sqlite:///{tmp_path}/desk.db", target)
    with pytest.raises(BackupError, match="is a sqlite backup, but the storage url is postgresql"):
        restore("postgresql://nobody@127.0.0.1:1/nothing", target)
    (tmp_path / "notes.txt").write_text("not a backup")
    with pytest.raises(BackupError, match="is not a ticketbot backup"):
        restore(f"sqlite:///{tmp_path}/new.db", tmp_path / "notes.txt")


async def test_credentials_go_to_pg_tools_through_the_environment_only(
    tmp_path: Path,
    postgres_url: str,
    postgres_db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plain role owning its database (as in production), its password never in argv."""
    role, password = f"desk_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    name = f"t_owned_{uuid.uuid4().hex[:10]}"
    admin = connect(postgres_url)
    server = urlsplit(postgres_url)
    owned = server._replace(
        netloc=f"{role}:{password}@{server.hostname}:{server.port}", path=f"/{name}"
    ).geturl()
    launched: list[tuple[list[str], dict[str, str]]] = []
    real_popen = subprocess.Popen

    def recording_popen(args: list[str], **kwargs: Any) -> Any:
        launched.append((list(args), dict(kwargs.get("env") or {})))
        return real_popen(args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    try:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)),
                (password,),
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(role)
                )
            )
        await filled_desk(tmp_path, postgres_db_url)
        target = tmp_path / "desk.dump"
        backup(postgres_db_url, target)
        assert restore(owned, target).tickets == 2
        assert backup(owned, tmp_path / "again.dump").tickets == 2
    finally:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()
    tools = [(args, env) for args, env in launched if "--version" not in args]
    assert {Path(args[0]).name for args, _ in tools} == {"pg_dump", "pg_restore"}
    assert not any(password in arg or role in arg for args, _ in tools for arg in args)
    with_password = [env for _, env in tools if env.get("PGPASSWORD") == password]
    assert len(with_password) == 2  # the restore into, and the backup of, the owned database
    assert all(env["PGUSER"] == role and env["PGDATABASE"] == name for env in with_password)


async def test_restore_reads_a_dump_made_by_hand_with_old_style_bytea(
    tmp_path: Path, postgres_db_url: str, spare_postgres_db_url: str
) -> None:
    """An operator's own pg_dump, made with bytea_output=escape, is checked just as well."""
    await filled_desk(tmp_path, postgres_db_url)
    target = tmp_path / "by-hand.dump"
    server = urlsplit(postgres_db_url)
    env = {
        **os.environ,
        "PGHOST": server.hostname or "",
        "PGPORT": str(server.port),
        "PGUSER": server.username or "",
        "PGDATABASE": server.path.lstrip("/"),
        "PGOPTIONS": "-c bytea_output=escape",
    }
    pg_dump = find_pg_tool("pg_dump")
    subprocess.run([str(pg_dump), "-Fc", "-f", str(target)], env=env, check=True)
    text = subprocess.run(
        [str(find_pg_tool("pg_restore")), "--data-only", "-t", "attachment", "-f", "-", target],
        capture_output=True,
        check=True,
    ).stdout
    assert b"\t200000\t" in text and b"\t\\\\x" not in text  # bytea escaped, not hex

    restored = restore(spare_postgres_db_url, target)

    assert (restored.tickets, restored.attachments) == (2, 2)
    assert table_rows(spare_postgres_db_url) == table_rows(postgres_db_url)


# --- damage --------------------------------------------------------------------------------------


def flip(path: Path, offset: int, length: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + length):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


async def test_a_flipped_byte_in_an_attachment_fails_verification(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/desk.db"
    await filled_desk(tmp_path, source)
    target = tmp_path / "backups" / "desk.db"
    target.parent.mkdir()
    backup(source, target)
    offset = target.read_bytes().find(PHOTO[100_000:100_032])
    assert offset > 0
    flip(target, offset, 1)  # PRAGMA integrity_check cannot see this; the hash does

    restored_path = tmp_path / "restored" / "desk.db"
    with pytest.raises(VerificationFailed, match="attachment 1: sha256 is"):
        restore(f"sqlite:///{restored_path}", target)
    assert not restored_path.exists(), "a restore that fails verification leaves nothing"
    assert leftovers(restored_path.parent) == []


async def test_a_damaged_page_fails_verification(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/desk.db"
    await filled_desk(tmp_path, source)
    target = tmp_path / "desk-backup.db"
    backup(source, target)
    page_size = int.from_bytes(target.read_bytes()[16:18], "big")
    flip(target, 2 * page_size, page_size)  # the third page, whole

    restored_path = tmp_path / "restored" / "desk.db"
    with pytest.raises(VerificationFailed):
        restore(f"sqlite:///{restored_path}", target)
    assert not restored_path.exists()


async def test_a_damaged_dump_is_refused_before_the_database_is_touched(
    tmp_path: Path, postgres_db_url: str, spare_postgres_db_url: str
) -> None:
    await filled_desk(tmp_path, postgres_db_url)
    target = tmp_path / "desk.dump"
    backup(postgres_db_url, target)
    flip(target, target.stat().st_size // 2)

    with pytest.raises(VerificationFailed, match=r"cannot be read back|does not match"):
        restore(spare_postgres_db_url, target)
    assert table_rows(spare_postgres_db_url) == {}


async def test_backup_of_data_that_no_longer_matches_its_hash_fails_and_writes_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    await filled_desk(tmp_path, backend.source)
    execute(backend.source, "UPDATE attachment SET data = ? WHERE id = 2", (b"rotten",))
    target = backup_path(tmp_path, backend)

    with pytest.raises(VerificationFailed, match="attachment 2: sha256 is"):
        backup(backend.source, target)
    assert not target.exists()
    assert leftovers(target.parent) == []


# --- files -----------------------------------------------------------------------------------


def test_prune_keeps_the_newest_and_touches_nothing_else(tmp_path: Path) -> None:
    backups = [
        "ticketbot-20261120-020000.db",
        "ticketbot-20261121-020000.dump",
        "ticketbot-20261122-020000.db",
        "ticketbot-20261123-020000.db",
    ]
    others = [
        "ticketbot-latest.db",
        "ticketbot-20200101-000000.db.bak",
        "other-20200101-000000.db",
        "ticketbot-2020-01-01.db",
        ".ticketbot-20200101-000000.db.abc.partial",
        "notes.txt",
    ]
    for name in backups + others:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "ticketbot-20190101-000000.db").mkdir()  # a folder is never removed
    (tmp_path / "ticketbot-20190102-000000.db").symlink_to(tmp_path / "notes.txt")

    removed = prune_backups(tmp_path, keep=2)

    assert sorted(p.name for p in removed) == backups[:2]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        [*backups[2:], *others, "ticketbot-20190101-000000.db", "ticketbot-20190102-000000.db"]
    )
    assert prune_backups(tmp_path, keep=2) == []
    with pytest.raises(ValueError):
        prune_backups(tmp_path, keep=0)


def test_pg_tools_of_the_servers_version_are_preferred_to_newer_ones() -> None:
    """pg_dump 17+ writes SET transaction_timeout, which a 16 server refuses on restore."""
    found = [
        ((15, 18), Path("/usr/lib/postgresql/15/bin/pg_dump")),
        ((17, 2), Path("/usr/lib/postgresql/17/bin/pg_dump")),
        ((17, 2), Path("/usr/bin/pg_dump")),
    ]
    assert choose_pg_tool(found, 15) == Path("/usr/lib/postgresql/15/bin/pg_dump")
    assert choose_pg_tool(found, 16) == Path("/usr/lib/postgresql/17/bin/pg_dump")
    assert choose_pg_tool([*found, ((16, 1), Path("/opt/16/pg_dump"))], 14) == Path(
        "/usr/lib/postgresql/15/bin/pg_dump"
    )
    assert choose_pg_tool(found, 18) == Path("/usr/lib/postgresql/17/bin/pg_dump")
    assert choose_pg_tool(found, None) == Path("/usr/lib/postgresql/17/bin/pg_dump")
    assert choose_pg_tool([], 15) is None


def test_backup_names_sort_by_time() -> None:
    assert backup_name("sqlite", datetime(2026, 11, 23, 2, 15, 0, tzinfo=UTC)) == (
        "ticketbot-20261123-021500.db"
    )
    assert backup_name("postgresql").endswith(".dump")


async def test_backup_replaces_an_older_backup_but_nothing_else(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/desk.db"
    await filled_desk(tmp_path, source)
    target = tmp_path / "nightly.db"
    backup(source, target)
    execute(source, "UPDATE ticket SET subject = 'changed'")
    backup(source, target)  # replaces the older backup, atomically
    assert "changed" in [r[6] for r in table_rows(f"sqlite:///{target}")["ticket"]]

    precious = tmp_path / "thesis.txt"
    precious.write_text("years of work")
    with pytest.raises(BackupError, match="is not a backup; refusing to replace it"):
        backup(source, precious)
    assert precious.read_text() == "years of work"
    with pytest.raises(BackupError, match="live database"):
        backup(source, tmp_path / "desk.db")
    await filled_desk(tmp_path, f"sqlite:///{tmp_path}/other-desk.db")
    other = (tmp_path / "other-desk.db").read_bytes()
    with pytest.raises(BackupError, match="looks like a live database"):
        backup(source, tmp_path / "other-desk.db")  # another desk's database, not a backup
    assert (tmp_path / "other-desk.db").read_bytes() == other
    with pytest.raises(BackupError, match="no such folder"):
        backup(source, tmp_path / "missing" / "x.db")


# --- the command line ------------------------------------------------------------------------


async def test_cli_backup_and_restore_end_to_end(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await filled_desk(tmp_path, backend.source)
    live = write_desk_config(tmp_path / "live", backend.source)
    new = write_desk_config(tmp_path / "new", backend.target)
    folder = tmp_path / "backups"
    folder.mkdir()
    for old in ("ticketbot-20200101-000000.db", "ticketbot-20200102-000000.dump"):
        (folder / old).write_bytes(b"an old backup")

    assert main(["backup", str(folder), "--keep", "2", "--config", str(live)]) == 0
    out, err = capsys.readouterr()
    written = [p for p in folder.iterdir() if not p.name.startswith("ticketbot-2020")]
    assert len(written) == 1
    assert re.fullmatch(r"ticketbot-\d{8}-\d{6}\.(db|dump)", written[0].name)
    assert f"backup written: {written[0]}" in out
    assert "2 tickets, 5 articles, 2 attachments" in out
    assert "removed old backup" in out and "ticketbot-20200101-000000.db" in out
    assert err.strip(), "progress is shown on standard error"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["ticketbot-20200102-000000.dump", written[0].name]
    )

    assert main(["restore", str(written[0]), "--config", str(new)]) == 0
    out, _ = capsys.readouterr()
    assert "2 tickets, 5 articles, 2 attachments" in out
    assert "verified: sha256 of 5 raw messages and attachments ok" in out

    assert main(["restore", str(written[0]), "--config", str(new)]) == 1
    _, err = capsys.readouterr()
    assert "restore refused" in err and "holds 2 tickets" in err

    bad = tmp_path / "bad.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    assert main(["restore", str(bad), "--config", str(new)]) == 1

    assert main(["backup", str(folder), "--config", str(tmp_path / "missing.toml")]) == 2
    assert main(["restore", str(written[0]), "--config", str(tmp_path / "missing.toml")]) == 2
    assert main(["backup", str(tmp_path / "one.db"), "--keep", "2", "--config", str(live)]) == 2
    assert main(["backup", f"{tmp_path}/missing/", "--config", str(live)]) == 1
    assert not (tmp_path / "missing").exists()
    capsys.readouterr()


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_cli_help_explains_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"ticketbot {command} /var/backups/ticketbot/" in out
    assert "Exit status: 0" in out
    with contextlib.suppress(SystemExit):
        main(["--help"])
    assert f"ticketbot {command}" in capsys.readouterr().out
