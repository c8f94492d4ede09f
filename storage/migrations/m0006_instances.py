"""Schema step 6: several instances on one database.

- ``instance``: one row per ``ticketbot run`` process ever started: its name, when it
  started, when it last said it was alive, and the roles it held then. Its ``id`` is
  the process's claim mark on outbox rows and the key of its liveness lock.
- ``outbox.claimed_by``: the instance carrying out an item now. Another instance takes
  the item only when that one is gone (its liveness lock is free), so two instances
  never carry out the same item, and a killed one's items are taken over at once.

- ``outbox.priority``: 0, or 1 for a flooding sender's posts, which wait while anything
  else is due, so a real ticket is not posted behind a flood's backlog.
- PostgreSQL only: the IMAP numbers (``mailbox_cursor.validity``/``last_uid``,
  ``intake_record.validity``) become BIGINT: a UIDVALIDITY or UID may be up to
  2**32 - 1, past PostgreSQL's ``integer``. (SQLite's INTEGER already holds them.)

A table and a nullable column are added and three columns widened; no value changes.
"""

from __future__ import annotations

from storage.migrations.base import Migrator

VERSION = 6

_DIALECT = {
    "sqlite": {"pk": "INTEGER NOT NULL PRIMARY KEY", "ts": "DATETIME"},
    "postgresql": {"pk": "SERIAL NOT NULL PRIMARY KEY", "ts": "TIMESTAMP"},
}

_STATEMENTS = [
    (
        'CREATE TABLE "instance" ("id" {pk}, "name" TEXT NOT NULL, "started_at" {ts} NOT NULL, '
        """"last_seen" {ts} NOT NULL, "roles" TEXT NOT NULL DEFAULT '', """
        '"stopped_at" {ts})'
    ),
    'ALTER TABLE "outbox" ADD COLUMN "claimed_by" INTEGER',
    'ALTER TABLE "outbox" ADD COLUMN "priority" INTEGER NOT NULL DEFAULT 0',
    'CREATE INDEX "outbox_claimed_by" ON "outbox" ("claimed_by")',
]


_POSTGRESQL_ONLY = [
    'ALTER TABLE "mailbox_cursor" ALTER COLUMN "validity" TYPE BIGINT',
    'ALTER TABLE "mailbox_cursor" ALTER COLUMN "last_uid" TYPE BIGINT',
    'ALTER TABLE "intake_record" ALTER COLUMN "validity" TYPE BIGINT',
]


def upgrade(migrator: Migrator) -> None:
    words = _DIALECT[migrator.dialect]
    for statement in _STATEMENTS:
        migrator.execute(statement.format(**words))
    if migrator.dialect == "postgresql":
        for statement in _POSTGRESQL_ONLY:
            migrator.execute(statement)
