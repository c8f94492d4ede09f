"""What the Matrix adapter's tests share: a desk on the test Synapse, history, a fake core."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import nio
import pytest

from adapters.matrix import MatrixAdapter
from bot.chat import ArticleView, TicketView
from bot.commands import CommandRequest, CommandResult
from bot.config import MatrixConfig, QueueConfig
from tests.servers.synapse import SynapseServer

T = TypeVar("T")
Event = dict[str, Any]
PASSWORD = "correct horse battery staple"
NUMBER = "2026112310000012"
CREATED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def ticket(state: str = "new", owner: str = "") -> TicketView:
    return TicketView(
        number=NUMBER,
        queue="support",
        state=state,
        owner=owner,
        requester="Mallory <mallory@example.org>",
        subject="Printer <b>on fire</b> @room",
        preview="Hello @room,\nthe printer is on fire.",
        created_at=CREATED,
    )


def article(body: str = "Hello @room,\nthe printer is <i>on fire</i>.") -> ArticleView:
    return ArticleView(
        kind="inbound",
        author="Mallory <mallory@example.org>",
        created_at=CREATED,
        subject="Printer on fire",
        body=body,
        attachments=("photo.jpg (image/jpeg, 1234 bytes)",),
    )


@dataclass
class Desk:
    """A bot account, a volunteer with a display name, and a room both are in."""

    synapse: SynapseServer
    tmp_path: Path
    bot_user: str
    bot_token: str
    volunteer_user: str
    volunteer_token: str
    room_id: str
    clients: list[nio.AsyncClient] = field(default_factory=list)

    async def login(self, user_id: str, device_id: str) -> nio.AsyncClient:
        """A nio client with a password login on ``device_id``; closed after the test."""
        store = self.tmp_path / f"store-{uuid.uuid4().hex[:6]}"
        store.mkdir()
        client = nio.AsyncClient(
            self.synapse.url, user_id, device_id=device_id, store_path=str(store)
        )
        self.clients.append(client)
        resp = await client.login(PASSWORD)
        assert isinstance(resp, nio.LoginResponse), resp
        return client

    def adapter(self, commands: FakeCommands, room: str | None = None) -> MatrixAdapter:
        config = MatrixConfig(homeserver=self.synapse.url, user_id=self.bot_user, password=PASSWORD)
        queue = QueueConfig(
            name="support", addresses=("help@example.org",), matrix_room=room or self.room_id
        )
        return MatrixAdapter(config, [queue], commands, store_path=self.tmp_path / "bot-store")

    def alias(self, room_id: str) -> str:
        alias = f"#desk{uuid.uuid4().hex[:8]}:{self.synapse.server_name}"
        path = f"/_matrix/client/v3/directory/room/{urllib.parse.quote(alias, safe='')}"
        self.synapse.request("PUT", path, {"room_id": room_id}, self.volunteer_token)
        return alias

    def joined(self, room_id: str) -> set[str]:
        path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id, safe='')}/joined_members"
        return set(self.synapse.request("GET", path, token=self.volunteer_token)["joined"])


async def history(client: nio.AsyncClient, room_id: str) -> list[Event]:
    """Every event of the room, oldest first (as raw JSON, the way the server stores it)."""
    events: list[Event] = []
    token: str | None = None
    while True:
        resp = await client.room_messages(room_id, start=token, limit=100)
        assert isinstance(resp, nio.RoomMessagesResponse), resp
        events += [event.source for event in resp.chunk]
        if not resp.chunk or not resp.end:
            return events[::-1]
        token = resp.end


def messages(events: list[Event], sender: str) -> list[Event]:
    return [e for e in events if e["type"] == "m.room.message" and e["sender"] == sender]


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 20.0) -> T:
    """Poll ``probe`` until it returns something; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"nothing after {timeout} s")
        await asyncio.sleep(0.1)


def assert_no_pings(content: Event) -> None:
    assert content["m.mentions"] == {}
    assert "@room" not in content["body"].lower()
    assert "@room" not in content.get("formatted_body", "").lower()


class FakeCommands:
    """Records requests and answers with a preset result per command name."""

    def __init__(self, results: dict[str, CommandResult]) -> None:
        self.requests: list[CommandRequest] = []
        self.results = results

    async def execute(self, request: CommandRequest) -> CommandResult:
        self.requests.append(request)
        return self.results.get(request.name, CommandResult(False, "unknown"))

    async def nth(self, count: int) -> CommandRequest:
        async def probe() -> CommandRequest | None:
            return self.requests[count - 1] if len(self.requests) >= count else None

        return await eventually(probe)
