"""Attachments stored once per content (schema step 3) and checked on every read.

On SQLite and on a real PostgreSQL: the same file arriving twice is stored once; a
damaged file is refused with a clear error instead of being handed out; a database of
schema step 2 holding attachments is upgraded with every old file still readable; two
intakes storing the same new file at once end with one copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from peewee import Database, IntegrityError

from bot import domain
from bot.mail import AttachmentData
from storage import models
from storage.backup import VerificationFailed, backup
from storage.database import open_database
from storage.migrations import LATEST, current_version, m0001_initial, m0002_lifecycle, migrate
from storage.migrations.base import Migrator
from storage.store import AttachmentDamaged, SqlStore
from tests.core.conftest import Desk, mail, make_desk

LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF = b"%PDF-1.7 the flyer"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_db_url"))
    return f"sqlite:///{tmp_path}/desk.db"


@pytest.fixture
async def desk(url: str, tmp_path: Path) -> AsyncIterator[Desk]:
    desk = await make_desk(tmp_path, url)
    yield desk
    await desk.store.close()


def with_files(subject: str, *files: AttachmentData, **kwargs: Any) -> Any:
    return replace(mail(subject, **kwargs), attachments=files)


async def count(desk: Desk, model: Any) -> int:
    return int(await desk.store.run(lambda repo: model.select().count()))


async def files_of_first_article(desk: Desk, number: str) -> list[AttachmentData]:
    def read(repo: Any) -> list[AttachmentData]:
        ticket = repo.ticket_by_number(number)
        return list(repo.attachment_files(repo.first_article(ticket.id).id))

    return list(await desk.store.run(read))


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    db = open_database(url)
    try:
        db.execute_sql(statement.replace("?", db.param), params)  # type: ignore[no-untyped-call]
    finally:
        db.close()


async def test_the_same_file_twice_is_stored_once(desk: Desk) -> None:
    logo = AttachmentData("logo.png", "image/png", LOGO)
    first = await desk.receive(
        with_files("Flyer", logo, AttachmentData("flyer.pdf", "application/pdf", PDF))
    )
    # the same logo again, under another name, twice in one mail, from someone else
    second = await desk.receive(
        with_files(
            "Another",
            replace(logo, filename="signature.png"),
            replace(logo, filename="again.png"),
            sender="bob@example.net",
        )
    )

    assert await count(desk, models.Attachment) == 4
    assert await count(desk, models.AttachmentBlob) == 2
    blobs = await desk.store.run(
        lambda repo: sorted(
            (b.size, b.sha256) for b in models.AttachmentBlob.select(models.AttachmentBlob.size)
        )
    )
    assert [size for size, _ in blobs] == sorted([len(LOGO), len(PDF)])
    no_own_bytes = await desk.store.run(
        lambda repo: models.Attachment.select().where(models.Attachment.data.is_null()).count()
    )
    assert no_own_bytes == 4, "new attachments keep no copy of their own"
    assert [f.data for f in await files_of_first_article(desk, first.ticket_number)] == [LOGO, PDF]
    files = await files_of_first_article(desk, second.ticket_number)
    assert [(f.filename, f.data) for f in files] == [
        ("signature.png", LOGO),
        ("again.png", LOGO),
    ]
    articles = await desk.store.run(lambda repo: repo.articles(1))
    assert [(a.filename, a.size) for a in articles[0].attachments] == [
        ("logo.png", len(LOGO)),
        ("flyer.pdf", len(PDF)),
    ]


async def test_a_damaged_file_is_refused_not_handed_out(
    desk: Desk, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = await desk.receive(with_files("Flyer", AttachmentData("flyer.pdf", "x", PDF)))
    await desk.receive(with_files("Same", AttachmentData("copy.pdf", "x", PDF)))
    sql(url, 'UPDATE "attachment_blob" SET "data" = ?', (b"%PDF-1.7 the flyeR",))

    with caplog.at_level(logging.ERROR), pytest.raises(AttachmentDamaged) as damaged:
        await files_of_first_article(desk, outcome.ticket_number)

    message = str(damaged.value)
    assert "attachment 1 ('flyer.pdf') of article 1 is damaged: sha256 is" in message
    assert "restore it from a backup" in message
    assert any("flyer.pdf" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    # a copy of its own, shorter than stored, is caught as well (rows from before step 3)
    sql(url, 'UPDATE "attachment" SET "data" = ?, "blob_id" = NULL WHERE "id" = 2', (b"%PDF",))
    with pytest.raises(AttachmentDamaged, match=r"attachment 2 .* sha256 is"):
        await files_of_first_article(
            desk, (await desk.store.run(lambda r: r.ticket_by_id(2))).number
        )


async def test_a_row_holds_its_bytes_one_way_or_the_other(desk: Desk, url: str) -> None:
    await desk.receive(with_files("Flyer", AttachmentData("flyer.pdf", "x", PDF)))
    with pytest.raises(IntegrityError):
        await desk.store.run(lambda repo: models.Attachment.update(data=None, blob=None).execute())


async def test_backup_checks_every_attachment_through_its_blob(tmp_path: Path, url: str) -> None:
    desk = await make_desk(tmp_path, url)
    await desk.receive(with_files("One", AttachmentData("a.pdf", "x", PDF)))
    await desk.receive(with_files("Two", AttachmentData("b.pdf", "x", PDF)))
    await desk.store.close()
    (tmp_path / "b").mkdir()
    report = backup(url, tmp_path / "b" / "one.bak")
    assert any("sha256 of 4 raw messages and attachments ok" in c for c in report.checks)

    sql(url, 'UPDATE "attachment_blob" SET "data" = ?', (b"rotten",))
    with pytest.raises(VerificationFailed) as failed:
        backup(url, tmp_path / "b" / "two.bak")
    problems = failed.value.problems
    assert (
        problems[0].startswith("attachment 1: sha256 is") and "(attachment_blob 1)" in problems[0]
    )
    assert problems[1].startswith("attachment 2: sha256 is")
    assert not (tmp_path / "b" / "two.bak").exists()


# --- schema step 3 on a database of step 2 ------------------------------------------------------


def _step_two_with_attachments(db: Database, dialect: str) -> None:
    """A database as schema step 2 left it: tickets, articles, and attachments with bytes."""
    db.execute_sql(  # type: ignore[no-untyped-call]
        'CREATE TABLE "schema_version" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"version" INTEGER NOT NULL)'
    )
    migrator = Migrator(db, dialect)
    m0001_initial.upgrade(migrator)
    m0002_lifecycle.upgrade(migrator)
    p = db.param
    run: Any = db.execute_sql
    run(f'INSERT INTO "schema_version" ("id", "version") VALUES ({p}, {p})', (1, 1))
    run(f'INSERT INTO "schema_version" ("id", "version") VALUES ({p}, {p})', (2, 2))
    run(
        f'INSERT INTO "queue" ("id", "name", "created_at") VALUES ({p}, {p}, {p})',
        (1, "info", "2026-11-01 10:00:00"),
    )
    run(
        'INSERT INTO "ticket" ("id", "number", "queue_id", "state", "subject", '
        '"requester_email", "requester_name", "created_at", "updated_at", "version") '
        f"VALUES ({', '.join([p] * 10)})",
        (
            1,
            "2026110110000001",
            1,
            "open",
            "Flyer",
            "maria@example.net",
            "Maria",
            "2026-11-01 10:00:00",
            "2026-11-01 10:00:00",
            0,
        ),
    )
    run(
        'INSERT INTO "article" ("id", "ticket_id", "kind", "author", "author_name", '
        '"subject", "body", "message_id", "in_reply_to", "references", "to_addrs", '
        '"cc_addrs", "auto_kind", "send_attempts", "last_error", "created_at") '
        f"VALUES ({', '.join([p] * 16)})",
        (
            1,
            1,
            "inbound",
            "maria@example.net",
            "Maria",
            "Flyer",
            "the flyer, twice",
            "<m1@example.net>",
            "",
            "[]",
            "[]",
            "[]",
            "",
            0,
            "",
            "2026-11-01 10:00:00",
        ),
    )
    digest = hashlib.sha256(PDF).hexdigest()
    for attachment_id, name in ((1, "flyer.pdf"), (2, "flyer-copy.pdf")):
        run(
            'INSERT INTO "attachment" ("id", "article_id", "filename", "content_type", "size", '
            f'"sha256", "data") VALUES ({", ".join([p] * 7)})',
            (attachment_id, 1, name, "application/pdf", len(PDF), digest, PDF),
        )
    if dialect == "postgresql":  # rows inserted with their ids: move the sequences on
        for table in ("queue", "ticket", "article", "attachment"):
            run(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM \"{table}\"")


async def test_a_step_two_database_with_attachments_is_upgraded(url: str) -> None:
    db = open_database(url)
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    with db.atomic():
        _step_two_with_attachments(db, dialect)
    assert current_version(db) == 2
    assert migrate(db) == LATEST - 2 and current_version(db) == LATEST
    rows = db.execute_sql(  # type: ignore[no-untyped-call]
        'SELECT "id", "filename", "size", "data", "blob_id" FROM "attachment" ORDER BY "id"'
    ).fetchall()
    assert [(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows] == [
        (1, "flyer.pdf", len(PDF), PDF, None),
        (2, "flyer-copy.pdf", len(PDF), PDF, None),
    ], "the step leaves the old bytes where they were"
    indexes = {i.name for i in db.get_indexes("attachment")}
    assert {"attachment_article_id", "attachment_sha256", "attachment_blob_id"} <= indexes
    db.close()

    store = await SqlStore.open(url)
    try:
        files = await store.run(lambda repo: repo.attachment_files(1))
        assert [(f.filename, f.data) for f in files] == [
            ("flyer.pdf", PDF),
            ("flyer-copy.pdf", PDF),
        ]
        now = NOW

        def add(repo: Any) -> None:
            repo.add_article(
                domain.Article(
                    None, 1, domain.ArticleKind.INBOUND, "a@b", "A", "again", "again", now
                ),
                attachments=[AttachmentData("new.pdf", "application/pdf", PDF)],
            )

        await store.run(add)
        blob_count = await store.run(lambda repo: models.AttachmentBlob.select().count())
        assert blob_count == 1
        assert [f.data for f in await store.run(lambda repo: repo.attachment_files(2))] == [PDF]
    finally:
        await store.close()


# --- concurrency -----------------------------------------------------------------------------


async def test_two_intakes_storing_the_same_new_file_at_once_keep_one_copy(
    postgres_db_url: str,
) -> None:
    """The second INSERT ... ON CONFLICT DO NOTHING waits for the first's transaction,
    inserts nothing, and finds the first's row."""
    first = await SqlStore.open(postgres_db_url)
    second = await SqlStore.open(postgres_db_url)
    inserted, release = threading.Event(), threading.Event()
    now = NOW
    try:

        def ticket(repo: Any) -> int:
            made = repo.add_ticket(
                domain.Ticket(None, "2026112310000001", "info", "s", "a@b", "A", now, now)
            )
            return int(made.id)

        ticket_id = await first.run(ticket)
        new_file = [AttachmentData("same.bin", "application/octet-stream", b"new content")]

        def article(subject: str) -> domain.Article:
            return domain.Article(
                None, ticket_id, domain.ArticleKind.INBOUND, "a@b", "A", subject, "x", now
            )

        def slow(repo: Any) -> None:
            repo.add_article(article("first"), attachments=new_file)
            inserted.set()
            assert release.wait(30)

        holding = asyncio.create_task(first.run(slow))
        assert await asyncio.to_thread(inserted.wait, 10)
        racing = asyncio.create_task(
            second.run(lambda repo: repo.add_article(article("second"), attachments=new_file))
        )
        await asyncio.sleep(0.5)
        assert not racing.done(), "the second insert waits for the first transaction"
        release.set()
        await holding
        await racing

        def state(repo: Any) -> tuple[int, int, set[Any]]:
            blob_ids = {a.blob_id for a in models.Attachment.select()}
            return (
                models.AttachmentBlob.select().count(),
                models.Attachment.select().count(),
                blob_ids,
            )

        blobs, attachments, blob_ids = await second.run(state)
        assert (blobs, attachments) == (1, 2) and len(blob_ids) == 1
        assert [f.data for f in await second.run(lambda repo: repo.attachment_files(2))] == [
            b"new content"
        ]
    finally:
        release.set()
        await first.close()
        await second.close()
