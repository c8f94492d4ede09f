"""A desk wired from the real core and a real SQLite store, with recording fakes at the edges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.admin.live import LiveConfig
from bot.commands import ChatContext, CommandRequest, CommandResult, CommandService
from bot.config import Config, parse_config
from bot.domain import Actor
from bot.intake import IntakeService
from bot.mail import Address, InboundEmail
from bot.outbox import OutboxDispatcher
from bot.ports import IntakeOutcome, MailKey
from bot.reminders import ReminderService
from storage.store import SqlStore
from tests.fakes import FakeClock, RecordingGateway, RecordingSender

ALICE = Actor("matrix", "@alice:example.org", "Alice")
BOB = Actor("matrix", "@bob:example.org", "Bob")
MALLORY = Actor("matrix", "@mallory:example.org", "Mallory")


def desk_config(
    tmp_path: Path, storage_url: str | None = None, extra: dict[str, Any] | None = None
) -> Config:
    """Two queues on Matrix; ``extra`` adds or replaces top-level sections."""
    data: dict[str, Any] = {
        "storage": {"url": storage_url or f"sqlite:///{tmp_path}/desk.db"},
        "mail": {"maildir": {"path": "mail"}, "files": {"path": "out"}},
        "matrix": {
            "homeserver": "http://127.0.0.1:1",
            "user_id": "@ticketbot:example.org",
            "password": "x",
        },
        "queue": [
            {
                "name": "info",
                "addresses": ["info@example.org"],
                "matrix_room": "!info:example.org",
                "volunteers": [ALICE.user_id, BOB.user_id],
                "default": True,
                "console": False,
            },
            {
                "name": "press",
                "addresses": ["press@example.org"],
                "matrix_room": "!press:example.org",
                "volunteers": [BOB.user_id],
                "console": False,
            },
        ],
        "outbox": {"retry_seconds": 10, "max_attempts": 3},
        "tickets": {"undo_seconds": 0},
        "reminders": {"digest_at": "off"},
    }
    data.update(extra or {})
    return parse_config(data, tmp_path / "bot.toml", {})


_counter = 0


def mail(
    subject: str = "Photo question",
    *,
    to: str = "info@example.org",
    sender: str = "maria@example.net",
    message_id: str | None = None,
    in_reply_to: str = "",
    references: tuple[str, ...] = (),
    text: str = "Hello,\nmay I use the photo?\nMaria",
    auto_kind: str = "",
    cc: tuple[str, ...] = (),
    raw: bytes | None = None,
) -> InboundEmail:
    global _counter
    _counter += 1
    return InboundEmail(
        raw=raw or f"raw {_counter}".encode(),
        message_id=message_id or f"<m{_counter}@example.net>",
        subject=subject,
        sender=Address(sender, "Maria"),
        to=(Address(to),),
        cc=tuple(Address(a) for a in cc),
        in_reply_to=(in_reply_to,) if in_reply_to else (),
        references=references,
        text=text,
        auto_kind=auto_kind,
    )


@dataclass
class Desk:
    config: Config
    store: SqlStore
    clock: FakeClock
    intake: IntakeService
    commands: CommandService
    dispatcher: OutboxDispatcher
    chat: RecordingGateway
    sender: RecordingSender
    reminders: ReminderService
    live: LiveConfig | None = None
    _keys: int = 0

    async def receive(self, email: InboundEmail) -> IntakeOutcome:
        self._keys += 1
        return await self.intake.ingest(email, MailKey("test", 1, str(self._keys)))

    async def command(
        self, actor: Actor, text: str, *, thread: str | None = None, room: str | None = None
    ) -> CommandResult:
        name, _, args = text.lstrip("!").partition(" ")
        return await self.commands.execute(
            CommandRequest(actor, name, args.strip(), ChatContext(actor.platform, room, thread))
        )

    async def flush(self) -> int:
        return await self.dispatcher.drain_all()


async def make_desk(
    tmp_path: Path, storage_url: str | None = None, extra: dict[str, Any] | None = None
) -> Desk:
    config = desk_config(tmp_path, storage_url, extra)
    store = await SqlStore.open(config.storage.url)
    # one config in force for every service, as in the app: admins' changes reach all
    live = LiveConfig(config)
    await store.run(live.load)
    clock = FakeClock()
    chat = RecordingGateway()
    sender = RecordingSender()
    dispatcher = OutboxDispatcher(live, store, clock, {"matrix": chat}, sender)
    intake = IntakeService(live, store, clock, dispatcher.wake)
    commands = CommandService(live, store, clock, dispatcher.wake)
    reminders = ReminderService(live, store, clock, dispatcher.wake)
    return Desk(config, store, clock, intake, commands, dispatcher, chat, sender, reminders, live)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    desk = await make_desk(tmp_path)
    yield desk
    await desk.store.close()
