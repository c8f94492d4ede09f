"""A flood of 5,000 mails from one sender on real servers: nothing lost, the room usable.

5,000 mails from one address arrive in Dovecot within a minute, with a few ordinary
mails from other people among them. The running bot (IMAP IDLE, Synapse, the outbox)
takes every one in; past ``[flood] threshold`` the sender's mail is grouped into one
ticket, so the room gets a few dozen posts instead of 5,000 and the other people's
tickets appear as soon as they are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, build_app
from bot.config import parse_config
from storage import models
from tests.e2e.test_email_matrix_loop import Room, mail, messages, room, wait_for
from tests.servers.dovecot import ImapAccount
from tests.servers.smtp import SmtpCapture

pytestmark = pytest.mark.servers

FLOOD = 5000
REAL_AT = (1000, 2500, 4000)  # ordinary mails from other people among the flood

__all__ = ["room"]  # the fixture, imported for this module's tests


def _flood_mail(index: int) -> bytes:
    return (
        b"From: Robot <robot@flood.example>\r\nTo: info@example.org\r\n"
        + f"Subject: Offer {index}\r\nMessage-ID: <flood-{index}@flood.example>\r\n".encode()
        + b"Date: Mon, 23 Nov 2026 09:12:00 +0000\r\nContent-Type: text/plain\r\n\r\n"
        + f"Buy now, offer number {index}.\r\n".encode()
    )


def _real_mail(index: int) -> bytes:
    raw = mail(f"Real question {index}", f"A real person asks ({index}).", f"<real-{index}@x.net>")
    return raw.replace(b"maria.lopez@example.net", f"person{index}@example.net".encode())


@pytest.fixture
async def app(
    tmp_path: Path, room: Room, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> AsyncIterator[App]:
    bot_id = room.alice[0].replace("@alice", "@ticketbot", 1)
    config = parse_config(
        {
            "storage": {"url": f"sqlite:///{tmp_path}/flood.db"},
            "mail": {
                "imap": {
                    "host": imap_account.host,
                    "port": imap_account.port,
                    "security": "none",
                    "username": imap_account.username,
                    "password": imap_account.password,
                    "poll_seconds": 5,
                },
                "smtp": {"host": smtp_capture.host, "port": smtp_capture.port, "security": "none"},
            },
            "matrix": {"homeserver": room.synapse.url, "user_id": bot_id, "password": "bot-pw"},
            "flood": {"threshold": 20, "window": "1h", "notice_every": 500},
            "reminders": {"digest_at": "off"},
            "queue": [
                {
                    "name": "info",
                    "addresses": ["info@example.org"],
                    "matrix_room": room.room_id,
                    "volunteers": [room.alice[0]],
                    "default": True,
                    "autoresponse_new": "Received, ticket {ticket_number}.",
                }
            ],
        },
        tmp_path / "bot.toml",
        {},
    )
    app = await build_app(config)
    task = asyncio.create_task(app.run())
    yield app
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _deliver(account: ImapAccount, appended: dict[int, float]) -> None:
    """Append the flood over one connection, recording when each real mail went in."""
    with account.client(timeout=60) as client:
        for index in range(FLOOD):
            client.append("INBOX", _flood_mail(index))
            if index in REAL_AT:
                client.append("INBOX", _real_mail(index))
                appended[index] = time.monotonic()


async def test_five_thousand_mails_from_one_sender_are_grouped_and_nothing_is_lost(
    app: App, room: Room, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    appended: dict[int, float] = {}
    started = time.monotonic()
    delivery = threading.Thread(target=_deliver, args=(imap_account, appended))
    delivery.start()

    seen: dict[int, float] = {}

    def roots() -> list[dict[str, Any]]:
        return [
            e
            for e in messages(room.events())
            if "[Ticket#" in e["content"].get("body", "") and "m.relates_to" not in e["content"]
        ]

    def real_posted() -> bool:
        now = time.monotonic()
        for event in roots():
            for index in REAL_AT:
                if f"Real question {index}" in event["content"]["body"]:
                    seen.setdefault(index, now)
        return len(seen) == len(REAL_AT)

    await wait_for("the ordinary tickets in the room", real_posted, timeout=240, interval=0.5)
    await asyncio.to_thread(delivery.join, 120)
    delivered = time.monotonic() - started

    async def stored() -> int:
        return await app.store.run(lambda repo: int(models.Article.select().count()))

    deadline = time.monotonic() + 240
    while await stored() < FLOOD + len(REAL_AT):
        assert time.monotonic() < deadline, f"only {await stored()} mails stored"
        await asyncio.sleep(1)
    taken_in = time.monotonic() - started
    await app.dispatcher.drain_all()

    # nothing lost: every mail is an article, the flood's past the threshold in one ticket
    total = await app.store.run(lambda repo: repo.count_tickets())
    assert total == 20 + 1 + len(REAL_AT), total
    grouped = await app.store.run(
        lambda repo: (
            models.Article.select()
            .join(models.Ticket)
            .join_from(models.Ticket, models.TicketTag)
            .where(models.TicketTag.name == "flood")
            .count()
        )
    )
    assert grouped == FLOOD - 20, "all but the first 20 in the one flood ticket"
    flags = await asyncio.to_thread(imap_account.flags)
    assert len(flags) == FLOOD + len(REAL_AT)
    assert all(b"\\Seen" in f for f in flags.values()), "every mail flagged"

    # the room stayed usable: a few dozen posts, not thousands
    events = await asyncio.to_thread(room.events)
    bot_posts = [e for e in messages(events) if e["sender"] != room.alice[0]]
    assert len(roots()) == total
    assert len(bot_posts) < 200, f"{len(bot_posts)} bot messages for a flood"

    # acknowledgements: the daily limit for the robot, one each for the real people
    to_robot = [m for m in smtp_capture.messages if "robot@flood.example" in m.rcpt_tos]
    assert len(to_robot) == 3
    lag = {index: round(seen[index] - appended[index], 1) for index in REAL_AT}
    sys.stderr.write(
        f"\n[flood] {FLOOD} mails + {len(REAL_AT)} real: delivered in {delivered:.0f} s, "
        f"all stored after {taken_in:.0f} s, {len(bot_posts)} bot messages in the room; "
        f"append-to-root of the real tickets: {lag} s\n"
    )
