"""The Discord double against the real discord.py client (no ticketbot code involved)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import discord
import pytest
from discord import app_commands

from tests.servers.discord_double import VIEW_CHANNEL, DiscordDouble, DiscordError, check_message


class Probe(discord.Client):
    """A bare client that records what reaches it."""

    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.guild_reactions = True
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.seen: list[Any] = []

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.seen.append(payload)

    async def on_resumed(self) -> None:
        self.seen.append("resumed")


@dataclass
class World:
    double: DiscordDouble
    client: Probe
    guild_id: str
    queue_id: str
    public_id: str
    volunteers_id: str
    alice: str


@contextlib.asynccontextmanager
async def running(double: DiscordDouble, client: discord.Client) -> AsyncIterator[None]:
    with double.patch_client():
        task = asyncio.create_task(client.start(double.token))
        try:
            ready = asyncio.ensure_future(double.wait_ready())
            done, _ = await asyncio.wait([task, ready], timeout=5, return_when="FIRST_COMPLETED")
            ready.cancel()
            if task in done:
                task.result()  # the client failed to start: show why
            await asyncio.wait_for(client.wait_until_ready(), 5)
            yield
        finally:
            await client.close()
            await asyncio.wait_for(task, 5)


@pytest.fixture
async def world(discord_double: DiscordDouble) -> AsyncIterator[World]:
    double = discord_double
    guild_id = double.add_guild("Help desk")
    volunteers = double.add_role(guild_id, "Volunteers")
    queue = double.add_channel(guild_id, "queue", allow_roles=[volunteers])
    public = double.add_channel(guild_id, "lobby", everyone_can_read=True)
    alice = double.add_member(guild_id, "alice", roles=[volunteers])
    client = Probe()
    async with running(double, client):
        yield World(double, client, guild_id, queue, public, volunteers, alice)
    assert double.server_errors == []


def channel(world: World, channel_id: str) -> discord.TextChannel:
    found = world.client.get_channel(int(channel_id))
    assert isinstance(found, discord.TextChannel)
    return found


async def test_ready_brings_guild_channels_and_roles(world: World) -> None:
    double, client = world.double, world.client
    guild = client.get_guild(int(world.guild_id))
    assert guild is not None and guild.me is not None
    assert {c.name for c in guild.text_channels} == {"queue", "lobby"}
    assert {r.name for r in guild.roles} == {"@everyone", "TicketBot", "Volunteers"}
    queue = channel(world, world.queue_id)
    assert not queue.permissions_for(guild.default_role).view_channel
    assert queue.permissions_for(guild.me).send_messages
    assert double.identifies == 1 and double.intents == client.intents.value
    assert double.gateway_queries[0]["compress"] == "zlib-stream"
    me = next(r for r in double.requests if r.path == "/users/@me")
    assert me.headers["Authorization"] == f"Bot {double.token}"
    assert double.unknown_routes == []


async def test_message_with_embed_and_view_then_thread_and_edit(world: World) -> None:
    double = world.double
    view = discord.ui.View()
    view.add_item(discord.ui.Button(label="Claim", custom_id="claim:1"))
    sent = await channel(world, world.queue_id).send(
        "New ticket",
        embed=discord.Embed(title="Printer on fire", description="help"),
        view=view,
        allowed_mentions=discord.AllowedMentions.none(),
    )
    body = double.payloads[str(sent.id)]
    assert body["allowed_mentions"]["parse"] == []
    assert body["embeds"][0]["title"] == "Printer on fire"
    [stored] = double.messages(world.queue_id)
    assert stored["components"][0]["components"][0]["custom_id"] == "claim:1"

    thread = await sent.create_thread(name="Ticket 1")
    assert thread.id == sent.id and double.threads[str(thread.id)].parent_id == world.queue_id
    await double.wait_for(lambda: world.client.get_channel(thread.id))
    await thread.send("first reply")
    assert [m["content"] for m in double.messages(str(thread.id))] == ["first reply"]

    await sent.edit(content="Ticket claimed", view=None)
    assert double.message(world.queue_id, str(sent.id))["content"] == "Ticket claimed"
    assert double.edits[-1].payload["content"] == "Ticket claimed"
    assert double.unknown_routes == []


async def test_slash_command_defers_and_follows_up(world: World) -> None:
    double, client = world.double, world.client
    got: list[tuple[str, int]] = []

    @client.tree.command(
        name="assign", description="Assign a ticket", guild=discord.Object(world.guild_id)
    )
    async def assign(interaction: discord.Interaction, ticket: str, hours: int) -> None:
        await interaction.response.defer(ephemeral=True)
        got.append((ticket, hours))
        await interaction.followup.send(f"assigned {ticket}", ephemeral=True)

    await client.tree.sync(guild=discord.Object(world.guild_id))
    assert [c["name"] for c in double.synced_commands[world.guild_id]] == ["assign"]

    iid = await double.slash(world.alice, world.queue_id, "assign", {"ticket": "T-1", "hours": 2})
    responses = await double.wait_for(
        lambda: len(double.interaction_responses(iid)) == 2 and double.interaction_responses(iid)
    )
    assert got == [("T-1", 2)]
    assert responses[0] == {"type": 5, "data": {"flags": 64}}
    assert responses[1]["type"] == "followup" and responses[1]["data"]["flags"] == 64
    assert double.messages(world.queue_id) == []  # ephemeral


class TicketView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Reply", custom_id="reply:7")
    async def reply(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.send_modal(ReplyModal())


class ReplyModal(discord.ui.Modal, title="Reply to ticket"):
    answer: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Answer", custom_id="answer")
    submitted: ClassVar[list[str]] = []

    async def on_submit(self, interaction: discord.Interaction) -> None:
        ReplyModal.submitted.append(self.answer.value)
        await interaction.response.send_message("sent", ephemeral=True)


async def test_button_on_persistent_view_opens_modal(world: World) -> None:
    double, client = world.double, world.client
    client.add_view(TicketView())
    sent = await channel(world, world.queue_id).send("ticket", view=TicketView())
    click = await double.click_button(world.alice, world.queue_id, str(sent.id), "reply:7")
    [modal] = await double.wait_for(lambda: double.interaction_responses(click))
    assert modal["type"] == 9 and modal["data"]["custom_id"]

    submit = await double.submit_modal(
        world.alice, world.queue_id, modal["data"]["custom_id"], {"answer": "Try turning it off"}
    )
    [response] = await double.wait_for(lambda: double.interaction_responses(submit))
    assert ReplyModal.submitted == ["Try turning it off"]
    assert response["type"] == 4 and response["data"]["flags"] == 64


async def test_reaction_reaches_raw_reaction_event(world: World) -> None:
    double, client = world.double, world.client
    sent = await channel(world, world.public_id).send("hello")
    await double.react(world.alice, world.public_id, str(sent.id), "👍")
    event = await double.wait_for(lambda: client.seen[-1])
    assert isinstance(event, discord.RawReactionActionEvent)
    assert str(event.emoji) == "👍" and event.user_id == int(world.alice)
    assert event.member is not None and event.member.get_role(int(world.volunteers_id))


async def test_dropped_connection_resumes_and_replays(world: World) -> None:
    double, client = world.double, world.client
    sent = await channel(world, world.public_id).send("hello")
    await double.drop_connection()
    await double.react(world.alice, world.public_id, str(sent.id), "✅")  # while disconnected
    await double.wait_for(lambda: "resumed" in client.seen)
    assert client.seen == [client.seen[0], "resumed"] and str(client.seen[0].emoji) == "✅"
    assert double.resumes == 1 and double.identifies == 1
    await double.react(world.alice, world.public_id, str(sent.id), "🎉")
    event = await double.wait_for(lambda: len(client.seen) == 3 and client.seen[2])
    assert str(event.emoji) == "🎉"
    await double.request_reconnect()  # op 7: the client closes and resumes again
    await double.wait_for(lambda: double.resumes == 2)
    assert double.identifies == 1


async def test_invalidated_session_identifies_again(world: World) -> None:
    double = world.double
    await double.invalidate_session()
    await double.wait_for(lambda: double.identifies == 2)
    await double.wait_ready()
    sent = await channel(world, world.public_id).send("still here")
    assert double.message(world.public_id, str(sent.id))["content"] == "still here"


async def test_burst_into_rate_limited_channel_all_arrives(world: World) -> None:
    double = world.double
    double.rate_limit(world.public_id, limit=5, per=0.5, already_used=5)
    lobby = channel(world, world.public_id)
    await asyncio.gather(*(lobby.send(f"m{i}") for i in range(12)))
    assert sorted(m["content"] for m in double.messages(world.public_id)) == sorted(
        f"m{i}" for i in range(12)
    )
    assert double.rate_limited >= 1


async def test_file_upload_is_recorded_and_served(world: World) -> None:
    double = world.double
    sent = await channel(world, world.queue_id).send(
        "log", file=discord.File(io.BytesIO(b"line 1\n"), filename="mail.txt")
    )
    [upload] = double.uploads
    assert (upload.filename, upload.size, upload.content) == ("mail.txt", 7, b"line 1\n")
    assert double.payloads[str(sent.id)]["attachments"][0]["filename"] == "mail.txt"
    assert await sent.attachments[0].read() == b"line 1\n"


async def test_limits_unknown_routes_and_late_acks(world: World) -> None:
    double, client = world.double, world.client
    with pytest.raises(discord.HTTPException) as too_long:
        await channel(world, world.public_id).send("x" * 2001)
    assert too_long.value.status == 400 and too_long.value.code == 50035

    with double.patch_client(), pytest.raises(discord.NotFound):
        await client.http.request(discord.http.Route("GET", "/nowhere/{x}", x="1"))
    assert double.unknown_routes == ["GET /nowhere/1"]

    double.ack_deadline = 0.1
    late: list[BaseException] = []

    @client.tree.command(name="slow", description="Too slow", guild=discord.Object(world.guild_id))
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.2)
        try:
            await interaction.response.defer()
        except discord.NotFound as error:
            late.append(error)

    await client.tree.sync(guild=discord.Object(world.guild_id))
    await double.slash(world.alice, world.queue_id, "slow")
    await double.wait_for(lambda: late)
    assert late[0].code == 10062  # type: ignore[attr-defined]


async def test_wrong_token_is_refused(discord_double: DiscordDouble) -> None:
    client = Probe()
    with discord_double.patch_client(), pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()


class TriageModal(discord.ui.Modal, title="Triage"):
    why = discord.ui.Label(text="Why", component=discord.ui.TextInput(custom_id="why"))
    queue = discord.ui.Label(
        text="Queue",
        component=discord.ui.Select(
            custom_id="queue", options=[discord.SelectOption(label=q) for q in ("billing", "it")]
        ),
    )
    got: ClassVar[list[tuple[str, list[str]]]] = []

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.why.component, discord.ui.TextInput)
        assert isinstance(self.queue.component, discord.ui.Select)
        TriageModal.got.append((self.why.component.value, self.queue.component.values))
        await interaction.response.defer()


async def test_component_responses_edit_and_labelled_modal(world: World) -> None:
    double = world.double
    view = discord.ui.View()

    async def claim(interaction: discord.Interaction) -> None:
        await interaction.response.defer()  # type 6 on a component
        await interaction.edit_original_response(content="claimed by alice")

    async def close(interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content="closed", view=None)  # type 7

    async def pick(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(TriageModal())

    for label, callback in (("Claim", claim), ("Close", close)):
        button: discord.ui.Button[Any] = discord.ui.Button(label=label, custom_id=label.lower())
        button.callback = callback  # type: ignore[method-assign]
        view.add_item(button)
    menu: discord.ui.Select[Any] = discord.ui.Select(
        custom_id="menu", options=[discord.SelectOption(label="triage")]
    )
    menu.callback = pick  # type: ignore[method-assign]
    view.add_item(menu)
    sent = await channel(world, world.queue_id).send("ticket", view=view)
    mid = str(sent.id)

    first = await double.click_button(world.alice, world.queue_id, mid, "claim")
    await double.wait_for(lambda: len(double.interaction_responses(first)) == 2)
    assert double.interaction_responses(first)[0]["type"] == 6
    assert double.message(world.queue_id, mid)["content"] == "claimed by alice"

    second = await double.click_button(world.alice, world.queue_id, mid, "close")
    await double.wait_for(lambda: double.message(world.queue_id, mid)["content"] == "closed")
    assert double.interaction_responses(second)[0]["type"] == 7
    assert double.message(world.queue_id, mid)["components"] == []

    opened = await double.select(world.alice, world.queue_id, mid, "menu", ["triage"])
    [modal] = await double.wait_for(lambda: double.interaction_responses(opened))
    assert [c["type"] for c in modal["data"]["components"]] == [18, 18]
    values: dict[str, str | list[str]] = {"why": "urgent", "queue": ["billing"]}
    await double.submit_modal(world.alice, world.queue_id, modal["data"]["custom_id"], values)
    await double.wait_for(lambda: TriageModal.got)
    assert TriageModal.got == [("urgent", ["billing"])]


async def test_public_reply_and_member_messages(world: World) -> None:
    double, client = world.double, world.client
    said: list[discord.Message] = []
    client.event(_collector(said))

    @client.tree.command(
        name="hello", description="Say hello", guild=discord.Object(world.guild_id)
    )
    async def hello(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"hello {interaction.user.display_name}")

    await client.tree.sync(guild=discord.Object(world.guild_id))
    await double.slash(world.alice, world.public_id, "hello")
    [reply] = await double.wait_for(lambda: double.messages(world.public_id))
    assert reply["content"] == "hello alice" and reply["webhook_id"] == double.application_id

    await double.say(world.alice, world.public_id, "no intent, no content")
    await double.say(world.alice, world.public_id, f"<@{double.bot_user_id}> ping")
    await double.wait_for(lambda: len(said) == 3)
    assert [m.author.bot for m in said] == [True, False, False]  # the bot's own message comes back
    assert [m.content for m in said[1:]] == ["", f"<@{double.bot_user_id}> ping"]


def _collector(into: list[discord.Message]) -> Any:
    async def on_message(message: discord.Message) -> None:
        into.append(message)

    return on_message


async def test_direct_messages_and_missing_permissions(world: World) -> None:
    double, client = world.double, world.client
    alice = await client.fetch_user(int(world.alice))
    await alice.send("your reply could not be posted")
    assert [m["content"] for m in double.direct_messages(world.alice)] == [
        "your reply could not be posted"
    ]
    assert "MESSAGE_CREATE" in double.dropped_events  # DMs need the direct_messages intent

    double.closed_dms.add(world.alice)
    with pytest.raises(discord.Forbidden) as closed:
        await alice.send("again")
    assert closed.value.code == 50007

    double.set_permissions(world.public_id, double.bot_user_id, deny=VIEW_CHANNEL)
    with pytest.raises(discord.Forbidden) as hidden:
        await channel(world, world.public_id).send("hello?")
    assert hidden.value.code == 50001


def test_check_message_knows_discords_limits() -> None:
    check_message({"content": "é" * 2000}, 0, creating=True)  # code points, not bytes
    for payload in (
        {"content": "x" * 2001},
        {"embeds": [{"description": "x" * 4097}]},
        {"embeds": [{"description": "x" * 4000}, {"description": "x" * 2001}]},
        {"embeds": [{"title": "t"}] * 11},
        {"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]},
        {"components": [{"type": 1, "components": [{"type": 2, "custom_id": "c" * 101}]}]},
    ):
        with pytest.raises(DiscordError) as invalid:
            check_message(payload, 0, creating=True)
        assert invalid.value.body["code"] == 50035
    with pytest.raises(DiscordError) as empty:
        check_message({"content": ""}, 0, creating=True)
    assert empty.value.body["code"] == 50006
    check_message({"content": ""}, 1, creating=True)  # a file alone is a message
