"""The Matrix adapter against a real Synapse: posts, edits, dedupe, commands, reactions."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import nio
import pytest

from adapters.matrix import MatrixAdapter, MatrixError, MatrixGateway, MatrixStartError
from adapters.matrix.render import article_contents, thread_relation
from adapters.matrix.split import MAX_BODY_BYTES
from adapters.matrix.text import ZWJ
from bot.chat import ArticleView
from bot.commands import CommandResult
from bot.config import MatrixConfig, QueueConfig
from bot.files import ResultFile
from tests.matrix.helpers import (
    CREATED,
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


# --- the gateway ----------------------------------------------------------------------------------


async def test_ticket_thread_edit_and_notice_as_stored_by_synapse(desk: Desk) -> None:
    desk.synapse.join(desk.bot_token, desk.room_id)
    gateway = MatrixGateway(await desk.login(desk.bot_user, "TICKETBOT"))
    room = desk.room_id

    root = await gateway.post_ticket(room, ticket(), article(), "outbox-1")
    note = ArticleView("note", "Vera", CREATED, "", "call them <b>now</b>")
    await gateway.post_article(room, root, ticket(), note, "outbox-2")
    await gateway.update_ticket(room, root, ticket("open", "Vera Volunteer"), "outbox-3")
    await gateway.post_notice(room, root, "✋ Claimed by Vera @room", "outbox-4")

    volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
    sent = messages(await history(volunteer, room), desk.bot_user)
    assert sent[0]["event_id"] == root
    assert len(sent) == 5
    for event in sent:
        assert_no_pings(event["content"])

    first = sent[0]["content"]
    assert first["msgtype"] == "m.text"
    assert first["body"].startswith(f"🎫 [Ticket#{NUMBER}] Printer <b>on fire</b> @{ZWJ}room")
    assert "&lt;b&gt;on fire&lt;/b&gt;" in first["formatted_body"]
    assert "m.relates_to" not in first

    email, note_event = sent[1]["content"], sent[2]["content"]
    for content in (email, note_event):
        assert content["m.relates_to"] == {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root},
        }
    assert email["body"].startswith("✉ Email from Mallory <mallory@example.org>")
    assert "photo.jpg" in email["body"]
    assert note_event["body"].startswith("📝 Internal note by Vera")
    assert "call them &lt;b&gt;now&lt;/b&gt;" in note_event["formatted_body"]

    edit = sent[3]["content"]
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": root}
    assert edit["body"].startswith("* 🎫")
    assert edit["m.new_content"]["m.mentions"] == {}
    assert "open · claimed by Vera Volunteer · queue support" in edit["m.new_content"]["body"]

    notice = sent[4]["content"]
    assert notice["msgtype"] == "m.notice"
    assert notice["m.relates_to"]["event_id"] == root
    assert notice["body"] == f"✋ Claimed by Vera @{ZWJ}room"


async def test_retried_post_with_the_same_key_is_not_posted_twice(desk: Desk) -> None:
    desk.synapse.join(desk.bot_token, desk.room_id)
    room = desk.room_id
    gateway = MatrixGateway(await desk.login(desk.bot_user, "TICKETBOT"))

    root = await gateway.post_ticket(room, ticket(), article(), "outbox-7")
    assert await gateway.post_ticket(room, ticket(), article(), "outbox-7") == root
    # a restart logs in again: a new access token, but the same device keeps the dedupe
    again = MatrixGateway(await desk.login(desk.bot_user, "TICKETBOT"))
    assert await again.post_ticket(room, ticket(), article(), "outbox-7") == root

    volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
    sent = messages(await history(volunteer, room), desk.bot_user)
    assert len(sent) == 2  # one root, one first article

    # the limit: transaction ids are remembered per device, so another device posts again
    other = MatrixGateway(await desk.login(desk.bot_user, "OTHERDEVICE"))
    assert await other.post_ticket(room, ticket(), article(), "outbox-7") != root


async def test_alias_is_resolved_once_and_errors_raise(desk: Desk) -> None:
    desk.synapse.join(desk.bot_token, desk.room_id)
    client = await desk.login(desk.bot_user, "TICKETBOT")
    gateway = MatrixGateway(client)
    alias = desk.alias(desk.room_id)
    lookups: list[str] = []
    resolve = client.room_resolve_alias

    async def counting(room_alias: str) -> Any:
        lookups.append(room_alias)
        return await resolve(room_alias)

    client.room_resolve_alias = counting
    root = await gateway.post_ticket(alias, ticket(), None, "outbox-a")
    await gateway.post_notice(alias, root, "hello", "outbox-b")
    assert lookups == [alias]

    with pytest.raises(MatrixError):
        await gateway.post_notice(f"#nowhere:{desk.synapse.server_name}", root, "x", "k")
    other_room = desk.synapse.create_room(desk.volunteer_token)  # the bot is not in it
    with pytest.raises(MatrixError):
        await gateway.post_ticket(other_room, ticket(), None, "outbox-c")


async def test_200kb_hostile_article_is_accepted_in_parts(desk: Desk) -> None:
    desk.synapse.join(desk.bot_token, desk.room_id)
    gateway = MatrixGateway(await desk.login(desk.bot_user, "TICKETBOT"))
    body = "\n".join(f'{n:05d} <"&@room&"> ' * 4 for n in range(3000))
    assert len(body.encode()) > 200_000
    root = await gateway.post_ticket(desk.room_id, ticket(), None, "outbox-big")
    await gateway.post_article(desk.room_id, root, ticket(), article(body), "outbox-big2")

    expected = article_contents(article(body), thread_relation(root))
    volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
    parts = messages(await history(volunteer, desk.room_id), desk.bot_user)[1:]
    assert len(parts) == len(expected) > 1
    for index, event in enumerate(parts, start=1):
        assert f"(part {index}/{len(expected)})" in event["content"]["body"]
        assert len(event["content"]["body"].encode()) <= MAX_BODY_BYTES
        assert len(json.dumps(event).encode()) < 65_536
        assert_no_pings(event["content"])


async def test_a_report_is_a_notice_and_its_files_sent_once(desk: Desk) -> None:
    desk.synapse.join(desk.bot_token, desk.room_id)
    gateway = MatrixGateway(await desk.login(desk.bot_user, "TICKETBOT"))
    alias = desk.alias(desk.room_id)
    chart = ResultFile("traffic-2026-W47.png", "image/png", png(320, 200))
    table = ResultFile("traffic.csv", "text/csv", b"day,new\n2026-11-23,4\n")
    text = "📊 Weekly traffic report @room\n12 new <b>tickets</b>"

    await gateway.post_report(alias, text, (chart, table), "weekly-1")
    await gateway.post_report(alias, text, (chart, table), "weekly-1")  # a retry
    # a restart logs in again on the same device: still nothing twice
    again = MatrixGateway(await desk.login(desk.bot_user, "TICKETBOT"))
    await again.post_report(alias, text, (chart, table), "weekly-1")

    volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
    sent = messages(await history(volunteer, desk.room_id), desk.bot_user)
    assert [event["content"]["msgtype"] for event in sent] == ["m.notice", "m.image", "m.file"]
    for event in sent:
        assert_no_pings(event["content"])
        assert "m.relates_to" not in event["content"]

    notice = sent[0]["content"]
    assert notice["body"] == f"📊 Weekly traffic report @{ZWJ}room\n12 new <b>tickets</b>"
    assert "&lt;b&gt;tickets&lt;/b&gt;" in notice["formatted_body"]

    image = sent[1]["content"]
    assert image["body"] == image["filename"] == "traffic-2026-W47.png"
    assert image["info"] == {"mimetype": "image/png", "size": len(chart.data), "w": 320, "h": 200}
    assert image["url"].startswith("mxc://")
    download = await volunteer.download(image["url"])
    assert isinstance(download, nio.MemoryDownloadResponse), download
    assert download.body == chart.data
    assert sent[2]["content"]["info"] == {"mimetype": "text/csv", "size": len(table.data)}


async def test_a_report_file_the_server_refuses_is_named_instead(desk: Desk) -> None:
    desk.synapse.join(desk.bot_token, desk.room_id)
    client = await desk.login(desk.bot_user, "TICKETBOT")
    gateway = MatrixGateway(client)
    upload = client.upload

    async def limited(data: Any, **kwargs: Any) -> Any:
        if kwargs["filesize"] > 1000:
            return nio.UploadError("File size limit exceeded", "M_TOO_LARGE"), None
        return await upload(data, **kwargs)

    client.upload = limited
    big = ResultFile("@room huge.png", "image/png", png(2000, 2000))
    small = ResultFile("small.csv", "text/csv", b"a,b\n")
    await gateway.post_report(desk.room_id, "Report", (big, small), "weekly-2")

    volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
    sent = messages(await history(volunteer, desk.room_id), desk.bot_user)
    assert [event["content"]["msgtype"] for event in sent] == ["m.notice", "m.notice", "m.file"]
    refused = sent[1]["content"]
    assert refused["body"] == (
        f"📎 @{ZWJ}room huge.png (image/png, {len(big.data):,} bytes) is too large for this "
        "homeserver: not shown."
    )
    assert_no_pings(refused)

    async def broken(data: Any, **kwargs: Any) -> Any:
        return nio.UploadError("database is down", "M_UNKNOWN"), None

    client.upload = broken  # any other refusal raises: the report is tried again later
    with pytest.raises(MatrixError):
        await gateway.post_report(desk.room_id, "Report", (small,), "weekly-3")


# --- the listener ---------------------------------------------------------------------------------


REFUSAL = "Sorry @room, only volunteers of queue <b>support</b> may act on its tickets."


async def test_thread_command_and_reaction_reach_the_core_and_refusals_come_back(
    desk: Desk,
) -> None:
    commands = FakeCommands(
        {
            "claim": CommandResult(False, REFUSAL, NUMBER),
            "note": CommandResult(True, "Note added.", NUMBER, shown_in_thread=True),
            "help": CommandResult(True, "!claim [NUMBER] — take the ticket"),
        }
    )
    volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
    await volunteer.room_send(
        desk.room_id, "m.room.message", {"msgtype": "m.text", "body": "!close"}
    )
    alias = desk.alias(desk.room_id)
    adapter = desk.adapter(commands, room=alias)
    await adapter.start()  # accepts the pending invite
    runner = asyncio.create_task(adapter.run())
    try:
        root = await adapter.gateway.post_ticket(alias, ticket(), article(), "outbox-1")

        async def say(content: Event) -> str:
            resp = await volunteer.room_send(desk.room_id, "m.room.message", content)
            assert isinstance(resp, nio.RoomSendResponse), resp
            return str(resp.event_id)

        in_thread = {"rel_type": "m.thread", "event_id": root, "is_falling_back": True}
        in_thread["m.in_reply_to"] = {"event_id": root}
        claim_event = await say({"msgtype": "m.text", "body": "!claim", "m.relates_to": in_thread})
        claim = await commands.nth(1)
        assert (claim.name, claim.args) == ("claim", "")
        assert claim.context.platform == "matrix"
        assert claim.context.room == alias  # the configured name, as the core compares it
        assert claim.context.thread_ref == root
        assert claim.actor.user_id == desk.volunteer_user
        assert claim.actor.display_name == "Vera Volunteer"

        async def bot_answer(to: str) -> Event | None:
            for event in messages(await history(volunteer, desk.room_id), desk.bot_user):
                relates = event["content"].get("m.relates_to", {})
                replied = relates.get("m.in_reply_to", {}).get("event_id")
                if replied == to and event["content"]["msgtype"] == "m.notice":
                    return event
            return None

        refusal = (await eventually(lambda: bot_answer(claim_event)))["content"]
        assert refusal["m.relates_to"] == {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": False,
            "m.in_reply_to": {"event_id": claim_event},
        }
        assert_no_pings(refusal)
        assert refusal["body"] == REFUSAL.replace("@room", f"@{ZWJ}room")
        assert "&lt;b&gt;support&lt;/b&gt;" in refusal["formatted_body"]

        reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "✋"}}
        await volunteer.room_send(desk.room_id, "m.reaction", reaction)
        by_reaction = await commands.nth(2)
        assert (by_reaction.name, by_reaction.args) == ("claim", "")
        assert by_reaction.context.thread_ref == root
        refusal = (await eventually(lambda: bot_answer(root)))["content"]
        assert refusal["m.relates_to"]["rel_type"] == "m.thread"
        assert refusal["m.relates_to"]["event_id"] == root
        assert_no_pings(refusal)

        # a reply to the root (no thread) names the root; a note shown in the thread is
        # not echoed; ordinary talk and the bot's own messages are not commands
        reply = {"m.in_reply_to": {"event_id": root}}
        quoted = f"> <@mallory> 🎫 [Ticket#{NUMBER}]\n\n!note {NUMBER} on it"
        note_event = await say({"msgtype": "m.text", "body": quoted, "m.relates_to": reply})
        await say({"msgtype": "m.text", "body": "just chatting"})
        help_event = await say({"msgtype": "m.text", "body": "!help"})
        note, help_request = await commands.nth(3), await commands.nth(4)
        assert (note.name, note.args, note.context.thread_ref) == ("note", f"{NUMBER} on it", root)
        assert (help_request.name, help_request.context.thread_ref) == ("help", None)
        answer = (await eventually(lambda: bot_answer(help_event)))["content"]
        assert answer["m.relates_to"] == {"m.in_reply_to": {"event_id": help_event}}
        assert answer["body"] == "!claim [NUMBER] — take the ticket"
        assert await bot_answer(note_event) is None
        assert [r.name for r in commands.requests] == ["claim", "claim", "note", "help"]
    finally:
        await adapter.stop()
        await asyncio.wait_for(runner, timeout=10)


async def test_invites_to_queue_rooms_only_are_accepted_while_running(desk: Desk) -> None:
    commands = FakeCommands({"claim": CommandResult(True, "ok", NUMBER, shown_in_thread=True)})
    queue_room = desk.synapse.create_room(desk.volunteer_token)  # no invite yet
    desk.synapse.send_text(desk.volunteer_token, queue_room, f"!claim {NUMBER}")  # history
    adapter = desk.adapter(commands, room=queue_room)
    await adapter.start()  # cannot join yet: logged, not fatal
    runner = asyncio.create_task(adapter.run())
    try:
        volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
        other_room = desk.synapse.create_room(desk.volunteer_token)
        assert isinstance(
            await volunteer.room_invite(other_room, desk.bot_user), nio.RoomInviteResponse
        )
        assert isinstance(
            await volunteer.room_invite(queue_room, desk.bot_user), nio.RoomInviteResponse
        )

        async def joined() -> bool | None:
            return True if desk.bot_user in desk.joined(queue_room) else None

        await eventually(joined)
        await volunteer.room_send(
            queue_room, "m.room.message", {"msgtype": "m.text", "body": f"!claim {NUMBER}"}
        )
        request = await commands.nth(1)
        assert (request.name, request.args, request.context.room) == ("claim", NUMBER, queue_room)
        await asyncio.sleep(0.5)
        assert len(commands.requests) == 1  # the command from before the join was skipped
        assert desk.bot_user not in desk.joined(other_room)
    finally:
        await adapter.stop()
        await asyncio.wait_for(runner, timeout=10)


async def test_access_token_login_and_refused_credentials(desk: Desk) -> None:
    config = MatrixConfig(
        homeserver=desk.synapse.url, user_id=desk.bot_user, access_token=desk.bot_token
    )
    queue = QueueConfig(name="support", addresses=("help@example.org",), matrix_room=desk.room_id)
    adapter = MatrixAdapter(config, [queue], FakeCommands({}))
    try:
        await adapter.start()
        assert desk.bot_user in desk.joined(desk.room_id)
        root = await adapter.gateway.post_ticket(desk.room_id, ticket(), None, "outbox-t")
        assert root.startswith("$")
    finally:
        await adapter.stop()

    for bad in (
        MatrixConfig(homeserver=desk.synapse.url, user_id=desk.bot_user, access_token="nope"),
        MatrixConfig(homeserver=desk.synapse.url, user_id=desk.bot_user, password="wrong"),
    ):
        adapter = MatrixAdapter(bad, [queue], FakeCommands({}))
        try:
            with pytest.raises(MatrixStartError):
                await adapter.start()
        finally:
            await adapter.stop()


async def test_sync_failures_back_off_doubling_to_a_minute_and_reset(tmp_path: Path) -> None:
    """No server needed: the sync loop's reaction to errors, and stop() ending a long poll."""
    config = MatrixConfig(homeserver="http://127.0.0.1:9", user_id="@bot:localhost", password="x")
    adapter = MatrixAdapter(config, [], FakeCommands({}), store_path=tmp_path / "store")
    outcomes: list[object] = [OSError("down")] * 8 + [None] + [nio.SyncError("bad gateway")]
    waits: list[float] = []
    polling = asyncio.Event()

    async def fake_sync(**_: object) -> object:
        if not outcomes:
            polling.set()
            await asyncio.sleep(3600)  # a long poll with nothing happening
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome if outcome is not None else nio.SyncResponse.from_dict({"next_batch": "s1"})

    async def no_sleep(seconds: float) -> bool:
        waits.append(seconds)
        return False

    adapter.client.sync = fake_sync
    adapter._stopped_within = no_sleep  # type: ignore[method-assign]
    runner = asyncio.create_task(adapter.run())
    await asyncio.wait_for(polling.wait(), timeout=10)
    await asyncio.wait_for(adapter.stop(), timeout=5)
    await asyncio.wait_for(runner, timeout=1)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 1]


