"""The same store behaviour on SQLite and on a real PostgreSQL.

The desk tests in tests/core run on SQLite; these run the storage-facing parts of
them against both databases, plus the schema checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from peewee import SqliteDatabase

from bot.domain import ConcurrentUpdate, TicketState
from bot.ports import MailKey
from storage import models
from storage.database import open_database
from storage.migrations import LATEST, SchemaTooNew, current_version, migrate
from tests.core.conftest import ALICE, BOB, Desk, mail, make_desk


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_desk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Desk]:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_db_url")
    desk = await make_desk(tmp_path, url)
    yield desk
    await desk.store.close()


async def test_ticket_numbers_count_up_per_day(any_desk: Desk) -> None:
    numbers = [(await any_desk.receive(mail())).ticket_number for _ in range(3)]
    assert [n[-6:] for n in numbers] == ["000001", "000002", "000003"]
    any_desk.clock.advance(24 * 3600)
    assert (await any_desk.receive(mail())).ticket_number == "2026112410000001"


async def test_message_id_dedupe_and_follow_up_lookup(any_desk: Desk) -> None:
    first = await any_desk.receive(mail(message_id="<a@x>"))
    assert (await any_desk.receive(mail(message_id="<a@x>"))).duplicate
    follow = await any_desk.receive(mail(in_reply_to="<a@x>"))
    assert follow.ticket_number == first.ticket_number


async def test_long_hostile_header_values_are_stored(any_desk: Desk) -> None:
    long_id = "<" + "x" * 900 + "@example.net>"
    outcome = await any_desk.receive(
        mail(message_id=long_id, sender="a" * 300 + "@example.net", subject="s" * 5000)
    )
    assert outcome.created


async def test_version_check_refuses_a_stale_save(any_desk: Desk) -> None:
    number = (await any_desk.receive(mail())).ticket_number

    def stale_save(repo: object) -> None:
        first = repo.ticket_by_number(number)  # type: ignore[attr-defined]
        second = repo.ticket_by_number(number)  # type: ignore[attr-defined]
        first.claim(ALICE, any_desk.clock.now())
        repo.save_ticket(first)  # type: ignore[attr-defined]
        second.claim(BOB, any_desk.clock.now())
        repo.save_ticket(second)  # type: ignore[attr-defined]

    with pytest.raises(ConcurrentUpdate):
        await any_desk.store.run(stale_save)
    ticket = await any_desk.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.owner is None and ticket.state is TicketState.NEW


async def test_concurrent_claims_give_one_owner(any_desk: Desk) -> None:
    number = (await any_desk.receive(mail())).ticket_number
    results = await asyncio.gather(
        any_desk.command(ALICE, f"!claim {number}"), any_desk.command(BOB, f"!claim {number}")
    )
    assert sorted(r.ok for r in results) == [False, True]


async def test_intake_records_and_cursor(any_desk: Desk) -> None:
    key = MailKey("imap:test", 7, "42")
    await any_desk.intake.ingest(mail(), key)
    assert await any_desk.intake.cursor("imap:test") is not None
    cursor = await any_desk.intake.cursor("imap:test")
    assert cursor is not None and (cursor.validity, cursor.last_uid) == (7, 42)
    assert await any_desk.intake.pending_done("imap:test") == [key]
    await any_desk.intake.mark_done(key)
    assert await any_desk.intake.pending_done("imap:test") == []


async def test_outbox_survives_reopening_the_store(tmp_path: Path) -> None:
    desk = await make_desk(tmp_path)
    await desk.receive(mail())
    await desk.store.close()
    reopened = await make_desk(tmp_path)
    try:
        await reopened.flush()
        assert reopened.chat.kinds() == ["ticket"]
    finally:
        await reopened.store.close()


async def test_attachments_are_stored_with_hash(any_desk: Desk) -> None:
    from dataclasses import replace

    from bot.mail import AttachmentData

    email = replace(mail(), attachments=(AttachmentData("a.pdf", "application/pdf", b"%PDF-1"),))
    await any_desk.receive(email)
    row = await any_desk.store.run(lambda repo: models.Attachment.select().first())
    assert row.filename == "a.pdf" and len(row.sha256) == 64
    blob = await any_desk.store.run(lambda repo: models.AttachmentBlob.get_by_id(row.blob_id))
    assert row.data is None and bytes(blob.data) == b"%PDF-1" and blob.sha256 == row.sha256
    articles = await any_desk.store.run(lambda repo: repo.articles(1))
    assert articles[0].attachments[0].size == 6


def _schema(db: object) -> dict[str, list[tuple[str, bool]]]:
    found = {}
    for table in db.get_tables():  # type: ignore[attr-defined]
        if table.startswith("article_fts"):
            continue  # SQLite's full-text index and its shadow tables, not a model
        columns = db.get_columns(table)  # type: ignore[attr-defined]
        found[table] = sorted((c.name, c.null) for c in columns)
    return found


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migrations_build_exactly_the_current_models(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/m.db"
        if dialect == "sqlite"
        else request.getfixturevalue("postgres_db_url")
    )
    migrated = open_database(url)
    assert migrate(migrated) == LATEST
    assert migrate(migrated) == 0, "a second run applies nothing"
    assert current_version(migrated) == LATEST
    built = _schema(migrated)
    migrated.close()

    if dialect == "sqlite":
        fresh = SqliteDatabase(str(tmp_path / "fresh.db"))
    else:
        # compare with the models created directly in a second schema-less database
        from peewee import PostgresqlDatabase

        other = request.getfixturevalue("postgres_db_url")
        fresh = open_database(other)
        assert isinstance(fresh, PostgresqlDatabase)
        for table in fresh.get_tables():
            fresh.execute_sql(f'DROP TABLE "{table}" CASCADE')
    with fresh.bind_ctx(models.ALL_MODELS):
        fresh.create_tables(models.ALL_MODELS)
    assert _schema(fresh) == built
    fresh.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/n.db")
    migrate(db)
    db.execute_sql('INSERT INTO "schema_version" ("id", "version") VALUES (99, 99)')
    with pytest.raises(SchemaTooNew):
        migrate(db)


def test_sqlite_is_opened_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/w.db")
    db.connect()
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 5000
    db.close()


async def test_sqlite_units_of_work_take_the_write_lock_up_front(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: WAL's busy handler does not cover a read lock upgraded to a write."""
    desk = await make_desk(tmp_path)
    statements: list[str] = []

    def trace(repo: object) -> None:
        desk.store.db.connection().set_trace_callback(statements.append)

    await desk.store.run(trace)
    await desk.receive(mail())
    await desk.store.run(lambda repo: desk.store.db.connection().set_trace_callback(None))
    await desk.store.close()
    begins = [s for s in statements if s.upper().startswith("BEGIN")]
    assert begins and all(s.upper().startswith("BEGIN IMMEDIATE") for s in begins)


