"""The real core (CommandService, intake, outbox, SQLite) with the Discord adapter on the double.

Checks the conventions the core and the adapter must share: the room is the queue
channel's id, ``thread_ref`` is the root message's id (which is the thread's id),
roles reach ``may_act``, and attachments are uploaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from bot.commands import CommandService
from bot.config import Config, parse_config
from bot.intake import IntakeService
from bot.mail import Address, AttachmentData, InboundEmail
from bot.outbox import OutboxDispatcher
from bot.ports import MailKey
from storage.store import SqlStore
from tests.fakes import FakeClock, RecordingSender
from tests.servers.discord_double import DiscordDouble


@dataclass
class Desk:
    double: DiscordDouble
    config: Config
    intake: IntakeService
    dispatcher: OutboxDispatcher
    sender: RecordingSender
    clock: FakeClock
    queue: str
    alice: str
    mallory: str

    async def flush(self) -> None:
        await self.dispatcher.drain_all()

    def thread(self, root: str) -> list[str]:
        return [m["content"] for m in self.double.messages(root)]

    async def thread_shows(self, root: str, text: str) -> None:
        """Wait until a command's effects were posted (the outbox runs after the command)."""

        async def posted() -> bool:
            await self.flush()
            return any(text in content for content in self.thread(root))

        deadline = asyncio.get_running_loop().time() + 5
        while not await posted():
            assert asyncio.get_running_loop().time() < deadline, self.thread(root)
            await asyncio.sleep(0.02)


def config_for(double: DiscordDouble, guild: str, queue: str, role: str, tmp: Path) -> Config:
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp}/desk.db"},
        "mail": {"maildir": {"path": "mail"}, "files": {"path": "out"}},
        "discord": {"token": double.token, "guild_id": int(guild)},
        "queue": [
            {
                "name": "support",
                "addresses": ["support@example.org"],
                "discord_channel": int(queue),
                "discord_roles": [int(role)],
                "default": True,
                "console": False,
            }
        ],
    }
    return parse_config(data, tmp / "bot.toml", {})


@pytest.fixture
async def desk(discord_double: DiscordDouble, tmp_path: Path) -> AsyncIterator[Desk]:
    double = discord_double
    guild = double.add_guild("Help desk")
    volunteers = double.add_role(guild, "Volunteers")
    queue = double.add_channel(guild, "support", allow_roles=[volunteers])
    alice = double.add_member(guild, "alice", roles=[volunteers])
    mallory = double.add_member(guild, "mallory")
    config = config_for(double, guild, queue, volunteers, tmp_path)
    assert config.discord is not None
    store = await SqlStore.open(config.storage.url)
    await store.run(lambda repo: repo.sync_queues([q.name for q in config.queues]))
    clock = FakeClock()
    sender = RecordingSender()
    dispatchers: list[OutboxDispatcher] = []

    def wake() -> None:  # the dispatcher needs the gateway, which needs the commands
        for dispatcher in dispatchers:
            dispatcher.wake()

    commands = CommandService(config, store, clock, wake)
    adapter = DiscordAdapter(config.discord, config.queues, commands, guild_ready_timeout=0.05)
    dispatcher = OutboxDispatcher(
        config, store, clock, {"discord": adapter.gateway}, sender, uploads=frozenset({"discord"})
    )
    dispatchers.append(dispatcher)
    intake = IntakeService(config, store, clock, dispatcher.wake)
    with double.patch_client():
        await adapter.start()
        runner = asyncio.create_task(adapter.run())
        try:
            yield Desk(double, config, intake, dispatcher, sender, clock, queue, alice, mallory)
        finally:
            await adapter.stop()
            await asyncio.wait_for(runner, 5)
            await store.close()


def email(text: str, **changes: Any) -> InboundEmail:
    fields: dict[str, Any] = {
        "raw": b"raw",
        "message_id": "<m1@example.net>",
        "subject": "Printer on fire",
        "sender": Address("maria@example.net", "Maria @everyone"),
        "to": (Address("support@example.org"),),
        "text": text,
    }
    fields.update(changes)
    return InboundEmail(**fields)


