"""Admins run the desk from Discord: the real app (build_app) with the adapter on the double.

The app is built exactly as ``ticketbot run`` builds it, so the wiring is under test
too: the adapter's privacy check is the core's for Discord channels, and its channel
map follows every change admins make (``LiveConfig.on_change``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.inspector import ChannelCheckError
from bot.app import App, build_app
from bot.config import Config, parse_config
from bot.mail import Address, InboundEmail
from bot.ports import MailKey, RoomCheck
from tests.fakes import FakeClock, RecordingSender
from tests.servers.discord_double import VIEW_CHANNEL, DiscordDouble

EPHEMERAL = 64


@dataclass
class Desk:
    double: DiscordDouble
    app: App
    adapter: DiscordAdapter
    sender: RecordingSender
    clock: FakeClock
    guild: str
    support: str  # the support queue's private channel
    lobby: str  # a channel everyone can read, bound in bot.toml to queue "lobby"
    volunteers: str  # role
    admin: str
    alice: str  # volunteer of support (by role)
    tom: str  # no role; made a trainee of support by command
    mallory: str  # nobody
    mails: int = 0

    async def flush(self) -> None:
        await self.app.dispatcher.drain_all()

    async def mail(self, to: str, subject: str, text: str = "Hello.") -> None:
        self.mails += 1
        email = InboundEmail(
            raw=b"raw",
            message_id=f"<m{self.mails}@example.net>",
            subject=subject,
            sender=Address("maria@example.net", "Maria"),
            to=(Address(to),),
            text=text,
        )
        await self.app.intake.ingest(email, MailKey("test", 1, str(self.mails)))
        await self.flush()

    async def slash(
        self, user: str, channel: str, name: str, options: dict[str, str | int] | None = None
    ) -> dict[str, Any]:
        """Run a slash command; its (first) answer once it is there."""
        iid = await self.double.slash(user, channel, name, options)
        return await self.answer(iid)

    async def answer(self, iid: str) -> dict[str, Any]:
        double = self.double
        response = await double.wait_for(lambda: double.interaction_responses(iid)[1])
        assert response["type"] == "followup"
        data: dict[str, Any] = response["data"]
        return data

    async def shows(self, channel: str, text: str, times: int = 1) -> dict[str, Any]:
        """The ``times``-th message in ``channel`` containing ``text``, once the outbox
        posted it."""
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            await self.flush()
            found = [m for m in self.double.messages(channel) if text in m["content"]]
            if len(found) >= times:
                return found[times - 1]
            contents = [m["content"] for m in self.double.messages(channel)]
            assert asyncio.get_running_loop().time() < deadline, contents
            await asyncio.sleep(0.02)

    def roots(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.double.messages(channel) if m["embeds"]]


def config_for(
    double: DiscordDouble, guild: str, support: str, lobby: str, roles: dict[str, str], tmp: Path
) -> Config:
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp}/desk.db"},
        "mail": {"maildir": {"path": "mail"}, "files": {"path": "out"}},
        "discord": {"token": double.token, "guild_id": int(guild)},
        "admins": [f"discord-role:{roles['admins']}"],
        "queue": [
            {
                "name": "support",
                "addresses": ["support@example.org"],
                "discord_channel": int(support),
                "discord_roles": [int(roles["volunteers"])],
                "default": True,
                "console": False,
            },
            {
                "name": "lobby",
                "addresses": ["lobby@example.org"],
                "discord_channel": int(lobby),
                "discord_roles": [int(roles["volunteers"])],
                "console": False,
            },
        ],
    }
    return parse_config(data, tmp / "bot.toml", {})


@pytest.fixture
async def desk(discord_double: DiscordDouble, tmp_path: Path) -> AsyncIterator[Desk]:
    double = discord_double
    guild = double.add_guild("Help desk")
    volunteers = double.add_role(guild, "Volunteers")
    admins = double.add_role(guild, "Desk admins")
    support = double.add_channel(guild, "support", allow_roles=[volunteers])
    lobby = double.add_channel(guild, "lobby", everyone_can_read=True)
    admin = double.add_member(guild, "ada", roles=[admins])
    alice = double.add_member(guild, "alice", roles=[volunteers])
    tom = double.add_member(guild, "tom")
    mallory = double.add_member(guild, "mallory")
    roles = {"volunteers": volunteers, "admins": admins}
    config = config_for(double, guild, support, lobby, roles, tmp_path)
    clock, sender = FakeClock(), RecordingSender()
    app = await build_app(config, clock=clock, sender=sender)
    adapter = app.discord
    assert isinstance(adapter, DiscordAdapter)
    # one server in the double: no need to wait 2 s for more after READY
    adapter.client._connection.guild_ready_timeout = 0.05
    with double.patch_client():
        await adapter.start()
        runner = asyncio.create_task(adapter.run())
        try:
            await app.check_privacy()  # as App.run does right after the start
            yield Desk(
                double, app, adapter, sender, clock, guild, support, lobby, volunteers,
                admin, alice, tom, mallory,
            )  # fmt: skip
        finally:
            await app.close()
            await asyncio.wait_for(runner, 5)


# --- the privacy check ---------------------------------------------------------------------------


async def test_the_inspector_tells_public_from_private_channels(desk: Desk) -> None:
    inspector = desk.adapter.inspector
    assert await inspector.check_room(desk.lobby) == RoomCheck(True, "@everyone can view #lobby")
    assert await inspector.check_room(desk.support) == RoomCheck(False, "")

    # an admin opens the support channel to everyone: the next check sees it at once
    desk.double.set_permissions(desk.support, desk.guild, allow=VIEW_CHANNEL)
    assert await inspector.check_room(desk.support) == RoomCheck(
        True, "@everyone can view #support"
    )
    desk.double.set_permissions(desk.support, desk.guild, deny=VIEW_CHANNEL)
    assert not (await inspector.check_room(desk.support)).public

    # what cannot be checked raises; the core then treats the room as public
    with pytest.raises(ChannelCheckError, match="no channel"):
        await inspector.check_room("123456789012345678")
    with pytest.raises(ChannelCheckError, match="not a Discord channel id"):
        await inspector.check_room("#support")
    unknown = await desk.app.commands.check_room_privacy("discord", "123456789012345678")
    assert unknown.public and "no channel" in unknown.reason


async def test_a_public_queue_channel_is_kept_out_of_use_at_start(desk: Desk) -> None:
    # App.check_privacy found lobby public: the core dropped it, and the adapter followed
    assert int(desk.lobby) not in desk.adapter.channels
    assert int(desk.support) in desk.adapter.channels
    assert desk.app.live.current.queue("lobby").discord_channel is None
    [warning] = desk.double.messages(desk.lobby)
    assert "no tickets of queue lobby are posted here" in warning["content"]
    assert "/queue args:bind lobby --public-ok" in warning["content"]

    await desk.mail("lobby@example.org", "Where is the lobby?")
    assert desk.roots(desk.lobby) == []  # the ticket waits; nothing reaches the public


# --- binding a channel by command ---------------------------------------------------------------


async def test_an_admin_adds_and_binds_a_queue_in_a_fresh_channel(desk: Desk) -> None:
    double = desk.double
    fresh = double.add_channel(desk.guild, "permissions", allow_roles=[desk.volunteers])
    assert int(fresh) not in desk.adapter.channels

    added = await desk.slash(
        desk.admin, fresh, "queue", {"args": "add permissions --address permissions@example.org"}
    )
    assert added["content"].startswith("Queue permissions added")
    assert added["flags"] & EPHEMERAL
    bound = await desk.slash(desk.admin, fresh, "queue", {"args": "bind permissions"})
    assert bound["content"] == (
        "Queue permissions is bound to this channel; new tickets appear here."
    )
    assert bound["flags"] & EPHEMERAL
    assert desk.app.live.current.queue("permissions").discord_channel == int(fresh)
    assert int(fresh) in desk.adapter.channels  # at once, by LiveConfig.on_change

    # the volunteers' role is given the queue, by role mention
    granted = await desk.slash(
        desk.admin, fresh, "access", {"args": f"grant <@&{desk.volunteers}> permissions"}
    )
    assert granted["content"].startswith(f"discord-role:{desk.volunteers} now has act access")

    # a new ticket of the queue appears in the channel, and its thread works
    await desk.mail("permissions@example.org", "May I use your photo?")
    [root] = desk.roots(fresh)
    assert "May I use your photo?" in root["embeds"][0]["title"]
    claimed = await desk.slash(desk.alice, root["id"], "claim")
    assert claimed["flags"] & EPHEMERAL
    await desk.shows(root["id"], "✋ Claimed by alice")

    # unbound again: the channel stops being a queue channel
    unbound = await desk.slash(desk.admin, fresh, "queue", {"args": "unbind permissions"})
    assert unbound["content"].startswith("Queue permissions is no longer shown on discord")
    assert int(fresh) not in desk.adapter.channels
    await double.react(desk.alice, fresh, root["id"], "✅")
    await asyncio.sleep(0.2)
    assert not any("Closed" in m["content"] for m in double.messages(root["id"]))


async def test_a_non_admin_is_refused_ephemerally_and_nothing_changes(desk: Desk) -> None:
    fresh = desk.double.add_channel(desk.guild, "sneaky", allow_roles=[desk.volunteers])
    for user in (desk.alice, desk.mallory):
        refused = await desk.slash(user, fresh, "queue", {"args": "bind support"})
        assert refused["content"].startswith("Sorry, queue is for admins.")
        assert refused["flags"] & EPHEMERAL
        refused = await desk.slash(user, fresh, "access", {"args": f"grant <@{user}> support"})
        assert refused["content"].startswith("Sorry, access is for admins.")
    assert desk.app.live.current.queue("support").discord_channel == int(desk.support)
    assert int(fresh) not in desk.adapter.channels
    assert desk.double.messages(fresh) == []  # refusals are never posted in the channel

    # queue status is for volunteers, not only admins
    status = await desk.slash(desk.alice, desk.support, "queue", {"args": "status"})
    assert status["content"].startswith("Queue status")


async def test_binding_a_public_channel_needs_public_ok(desk: Desk) -> None:
    double = desk.double
    public = double.add_channel(desk.guild, "general", everyone_can_read=True)
    refused = await desk.slash(desk.admin, public, "queue", {"args": "bind support"})
    # the core's text, escaped like every answer: @everyone cannot ping from it
    assert refused["content"].startswith(
        "Refused: this room is public (@\u200beveryone can view #general)."
    )
    assert refused["flags"] & EPHEMERAL
    assert desk.app.live.current.queue("support").discord_channel == int(desk.support)

    meant = await desk.slash(desk.admin, public, "queue", {"args": "bind support --public-ok"})
    assert meant["content"].startswith("Queue support is bound to this channel")
    assert int(public) in desk.adapter.channels and int(desk.support) not in desk.adapter.channels


async def test_privacy_check_by_command(desk: Desk) -> None:
    answer = await desk.slash(desk.admin, desk.support, "privacy", {"args": "check"})
    # the lobby channel, kept out of use at start, is still public; support is private
    assert "⚠ lobby: discord room" in answer["content"]
    assert "⚠ support" not in answer["content"]
    desk.double.set_permissions(desk.support, desk.guild, allow=VIEW_CHANNEL)
    answer = await desk.slash(desk.admin, desk.support, "privacy", {"args": "check"})
    assert (
        f"⚠ support: discord room {desk.support} is public: @\u200beveryone can view"
        in (answer["content"])
    )


# --- trainees, approval and reveal ---------------------------------------------------------------


async def draft_by_tom(desk: Desk, root: str, text: str) -> dict[str, Any]:
    """Tom (a trainee) writes a reply with the Reply button; the draft's notice."""
    double = desk.double

    def notices() -> list[dict[str, Any]]:
        return [
            m
            for m in double.messages(root)
            if "Draft reply by tom" in m["content"] and m["components"]
        ]

    before = len(notices())
    click = await double.click_button(desk.tom, desk.support, root, "ticketbot:reply")
    modal = await double.wait_for(lambda: double.interaction_responses(click)[0])
    assert modal["type"] == 9  # trainees get the text box: their reply becomes a draft
    submit = await double.submit_modal(
        desk.tom, desk.support, modal["data"]["custom_id"], {"ticketbot:text": text}
    )
    assert (await desk.answer(submit))["content"].startswith("Draft stored")
    await desk.flush()
    return await double.wait_for(lambda: notices()[before])


