"""Schema step 2: the full ticket lifecycle.

Pending dates, priorities, languages, merges and links on tickets; tags; held
follow-ups; what the desk knows about senders (spam, undeliverable); the
auto-response log that rate-limits acknowledgements; volunteers' languages; job
state for the daily digest; and full-text search (SQLite FTS5 kept in step by
triggers, a GIN expression index on PostgreSQL). ``closed`` becomes
``closed_successful``, as OTRS names it.
"""

from __future__ import annotations

from storage.migrations.base import Migrator

VERSION = 2

_TICKET_COLUMNS = [
    '"priority" INTEGER NOT NULL DEFAULT 3',
    "\"language\" VARCHAR(255) NOT NULL DEFAULT ''",
    '"pending_until" {ts}',
    '"merged_into_id" INTEGER',
    '"linked_to_id" INTEGER',
    '"owner_active_at" {ts}',
    '"reminded_at" {ts}',
]

_TABLES = [
    (
        'CREATE TABLE "ticket_tag" ("id" {pk}, "ticket_id" INTEGER NOT NULL, '
        '"name" VARCHAR(255) NOT NULL, '
        'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT)'
    ),
    'CREATE INDEX "ticket_tag_ticket_id" ON "ticket_tag" ("ticket_id")',
    'CREATE INDEX "ticket_tag_name" ON "ticket_tag" ("name")',
    'CREATE UNIQUE INDEX "ticket_tag_ticket_id_name" ON "ticket_tag" ("ticket_id", "name")',
    (
        'CREATE TABLE "sender_mark" ("id" {pk}, "address" TEXT NOT NULL, '
        '"kind" VARCHAR(255) NOT NULL, "at" {ts} NOT NULL, "detail" TEXT NOT NULL)'
    ),
    'CREATE INDEX "sender_mark_address" ON "sender_mark" ("address")',
    'CREATE UNIQUE INDEX "sender_mark_address_kind" ON "sender_mark" ("address", "kind")',
    (
        'CREATE TABLE "auto_response" ("id" {pk}, "address" TEXT NOT NULL, '
        '"sent_at" {ts} NOT NULL, "ticket_id" INTEGER, '
        'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT)'
    ),
    'CREATE INDEX "auto_response_ticket_id" ON "auto_response" ("ticket_id")',
    'CREATE INDEX "auto_response_address_sent_at" ON "auto_response" ("address", "sent_at")',
    (
        'CREATE TABLE "volunteer" ("id" {pk}, "user_id" TEXT NOT NULL, '
        '"languages" TEXT NOT NULL, "updated_at" {ts} NOT NULL)'
    ),
    'CREATE UNIQUE INDEX "volunteer_user_id" ON "volunteer" ("user_id")',
    ('CREATE TABLE "job_state" ("id" {pk}, "key" VARCHAR(255) NOT NULL, "value" TEXT NOT NULL)'),
    'CREATE UNIQUE INDEX "job_state_key" ON "job_state" ("key")',
    'CREATE INDEX "ticket_pending_until" ON "ticket" ("pending_until")',
    'CREATE INDEX "ticket_updated_at" ON "ticket" ("updated_at")',
    'UPDATE "ticket" SET "state" = \'closed_successful\' WHERE "state" = \'closed\'',
]

_DIALECT = {
    "sqlite": {"pk": "INTEGER NOT NULL PRIMARY KEY", "ts": "DATETIME"},
    "postgresql": {"pk": "SERIAL NOT NULL PRIMARY KEY", "ts": "TIMESTAMP"},
}

#: SQLite: an external-content FTS5 index over articles, kept in step by triggers.
#: ``unicode61 remove_diacritics 2`` finds "Munchen" in "München".
_SQLITE_SEARCH = [
    (
        'CREATE VIRTUAL TABLE "article_fts" USING fts5(subject, body, content="article", '
        "content_rowid=\"id\", tokenize='unicode61 remove_diacritics 2')"
    ),
    (
        'CREATE TRIGGER "article_fts_insert" AFTER INSERT ON "article" BEGIN '
        'INSERT INTO "article_fts"(rowid, subject, body) VALUES (new.id, new.subject, new.body); '
        "END"
    ),
    (
        'CREATE TRIGGER "article_fts_delete" AFTER DELETE ON "article" BEGIN '
        'INSERT INTO "article_fts"("article_fts", rowid, subject, body) '
        "VALUES ('delete', old.id, old.subject, old.body); END"
    ),
    (
        'CREATE TRIGGER "article_fts_update" AFTER UPDATE OF subject, body ON "article" BEGIN '
        'INSERT INTO "article_fts"("article_fts", rowid, subject, body) '
        "VALUES ('delete', old.id, old.subject, old.body); "
        'INSERT INTO "article_fts"(rowid, subject, body) VALUES (new.id, new.subject, new.body); '
        "END"
    ),
    'INSERT INTO "article_fts"("article_fts") VALUES (\'rebuild\')',
]

#: PostgreSQL: a GIN index on the same expression the search query uses. Only the first
#: 100,000 characters are indexed: a tsvector is limited to 1 MB, and a longer mail
#: would otherwise fail to be stored at all.
_POSTGRES_SEARCH = [
    (
        'CREATE INDEX "article_search" ON "article" USING GIN '
        "(to_tsvector('simple', left(\"subject\" || ' ' || \"body\", 100000)))"
    ),
]


def upgrade(migrator: Migrator) -> None:
    words = _DIALECT[migrator.dialect]
    for column in _TICKET_COLUMNS:
        migrator.execute(f'ALTER TABLE "ticket" ADD COLUMN {column.format(**words)}')
    migrator.execute('ALTER TABLE "article" ADD COLUMN "held" INTEGER NOT NULL DEFAULT 0')
    for statement in _TABLES:
        migrator.execute(statement.format(**words))
    search = _SQLITE_SEARCH if migrator.dialect == "sqlite" else _POSTGRES_SEARCH
    for statement in search:
        migrator.execute(statement)
