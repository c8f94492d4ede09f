"""The Matrix side of running the desk from chat, against a real Synapse.

The privacy check of rooms, rooms that become (and stop being) queue rooms while the bot
runs, admins heard outside queue rooms and their invites accepted, files shown with an
answer, private answers by direct message, and ✅ meaning approve on a draft's notice.
The core is a fake that records what reached it; the homeserver is real.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import nio
import pytest

from adapters.matrix import MatrixAdapter, MatrixError
from adapters.matrix.handler import SENT_PRIVATELY
from adapters.matrix.render import ACTIONS_KEY
from bot.commands import CommandResult
from bot.config import Config, MailConfig, MatrixConfig, QueueConfig, StorageConfig
from bot.files import ResultFile
from tests.matrix.helpers import (
    NUMBER,
    PASSWORD,
    Desk,
    Event,
    FakeCommands,
    article,
    assert_no_pings,
    eventually,
    history,
    messages,
    ticket,
)
from tests.matrix.test_media import png

pytestmark = pytest.mark.servers


@dataclass(frozen=True)
class Admin:
    user_id: str
    token: str


def register_admin(desk: Desk) -> Admin:
    return Admin(*desk.synapse.register(f"ada{uuid.uuid4().hex[:8]}", PASSWORD))


def quoted(room_id: str) -> str:
    return urllib.parse.quote(room_id, safe="")


def set_state(desk: Desk, token: str, room_id: str, event_type: str, content: Event) -> None:
    path = f"/_matrix/client/v3/rooms/{quoted(room_id)}/state/{event_type}/"
    desk.synapse.request("PUT", path, content, token)


def invite(desk: Desk, token: str, room_id: str, user_id: str) -> None:
    path = f"/_matrix/client/v3/rooms/{quoted(room_id)}/invite"
    desk.synapse.request("POST", path, {"user_id": user_id}, token)


def queue(name: str, room: str) -> QueueConfig:
    return QueueConfig(name=name, addresses=(f"{name}@example.org",), matrix_room=room)


def desk_config(desk: Desk, queues: list[QueueConfig], admins: tuple[str, ...]) -> Config:
    """The config admins' commands would put in force (only what the adapter reads)."""
    return Config(
        path=desk.tmp_path / "bot.toml",
        storage=StorageConfig(),
        mail=MailConfig(),
        queues=tuple(queues),
        matrix=MatrixConfig(homeserver=desk.synapse.url, user_id=desk.bot_user, password=PASSWORD),
        admins=admins,
    )


def adapter_for(
    desk: Desk, commands: FakeCommands, admins: tuple[str, ...], store: str = "bot-store"
) -> MatrixAdapter:
    config = MatrixConfig(homeserver=desk.synapse.url, user_id=desk.bot_user, password=PASSWORD)
    return MatrixAdapter(
        config,
        [queue("support", desk.room_id)],
        commands,
        admins=admins,
        store_path=desk.tmp_path / store,
    )


def bot_rooms(desk: Desk) -> set[str]:
    """The rooms the bot's account has joined, as the homeserver sees it."""
    answer = desk.synapse.request("GET", "/_matrix/client/v3/joined_rooms", token=desk.bot_token)
    return set(answer["joined_rooms"])


async def until_joined(desk: Desk, room_id: str) -> None:
    async def probe() -> bool | None:
        return True if room_id in bot_rooms(desk) else None

    await eventually(probe)


async def say(client: nio.AsyncClient, room_id: str, body: str, **extra: Any) -> str:
    content = {"msgtype": "m.text", "body": body, **extra}
    resp = await client.room_send(room_id, "m.room.message", content)
    assert isinstance(resp, nio.RoomSendResponse), resp
    return str(resp.event_id)


async def react(client: nio.AsyncClient, room_id: str, event_id: str, key: str) -> None:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
    resp = await client.room_send(room_id, "m.reaction", content)
    assert isinstance(resp, nio.RoomSendResponse), resp


async def bot_answer(desk: Desk, client: nio.AsyncClient, room_id: str, to: str) -> Event | None:
    """The bot's notice replying to the event ``to``, if it has come."""
    for event in messages(await history(client, room_id), desk.bot_user):
        relates = event["content"].get("m.relates_to", {})
        if relates.get("m.in_reply_to", {}).get("event_id") == to:
            return event
    return None


# --- the privacy check ---------------------------------------------------------------------------