async def test_a_trainees_draft_goes_out_once_approved(desk: Desk) -> None:
    double = desk.double
    granted = await desk.slash(
        desk.admin, desk.support, "access", {"args": f"grant <@{desk.tom}> support trainee"}
    )
    assert "trainee access" in granted["content"]
    await desk.mail("support@example.org", "Printer on fire")
    [root_message] = desk.roots(desk.support)
    root = root_message["id"]

    notice = await draft_by_tom(desk, root, "Dear Maria, we are on it.")
    [row] = notice["components"]
    [button] = row["components"]
    assert button["custom_id"] == "ticketbot:approve" and button["label"] == "Approve"
    desk.clock.advance(3600)
    await desk.flush()
    assert desk.sender.sent == []  # a draft never goes out by itself

    # the trainee cannot approve their own draft
    own = await double.click_button(desk.tom, root, notice["id"], "ticketbot:approve")
    assert "trainees may not approve" in (await desk.answer(own))["content"]

    click = await double.click_button(desk.alice, root, notice["id"], "ticketbot:approve")
    approved = await desk.answer(click)
    assert approved["content"] == "Approved; the reply goes out now."
    assert approved["flags"] & EPHEMERAL
    await desk.shows(root, "✅ Reply by tom approved by alice")

    again = await double.click_button(desk.alice, root, notice["id"], "ticketbot:approve")
    assert "no draft reply waiting" in (await desk.answer(again))["content"]
    await desk.flush()
    [sent] = desk.sender.sent
    assert "we are on it" in sent.text and sent.to[0].email == "maria@example.net"

    # ✅ on a draft's notice approves it too (on the root, ✅ still closes)
    second = await draft_by_tom(desk, root, "One more thing.")
    await double.react(desk.alice, root, second["id"], "✅")
    await desk.shows(root, "approved by alice; it goes out now.", times=2)
    await desk.flush()
    assert len(desk.sender.sent) == 2
    assert not any("Closed by" in m["content"] for m in double.messages(root))
    assert "One more thing." in desk.sender.sent[1].text
    await double.react(desk.alice, desk.support, root, "✅")
    await desk.shows(root, "✅ Closed by alice")


