"""Schema upgrades in place: a database made by schema step 1, with data, upgraded to now."""

from __future__ import annotations

from pathlib import Path

import pytest
from peewee import Database

from storage.database import open_database
from storage.migrations import LATEST, current_version, m0001_initial, migrate
from storage.migrations.base import Migrator


def _version_one(db: Database, dialect: str) -> None:
    db.execute_sql(
        'CREATE TABLE "schema_version" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"version" INTEGER NOT NULL)'
    )
    m0001_initial.upgrade(Migrator(db, dialect))
    p = db.param
    db.execute_sql(f'INSERT INTO "schema_version" ("id", "version") VALUES ({p}, {p})', (1, 1))
    db.execute_sql(
        f'INSERT INTO "queue" ("id", "name", "created_at") VALUES ({p}, {p}, {p})',
        (1, "info", "2026-11-01 10:00:00"),
    )
    db.execute_sql(
        'INSERT INTO "ticket" ("id", "number", "queue_id", "state", "subject", '
        '"requester_email", "requester_name", "created_at", "updated_at", "version") '
        f"VALUES ({', '.join([p] * 10)})",
        (
            1,
            "2026110110000001",
            1,
            "closed",
            "Lighthouse photo",
            "maria@example.net",
            "Maria",
            "2026-11-01 10:00:00",
            "2026-11-02 10:00:00",
            3,
        ),
    )
    db.execute_sql(
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
            "Lighthouse photo",
            "May I reuse the lighthouse picture?",
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


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_first_release_database_with_data_is_upgraded(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/old.db"
        if dialect == "sqlite"
        else request.getfixturevalue("postgres_db_url")
    )
    db = open_database(url)
    with db.atomic():
        _version_one(db, dialect)
    assert current_version(db) == 1
    assert migrate(db) == LATEST - 1
    assert current_version(db) == LATEST
    row = db.execute_sql(
        'SELECT "state", "priority", "language", "pending_until" FROM "ticket" WHERE "id" = 1'
    ).fetchone()
    assert tuple(row) == ("closed_successful", 3, "", None)
    held = db.execute_sql('SELECT "held" FROM "article" WHERE "id" = 1').fetchone()[0]
    assert held == 0
    # the articles that were there before are searchable
    if dialect == "sqlite":
        found = db.execute_sql(
            "SELECT rowid FROM article_fts WHERE article_fts MATCH 'lighthouse'"
        ).fetchall()
    else:
        found = db.execute_sql(
            "SELECT id FROM article "
            "WHERE to_tsvector('simple', left(subject || ' ' || body, 100000)) "
            "@@ plainto_tsquery('simple', 'lighthouse')"
        ).fetchall()
    assert [tuple(r) for r in found] == [(1,)]
    # step 5: the indexes search and the reports plan with (docs/search-performance.md)
    ticket = {i.name: (i.columns, i.unique) for i in db.get_indexes("ticket")}
    assert ticket["ticket_updated_at_id"] == (["updated_at", "id"], False)
    assert ticket["ticket_unowned"][0] == ["updated_at", "id"]
    assert ticket["ticket_created_at"] == (["created_at"], False)
    assert "ticket_updated_at" not in ticket, "replaced by ticket_updated_at_id"
    audit = {i.name: i.columns for i in db.get_indexes("audit_log")}
    assert audit["audit_log_ticket_id_action_at"] == ["ticket_id", "action", "at"]
    db.close()


def test_migrate_command_lists_then_applies_the_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    path = tmp_path / "old.db"
    db = open_database(f"sqlite:///{path}")
    with db.atomic():
        _version_one(db, "sqlite")
    db.close()
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{path}"\n'
        '[mail.maildir]\npath = "mail"\n[mail.files]\npath = "out"\n'
        '[[queue]]\nname = "info"\naddresses = ["info@example.org"]\ndefault = true\n'
        "[console]\n"
    )
    assert main(["migrate", "--dry-run", "--config", str(config)]) == 0
    dry = capsys.readouterr().out
    assert "database schema: step 1" in dry and "dry run: nothing changed" in dry
    assert f"step {LATEST}:" in dry
    assert main(["migrate", "--config", str(config)]) == 0
    assert f"the database is at step {LATEST}" in capsys.readouterr().out
    assert main(["migrate", "--config", str(config)]) == 0
    assert "up to date" in capsys.readouterr().out
    db = open_database(f"sqlite:///{path}")
    assert current_version(db) == LATEST
    assert db.execute_sql('SELECT "number" FROM "ticket"').fetchall() == [("2026110110000001",)]
    db.close()
