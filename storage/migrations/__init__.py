"""Numbered, forward-only schema steps, run at every start.

Each step is a module ``mNNNN_name.py`` with ``VERSION`` and ``upgrade(migrator)``;
the database records the version it is at in ``schema_version`` and every step
after it runs in its own transaction. There is never a "delete the database".
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from peewee import Database, PostgresqlDatabase

from storage.migrations import (
    m0001_initial,
    m0002_lifecycle,
    m0003_attachment_blobs,
    m0004_admin,
    m0005_indexes,
    m0006_instances,
)
from storage.migrations.base import Migrator

log = logging.getLogger(__name__)

STEPS: list[ModuleType] = [
    m0001_initial,
    m0002_lifecycle,
    m0003_attachment_blobs,
    m0004_admin,
    m0005_indexes,
    m0006_instances,
]
LATEST = STEPS[-1].VERSION


class SchemaTooNew(Exception):
    """The database was written by a newer ticketbot; refusing to touch it."""


def _sql(db: Database, sql: str, params: tuple[object, ...] = ()) -> Any:
    return db.execute_sql(sql, params)  # type: ignore[no-untyped-call]


def dialect_of(db: Database) -> str:
    return "postgresql" if isinstance(db, PostgresqlDatabase) else "sqlite"


def current_version(db: Database) -> int:
    if "schema_version" not in db.get_tables():
        return 0
    row = _sql(db, 'SELECT MAX("version") FROM "schema_version"').fetchone()
    return int(row[0] or 0)


def migrate(db: Database) -> int:
    """Bring the schema up to :data:`LATEST`; returns the number of steps applied."""
    migrator = Migrator(db, dialect_of(db))
    with db.atomic():
        _sql(
            db,
            'CREATE TABLE IF NOT EXISTS "schema_version" '
            '("id" INTEGER NOT NULL PRIMARY KEY, "version" INTEGER NOT NULL)',
        )
    version = current_version(db)
    if version > LATEST:
        raise SchemaTooNew(
            f"the database is at schema version {version}, newer than this ticketbot ({LATEST})"
        )
    applied = 0
    for step in STEPS:
        if version >= step.VERSION:
            continue
        log.info("upgrading the database schema to version %d (%s)", step.VERSION, step.__name__)
        with db.atomic():
            step.upgrade(migrator)
            _sql(
                db,
                'INSERT INTO "schema_version" ("id", "version") VALUES (%s, %s)'.replace(
                    "%s", db.param
                ),
                (step.VERSION, step.VERSION),
            )
        applied += 1
    return applied
