"""Schema step 4: what admins change at run time, and before/after in the audit log.

- ``desk_setting``: one row per key, its value a JSON document: ``queue:<name>`` holds
  the settings an admin changed on a queue (or the whole of a queue added by
  command), ``rules`` the routing rules once an admin has edited them. Whatever is
  here wins over ``bot.toml`` for the same setting.
- ``access_grant``: who (a user id or ``discord-role:ID``) may do what in a queue:
  ``act``, ``trainee``, ``read`` or ``none`` (taken away), and whether it covers the
  queue's sub-queues.
- ``admin_grant``: admins added with ``admin grant``, beside those in ``bot.toml``.
- ``audit_log`` gains ``before`` and ``after``: the value a change replaced and the
  one it set, for admin actions.

Only tables and columns are added; no row is rewritten.
"""

from __future__ import annotations

from storage.migrations.base import Migrator

VERSION = 4

_DIALECT = {
    "sqlite": {"pk": "INTEGER NOT NULL PRIMARY KEY", "ts": "DATETIME"},
    "postgresql": {"pk": "SERIAL NOT NULL PRIMARY KEY", "ts": "TIMESTAMP"},
}

_STATEMENTS = [
    (
        'CREATE TABLE "desk_setting" ("id" {pk}, "key" VARCHAR(255) NOT NULL, '
        '"value" TEXT NOT NULL, "updated_at" {ts} NOT NULL, "updated_by" TEXT NOT NULL)'
    ),
    'CREATE UNIQUE INDEX "desk_setting_key" ON "desk_setting" ("key")',
    (
        'CREATE TABLE "access_grant" ("id" {pk}, "subject" TEXT NOT NULL, '
        '"queue" TEXT NOT NULL, "level" VARCHAR(255) NOT NULL, '
        '"subqueues" INTEGER NOT NULL DEFAULT 1, "granted_by" TEXT NOT NULL, '
        '"at" {ts} NOT NULL)'
    ),
    'CREATE UNIQUE INDEX "access_grant_subject_queue" ON "access_grant" ("subject", "queue")',
    (
        'CREATE TABLE "admin_grant" ("id" {pk}, "user_id" TEXT NOT NULL, '
        '"granted_by" TEXT NOT NULL, "at" {ts} NOT NULL)'
    ),
    'CREATE UNIQUE INDEX "admin_grant_user_id" ON "admin_grant" ("user_id")',
    """ALTER TABLE "audit_log" ADD COLUMN "before" TEXT NOT NULL DEFAULT ''""",
    """ALTER TABLE "audit_log" ADD COLUMN "after" TEXT NOT NULL DEFAULT ''""",
    'CREATE INDEX "audit_log_action" ON "audit_log" ("action")',
]


def upgrade(migrator: Migrator) -> None:
    words = _DIALECT[migrator.dialect]
    for statement in _STATEMENTS:
        migrator.execute(statement.format(**words))
