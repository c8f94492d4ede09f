"""The whole loop on real servers: Dovecot (IMAP), Synapse (Matrix) and an SMTP capture.

An email appended to the IMAP folder becomes a ticket whose root message appears in the
queue's Matrix room; a volunteer claims it with ✋ and answers with !reply; the captured
email has the right headers; the requester's answer lands in the same thread; a
non-volunteer's !close is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, build_app
from bot.config import parse_config
from bot.domain import TicketState
from tests.servers.dovecot import ImapAccount
from tests.servers.smtp import SmtpCapture
from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.servers

REQUESTER = "maria.lopez@example.net"


@dataclass
class Room:
    synapse: SynapseServer
    room_id: str
    alice: tuple[str, str]
    mallory: tuple[str, str]

    def events(self) -> list[dict[str, Any]]:
        path = (
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room_id, safe='')}"
            "/messages?dir=b&limit=200"
        )
        chunk: list[dict[str, Any]] = self.synapse.request("GET", path, token=self.alice[1])[
            "chunk"
        ]
        return list(reversed(chunk))

    def send(self, token: str, event_type: str, content: dict[str, Any]) -> str:
        path = (
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room_id, safe='')}"
            f"/send/{event_type}/e2e-{uuid.uuid4().hex}"
        )
        event_id: str = self.synapse.request("PUT", path, content, token)["event_id"]
        return event_id

    def say_in_thread(self, token: str, root: str, text: str) -> str:
        return self.send(
            token,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": text,
                "m.relates_to": {"rel_type": "m.thread", "event_id": root},
            },
        )


async def wait_for(
    what: str, probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.3
) -> Any:
    """Poll ``probe`` (run in a thread: it may block) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(probe)
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "m.room.message"]


def in_thread(event: dict[str, Any], root: str) -> bool:
    relation = event["content"].get("m.relates_to") or {}
    return relation.get("rel_type") == "m.thread" and relation.get("event_id") == root