async def test_a_ticket_from_email_to_reply_in_discord(desk: Desk) -> None:
    double = desk.double
    scan = AttachmentData("scan.pdf", "application/pdf", b"%PDF-1.4 scan")
    await desk.intake.ingest(
        email("It burns.\n[click](http://evil) <@&1>", attachments=(scan,)),
        MailKey("test", 1, "1"),
    )
    await desk.flush()
    [root_message] = double.messages(desk.queue)
    root = root_message["id"]
    assert root_message["embeds"][0]["title"].endswith("] Printer on fire")
    [first] = double.messages(root)
    assert "Maria @\u200beveryone" in first["content"] and "\\[click\\]" in first["content"]
    assert [a["filename"] for a in first["attachments"]] == ["scan.pdf"]

    # a volunteer claims in the thread: the core finds the ticket by the thread's id
    iid = await double.slash(desk.alice, root, "claim")
    await desk.thread_shows(root, "✋ Claimed by alice")
    followup = await double.wait_for(lambda: double.interaction_responses(iid)[1])
    assert followup["data"]["flags"] & 64
    fields = {
        f["name"]: f["value"] for f in double.message(desk.queue, root)["embeds"][0]["fields"]
    }
    assert fields["Owner"] == "alice" and fields["State"] == "open"

    # someone without the role is refused, in the thread, pinging nobody
    await double.react(desk.mallory, desk.queue, root, "✅")
    await desk.thread_shows(root, "mallory: Sorry, only volunteers of queue support")

    # the Reply button's modal sends an email and shows the reply in the thread
    click = await double.click_button(desk.alice, desk.queue, root, "ticketbot:reply")
    modal = await double.wait_for(lambda: double.interaction_responses(click)[0]["data"])
    await double.submit_modal(
        desk.alice, desk.queue, modal["custom_id"], {"ticketbot:text": "We are on it."}
    )
    await desk.thread_shows(root, "↩ Reply by alice")
    await desk.thread_shows(root, "goes out in")  # the undo window, with an Undo button
    desk.clock.advance(desk.config.tickets.undo_seconds + 1)
    await desk.flush()
    await double.wait_for(lambda: desk.sender.sent)
    [sent] = desk.sender.sent
    assert "We are on it." in sent.text and sent.to[0].email == "maria@example.net"

    # a second reply is withdrawn with the Undo button under its notice in the thread
    click = await double.click_button(desk.alice, desk.queue, root, "ticketbot:reply")
    modal = await double.wait_for(lambda: double.interaction_responses(click)[0]["data"])
    await double.submit_modal(
        desk.alice, desk.queue, modal["custom_id"], {"ticketbot:text": "Oops, wrong ticket."}
    )
    notice = await double.wait_for(
        lambda: [m for m in double.messages(root) if m["components"]][-1]
    )
    assert "goes out in" in notice["content"]
    [button] = notice["components"][0]["components"]
    assert button["custom_id"] == "ticketbot:undo"
    await double.click_button(desk.alice, root, notice["id"], "ticketbot:undo")
    await desk.thread_shows(root, "Reply withdrawn by alice")
    desk.clock.advance(desk.config.tickets.undo_seconds + 1)
    await desk.flush()
    assert len(desk.sender.sent) == 1  # the withdrawn reply never went out

    # ✅ on the root closes it
    await double.react(desk.alice, desk.queue, root, "✅")
    await desk.thread_shows(root, "✅ Closed by alice")
    fields = {
        f["name"]: f["value"] for f in double.message(desk.queue, root)["embeds"][0]["fields"]
    }
    assert fields["State"] == "closed successful"
    assert all(
        double.payloads[m["id"]]["allowed_mentions"]["parse"] == []
        for channel in (desk.queue, root)
        for m in double.messages(channel)
    )