# --- pings, actions and links --------------------------------------------------------------------


def highlights(desk: Desk, token: str) -> list[str]:
    """The events Synapse highlighted for a user (a mention, as opposed to any message)."""
    path = "/_matrix/client/v3/notifications?only=highlight&limit=100"
    answer = desk.synapse.request("GET", path, token=token)
    return [n["event"]["event_id"] for n in answer["notifications"]]


async def test_a_ping_notifies_exactly_the_listed_user(desk: Desk) -> None:
    synapse, room = desk.synapse, desk.room_id
    synapse.join(desk.bot_token, room)
    otto, otto_token = synapse.register(f"otto{uuid.uuid4().hex[:8]}", PASSWORD)
    invite = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room, safe='')}/invite"
    synapse.request("POST", invite, {"user_id": otto}, desk.volunteer_token)
    synapse.join(otto_token, room)
    gateway = MatrixGateway(await desk.login(desk.bot_user, "TICKETBOT"))

    root = await gateway.post_ticket(room, ticket(), article(), "outbox-1")
    text = f"⏰ [Ticket#{NUMBER}] waits for an answer @room {otto}"
    users = [desk.volunteer_user, "discord:1234", desk.volunteer_user]
    await gateway.post_ping(room, root, text, users, "outbox-2")
    await gateway.post_ping(room, None, "2 tickets wait in queue support", users, "outbox-3")
    await gateway.post_ping(room, root, "retried", users, "outbox-2")  # same key: not twice

    volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
    sent = messages(await history(volunteer, room), desk.bot_user)
    assert len(sent) == 4
    in_thread, in_room = sent[2], sent[3]
    for event in (in_thread, in_room):
        content = event["content"]
        assert content["msgtype"] == "m.text"
        assert content["m.mentions"] == {"user_ids": [desk.volunteer_user]}
        assert content["body"].startswith(f"🔔 {desk.volunteer_user}\n")
        pill = f'<a href="https://matrix.to/#/{desk.volunteer_user}">{desk.volunteer_user}</a>'
        assert content["formatted_body"].startswith(f"🔔 {pill}<br>")
        assert "@room" not in json.dumps(content)
    assert in_thread["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert in_thread["content"]["m.relates_to"]["event_id"] == root
    assert f"@{ZWJ}{otto[1:]}" in in_thread["content"]["body"]  # named in the text: no ping
    assert "m.relates_to" not in in_room["content"]

    pings = [in_thread["event_id"], in_room["event_id"]]
    assert sorted(highlights(desk, desk.volunteer_token)) == sorted(pings)
    assert highlights(desk, otto_token) == []  # not listed, though named in the text


async def test_a_notice_offering_undo_gets_a_reaction_that_undoes(desk: Desk) -> None:
    commands = FakeCommands(
        {"undo": CommandResult(True, "Reply withdrawn.", NUMBER, shown_in_thread=True)}
    )
    adapter = desk.adapter(commands)
    await adapter.start()
    runner = asyncio.create_task(adapter.run())
    try:
        gateway = adapter.gateway
        root = await gateway.post_ticket(desk.room_id, ticket(), article(), "outbox-1")
        text = "✉ Reply by Vera goes out in 10 s (undo to stop it)."
        await gateway.post_notice(desk.room_id, root, text, "outbox-2", ["undo"])
        await gateway.post_notice(desk.room_id, root, text, "outbox-2", ["undo"])  # a retry

        volunteer = await desk.login(desk.volunteer_user, "VERAPHONE")
        events = await history(volunteer, desk.room_id)
        notice = messages(events, desk.bot_user)[-1]
        assert notice["content"]["msgtype"] == "m.notice"
        assert notice["content"]["body"] == (
            f"{text}\n(send !undo in this thread, or react ↩️ to this message, to stop it)"
        )
        [offered] = [e for e in events if e["type"] == "m.reaction"]
        assert offered["sender"] == desk.bot_user
        assert offered["content"]["m.relates_to"] == {
            "rel_type": "m.annotation",
            "event_id": notice["event_id"],
            "key": "↩️",
        }

        reaction = {
            "m.relates_to": {
                "rel_type": "m.annotation",
                "event_id": notice["event_id"],
                "key": "↩️",
            }
        }
        await volunteer.room_send(desk.room_id, "m.reaction", reaction)
        undo = await commands.nth(1)
        assert (undo.name, undo.args) == ("undo", "")
        assert undo.context.thread_ref == root  # the notice's thread is the ticket
        assert undo.actor.user_id == desk.volunteer_user

        link = gateway.link(desk.room_id, root)
        quoted_room = urllib.parse.quote(desk.room_id, safe="!")
        assert link == (
            f"https://matrix.to/#/{quoted_room}/{urllib.parse.quote(root, safe='$')}"
            f"?via={desk.synapse.server_name}"
        )
    finally:
        await adapter.stop()
        await asyncio.wait_for(runner, timeout=10)