async def test_nul_bytes_and_huge_message_ids_are_stored(any_desk: Desk) -> None:
    """PostgreSQL refuses NUL in text and index rows over 2,704 bytes; mail may carry both."""
    huge = "<" + "é" * 1500 + "@example.net>"
    first = await any_desk.receive(
        mail(message_id=huge, subject="nul\x00subject", text="body\x00text", in_reply_to="<a\x00b>")
    )
    assert first.created
    again = await any_desk.receive(mail(message_id=huge))
    assert again.duplicate and again.ticket_number == first.ticket_number
    follow = await any_desk.receive(mail(subject="re", in_reply_to=huge))
    assert follow.ticket_number == first.ticket_number


async def test_queue_overview_counts_each_state_and_finds_the_oldest_waiting(
    any_desk: Desk,
) -> None:
    """What ``queue status`` reads: not-closed tickets by state, the oldest new or open."""
    first = (await any_desk.receive(mail(subject="oldest"))).ticket_number
    any_desk.clock.advance(3600)
    claimed = (await any_desk.receive(mail(subject="claimed"))).ticket_number
    closed = (await any_desk.receive(mail(subject="closed"))).ticket_number
    await any_desk.receive(mail(subject="to press", to="press@example.org"))
    assert (await any_desk.command(ALICE, f"!claim {claimed}")).ok
    assert (await any_desk.command(ALICE, f"!claim {closed}")).ok
    assert (await any_desk.command(ALICE, f"!close {closed}")).ok

    overview = await any_desk.store.run(lambda repo: repo.queue_overview(["info", "press"]))
    oldest = await any_desk.store.run(lambda repo: repo.ticket_by_number(first))
    assert overview["info"]["states"] == {"new": 1, "open": 1}
    assert overview["info"]["oldest_waiting"] == oldest.created_at
    assert overview["press"]["states"] == {"new": 1}
    assert overview["press"]["oldest_waiting"] is not None
    assert overview["press"]["oldest_waiting"] > oldest.created_at
