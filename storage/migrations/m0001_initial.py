"""Schema step 1: the first release's tables.

Frozen SQL, written once per dialect: later model changes never alter this step;
they add a new numbered step instead.
"""

from __future__ import annotations

from storage.migrations.base import Migrator

VERSION = 1

STATEMENTS: dict[str, list[str]] = {
    "sqlite": [
        (
            'CREATE TABLE "queue" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"name" VARCHAR(255) NOT NULL, "created_at" DATETIME NOT NULL)'
        ),
        ('CREATE UNIQUE INDEX "queue_name" ON "queue" ("name")'),
        (
            'CREATE TABLE "ticket" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"number" VARCHAR(255) NOT NULL, "queue_id" INTEGER NOT NULL, '
            '"state" VARCHAR(255) NOT NULL, "owner" TEXT, "owner_name" TEXT, '
            '"subject" TEXT NOT NULL, "requester_email" TEXT NOT NULL, '
            '"requester_name" TEXT NOT NULL, "created_at" DATETIME NOT NULL, '
            '"updated_at" DATETIME NOT NULL, "version" INTEGER NOT NULL, '
            'FOREIGN KEY ("queue_id") REFERENCES "queue" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE UNIQUE INDEX "ticket_number" ON "ticket" ("number")'),
        ('CREATE INDEX "ticket_queue_id" ON "ticket" ("queue_id")'),
        ('CREATE INDEX "ticket_state" ON "ticket" ("state")'),
        ('CREATE INDEX "ticket_requester_email" ON "ticket" ("requester_email")'),
        (
            'CREATE TABLE "raw_message" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"sha256" VARCHAR(255) NOT NULL, "size" INTEGER NOT NULL, "data" BLOB NOT NULL)'
        ),
        ('CREATE INDEX "raw_message_sha256" ON "raw_message" ("sha256")'),
        (
            'CREATE TABLE "article" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"ticket_id" INTEGER NOT NULL, "kind" VARCHAR(255) NOT NULL, '
            '"author" TEXT NOT NULL, "author_name" TEXT NOT NULL, "subject" TEXT NOT NULL, '
            '"body" TEXT NOT NULL, "message_id" TEXT, "in_reply_to" TEXT NOT NULL, '
            '"references" TEXT NOT NULL, "to_addrs" TEXT NOT NULL, "cc_addrs" TEXT NOT NULL, '
            '"auto_kind" VARCHAR(255) NOT NULL, "raw_id" INTEGER, "send_state" VARCHAR(255), '
            '"send_attempts" INTEGER NOT NULL, "sent_at" DATETIME, '
            '"last_error" TEXT NOT NULL, "created_at" DATETIME NOT NULL, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT, '
            'FOREIGN KEY ("raw_id") REFERENCES "raw_message" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "article_ticket_id" ON "article" ("ticket_id")'),
        ('CREATE UNIQUE INDEX "article_message_id" ON "article" ("message_id")'),
        ('CREATE INDEX "article_raw_id" ON "article" ("raw_id")'),
        (
            'CREATE TABLE "attachment" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"article_id" INTEGER NOT NULL, "filename" TEXT NOT NULL, '
            '"content_type" TEXT NOT NULL, "size" INTEGER NOT NULL, '
            '"sha256" VARCHAR(255) NOT NULL, "data" BLOB NOT NULL, '
            'FOREIGN KEY ("article_id") REFERENCES "article" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "attachment_article_id" ON "attachment" ("article_id")'),
        ('CREATE INDEX "attachment_sha256" ON "attachment" ("sha256")'),
        (
            'CREATE TABLE "chat_post" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"ticket_id" INTEGER NOT NULL, "platform" VARCHAR(255) NOT NULL, '
            '"room" TEXT NOT NULL, "root_ref" TEXT NOT NULL, "created_at" DATETIME NOT NULL, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "chat_post_ticket_id" ON "chat_post" ("ticket_id")'),
        (
            'CREATE UNIQUE INDEX "chat_post_ticket_id_platform" ON "chat_post" ("ticket_id", '
            '"platform")'
        ),
        ('CREATE INDEX "chat_post_platform_root_ref" ON "chat_post" ("platform", "root_ref")'),
        (
            'CREATE TABLE "mailbox_cursor" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"source" TEXT NOT NULL, "validity" INTEGER NOT NULL, '
            '"last_uid" INTEGER NOT NULL)'
        ),
        ('CREATE UNIQUE INDEX "mailbox_cursor_source" ON "mailbox_cursor" ("source")'),
        (
            'CREATE TABLE "intake_record" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"source" TEXT NOT NULL, "validity" INTEGER NOT NULL, "item" TEXT NOT NULL, '
            '"message_id" TEXT NOT NULL, "ticket_id" INTEGER, '
            '"committed_at" DATETIME NOT NULL, "done_at" DATETIME, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "intake_record_ticket_id" ON "intake_record" ("ticket_id")'),
        (
            ""
            'CREATE UNIQUE INDEX "intake_record_source_validity_item" ON "intake_record" ("source", '
            '"validity", "item")'
        ),
        ('CREATE INDEX "intake_record_source_done_at" ON "intake_record" ("source", "done_at")'),
        (
            'CREATE TABLE "outbox" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"channel" VARCHAR(255) NOT NULL, "kind" VARCHAR(255) NOT NULL, '
            '"ticket_id" INTEGER NOT NULL, "article_id" INTEGER, "payload" TEXT NOT NULL, '
            '"state" VARCHAR(255) NOT NULL, "attempts" INTEGER NOT NULL, '
            '"next_attempt_at" DATETIME NOT NULL, "last_error" TEXT NOT NULL, '
            '"created_at" DATETIME NOT NULL, "done_at" DATETIME, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT, '
            'FOREIGN KEY ("article_id") REFERENCES "article" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "outbox_ticket_id" ON "outbox" ("ticket_id")'),
        ('CREATE INDEX "outbox_article_id" ON "outbox" ("article_id")'),
        (
            'CREATE INDEX "outbox_channel_state_next_attempt_at" ON "outbox" ("channel", '
            '"state", "next_attempt_at")'
        ),
        (
            'CREATE TABLE "audit_log" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"at" DATETIME NOT NULL, "actor_platform" VARCHAR(255) NOT NULL, '
            '"actor_id" TEXT NOT NULL, "actor_name" TEXT NOT NULL, '
            '"action" VARCHAR(255) NOT NULL, "ticket_id" INTEGER, "detail" TEXT NOT NULL, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "audit_log_at" ON "audit_log" ("at")'),
        ('CREATE INDEX "audit_log_actor_id" ON "audit_log" ("actor_id")'),
        ('CREATE INDEX "audit_log_ticket_id" ON "audit_log" ("ticket_id")'),
        (
            'CREATE TABLE "ticket_counter" ("id" INTEGER NOT NULL PRIMARY KEY, '
            '"day" VARCHAR(255) NOT NULL, "value" INTEGER NOT NULL)'
        ),
        ('CREATE UNIQUE INDEX "ticket_counter_day" ON "ticket_counter" ("day")'),
    ],
    "postgresql": [
        (
            'CREATE TABLE "queue" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"name" VARCHAR(255) NOT NULL, "created_at" TIMESTAMP NOT NULL)'
        ),
        ('CREATE UNIQUE INDEX "queue_name" ON "queue" ("name")'),
        (
            'CREATE TABLE "ticket" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"number" VARCHAR(255) NOT NULL, "queue_id" INTEGER NOT NULL, '
            '"state" VARCHAR(255) NOT NULL, "owner" TEXT, "owner_name" TEXT, '
            '"subject" TEXT NOT NULL, "requester_email" TEXT NOT NULL, '
            '"requester_name" TEXT NOT NULL, "created_at" TIMESTAMP NOT NULL, '
            '"updated_at" TIMESTAMP NOT NULL, "version" INTEGER NOT NULL, '
            'FOREIGN KEY ("queue_id") REFERENCES "queue" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE UNIQUE INDEX "ticket_number" ON "ticket" ("number")'),
        ('CREATE INDEX "ticket_queue_id" ON "ticket" ("queue_id")'),
        ('CREATE INDEX "ticket_state" ON "ticket" ("state")'),
        ('CREATE INDEX "ticket_requester_email" ON "ticket" ("requester_email")'),
        (
            'CREATE TABLE "raw_message" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"sha256" VARCHAR(255) NOT NULL, "size" INTEGER NOT NULL, "data" BYTEA NOT NULL)'
        ),
        ('CREATE INDEX "raw_message_sha256" ON "raw_message" ("sha256")'),
        (
            'CREATE TABLE "article" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"ticket_id" INTEGER NOT NULL, "kind" VARCHAR(255) NOT NULL, '
            '"author" TEXT NOT NULL, "author_name" TEXT NOT NULL, "subject" TEXT NOT NULL, '
            '"body" TEXT NOT NULL, "message_id" TEXT, "in_reply_to" TEXT NOT NULL, '
            '"references" TEXT NOT NULL, "to_addrs" TEXT NOT NULL, "cc_addrs" TEXT NOT NULL, '
            '"auto_kind" VARCHAR(255) NOT NULL, "raw_id" INTEGER, "send_state" VARCHAR(255), '
            '"send_attempts" INTEGER NOT NULL, "sent_at" TIMESTAMP, '
            '"last_error" TEXT NOT NULL, "created_at" TIMESTAMP NOT NULL, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT, '
            'FOREIGN KEY ("raw_id") REFERENCES "raw_message" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "article_ticket_id" ON "article" ("ticket_id")'),
        ('CREATE UNIQUE INDEX "article_message_id" ON "article" ("message_id")'),
        ('CREATE INDEX "article_raw_id" ON "article" ("raw_id")'),
        (
            'CREATE TABLE "attachment" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"article_id" INTEGER NOT NULL, "filename" TEXT NOT NULL, '
            '"content_type" TEXT NOT NULL, "size" INTEGER NOT NULL, '
            '"sha256" VARCHAR(255) NOT NULL, "data" BYTEA NOT NULL, '
            'FOREIGN KEY ("article_id") REFERENCES "article" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "attachment_article_id" ON "attachment" ("article_id")'),
        ('CREATE INDEX "attachment_sha256" ON "attachment" ("sha256")'),
        (
            'CREATE TABLE "chat_post" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"ticket_id" INTEGER NOT NULL, "platform" VARCHAR(255) NOT NULL, '
            '"room" TEXT NOT NULL, "root_ref" TEXT NOT NULL, '
            '"created_at" TIMESTAMP NOT NULL, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "chat_post_ticket_id" ON "chat_post" ("ticket_id")'),
        (
            'CREATE UNIQUE INDEX "chat_post_ticket_id_platform" ON "chat_post" ("ticket_id", '
            '"platform")'
        ),
        ('CREATE INDEX "chat_post_platform_root_ref" ON "chat_post" ("platform", "root_ref")'),
        (
            'CREATE TABLE "mailbox_cursor" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"source" TEXT NOT NULL, "validity" INTEGER NOT NULL, '
            '"last_uid" INTEGER NOT NULL)'
        ),
        ('CREATE UNIQUE INDEX "mailbox_cursor_source" ON "mailbox_cursor" ("source")'),
        (
            'CREATE TABLE "intake_record" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"source" TEXT NOT NULL, "validity" INTEGER NOT NULL, "item" TEXT NOT NULL, '
            '"message_id" TEXT NOT NULL, "ticket_id" INTEGER, '
            '"committed_at" TIMESTAMP NOT NULL, "done_at" TIMESTAMP, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "intake_record_ticket_id" ON "intake_record" ("ticket_id")'),
        (
            ""
            'CREATE UNIQUE INDEX "intake_record_source_validity_item" ON "intake_record" ("source", '
            '"validity", "item")'
        ),
        ('CREATE INDEX "intake_record_source_done_at" ON "intake_record" ("source", "done_at")'),
        (
            'CREATE TABLE "outbox" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"channel" VARCHAR(255) NOT NULL, "kind" VARCHAR(255) NOT NULL, '
            '"ticket_id" INTEGER NOT NULL, "article_id" INTEGER, "payload" TEXT NOT NULL, '
            '"state" VARCHAR(255) NOT NULL, "attempts" INTEGER NOT NULL, '
            '"next_attempt_at" TIMESTAMP NOT NULL, "last_error" TEXT NOT NULL, '
            '"created_at" TIMESTAMP NOT NULL, "done_at" TIMESTAMP, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT, '
            'FOREIGN KEY ("article_id") REFERENCES "article" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "outbox_ticket_id" ON "outbox" ("ticket_id")'),
        ('CREATE INDEX "outbox_article_id" ON "outbox" ("article_id")'),
        (
            'CREATE INDEX "outbox_channel_state_next_attempt_at" ON "outbox" ("channel", '
            '"state", "next_attempt_at")'
        ),
        (
            'CREATE TABLE "audit_log" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"at" TIMESTAMP NOT NULL, "actor_platform" VARCHAR(255) NOT NULL, '
            '"actor_id" TEXT NOT NULL, "actor_name" TEXT NOT NULL, '
            '"action" VARCHAR(255) NOT NULL, "ticket_id" INTEGER, "detail" TEXT NOT NULL, '
            'FOREIGN KEY ("ticket_id") REFERENCES "ticket" ("id") ON DELETE RESTRICT)'
        ),
        ('CREATE INDEX "audit_log_at" ON "audit_log" ("at")'),
        ('CREATE INDEX "audit_log_actor_id" ON "audit_log" ("actor_id")'),
        ('CREATE INDEX "audit_log_ticket_id" ON "audit_log" ("ticket_id")'),
        (
            'CREATE TABLE "ticket_counter" ("id" SERIAL NOT NULL PRIMARY KEY, '
            '"day" VARCHAR(255) NOT NULL, "value" INTEGER NOT NULL)'
        ),
        ('CREATE UNIQUE INDEX "ticket_counter_day" ON "ticket_counter" ("day")'),
    ],
}


def upgrade(migrator: Migrator) -> None:
    for statement in STATEMENTS[migrator.dialect]:
        migrator.execute(statement)