def mail(subject: str, body: str, message_id: str, extra: str = "") -> bytes:
    return (
        f"From: Maria Lopez <{REQUESTER}>\r\n"
        "To: info@example.org\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Mon, 23 Nov 2026 09:12:00 +0000\r\n"
        f"{extra}"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


@pytest.fixture
async def room(synapse: SynapseServer) -> Room:
    suffix = uuid.uuid4().hex[:8]
    alice = await asyncio.to_thread(synapse.register, f"alice{suffix}", "alice-pw")
    mallory = await asyncio.to_thread(synapse.register, f"mallory{suffix}", "mallory-pw")
    await asyncio.to_thread(synapse.register, f"ticketbot{suffix}", "bot-pw")
    bot_id = f"@ticketbot{suffix}:{synapse.server_name}"
    room_id = await asyncio.to_thread(
        synapse.create_room, alice[1], [bot_id, mallory[0]], f"info {suffix}"
    )
    await asyncio.to_thread(synapse.join, mallory[1], room_id)
    return Room(synapse, room_id, alice, mallory)


@pytest.fixture
async def app(
    tmp_path: Path, room: Room, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> AsyncIterator[App]:
    bot_id = room.alice[0].replace("@alice", "@ticketbot", 1)
    config = parse_config(
        {
            "storage": {"url": f"sqlite:///{tmp_path}/e2e.db"},
            "mail": {
                "imap": {
                    "host": imap_account.host,
                    "port": imap_account.port,
                    "security": "none",
                    "username": imap_account.username,
                    "password": imap_account.password,
                    "idle": True,
                    "poll_seconds": 5,
                },
                "smtp": {"host": smtp_capture.host, "port": smtp_capture.port, "security": "none"},
            },
            "matrix": {"homeserver": room.synapse.url, "user_id": bot_id, "password": "bot-pw"},
            "tickets": {"undo_seconds": 0},
            "queue": [
                {
                    "name": "info",
                    "addresses": ["info@example.org"],
                    "matrix_room": room.room_id,
                    "volunteers": [room.alice[0]],
                    "default": True,
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


async def test_email_in_ticket_in_matrix_reply_out_answer_back(
    app: App, room: Room, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    await asyncio.to_thread(
        imap_account.append,
        mail("Photo for a school booklet @room", "May I use the lighthouse photo?", "<e1@x.net>"),
    )

    # 1. The ticket's root message appears in the queue room, pinging no one.
    def find_root() -> dict[str, Any] | None:
        for event in messages(room.events()):
            body = event["content"].get("body", "")
            if "[Ticket#" in body and "m.relates_to" not in event["content"]:
                return event
        return None

    root_event = await wait_for("the ticket's root message", find_root)
    root = root_event["event_id"]
    assert root_event["content"]["m.mentions"] == {}
    assert "@room" not in root_event["content"]["body"], "@room must be defanged"
    number = root_event["content"]["body"].split("[Ticket#", 1)[1].split("]", 1)[0]

    # the full mail is in the thread under it
    await wait_for(
        "the first mail in the thread",
        lambda: any(
            in_thread(e, root) and "lighthouse photo" in e["content"]["body"]
            for e in messages(room.events())
        ),
    )

    # 2. A volunteer claims with ✋; the root message is edited to show the owner.
    await asyncio.to_thread(
        room.send,
        room.alice[1],
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "✋"}},
    )

    def claimed_edit() -> bool:
        for event in messages(room.events()):
            relation = event["content"].get("m.relates_to") or {}
            if relation.get("rel_type") == "m.replace" and relation.get("event_id") == root:
                new = event["content"]["m.new_content"]
                if "alice" in new["body"].lower() and new.get("m.mentions") == {}:
                    return True
        return False

    await wait_for("the root message edited to show the owner", claimed_edit)
    ticket = await app.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.owner == room.alice[0]

    # 3. !reply in the thread sends an email with the right headers.
    await asyncio.to_thread(
        room.say_in_thread, room.alice[1], root, "!reply Yes, with credit to the photographer."
    )
    captured = (await asyncio.to_thread(smtp_capture.wait_for, 1, 30.0))[0]
    sent = captured.message
    assert sent["Subject"] == f"Re: [Ticket#{number}] Photo for a school booklet @room"
    assert sent["In-Reply-To"] == "<e1@x.net>"
    assert "<e1@x.net>" in sent["References"]
    assert sent["From"].addresses[0].addr_spec == "info@example.org"
    assert captured.rcpt_tos == (REQUESTER,)
    assert sent["Message-ID"].startswith(f"<ticketbot.{number}.")
    assert "Yes, with credit" in sent.get_content()

    # 4. The requester's answer to that email lands in the same thread.
    answer = mail(
        f"Re: {sent['Subject']}",
        "Thank you, that solved it.",
        "<e2e-2@x.net>",
        extra=f"In-Reply-To: {sent['Message-ID']}\r\nReferences: {sent['Message-ID']}\r\n",
    )
    await asyncio.to_thread(imap_account.append, answer)
    await wait_for(
        "the requester's answer in the thread",
        lambda: any(
            in_thread(e, root) and "that solved it" in e["content"]["body"]
            for e in messages(room.events())
        ),
    )
    assert await app.store.run(lambda repo: repo.count_tickets()) == 1

    # 5. A non-volunteer's !close is refused and changes nothing.
    await asyncio.to_thread(room.say_in_thread, room.mallory[1], root, "!close")
    await wait_for(
        "the refusal",
        lambda: any(
            "only volunteers" in e["content"].get("body", "") for e in messages(room.events())
        ),
    )
    ticket = await app.store.run(lambda repo: repo.ticket_by_number(number))
    assert ticket is not None and ticket.state is TicketState.OPEN

    # 6. Both mails are flagged on the server, and were only after being stored.
    flags = await asyncio.to_thread(imap_account.flags)
    assert flags and all(b"\\Seen" in f for f in flags.values())
    # the reply went out exactly once
    assert len(smtp_capture.messages) == 1


async def test_mail_longer_than_a_matrix_event_is_split_never_rejected(
    app: App, room: Room, imap_account: ImapAccount
) -> None:
    lines = [f"line {i:05d} " + "ü" * 60 for i in range(3000)]  # ~ 200 KB of UTF-8
    await asyncio.to_thread(imap_account.append, mail("Long", "\r\n".join(lines), "<long@x>"))

    def parts() -> list[dict[str, Any]]:
        found = [e for e in messages(room.events()) if "line 0" in e["content"].get("body", "")]
        text = "".join(e["content"]["body"] for e in found)
        return found if "line 02999" in text else []

    found = await wait_for("every part of the long mail", parts, timeout=60)
    assert len(found) >= 3
    for event in found:
        assert event["content"]["m.mentions"] == {}
        assert len(json.dumps(event["content"], ensure_ascii=False).encode()) < 65536
    text = "".join(e["content"]["body"] for e in found)
    assert all(f"line {i:05d}" in text for i in range(0, 3000, 250))