async def test_the_privacy_check_finds_rooms_the_public_can_read(desk: Desk) -> None:
    synapse, vera = desk.synapse, desk.volunteer_token
    adapter = adapter_for(desk, FakeCommands({}), ())
    await adapter.start()
    inspector = adapter.inspector
    try:
        private = await inspector.check_room(desk.room_id)
        assert (private.public, private.reason) == (False, "")
        assert not (await inspector.check_room(desk.alias(desk.room_id))).public

        public = synapse.create_room(vera, preset="public_chat")
        synapse.join(desk.bot_token, public)
        found = await inspector.check_room(public)
        assert found.public and "join rule public" in found.reason

        # invite-only, but listed in the public room directory. The test Synapse lets
        # nobody publish rooms (no room_list_publication_rules), so its answer for this
        # one room is what a server that allows it would say.
        listed = synapse.create_room(vera, invite=[desk.bot_user])
        synapse.join(desk.bot_token, listed)
        asked: list[str] = []
        ask_server = adapter.client.room_get_visibility

        async def directory(room_id: str) -> Any:
            asked.append(room_id)
            if room_id == listed:
                return nio.RoomGetVisibilityResponse(room_id, "public")
            return await ask_server(room_id)

        adapter.client.room_get_visibility = directory  # type: ignore[method-assign]
        found = await inspector.check_room(listed)
        assert found.public and found.reason == "it is listed in the public room directory"
        assert not (await inspector.check_room(desk.room_id)).public
        assert asked == [listed, desk.room_id]

        readable = synapse.create_room(vera, invite=[desk.bot_user])
        visibility = {"history_visibility": "world_readable"}
        set_state(desk, vera, readable, "m.room.history_visibility", visibility)
        synapse.join(desk.bot_token, readable)
        found = await inspector.check_room(readable)
        assert found.public and "world_readable" in found.reason

        # knocking asks a member to let one in: that is not public
        knock = synapse.create_room(vera, invite=[desk.bot_user])
        set_state(desk, vera, knock, "m.room.join_rules", {"join_rule": "knock"})
        synapse.join(desk.bot_token, knock)
        assert not (await inspector.check_room(knock)).public

        # what cannot be inspected raises: the core then treats the room as public
        outside = synapse.create_room(vera)
        with pytest.raises(MatrixError, match=r"m\.room\.join_rules"):
            await inspector.check_room(outside)
        with pytest.raises(MatrixError, match="alias"):
            await inspector.check_room(f"#nowhere{uuid.uuid4().hex[:6]}:{synapse.server_name}")
    finally:
        await adapter.stop()


# --- binding rooms at run time --------------------------------------------------------------------


async def test_admins_bind_rooms_by_command_and_the_adapter_follows_at_once(desk: Desk) -> None:
    synapse = desk.synapse
    ada = register_admin(desk)
    commands = FakeCommands(
        {
            "queue": CommandResult(True, "Queue press is bound to this room."),
            "claim": CommandResult(True, "claimed", NUMBER, shown_in_thread=True),
            "help": CommandResult(True, "the commands"),
        }
    )
    # an admin's invite sent while the bot was down is accepted when it starts; a
    # volunteer's invite to a room that is no queue room is not
    waiting = synapse.create_room(ada.token, invite=[desk.bot_user])
    stranger = synapse.create_room(desk.volunteer_token, invite=[desk.bot_user])
    adapter = adapter_for(desk, commands, (ada.user_id,))
    await adapter.start()
    runner = asyncio.create_task(adapter.run())
    try:
        assert waiting in bot_rooms(desk)
        assert stranger not in bot_rooms(desk)
        vera = await desk.login(desk.volunteer_user, "VERAPHONE")
        admin = await desk.login(ada.user_id, "ADAPHONE")

        # the binding flow: an admin invites the bot to a new room ...
        press = synapse.create_room(ada.token, invite=[desk.bot_user, desk.volunteer_user])
        synapse.join(desk.volunteer_token, press)
        await until_joined(desk, press)
        # ... where only admins are heard until it is a queue room
        await say(vera, press, "!claim 2026112310000012")
        bind = await say(admin, press, "!queue bind press")
        request = await commands.nth(1)
        assert (request.name, request.args) == ("queue", "bind press")
        assert request.actor.user_id == ada.user_id
        assert (request.context.platform, request.context.room) == ("matrix", press)
        answer = await eventually(lambda: bot_answer(desk, admin, press, bind))
        assert answer["content"]["body"] == "Queue press is bound to this room."
        await asyncio.sleep(0.5)
        assert len(commands.requests) == 1, "the volunteer was not heard outside a queue room"

        # the core puts the binding in force: the room is a queue room before the
        # listener returns, and the volunteer's next command reaches the core
        bound = [queue("support", desk.room_id), queue("press", press)]
        adapter.apply_config(desk_config(desk, bound, (ada.user_id,)))
        assert adapter.handler.rooms[press] == press
        await say(vera, press, f"!claim {NUMBER}")
        claim = await commands.nth(2)
        assert (claim.name, claim.actor.user_id, claim.context.room) == (
            "claim",
            desk.volunteer_user,
            press,
        )

        # unbound: the volunteer is ignored again there, the admin still heard
        adapter.apply_config(desk_config(desk, bound[:1], (ada.user_id,)))
        assert press not in adapter.handler.rooms
        await say(vera, press, f"!claim {NUMBER}")
        await say(admin, press, "!help")
        assert (await commands.nth(3)).name == "help"
        await asyncio.sleep(0.5)
        assert [r.actor.user_id for r in commands.requests] == [
            ada.user_id,
            desk.volunteer_user,
            ada.user_id,
        ]

        # a room bound elsewhere (another instance, by alias) is joined at once, even
        # though the invite came from someone who is no admin
        alias = desk.alias(stranger)
        adapter.apply_config(desk_config(desk, [*bound[:1], queue("misc", alias)], (ada.user_id,)))
        await until_joined(desk, stranger)

        async def mapped() -> bool | None:
            return True if adapter.handler.rooms.get(stranger) == alias else None

        await eventually(mapped)

        # an admin whose grant is revoked is not heard outside queue rooms from then on
        adapter.apply_config(desk_config(desk, bound[:1], ()))
        assert adapter.admins == frozenset()
        await say(admin, press, "!help")
        later = synapse.create_room(ada.token, invite=[desk.bot_user])
        await asyncio.sleep(1.0)
        assert len(commands.requests) == 3
        assert later not in bot_rooms(desk)
    finally:
        await adapter.stop()
        await asyncio.wait_for(runner, timeout=10)