async def test_reveal_is_for_the_askers_eyes_only(desk: Desk) -> None:
    switched = await desk.slash(
        desk.admin, desk.support, "privacy", {"args": "pseudonymize support on"}
    )
    assert "pseudonyms" in switched["content"]
    await desk.mail("support@example.org", "Printer on fire")
    [root_message] = desk.roots(desk.support)
    root = root_message["id"]
    before = len(desk.double.messages(root))
    assert before and not any("maria" in m["content"] for m in desk.double.messages(root))
    iid = await desk.double.slash(desk.alice, root, "reveal")
    await desk.answer(iid)
    responses = desk.double.interaction_responses(iid)
    assert responses[0] == {"type": 5, "data": {"flags": EPHEMERAL}}
    answer = responses[1]["data"]
    assert "maria@example.net" in answer["content"] and answer["flags"] & EPHEMERAL
    message = desk.double.message(root, responses[1]["message_id"])
    assert message["flags"] & EPHEMERAL  # the message itself, not only the request
    await desk.flush()
    assert len(desk.double.messages(root)) == before  # nothing in the thread
    assert not any("maria@example.net" in m["content"] for m in desk.double.messages(root))

    refused = await desk.slash(desk.mallory, root, "reveal")
    assert refused["content"].startswith("Sorry, only volunteers of queue support")
    assert refused["flags"] & EPHEMERAL
