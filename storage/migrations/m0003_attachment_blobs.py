"""Schema step 3: attachment bytes stored once per content, in ``attachment_blob``.

The same logo, signature image or forwarded PDF arrives again and again; from this
step on each distinct content (by sha256) is stored once in ``attachment_blob``
(``sha256`` unique, ``size``, ``data``) and an ``attachment`` row names it with
``blob_id``.

What happens to the attachments already stored: **nothing is moved**. Their bytes stay
in ``attachment.data``, which becomes nullable; new rows leave it NULL and set
``blob_id``. Readers take ``blob.data`` when ``blob_id`` is set and ``attachment.data``
otherwise, and verify either against the attachment's sha256. Leaving the old bytes in
place means this step never rewrites evidence: SQLite has no sha256 function, so moving
rows into a table keyed by their *stored* hash could not check first that the bytes
still match it, and a damaged copy could have become the one every duplicate shares.
A CHECK constraint keeps every row holding its bytes one way or the other.

Per dialect:

- SQLite cannot drop a NOT NULL constraint or add a foreign key to an existing table,
  so ``attachment`` is rebuilt the documented way: a new table with the new shape,
  every row copied with its id, the old table dropped, the new one renamed, its indexes
  made again. Nothing references ``attachment``, so no other table is touched. The
  whole step runs in the migration's one transaction, so a crash leaves step 2 intact.
- PostgreSQL: ``ALTER COLUMN "data" DROP NOT NULL`` and ``ADD COLUMN "blob_id"`` in
  place (neither rewrites the table); the CHECK constraint is validated against the
  existing rows, which all hold their data.
"""

from __future__ import annotations

from storage.migrations.base import Migrator

VERSION = 3

STATEMENTS: dict[str, list[str]] = {
    "sqlite": [
        (
            'CREATE TABLE "attachment_blob" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"sha256" VARCHAR(255) NOT NULL, "size" INTEGER NOT NULL, "data" BLOB NOT NULL)'
        ),
        'CREATE UNIQUE INDEX "attachment_blob_sha256" ON "attachment_blob" ("sha256")',
        (
            'CREATE TABLE "attachment_new" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"article_id" INTEGER NOT NULL, "filename" TEXT NOT NULL, '
            '"content_type" TEXT NOT NULL, "size" INTEGER NOT NULL, '
            '"sha256" VARCHAR(255) NOT NULL, "data" BLOB, "blob_id" INTEGER, '
            'FOREIGN KEY ("article_id") REFERENCES "article" ("id") ON DELETE RESTRICT, '
            'FOREIGN KEY ("blob_id") REFERENCES "attachment_blob" ("id") ON DELETE RESTRICT, '
            'CHECK ("data" IS NOT NULL OR "blob_id" IS NOT NULL))'
        ),
        (
            'INSERT INTO "attachment_new" ("id", "article_id", "filename", "content_type", '
            '"size", "sha256", "data", "blob_id") '
            'SELECT "id", "article_id", "filename", "content_type", "size", "sha256", "data", '
            'NULL FROM "attachment" ORDER BY "id"'
        ),
        'DROP TABLE "attachment"',
        'ALTER TABLE "attachment_new" RENAME TO "attachment"',
        'CREATE INDEX "attachment_article_id" ON "attachment" ("article_id")',
        'CREATE INDEX "attachment_sha256" ON "attachment" ("sha256")',
        'CREATE INDEX "attachment_blob_id" ON "attachment" ("blob_id")',
    ],
    "postgresql": [
        (
            'CREATE TABLE "attachment_blob" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"sha256" VARCHAR(255) NOT NULL, "size" INTEGER NOT NULL, "data" BYTEA NOT NULL)'
        ),
        'CREATE UNIQUE INDEX "attachment_blob_sha256" ON "attachment_blob" ("sha256")',
        'ALTER TABLE "attachment" ALTER COLUMN "data" DROP NOT NULL',
        (
            'ALTER TABLE "attachment" ADD COLUMN "blob_id" INTEGER '
            'REFERENCES "attachment_blob" ("id") ON DELETE RESTRICT'
        ),
        (
            'ALTER TABLE "attachment" ADD CONSTRAINT "attachment_has_data" '
            'CHECK ("data" IS NOT NULL OR "blob_id" IS NOT NULL)'
        ),
        'CREATE INDEX "attachment_blob_id" ON "attachment" ("blob_id")',
    ],
}


def upgrade(migrator: Migrator) -> None:
    for statement in STATEMENTS[migrator.dialect]:
        migrator.execute(statement)
