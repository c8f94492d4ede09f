"""A reply the SMTP server accepted is not sent again when the database cannot record the
send at that moment (locked for longer than the busy timeout): the record is retried,
never the send."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.app import build_app
from bot.commands import ChatContext, CommandRequest
from bot.config import parse_config
from bot.domain import Actor
from tests.servers.dovecot import ImapAccount
from tests.servers.ports import free_port
from tests.servers.smtp import LOOPBACK, SmtpCapture, _Handler

pytestmark = pytest.mark.servers
LOCK_SECONDS = 12.0  # longer than the store's 10 s SQLite busy timeout


class _LockingHandler(_Handler):
    """Accepts the message and, before answering 250, locks the bot's database a while."""

    def __init__(self, capture: SmtpCapture, db: Path) -> None:
        super().__init__(capture)
        self.db = db

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        status: str = await super().handle_DATA(server, session, envelope)
        if len(self._capture.messages) == 1:
            conn = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")

            def release() -> None:
                conn.rollback()
                conn.close()

            threading.Timer(LOCK_SECONDS, release).start()
        return status


@pytest.fixture
def locking_smtp(tmp_path: Path) -> Iterator[SmtpCapture]:
    capture = SmtpCapture(LOOPBACK, free_port())
    controller = Controller(
        _LockingHandler(capture, tmp_path / "desk.db"), hostname=LOOPBACK, port=capture.port
    )
    controller.start()
    try:
        yield capture
    finally:
        controller.stop()


async def test_reply_accepted_but_not_recorded_is_not_sent_again(
    tmp_path: Path, imap_account: ImapAccount, locking_smtp: SmtpCapture
) -> None:
    imap_account.append(
        b"From: maria@example.net\r\nTo: info@example.org\r\nSubject: photo\r\n"
        b"Message-ID: <core-1@x>\r\n\r\nMay I?\r\n"
    )
    config = parse_config(
        {
            "storage": {"url": f"sqlite:///{tmp_path}/desk.db"},
            "mail": {
                "imap": {
                    "host": imap_account.host,
                    "port": imap_account.port,
                    "security": "none",
                    "username": imap_account.username,
                    "password": imap_account.password,
                },
                "smtp": {"host": locking_smtp.host, "port": locking_smtp.port, "security": "none"},
            },
            "outbox": {"retry_seconds": 1},
            "tickets": {"undo_seconds": 0},
            "console": {"user": "@alice:example.org"},
            "queue": [
                {
                    "name": "info",
                    "addresses": ["info@example.org"],
                    "volunteers": ["@alice:example.org"],
                    "default": True,
                }
            ],
        },
        tmp_path / "bot.toml",
        {},
    )
    app = await build_app(config)
    try:
        assert await app.check_mail_once() == 1
        ticket = await app.store.run(lambda repo: repo.ticket_by_message_ids(["<core-1@x>"]))
        assert ticket is not None
        actor = Actor("console", "@alice:example.org", "Alice")
        result = await app.commands.execute(
            CommandRequest(
                actor, "reply", f"{ticket.number} Yes.", ChatContext("console", None, None, None)
            )
        )
        assert result.ok, result.message
        # The server accepts; recording the send then waits for the locked database.
        await app.dispatcher.drain("email")
        await app.dispatcher.drain("email")
        articles = await app.store.run(lambda repo: repo.articles(ticket.id or 0))
    finally:
        await app.close()
        if app.imap is not None:
            await app.imap.close()
    ids = [str(m.message["Message-ID"]) for m in locking_smtp.messages]
    assert len(ids) == 1, f"the reply the server accepted was sent again: {ids}"
    assert articles[-1].send_state is not None and articles[-1].send_state.value == "sent"