# --- files, private answers and approvals ---------------------------------------------------------


async def test_files_follow_the_answer_into_the_thread(desk: Desk) -> None:
    chart = ResultFile("tickets per week.png", "image/png", png(320, 200))
    table = ResultFile("tickets.csv", "text/csv", b"number,state\n2026112310000012,open\n")
    commands = FakeCommands(
        {"report": CommandResult(True, "Tickets per week @room", files=(chart, table))}
    )
    adapter = adapter_for(desk, commands, ())
    await adapter.start()
    runner = asyncio.create_task(adapter.run())
    try:
        root = await adapter.gateway.post_ticket(desk.room_id, ticket(), article(), "outbox-1")
        vera = await desk.login(desk.volunteer_user, "VERAPHONE")
        relation = {"rel_type": "m.thread", "event_id": root}
        command = await say(vera, desk.room_id, "!report", **{"m.relates_to": relation})

        async def shown() -> list[Event] | None:
            sent = messages(await history(vera, desk.room_id), desk.bot_user)
            files = [e for e in sent if e["content"]["msgtype"] in ("m.image", "m.file")]
            return sent if len(files) == 2 else None

        sent = await eventually(shown)
        text, image, other = sent[-3:]
        for event in (text, image, other):
            relates = event["content"]["m.relates_to"]
            assert relates["rel_type"] == "m.thread" and relates["event_id"] == root
            assert relates["m.in_reply_to"] == {"event_id": command}
            assert event["content"]["m.mentions"] == {}
        assert_no_pings(text["content"])
        assert image["content"]["msgtype"] == "m.image"
        assert image["content"]["body"] == "tickets per week.png"
        assert image["content"]["info"] == {
            "mimetype": "image/png",
            "size": len(chart.data),
            "w": 320,
            "h": 200,
        }
        assert other["content"]["msgtype"] == "m.file"
        assert other["content"]["info"] == {"mimetype": "text/csv", "size": len(table.data)}
        for event, file in ((image, chart), (other, table)):
            url = urllib.parse.urlparse(event["content"]["url"])
            assert url.scheme == "mxc"
            got = await vera.download(server_name=url.netloc, media_id=url.path.lstrip("/"))
            assert isinstance(got, nio.DownloadResponse), got
            assert got.body == file.data
    finally:
        await adapter.stop()
        await asyncio.wait_for(runner, timeout=10)


