"""``ticketbot export`` / ``import``: a desk moved between SQLite and a real PostgreSQL.

Every row of every table must come back equal (compared row by row, read without the
code under test), new rows after the move must get fresh ids, a database holding data
must be refused untouched, a damaged file must be refused before anything is written,
and the count check must catch a row that went missing on the way in.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
from peewee import Database

from bot.cli import main
from storage import models as m
from storage import transfer
from storage.migrations import LATEST
from storage.transfer import (
    BATCH_ROWS,
    Refused,
    TransferError,
    export_database,
    import_database,
    read_header,
)
from tests.cli_runs import write_desk_config
from tests.core.conftest import ALICE, mail, make_desk
from tests.transfer.desk import (
    NOTES,
    PHOTO,
    fill_desk,
    row_count,
    sqlite_path,
    table_names,
    table_rows,
)


def sqlite_url(folder: Path, name: str = "desk.db") -> str:
    return f"sqlite:///{folder}/{name}"


def assert_same_rows(source: str, target: str) -> None:
    before, after = table_rows(source), table_rows(target)
    assert sorted(before) == sorted(after)
    for table in before:
        assert len(after[table]) == len(before[table]), table
        for old, new in zip(before[table], after[table], strict=True):
            assert new == old, f"{table} row {old.get('id')}"


def assert_every_table_exported(url: str, path: Path) -> None:
    """The file names every table of the database (and of the models), each with rows."""
    header = read_header(path)
    in_database = table_names(url)
    assert sorted(header.counts) == in_database, "a table of the database was not exported"
    assert {model._meta.table_name for model in m.ALL_MODELS} <= set(header.counts)
    empty = [name for name, count in header.counts.items() if count == 0]
    assert not empty, f"no rows in {empty}: give them some in tests/transfer/desk.py"


async def test_sqlite_to_postgresql_keeps_every_row_and_new_rows_get_fresh_ids(
    tmp_path: Path, postgres_db_url: str
) -> None:
    source = sqlite_url(tmp_path)
    numbers = await fill_desk(tmp_path, source)
    path = tmp_path / "desk.jsonl.gz"

    exported = export_database(source, path)
    assert_every_table_exported(source, path)
    assert exported.counts["attachment"] == 3 and exported.counts["attachment_blob"] == 2
    report = import_database(postgres_db_url, path)

    assert report.ok, report.counts
    in_database = {c.name: c.in_database for c in report.counts}
    assert in_database == {k: v for k, v in exported.counts.items() if k != "schema_version"}
    assert_same_rows(source, postgres_db_url)
    after = table_rows(postgres_db_url)
    blobs = {row["data"] for row in after["attachment_blob"]}
    assert blobs == {PHOTO, NOTES}, "bytes come back exactly, NUL included"
    assert any(row["state"] == "pending" for row in after["outbox"])

    # the bot runs on the new database: a new mail and a reply get ids after the old ones
    desk = await make_desk(tmp_path / "new", postgres_db_url)
    try:
        outcome = await desk.receive(mail("After the move", message_id="<after@example.net>"))
        assert outcome.ticket_number not in numbers
        await desk.command(ALICE, f"!note {numbers[0]} Moved to PostgreSQL")
    finally:
        await desk.store.close()
    now = table_rows(postgres_db_url)
    for table in ("ticket", "article", "audit_log", "raw_message"):
        new_ids = {r["id"] for r in now[table]} - {r["id"] for r in after[table]}
        assert new_ids and min(new_ids) > max(r["id"] for r in after[table]), table


async def test_postgresql_to_sqlite_keeps_every_row_and_the_search_index(
    tmp_path: Path, postgres_db_url: str
) -> None:
    await fill_desk(tmp_path, postgres_db_url)
    path = tmp_path / "desk.jsonl.gz"
    export_database(postgres_db_url, path)
    assert_every_table_exported(postgres_db_url, path)
    assert read_header(path).source == "postgresql"
    target = sqlite_url(tmp_path / "moved")

    report = import_database(target, path)

    assert report.ok
    assert_same_rows(postgres_db_url, target)
    # the full-text index is not in the file: the triggers rebuilt it row by row
    conn = sqlite3.connect(sqlite_path(target))
    try:
        hits = conn.execute(
            "SELECT rowid FROM article_fts WHERE article_fts MATCH 'photographer'"
        ).fetchall()
    finally:
        conn.close()
    assert [rowid for (rowid,) in hits] == [
        row["id"] for row in table_rows(target)["article"] if "photographer" in row["body"]
    ]


async def test_a_database_with_tickets_is_refused_and_left_as_it_was(
    tmp_path: Path, postgres_db_url: str
) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    path = tmp_path / "desk.jsonl.gz"
    export_database(source, path)
    import_database(postgres_db_url, path)
    before = table_rows(postgres_db_url)
    parts = urlsplit(postgres_db_url)
    with_password = parts._replace(
        netloc=f"{parts.username or 'postgres'}:s3cret@{parts.hostname}:{parts.port}"
    ).geturl()

    with pytest.raises(Refused) as refused:
        import_database(with_password, path)

    message = str(refused.value)
    assert "already holds 2 tickets" in message
    assert parts.path.lstrip("/") in message and "s3cret" not in message
    assert table_rows(postgres_db_url) == before


async def test_a_database_with_other_rows_is_refused_before_its_schema_is_touched(
    tmp_path: Path,
) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    path = tmp_path / "desk.jsonl.gz"
    export_database(source, path)
    target = tmp_path / "other.db"
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('mine')")
    conn.commit()
    conn.close()

    with pytest.raises(Refused, match=r"is not empty: notes \(1\)"):
        import_database(f"sqlite:///{target}", path)
    conn = sqlite3.connect(target)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["notes"], "no schema was created in a database that was refused"


async def test_a_dropped_row_is_caught_by_the_count_check(
    tmp_path: Path, postgres_db_url: str
) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    path = tmp_path / "desk.jsonl.gz"
    export_database(source, path)
    calls: list[tuple[str, int]] = []

    def lossy(db: Database, table: str, columns: Sequence[str], rows: Sequence[Any]) -> int:
        calls.append((table, len(rows)))
        if table == "audit_log":
            rows = rows[:-1]  # the fault: one row silently not written
        return transfer.insert_rows(db, table, columns, rows)

    report = import_database(postgres_db_url, path, insert=lossy)

    assert not report.ok
    wrong = [c for c in report.counts if not c.ok]
    assert [c.name for c in wrong] == ["audit_log"]
    assert wrong[0].in_database == wrong[0].in_file - 1
    assert all(count <= BATCH_ROWS for _, count in calls)


async def test_writes_go_in_batches_and_a_failed_batch_leaves_a_clear_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    path = tmp_path / "desk.jsonl.gz"
    export_database(source, path)
    monkeypatch.setattr(transfer, "BATCH_ROWS", 2)
    batches: list[tuple[str, int]] = []

    def failing(db: Database, table: str, columns: Sequence[str], rows: Sequence[Any]) -> int:
        batches.append((table, len(rows)))
        if table == "audit_log" and len([b for b in batches if b[0] == table]) == 2:
            raise RuntimeError("disk full")
        return transfer.insert_rows(db, table, columns, rows)

    target = sqlite_url(tmp_path / "new")
    with pytest.raises(TransferError) as failed:
        import_database(target, path, insert=failing)

    message = str(failed.value)
    assert "table audit_log: writing rows 3-4 failed and was rolled back" in message
    assert "disk full" in message and "make a new empty one and import again" in message
    assert all(count <= 2 for _, count in batches)
    assert row_count(target, "audit_log") == 2, "the first batch stays, the failed one does not"
    with pytest.raises(Refused, match="already holds 2 tickets"):
        import_database(target, path)  # a retry into the half-filled database is refused


def rewrite(path: Path, change: Any) -> Path:
    """A copy of the export with its lines passed through ``change``."""
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        lines = [json.loads(line) for line in stream]
    damaged = path.with_name("changed.jsonl.gz")
    with gzip.open(damaged, "wt", encoding="utf-8") as out:
        for line in change(lines):
            out.write(json.dumps(line) + "\n")
    return damaged


async def test_a_damaged_or_foreign_file_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    path = tmp_path / "desk.jsonl.gz"
    export_database(source, path)
    target = tmp_path / "new" / "desk.db"
    whole = path.read_bytes()

    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(Refused, match="damaged or cut off"):
        import_database(f"sqlite:///{target}", cut)

    def drop_a_row(lines: list[Any]) -> list[Any]:
        at = next(i for i, line in enumerate(lines) if line == lines[-2])
        return lines[:at] + lines[at + 1 :]

    with pytest.raises(Refused, match=r"has \d+ rows, its section line says"):
        import_database(f"sqlite:///{target}", rewrite(path, drop_a_row))

    def bad_bytes(lines: list[Any]) -> list[Any]:
        for i, line in enumerate(lines):
            if isinstance(line, dict) and line.get("table") == "raw_message":
                data = [name for name, _ in line["columns"]].index("data")
                lines[i + 1][data] = "not base64!"
        return lines

    with pytest.raises(Refused, match="table raw_message, column data"):
        import_database(f"sqlite:///{target}", rewrite(path, bad_bytes))

    def older(lines: list[Any]) -> list[Any]:
        lines[0]["schema_version"] = LATEST - 1
        return lines

    with pytest.raises(Refused, match=f"schema version {LATEST - 1}.*ticketbot migrate"):
        import_database(f"sqlite:///{target}", rewrite(path, older))

    def no_end(lines: list[Any]) -> list[Any]:
        return lines[:-1]

    with pytest.raises(Refused, match="no end line"):
        import_database(f"sqlite:///{target}", rewrite(path, no_end))

    assert not target.exists(), "nothing was created for a file that was refused"


async def test_export_never_replaces_a_file_and_refuses_an_old_schema(tmp_path: Path) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    existing = tmp_path / "desk.jsonl.gz"
    existing.write_bytes(b"keep me")
    with pytest.raises(Refused, match="already exists"):
        export_database(source, existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(Refused, match="no such database file"):
        export_database(sqlite_url(tmp_path, "missing.db"), tmp_path / "x.jsonl.gz")
    assert not (tmp_path / "missing.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")) == []


# --- the command line ------------------------------------------------------------------------


async def test_cli_export_then_import_shows_progress_and_the_counts(
    tmp_path: Path, postgres_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    old = write_desk_config(tmp_path / "old", source)
    new = write_desk_config(tmp_path / "new", postgres_db_url)
    path = tmp_path / "desk.jsonl.gz"
    tables = table_names(source)

    assert main(["export", str(path), "--config", str(old)]) == 0
    out, err = capsys.readouterr()
    assert "exporting: " in err and " rows (100%" in err
    assert f"tables (schema version {LATEST}, sqlite) to {path}" in out
    assert all(f"\n{name} " in out for name in tables)

    assert main(["import", str(path), "--check-only", "--config", str(new)]) == 0
    out, err = capsys.readouterr()
    assert "every line checked" in out and "checking: " in err

    assert main(["import", str(path), "--config", str(new)]) == 0
    out, err = capsys.readouterr()
    assert "checking: " in err and "importing: " in err and "created the schema" in err
    header = out.splitlines()[0].split()
    assert header == ["table", "in", "file", "written", "in", "database"]
    assert not any(line.startswith("schema_version ") for line in out.splitlines())
    for name in set(tables) - {"schema_version"}:
        line = next(line for line in out.splitlines() if line.startswith(f"{name} "))
        a, b, c = (int(n) for n in line.split()[1:])
        assert a == b == c == row_count(source, name)
    assert "checked: id sequences moved past the imported ids" in out
    assert f"checked: schema version {LATEST}, as in the file" in out
    assert "imported " in out and "differs" not in out

    assert main(["import", str(path), "--config", str(new)]) == 2
    _, err = capsys.readouterr()
    assert "import refused, nothing written" in err and "already holds 2 tickets" in err
    assert main(["export", str(path), "--config", str(old)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "nope.gz"), "--config", str(new)]) == 2
    assert "no such file" in capsys.readouterr().err


async def test_cli_import_exits_1_and_marks_a_table_whose_counts_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    path = tmp_path / "desk.jsonl.gz"
    export_database(source, path)
    new = write_desk_config(tmp_path / "new", sqlite_url(tmp_path / "new"))
    real = transfer.insert_rows

    def lossy(db: Database, table: str, columns: Sequence[str], rows: Sequence[Any]) -> int:
        return real(db, table, columns, rows[:-1] if table == "volunteer" else rows)

    monkeypatch.setattr(transfer, "insert_rows", lossy)

    assert main(["import", str(path), "--config", str(new)]) == 1
    out, err = capsys.readouterr()
    marked = [line for line in out.splitlines() if line.endswith("<-- differs")]
    assert len(marked) == 1 and marked[0].split()[:4] == ["volunteer", "1", "0", "0"]
    assert "the counts differ for volunteer" in err and "import again" in err


@pytest.mark.parametrize("command", ["export", "import"])
def test_cli_help_explains_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"ticketbot {command} desk.jsonl.gz" in out
    assert "Exit status: 0" in out
    with contextlib.suppress(SystemExit):
        main(["--help"])
    assert f"{command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            # (IMAP's uids, up to 2**32 - 1, fit since schema step 6 made them BIGINT)
            ('UPDATE "outbox" SET "attempts" = ?', (2**31,)),
            r"outbox, column attempts: the file holds 2147483648",
        ),
        (
            ('UPDATE "job_state" SET "value" = ?', ("a\x00b",)),
            r"table job_state, column value: 'a\\x00b': PostgreSQL text cannot hold a NUL",
        ),
    ],
    ids=["integer-too-wide", "nul-in-text"],
)
async def test_what_postgresql_cannot_hold_is_refused_before_any_row_is_written(
    tmp_path: Path, postgres_db_url: str, change: tuple[str, tuple[Any, ...]], refusal: str
) -> None:
    source = sqlite_url(tmp_path)
    await fill_desk(tmp_path, source)
    conn = sqlite3.connect(sqlite_path(source))
    with conn:
        conn.execute(*change)
    conn.close()
    path = tmp_path / "desk.jsonl.gz"
    export_database(source, path)

    with pytest.raises(Refused, match=refusal):
        import_database(postgres_db_url, path)
    filled = {table for table, rows in table_rows(postgres_db_url).items() if rows}
    assert filled <= {"schema_version"}, "no row was written"


class WritesWhileExporting:
    """Progress that, after the first rows are out, has "the bot" add audit lines from
    another connection: the export must not see them, and its counts must still hold."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.added = 0

    def __call__(self, label: str, total: int) -> WritesWhileExporting:
        return self

    def advance(self, count: int = 1) -> None:
        if self.added < 3:
            self.added += 1
            statement = (
                'INSERT INTO "audit_log" ("at", "actor_platform", "actor_id", "actor_name", '
                '"action", "detail", "before", "after") VALUES '
                "('2026-11-24 08:00:00', 'matrix', '@bob:example.org', 'Bob', 'ticket.note', "
                "'meanwhile', '', '')"
            )
            if self.url.startswith("sqlite:///"):
                conn = sqlite3.connect(sqlite_path(self.url), timeout=10)
                with conn:
                    conn.execute(statement)
                conn.close()
            else:
                pg = psycopg2.connect(self.url)
                with pg, pg.cursor() as cur:
                    cur.execute(statement)
                pg.close()

    def finish(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_an_export_is_one_moment_while_the_bot_writes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url(tmp_path) if kind == "sqlite" else request.getfixturevalue("postgres_db_url")
    await fill_desk(tmp_path, url)
    before = row_count(url, "audit_log")
    writer = WritesWhileExporting(url)
    path = tmp_path / "desk.jsonl.gz"

    report = export_database(url, path, progress=writer)

    assert writer.added == 3 and row_count(url, "audit_log") == before + 3
    assert report.counts["audit_log"] == before, "rows written after the start are not in it"
    moved = sqlite_url(tmp_path / "moved")
    assert import_database(moved, path).ok
    assert row_count(moved, "audit_log") == before
