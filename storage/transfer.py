"""The whole database to one portable file and back: ``ticketbot export`` / ``import``.

Why it is built this way:

- It moves a desk between kinds of database (SQLite to PostgreSQL and back) or to a new
  server, so the file knows nothing of either: a gzip'd stream of JSON lines. The first
  line is a header (format version, schema version, source kind, when, every table with
  its number of rows); then each table as a section line naming its columns and their
  kinds, followed by one JSON array per row; then an end line with the counts again, so
  a cut-off file is recognised as one. Bytes are base64, datetimes ISO 8601 in UTC
  (``...Z``), ids exactly as stored, so every foreign key still holds after the move.
  The file's side (format, values, reading it back checked) is
  :mod:`storage.transfer_file`; this module is the database's side.
- Tables and columns are read from the database itself, not from a list here: a table
  or column added by a later schema step comes along without a change to this module.
  SQLite's full-text index (a virtual table and its shadow tables) is left out: it is
  derived from the articles and rebuilt by its triggers as they are written.
- Memory stays bounded whatever the size of the desk: rows are read through a cursor a
  few hundred at a time (a server-side cursor on PostgreSQL), written out at once, and
  read back line by line; writes go in transactions of at most :data:`BATCH_ROWS` rows
  or :data:`BATCH_BYTES` of data, whichever comes first.
- An export reads in one snapshot (a read transaction on SQLite's WAL, REPEATABLE READ
  on PostgreSQL), so it may run while the bot does, and its counts are of one moment.
  It is written under a hidden temporary name and linked into place when complete; an
  existing file is never replaced.
- An import never touches a database holding data: every table but ``schema_version``
  must be empty (checked before the schema is upgraded, so a refused database is left
  exactly as it was), and nothing is ever deleted or overwritten. The file is read
  through once and checked (gzip checksum, every line, every value, the counts) before
  the first row is written. The file's schema version must be this ticketbot's: the
  target is migrated to that version first, so the columns match one to one.
- At the end every table is counted in the database: rows in the file, rows written and
  rows in the database must agree, or the import is reported as failed. On PostgreSQL
  the id sequences are moved past the imported ids so new rows get fresh ones.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peewee import Database

from storage.backup import redact_url
from storage.database import is_sqlite, open_database
from storage.migrations import LATEST, SchemaTooNew, current_version, migrate
from storage.transfer_file import (
    COMPRESS_LEVEL,
    FORMAT,
    FORMAT_VERSION,
    Column,
    FileContents,
    ProgressFactory,
    Refused,
    RowProgress,
    Silent,
    TransferError,
    check_file,
    encode,
    line_writer,
    read_header,
    sections,
    silent,
    value_size,
)

#: Writes rows into one table (inside the caller's transaction); returns how many it wrote.
InsertRows = Callable[[Database, str, Sequence[str], Sequence[Sequence[Any]]], int]

__all__ = [
    "BATCH_ROWS",
    "ExportReport",
    "ImportReport",
    "Refused",
    "TableCount",
    "TransferError",
    "check_file",
    "export_database",
    "import_database",
    "insert_rows",
    "read_header",
]

#: Rows per write transaction on import (and at most this many held in memory).
BATCH_ROWS = 2000
#: A write transaction is also committed once its rows hold this much data.
BATCH_BYTES = 8 * 1024 * 1024
#: Rows fetched from the source per round trip; fewer where rows carry bytes.
FETCH_ROWS = 500
FETCH_ROWS_WITH_BYTES = 8
#: Tables the schema upgrade itself fills: the target's own record of the steps it ran.
#: Exported for the record, never written on import (the file's schema version is
#: checked instead), and left out of the count check.
MIGRATION_TABLES = frozenset({"schema_version"})


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def has_bytes(self) -> bool:
        return any(c.kind == "bytes" for c in self.columns)


@dataclass(frozen=True)
class TableCount:
    name: str
    in_file: int
    written: int
    in_database: int

    @property
    def ok(self) -> bool:
        return self.in_file == self.written == self.in_database


@dataclass(frozen=True)
class ExportReport:
    path: Path
    source: str  # "sqlite" | "postgresql"
    schema_version: int
    counts: dict[str, int]
    size: int
    seconds: float

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class ImportReport:
    target: str  # the url without its password
    source: str
    schema_version: int
    counts: tuple[TableCount, ...]
    seconds: float
    checks: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.counts)

    @property
    def rows(self) -> int:
        """Rows written: every table's but the schema's own record."""
        return sum(c.in_file for c in self.counts)


# --- what the database holds -------------------------------------------------------------


def _sql(db: Database, statement: str, params: Sequence[Any] = ()) -> Any:
    return db.execute_sql(statement, tuple(params))  # type: ignore[no-untyped-call]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_kind(table: str, column: str, declared: str) -> str:
    """The file's kind for a column of this declared SQL type (SQLite or PostgreSQL)."""
    text = declared.upper()
    if "INT" in text or text == "SERIAL":
        return "int"
    if "BOOL" in text:
        return "bool"
    if "BLOB" in text or "BYTEA" in text:
        return "bytes"
    if "TIMESTAMP" in text or "DATETIME" in text:
        return "datetime"
    if "CHAR" in text or "TEXT" in text or "CLOB" in text:
        return "text"
    if any(word in text for word in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "float"
    raise TransferError(f"table {table}, column {column}: unsupported type {declared!r}")


def _derived_sqlite_tables(db: Database) -> set[str]:
    """Virtual tables (the full-text index) and their shadow tables: rebuilt, not moved."""
    virtual = [
        str(name)
        for (name,) in _sql(
            db,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL%'",
        ).fetchall()
    ]
    derived = set(virtual)
    for name in _sql(db, "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        if any(str(name[0]).startswith(f"{v}_") for v in virtual):
            derived.add(str(name[0]))
    return derived


def table_names(db: Database) -> list[str]:
    """The ticketbot tables of this database, as the database itself lists them."""
    names = [str(name) for name in db.get_tables()]
    if is_sqlite(db):
        derived = _derived_sqlite_tables(db)
        names = [n for n in names if n not in derived and not n.startswith("sqlite_")]
    return names


def describe_tables(db: Database) -> list[Table]:
    """Every table with its columns, parents before the tables whose foreign keys name them."""
    names = table_names(db)
    tables = {
        name: Table(
            name,
            tuple(
                Column(c.name, column_kind(name, c.name, c.data_type), c.data_type)
                for c in db.get_columns(name)
            ),
            tuple(db.get_primary_keys(name)),
        )
        for name in names
    }
    parents = {
        name: {fk.dest_table for fk in db.get_foreign_keys(name) if fk.dest_table != name}
        for name in names
    }
    ordered: list[Table] = []
    placed: set[str] = set()
    while len(ordered) < len(names):
        ready = [n for n in sorted(names) if n not in placed and parents[n] <= placed]
        if not ready:  # a cycle of foreign keys: keep going in name order
            ready = [min(n for n in names if n not in placed)]
        for name in ready:
            ordered.append(tables[name])
            placed.add(name)
    return ordered


def count_rows(db: Database, table: str) -> int:
    return int(_sql(db, f"SELECT COUNT(*) FROM {_quote(table)}").fetchone()[0])


# --- export ------------------------------------------------------------------------------


def export_database(
    url: str, path: Path, *, progress: ProgressFactory = silent, version: str = ""
) -> ExportReport:
    """Write every table of the database at ``url`` to ``path`` (a new file)."""
    started = time.monotonic()
    if path.exists():
        raise Refused(f"{path} already exists; an export never replaces a file: name a new one")
    if not path.parent.is_dir():
        raise Refused(f"{path.parent}: no such folder")
    db = _open_existing(url)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        schema = current_version(db)
        if schema != LATEST:
            raise Refused(
                f"the database {redact_url(url)} is at schema version {schema}, this ticketbot "
                f"writes version {LATEST}: upgrade it first (ticketbot migrate), then export"
            )
        snapshot = db.atomic() if is_sqlite(db) else db.atomic(isolation_level="REPEATABLE READ")
        with snapshot:
            tables = describe_tables(db)
            counts = {t.name: count_rows(db, t.name) for t in tables}
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with (
                os.fdopen(fd, "wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=COMPRESS_LEVEL) as zipped,
            ):
                write = line_writer(zipped)
                write(
                    {
                        "format": FORMAT,
                        "format_version": FORMAT_VERSION,
                        "schema_version": schema,
                        "source": "sqlite" if is_sqlite(db) else "postgresql",
                        "created_at": datetime.now(UTC).isoformat(timespec="seconds")[:-6] + "Z",
                        "ticketbot": version,
                        "tables": counts,
                    }
                )
                bar = progress("exporting", sum(counts.values()))
                for table in tables:
                    written = _export_table(db, table, counts[table.name], write, bar)
                    if written != counts[table.name]:
                        raise TransferError(
                            f"table {table.name}: counted {counts[table.name]} rows but read "
                            f"{written} in the same snapshot"
                        )
                bar.finish()
                write({"end": True, "tables": counts})
                raw.flush()
            with open(partial, "rb") as done:
                os.fsync(done.fileno())
        try:
            os.link(partial, path)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise Refused(f"{path} appeared while exporting; the export was not kept") from None
    finally:
        partial.unlink(missing_ok=True)
        db.close()
    return ExportReport(
        path,
        "sqlite" if url.startswith("sqlite:") else "postgresql",
        schema,
        counts,
        path.stat().st_size,
        time.monotonic() - started,
    )


def _export_table(
    db: Database, table: Table, count: int, write: Callable[[Any], None], bar: RowProgress
) -> int:
    write(
        {"table": table.name, "columns": [[c.name, c.kind] for c in table.columns], "rows": count}
    )
    size = FETCH_ROWS_WITH_BYTES if table.has_bytes else FETCH_ROWS
    id_at = next((i for i, c in enumerate(table.columns) if c.name == "id"), None)
    written = 0
    for batch in _fetch(db, table, size):
        for row in batch:
            row_id = row[id_at] if id_at is not None else "?"
            write(
                [encode(table.name, c, v, row_id) for c, v in zip(table.columns, row, strict=True)]
            )
        written += len(batch)
        bar.advance(len(batch))
    return written


def _fetch(db: Database, table: Table, size: int) -> Iterator[list[Any]]:
    """The table's rows, ``size`` at a time, in primary key order.

    SQLite steps through one query lazily. psycopg2 would fetch a whole result at once,
    and its server-side cursors need transactions it manages itself (peewee runs it in
    autocommit), so on PostgreSQL the rows are read page by page after the last key seen,
    all in the export's one REPEATABLE READ snapshot.
    """
    names = ", ".join(_quote(c.name) for c in table.columns)
    source = _quote(table.name)
    if is_sqlite(db) or len(table.primary_key) != 1:
        order = ", ".join(_quote(k) for k in table.primary_key) or names
        cursor = _sql(db, f"SELECT {names} FROM {source} ORDER BY {order}")
        try:
            while batch := cursor.fetchmany(size):
                yield batch
        finally:
            cursor.close()
        return
    key = table.primary_key[0]
    at = [c.name for c in table.columns].index(key)
    page = f"SELECT {names} FROM {source} {{where}} ORDER BY {_quote(key)} LIMIT {size}"
    batch = _sql(db, page.format(where="")).fetchall()
    while batch:
        yield batch
        last = batch[-1][at]
        batch = _sql(db, page.format(where=f"WHERE {_quote(key)} > %s"), (last,)).fetchall()


def _open_existing(url: str) -> Database:
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise Refused(f"{url[len('sqlite:///') :]}: no such database file")
    try:
        db = open_database(url)
        db.connect()
    except Exception as exc:
        raise Refused(f"cannot open the database {redact_url(url)}: {exc}") from None
    return db


# --- import ------------------------------------------------------------------------------


def insert_rows(
    db: Database, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """Insert rows as they are, ids included, in the caller's transaction."""
    if not rows:
        return 0
    names = ", ".join(_quote(c) for c in columns)
    cursor = db.cursor()  # type: ignore[no-untyped-call]
    if is_sqlite(db):
        marks = ", ".join("?" for _ in columns)
        cursor.executemany(f"INSERT INTO {_quote(table)} ({names}) VALUES ({marks})", rows)
    else:
        from psycopg2.extras import execute_values

        execute_values(
            cursor, f"INSERT INTO {_quote(table)} ({names}) VALUES %s", rows, page_size=500
        )
    return len(rows)


def import_database(
    url: str,
    path: Path,
    *,
    progress: ProgressFactory = silent,
    insert: InsertRows | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> ImportReport:
    """Write the export at ``path`` into the empty database at ``url``; count every table."""
    started = time.monotonic()
    target = redact_url(url)
    header = read_header(path)
    if header.schema_version != LATEST:
        raise Refused(
            f"{path} holds schema version {header.schema_version}, this ticketbot writes "
            f"version {LATEST}: "
            + (
                "upgrade the source database (ticketbot migrate with this version), export it "
                "again, then import that file"
                if header.schema_version < LATEST
                else "import it with the ticketbot that exported it (or a newer one)"
            )
        )
    sqlite_target = url.startswith("sqlite:")
    contents = check_file(path, progress=progress, sqlite=sqlite_target)
    try:
        db = open_database(url)
        db.connect()
    except Exception as exc:
        raise Refused(f"cannot open the database {target}: {exc}") from None
    try:
        _refuse_unless_empty(db, target)
        try:
            applied = migrate(db)
        except SchemaTooNew as exc:
            raise Refused(f"{target}: {exc}") from None
        if applied:
            say(f"created the schema in {target} (version {LATEST}, {applied} steps)")
        tables = {t.name: t for t in describe_tables(db)}
        _refuse_unless_same_tables(path, contents.columns, tables)
        _refuse_numbers_too_wide(contents, tables)
        written = _write_all(db, path, tables, progress, insert or insert_rows, sqlite_target)
        checks: list[str] = []
        if not sqlite_target:
            moved = _reset_sequences(db, tables.values())
            checks.append(f"id sequences moved past the imported ids ({moved} tables)")
        else:
            broken = _sql(db, "PRAGMA foreign_key_check").fetchall()
            if broken:
                raise TransferError(
                    f"{len(broken)} rows name a missing parent row (table, rowid, parent): "
                    f"{broken[:5]}; do not start the bot on this database"
                )
            checks.append("every foreign key holds (PRAGMA foreign_key_check)")
        version = current_version(db)
        if version != header.schema_version:
            raise TransferError(
                f"{target} is at schema version {version} after the import, the file's is "
                f"{header.schema_version}"
            )
        checks.append(f"schema version {version}, as in the file")
        counts = tuple(
            TableCount(name, header.counts.get(name, 0), written.get(name, 0), count_rows(db, name))
            for name in sorted(set(tables) - MIGRATION_TABLES)
        )
    finally:
        db.close()
    return ImportReport(
        target,
        header.source,
        header.schema_version,
        counts,
        time.monotonic() - started,
        tuple(checks),
    )


def _refuse_unless_empty(db: Database, target: str) -> None:
    """Refuse a database holding any row (but the schema's own), before changing anything."""
    present = set(table_names(db))
    if "ticket" in present:
        tickets = count_rows(db, "ticket")
        if tickets:
            raise Refused(
                f"{target} already holds {tickets} tickets; import writes only into an empty "
                "database and never changes or deletes what is there: name a new database"
            )
    full = [
        f"{name} ({count})"
        for name in sorted(present - MIGRATION_TABLES)
        if (count := count_rows(db, name))
    ]
    if full:
        raise Refused(
            f"{target} is not empty: {', '.join(full)}; import writes only into an empty "
            "database (one the bot has not run on): name a new database"
        )


def _refuse_unless_same_tables(
    path: Path, columns: dict[str, tuple[Column, ...]], tables: dict[str, Table]
) -> None:
    """The file's tables and columns must be the target's, one to one, kind for kind."""
    extra = sorted(set(columns) - set(tables))
    missing = sorted(set(tables) - set(columns))
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"tables not in the database: {', '.join(extra)}")
        if missing:
            parts.append(f"tables not in the file: {', '.join(missing)}")
        raise Refused(f"{path} does not match this ticketbot's schema: {'; '.join(parts)}")
    for name, theirs_columns in columns.items():
        mine = {c.name: c.kind for c in tables[name].columns}
        theirs = {c.name: c.kind for c in theirs_columns}
        if mine != theirs:
            differ = sorted(n for n in set(mine) | set(theirs) if mine.get(n) != theirs.get(n))
            raise Refused(
                f"{path}: table {name} differs from the database's in columns "
                + ", ".join(
                    f"{n} (file: {theirs.get(n, 'absent')}, database: {mine.get(n, 'absent')})"
                    for n in differ
                )
            )


#: PostgreSQL's whole-number types and their ranges (SQLite's INTEGER holds 64 bits).
_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}


def _refuse_numbers_too_wide(contents: FileContents, tables: dict[str, Table]) -> None:
    """A number SQLite held that a PostgreSQL ``integer`` column cannot: refuse before the
    first row is written rather than fail half way."""
    for table in tables.values():
        for column in table.columns:
            limits = _INT_RANGES.get(column.declared.lower())
            found = contents.int_range.get((table.name, column.name))
            if limits is None or found is None:
                continue
            if found[0] < limits[0] or found[1] > limits[1]:
                worst = found[0] if found[0] < limits[0] else found[1]
                raise Refused(
                    f"table {table.name}, column {column.name}: the file holds {worst}, more "
                    f"than the database's {column.declared} column can ({limits[0]} to "
                    f"{limits[1]})"
                )


def _write_all(
    db: Database,
    path: Path,
    tables: dict[str, Table],
    progress: ProgressFactory,
    insert: InsertRows,
    sqlite: bool,
) -> dict[str, int]:
    header = read_header(path)
    bar = progress("importing", sum(header.counts.values()))
    written: dict[str, int] = {}
    for section, rows in sections(path, sqlite, Silent()):
        columns = [c.name for c in section.columns]
        if section.name in MIGRATION_TABLES:
            for _ in rows:
                bar.advance()
            continue
        count = 0
        batch: list[list[Any]] = []
        size = 0
        for row in rows:
            batch.append(row)
            size += sum(value_size(v) for v in row)
            if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
                count += _commit(db, section.name, columns, batch, insert, count)
                bar.advance(len(batch))
                batch, size = [], 0
        count += _commit(db, section.name, columns, batch, insert, count)
        bar.advance(len(batch))
        written[section.name] = count
    bar.finish()
    return written


def _commit(
    db: Database,
    table: str,
    columns: Sequence[str],
    batch: Sequence[Sequence[Any]],
    insert: InsertRows,
    before: int,
) -> int:
    if not batch:
        return 0
    transaction = db.atomic(lock_type="IMMEDIATE") if is_sqlite(db) else db.atomic()
    try:
        with transaction:
            return insert(db, table, columns, batch)
    except Exception as exc:
        raise TransferError(
            f"table {table}: writing rows {before + 1}-{before + len(batch)} failed and was "
            f"rolled back ({type(exc).__name__}: {str(exc).strip()}); the rows written before "
            "stay: do not start the bot on this database, make a new empty one and import again"
        ) from exc


def _reset_sequences(db: Database, tables: Iterable[Table]) -> int:
    """PostgreSQL: each serial column's sequence set to its table's largest id."""
    moved = 0
    for table in tables:
        for column in table.columns:
            if column.kind != "int":
                continue
            (sequence,) = _sql(
                db, "SELECT pg_get_serial_sequence(%s, %s)", (_quote(table.name), column.name)
            ).fetchone()
            if sequence is None:
                continue
            with db.atomic():
                _sql(
                    db,
                    f"SELECT setval(%s, COALESCE(MAX({_quote(column.name)}), 1), "
                    f"MAX({_quote(column.name)}) IS NOT NULL) FROM {_quote(table.name)}",
                    (sequence,),
                )
            moved += 1
    return moved