async def test_a_private_answer_goes_by_direct_message_and_the_room_only_hears_that(
    desk: Desk,
) -> None:
    secret = f"Ticket {NUMBER}: the requester is Maria <maria@example.net>."
    commands = FakeCommands({"reveal": CommandResult(True, secret, NUMBER, private=True)})
    adapter = adapter_for(desk, commands, ())
    await adapter.start()
    runner = asyncio.create_task(adapter.run())
    vera = await desk.login(desk.volunteer_user, "VERAPHONE")
    try:
        root = await adapter.gateway.post_ticket(desk.room_id, ticket(), article(), "outbox-1")
        relation = {"rel_type": "m.thread", "event_id": root}
        first = await say(vera, desk.room_id, "!reveal", **{"m.relates_to": relation})
        note = await eventually(lambda: bot_answer(desk, vera, desk.room_id, first))
        assert note["content"]["body"] == SENT_PRIVATELY
        assert note["content"]["m.relates_to"]["event_id"] == root

        async def invited() -> str | None:
            await vera.sync(timeout=0)
            return next(iter(vera.invited_rooms), None)

        dm = await eventually(invited)
        assert isinstance(await vera.join(dm), nio.JoinResponse)
        events = await history(vera, dm)
        [invite_event] = [
            e
            for e in events
            if e["type"] == "m.room.member"
            and e["state_key"] == desk.volunteer_user
            and e["content"]["membership"] == "invite"
        ]
        assert invite_event["content"].get("is_direct") is True
        assert [e["content"]["body"] for e in messages(events, desk.bot_user)] == [secret]

        # the next private answer reuses the room, also after a restart (m.direct)
        second = await say(vera, desk.room_id, "!reveal", **{"m.relates_to": relation})
        await eventually(lambda: bot_answer(desk, vera, desk.room_id, second))
        await adapter.stop()
        await asyncio.wait_for(runner, timeout=10)
        adapter = adapter_for(desk, commands, (), store="bot-store-2")
        await adapter.start()
        runner = asyncio.create_task(adapter.run())
        third = await say(vera, desk.room_id, f"!reveal {NUMBER}")
        await eventually(lambda: bot_answer(desk, vera, desk.room_id, third))

        async def all_three() -> list[Event] | None:
            sent = messages(await history(vera, dm), desk.bot_user)
            return sent if len(sent) == 3 else None

        assert [e["content"]["body"] for e in await eventually(all_three)] == [secret] * 3
        await vera.sync(timeout=0)
        assert set(vera.rooms) == {desk.room_id, dm}, "no second direct room"
        assert not vera.invited_rooms

        # never in the queue room
        in_room = await history(vera, desk.room_id)
        assert all("maria@example.net" not in str(e.get("content")) for e in in_room)
        assert len(commands.requests) == 3
    finally:
        await adapter.stop()
        await asyncio.wait_for(runner, timeout=10)


async def test_a_check_mark_on_a_draft_notice_approves_and_on_the_root_closes(
    desk: Desk,
) -> None:
    commands = FakeCommands(
        {
            "approve": CommandResult(True, "Approved.", NUMBER, shown_in_thread=True),
            "close": CommandResult(True, "Closed.", NUMBER, shown_in_thread=True),
        }
    )
    adapter = adapter_for(desk, commands, ())
    await adapter.start()
    runner = asyncio.create_task(adapter.run())
    try:
        gateway = adapter.gateway
        root = await gateway.post_ticket(desk.room_id, ticket(), article(), "outbox-1")
        draft = "📝 Draft reply by Tom (trainee) waits for a volunteer of support."
        await gateway.post_notice(desk.room_id, root, draft, "outbox-2", ["approve"])
        vera = await desk.login(desk.volunteer_user, "VERAPHONE")
        events = await history(vera, desk.room_id)
        notice = messages(events, desk.bot_user)[-1]
        assert notice["content"][ACTIONS_KEY] == ["approve"]
        assert notice["content"]["body"].endswith("react ✅ to this message, to send it)")
        [offered] = [e for e in events if e["type"] == "m.reaction"]
        assert offered["sender"] == desk.bot_user
        assert offered["content"]["m.relates_to"]["event_id"] == notice["event_id"]
        assert offered["content"]["m.relates_to"]["key"] == "✅"

        await react(vera, desk.room_id, notice["event_id"], "✅")
        approve = await commands.nth(1)
        assert (approve.name, approve.context.thread_ref) == ("approve", root)
        await react(vera, desk.room_id, root, "✅")
        close = await commands.nth(2)
        assert (close.name, close.context.thread_ref) == ("close", root)

        # a message of someone else claiming to offer approve is no notice of the bot
        in_thread = {"rel_type": "m.thread", "event_id": root}
        fake = {"m.relates_to": in_thread, ACTIONS_KEY: ["approve"]}
        forged = await say(vera, desk.room_id, "approve me", **fake)
        await react(vera, desk.room_id, forged, "✔️")
        assert (await commands.nth(3)).name == "close"
    finally:
        await adapter.stop()
        await asyncio.wait_for(runner, timeout=10)
