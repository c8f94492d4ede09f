"""A desk with something in every table, and every row of a database read back plainly.

The desk is filled through the real core (mail with attachments, a follow-up, claim,
reply sent, note, a pending reply left in the outbox, chat posts), then the tables the
core does not touch in a few commands get rows written through the models, with the
values that are easy to get wrong: microseconds, a NUL byte in a blob, non-ASCII text,
NULLs. :func:`table_rows` reads a database without ``storage.transfer``, so a round trip
is checked by an independent reader.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

from bot.mail import AttachmentData
from storage import models as m
from tests.core.conftest import ALICE, mail, make_desk

PHOTO = random.Random(8).randbytes(150_000)
NOTES = "Grüße aus Köln\x00\nzweite Zeile\n".encode()
PRECISE = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
WHOLE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def fill_desk(tmp_path: Path, url: str) -> list[str]:
    """Fill the database at ``url``; returns the ticket numbers. Every table gets rows."""
    desk = await make_desk(tmp_path, url)
    try:
        first = await desk.receive(
            replace(
                mail("Photo question", message_id="<photo@example.net>"),
                attachments=(
                    AttachmentData("photo.jpg", "image/jpeg", PHOTO),
                    AttachmentData("notes.txt", "text/plain; charset=utf-8", NOTES),
                    AttachmentData("copy.jpg", "image/jpeg", PHOTO),  # one blob, two rows
                ),
            )
        )
        second = await desk.receive(mail("Presseanfrage 📷 ", to="press@example.org"))
        await desk.receive(mail("Re: Photo question", in_reply_to="<photo@example.net>"))
        await desk.command(ALICE, f"!claim {first.ticket_number}")
        await desk.command(ALICE, f"!reply {first.ticket_number} Yes, with credit, please.")
        await desk.command(ALICE, f"!note {first.ticket_number} Asked the photographer too")
        await desk.flush()
        # a reply not yet sent: it stays in the outbox, pending
        await desk.command(ALICE, f"!reply {first.ticket_number} And a second answer.")
        await desk.store.run(lambda repo: _rows_the_commands_did_not_write(first.ticket_number))
    finally:
        await desk.store.close()
    return [first.ticket_number, second.ticket_number]


def _rows_the_commands_did_not_write(number: str) -> None:
    ticket = m.Ticket.get(m.Ticket.number == number)
    m.TicketTag.create(ticket=ticket, name="presse")
    m.SenderMark.create(address="spam@example.com", kind="spam", at=PRECISE, detail="by rule")
    m.AutoResponse.create(address="maria@example.net", sent_at=WHOLE, ticket=ticket)
    m.Volunteer.create(user_id=ALICE.user_id, languages='["de", "en"]', updated_at=PRECISE)
    m.MailboxCursor.create(source="imap:INBOX", validity=1700000000, last_uid=2**31 - 1)
    m.JobState.create(key="digest", value="2026-11-23")
    m.DeskSetting.create(
        key="queue:press", value='{"sla_hours": 4}', updated_at=PRECISE, updated_by="@admin:x"
    )
    m.AccessGrant.create(
        subject="discord-role:1", queue="press", level="read", granted_by="@admin:x", at=WHOLE
    )
    m.AdminGrant.create(user_id="@bob:example.org", granted_by="@admin:x", at=PRECISE)
    m.Instance.create(
        name="host-1", started_at=WHOLE, last_seen=PRECISE, roles="mail,chat", stopped_at=None
    )


def sqlite_path(url: str) -> str:
    return url[len("sqlite:///") :]


def table_names(url: str) -> list[str]:
    """The tables as the database lists them, SQLite's full-text index left out."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'article_fts%'"
            ).fetchall()
        finally:
            conn.close()
        return sorted(r[0] for r in rows)
    pg = psycopg2.connect(url)
    try:
        with pg.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return sorted(r[0] for r in cur.fetchall())
    finally:
        pg.close()


def _plain(value: Any, declared: str) -> Any:
    """One value as both databases can be compared on: bytes, aware UTC datetimes."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, str) and declared.upper() in ("DATETIME", "TIMESTAMP WITHOUT TIME ZONE"):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def table_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by id, as {column: value}."""
    result: dict[str, list[dict[str, Any]]] = {}
    sqlite = url.startswith("sqlite:///")
    conn: Any = sqlite3.connect(sqlite_path(url)) if sqlite else psycopg2.connect(url)
    try:
        for table in table_names(url):
            cur = conn.cursor()
            if sqlite:
                cur.execute(f'PRAGMA table_info("{table}")')
                types = {r[1]: r[2] for r in cur.fetchall()}
            else:
                cur.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = %s",
                    (table,),
                )
                types = {r[0]: r[1] for r in cur.fetchall()}
            cur.execute(f'SELECT * FROM "{table}" ORDER BY "id"')
            names = [d[0] for d in cur.description]
            result[table] = [
                {n: _plain(v, types[n]) for n, v in zip(names, row, strict=True)}
                for row in cur.fetchall()
            ]
            cur.close()
    finally:
        conn.close()
    return result


def row_count(url: str, table: str) -> int:
    return len(table_rows(url)[table])
