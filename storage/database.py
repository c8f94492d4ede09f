"""Opening the database named by ``storage.url``.

SQLite gets WAL (readers never block the writer), a busy timeout, foreign keys,
and ``BEGIN IMMEDIATE`` for every transaction: WAL's busy handler does not cover a
read lock upgraded to a write lock, so a transaction that reads and then writes
must take the write lock up front or it can fail with SQLITE_BUSY at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from peewee import Database, PostgresqlDatabase, SqliteDatabase

SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),
    ("busy_timeout", 10_000),
    ("foreign_keys", 1),
    ("synchronous", "normal"),
)


def open_database(url: str) -> Database:
    """A peewee database for ``sqlite:///path`` or ``postgresql://user:pass@host:port/db``."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10)
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlparse(url)
        # libpq parameters such as sslmode=verify-full&sslrootcert=... pass through
        options: dict[str, Any] = dict(parse_qsl(parts.query))
        return PostgresqlDatabase(
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname or None,
            port=parts.port or 5432,
            **options,
        )
    raise ValueError(f"unsupported storage url {url!r}")


def is_sqlite(db: Database) -> bool:
    return isinstance(db, SqliteDatabase)
