"""DiscordAdapter and DiscordGateway against the loopback Discord double (real discord.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from adapters.discord import DiscordAdapter, DiscordStartError
from bot.chat import ArticleView, TicketView
from bot.commands import COMMANDS, CommandRequest, CommandResult
from bot.config import DiscordConfig, QueueConfig
from bot.files import ResultFile
from bot.mail import AttachmentData
from tests.servers.discord_double import DiscordDouble

NUMBER = "2026112310000012"
EPHEMERAL = 64


class FakeCore:
    """Records requests; refuses whoever the queue's config refuses, like CommandService."""

    def __init__(self, queues: list[QueueConfig], delay: float = 0.0) -> None:
        self.queues = queues
        self.delay = delay
        self.requests: list[CommandRequest] = []
        #: Answers by command name, instead of the usual "done: NAME".
        self.results: dict[str, CommandResult] = {}
        #: Run while a command is carried out (after Discord created the interaction).
        self.during: Callable[[], None] | None = None

    async def execute(self, request: CommandRequest) -> CommandResult:
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        if self.during is not None:
            self.during()
        if request.name in self.results:
            return self.results[request.name]
        queue = next(
            (q for q in self.queues if str(q.discord_channel) == request.context.room), None
        )
        if queue is not None and not queue.may_act(request.actor):
            return CommandResult(
                False, f"Sorry, only volunteers of queue {queue.name} may act on its tickets."
            )
        if request.name == "show":
            return CommandResult(True, f"[Ticket#{NUMBER}] @everyone <@&1> [x](http://evil)")
        return CommandResult(True, f"done: {request.name}", NUMBER, shown_in_thread=True)


@dataclass
class Desk:
    double: DiscordDouble
    adapter: DiscordAdapter
    core: FakeCore
    guild: str
    queue: str
    public: str
    volunteers: str
    alice: str
    mallory: str

    async def post(self, key: str = "post-1", **changes: Any) -> str:
        return await self.adapter.gateway.post_ticket(
            self.queue, ticket_view(**changes), article_view(), key
        )

    async def request(self, count: int = 1) -> CommandRequest:
        await self.double.wait_for(lambda: len(self.core.requests) >= count)
        return self.core.requests[count - 1]


def ticket_view(**changes: Any) -> TicketView:
    fields: dict[str, Any] = {
        "number": NUMBER,
        "queue": "support",
        "state": "new",
        "owner": "",
        "requester": "Mallory <mallory@example.org>",
        "subject": "Printer on fire @everyone",
        "preview": "It burns.\n<@&1> [click](http://evil)",
        "created_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    }
    fields.update(changes)
    return TicketView(**fields)


def article_view(
    body: str = "It burns. @here https://example.org/x", **changes: Any
) -> ArticleView:
    fields: dict[str, Any] = {
        "kind": "inbound",
        "author": "Mallory <mallory@example.org>",
        "created_at": datetime(2026, 11, 23, 10, 5, tzinfo=UTC),
        "subject": "Printer on fire",
        "body": body,
    }
    fields.update(changes)
    return ArticleView(**fields)


async def started(
    double: DiscordDouble, guild: str, queues: list[QueueConfig], core: FakeCore
) -> DiscordAdapter:
    adapter = DiscordAdapter(
        DiscordConfig(double.token, int(guild)), queues, core, guild_ready_timeout=0.05
    )
    await adapter.start()
    return adapter


@pytest.fixture
async def desk(discord_double: DiscordDouble) -> AsyncIterator[Desk]:
    double = discord_double
    guild = double.add_guild("Help desk")
    volunteers = double.add_role(guild, "Volunteers")
    queue = double.add_channel(guild, "support", allow_roles=[volunteers])
    public = double.add_channel(guild, "lobby-queue", everyone_can_read=True)
    alice = double.add_member(guild, "alice", roles=[volunteers])
    mallory = double.add_member(guild, "mallory")
    queues = [
        QueueConfig(
            "support",
            ("support@example.org",),
            default=True,
            discord_channel=int(queue),
            discord_roles=(int(volunteers),),
        ),
        QueueConfig("lobby", ("lobby@example.org",), discord_channel=int(public)),
    ]
    core = FakeCore(queues)
    with double.patch_client():
        adapter = await started(double, guild, queues, core)
        runner = asyncio.create_task(adapter.run())
        try:
            yield Desk(double, adapter, core, guild, queue, public, volunteers, alice, mallory)
        finally:
            await adapter.stop()
            await asyncio.wait_for(runner, 5)


async def answers(double: DiscordDouble, interaction_id: str, count: int) -> list[dict[str, Any]]:
    """The interaction's callbacks and followups, once there are ``count`` of them."""
    await double.wait_for(lambda: len(double.interaction_responses(interaction_id)) >= count)
    return double.interaction_responses(interaction_id)


def bot_bodies(double: DiscordDouble) -> list[tuple[str, str, Any]]:
    """Every message body the bot sent or edited over REST (channels and interactions)."""
    found = []
    for request in double.requests:
        path = request.path.split("?")[0]
        if request.method in ("POST", "PATCH") and (
            re.fullmatch(r"/channels/\d+/messages(/\d+)?", path)
            or re.fullmatch(r"/webhooks/\d+/[^/]+(/messages/.+)?", path)
        ):
            found.append((request.method, path, request.json))
    return found


# --- posting ----------------------------------------------------------------------------------


async def test_post_ticket_makes_an_embed_with_buttons_and_a_thread(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    [message] = double.messages(desk.queue)
    assert message["id"] == root
    [embed] = message["embeds"]
    assert embed["title"] == f"[Ticket#{NUMBER}] Printer on fire @\u200beveryone"
    assert {f["name"] for f in embed["fields"]} == {"State", "Owner", "Queue", "Requester"}
    assert "\\<@&1\\>" in embed["description"] and "\\[click\\]" in embed["description"]
    [row] = message["components"]
    ids = [button["custom_id"] for button in row["components"]]
    assert ids == ["ticketbot:claim", "ticketbot:reply", "ticketbot:note", "ticketbot:close"]

    thread = double.threads[root]
    assert thread.parent_id == desk.queue and thread.message_id == root
    assert thread.name == f"Ticket#{NUMBER} Printer on fire @everyone"
    [first] = double.messages(root)
    assert first["content"].startswith("**✉ Email from Mallory \\<mallory@example.org\\>**")
    assert "@\u200bhere <https://example.org/x>" in first["content"]
    assert first["flags"] & 4  # SUPPRESS_EMBEDS: no link previews
    bodies = bot_bodies(double)
    assert len(bodies) == 3  # the warning in the public queue channel, the root, the article
    assert all(body["allowed_mentions"]["parse"] == [] for _, _, body in bodies)


async def test_update_ticket_edits_the_embed_and_keeps_the_buttons(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    changed = ticket_view(state="open", owner="alice")
    await desk.adapter.gateway.update_ticket(desk.queue, root, changed, "update-1")
    [edit] = double.edits
    assert edit.message_id == root and "components" not in edit.payload
    assert edit.payload["allowed_mentions"]["parse"] == []
    message = double.message(desk.queue, root)
    fields = {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}
    assert fields["State"] == "open" and fields["Owner"] == "alice"
    assert len(message["components"][0]["components"]) == 4


async def test_articles_notices_and_uploads(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    gateway = desk.adapter.gateway
    files = (
        AttachmentData("SPOILER_scan.pdf", "application/pdf", b"%PDF-1.4 scan"),
        AttachmentData("../photo.jpg", "image/jpeg", b"\xff\xd8 photo"),
    )
    ticket = ticket_view()
    await gateway.post_article(
        desk.queue, root, ticket, article_view("see files", files=files), "a1"
    )
    await gateway.post_article(desk.queue, root, ticket, article_view("x" * 50_000), "a2")
    await gateway.post_notice(desk.queue, root, "✋ Claimed by **@everyone**", "n1")
    messages = double.messages(root)
    assert len(messages) == 4
    assert [a["filename"] for a in messages[1]["attachments"]] == ["scan.pdf", "photo.jpg"]
    assert messages[2]["attachments"][0]["filename"] == f"ticket-{NUMBER}-inbound.txt"
    text = next(u for u in double.uploads if u.filename.endswith(".txt")).content.decode()
    assert text.endswith("x" * 50_000 + "\n")
    assert messages[3]["content"] == "✋ Claimed by \\*\\*@\u200beveryone\\*\\*"
    assert all(len(m["content"]) <= 2000 for m in messages)
    assert all(body["allowed_mentions"]["parse"] == [] for _, _, body in bot_bodies(double))


async def test_a_retry_after_a_failed_thread_does_not_post_a_second_root(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = desk.adapter.gateway
    create = gateway._create_thread
    calls = 0

    async def flaky(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise discord.HTTPException(SimpleNamespace(status=500, reason="boom"), "boom")
        await create(*args)

    monkeypatch.setattr(gateway, "_create_thread", flaky)
    with pytest.raises(discord.HTTPException):
        await desk.post("retry-key")
    root = await desk.post("retry-key")  # the outbox retries with the same key
    assert [m["id"] for m in desk.double.messages(desk.queue)] == [root]
    assert len(desk.double.messages(root)) == 1
    assert await desk.post("retry-key") == root  # and once more: nothing new
    assert len(desk.double.messages(root)) == 1


async def test_a_burst_into_a_rate_limited_thread_all_arrives(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    double.rate_limit(root, limit=3, per=0.3, already_used=3)  # someone else used it up
    for index in range(12):
        await desk.adapter.gateway.post_notice(
            desk.queue, root, f"notice {index}", f"burst-{index}"
        )
    contents = [m["content"] for m in double.messages(root)[1:]]
    assert contents == [f"notice {index}" for index in range(12)]
    assert double.rate_limited > 0


# --- commands, buttons, modals, reactions ------------------------------------------------------


async def test_commands_are_synced_to_the_guild(desk: Desk) -> None:
    synced = {c["name"]: c for c in desk.double.synced_commands[desk.guild]}
    assert set(synced) == set(COMMANDS)
    assert "global" not in desk.double.synced_commands
    assert len(synced) <= 100
    for name, command in synced.items():
        spec = COMMANDS[name]
        options = [o["name"] for o in command.get("options", [])]
        expected = (["number"] if spec.needs_ticket else []) + (["args"] if spec.takes_args else [])
        assert options == expected, name
        for option in command.get("options", []):
            assert option["type"] == 3 and not option.get("required")
            assert 0 < len(option["description"]) <= 100
        assert len(command["description"]) <= 100
    assert [o["name"] for o in synced["search"]["options"]] == ["args"]
    assert [o["name"] for o in synced["pending"]["options"]] == ["number", "args"]
    assert "options" not in synced["help"] or synced["help"]["options"] == []


async def test_slash_claim_inside_the_thread(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    iid = await double.slash(desk.alice, root, "claim")
    request = await desk.request()
    assert request.name == "claim" and request.args == ""
    assert request.context.thread_ref == root and request.context.room == desk.queue
    assert request.actor.user_id == f"discord:{desk.alice}"
    assert f"discord-role:{desk.volunteers}" in request.actor.roles
    responses = await answers(double, iid, 2)
    assert responses[0] == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert responses[1]["type"] == "followup"
    assert responses[1]["data"]["content"] == "done: claim"
    assert responses[1]["data"]["flags"] & EPHEMERAL
    assert responses[1]["data"]["allowed_mentions"]["parse"] == []


async def test_slash_with_a_number_and_show_output(desk: Desk) -> None:
    double = desk.double
    iid = await double.slash(desk.alice, desk.queue, "show", {"number": f"#{NUMBER}"})
    request = await desk.request()
    assert request.args == NUMBER and request.context.thread_ref is None
    followup = (await double.wait_for(lambda: double.interaction_responses(iid)[1]))["data"]
    assert followup["flags"] & EPHEMERAL
    assert followup["content"] == (
        f"\\[Ticket#{NUMBER}\\] @\u200beveryone \\<@&1\\> \\[x\\](<http://evil>)"
    )


async def test_a_member_without_access_is_refused_ephemerally(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    iid = await double.slash(desk.mallory, root, "claim")
    await desk.request()
    followup = (await double.wait_for(lambda: double.interaction_responses(iid)[1]))["data"]
    assert followup["content"].startswith("Sorry, only volunteers of queue support")
    assert followup["flags"] & EPHEMERAL
    assert len(double.messages(root)) == 1  # nothing in the thread


async def test_reply_button_opens_a_modal_and_submitting_runs_reply(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    iid = await double.click_button(desk.alice, desk.queue, root, "ticketbot:reply")
    modal = await double.wait_for(lambda: double.interaction_responses(iid)[0])
    assert modal["type"] == 9 and desk.core.requests == []
    custom_id = modal["data"]["custom_id"]
    submit = await double.submit_modal(
        desk.alice, desk.queue, custom_id, {"ticketbot:text": "Dear Mallory,\n\nfixed."}
    )
    request = await desk.request()
    assert request.name == "reply" and request.args == "Dear Mallory,\n\nfixed."
    assert request.context.thread_ref == root and request.context.room == desk.queue
    answered = await answers(double, submit, 2)
    assert answered[0]["type"] == 5 and answered[1]["data"]["flags"] & EPHEMERAL


async def test_slash_reply_with_a_number_remembers_it_in_the_modal(desk: Desk) -> None:
    double = desk.double
    iid = await double.slash(desk.alice, desk.queue, "reply", {"number": NUMBER})
    modal = (await double.wait_for(lambda: double.interaction_responses(iid)[0]))["data"]
    assert NUMBER in modal["title"]
    await double.submit_modal(desk.alice, desk.queue, modal["custom_id"], {"ticketbot:text": "Hi"})
    request = await desk.request()
    assert request.args == f"{NUMBER} Hi" and request.context.thread_ref is None


async def test_claim_and_close_buttons_run_directly(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    await double.click_button(desk.alice, desk.queue, root, "ticketbot:claim")
    await double.click_button(desk.alice, desk.queue, root, "ticketbot:close")
    requests = [await desk.request(1), await desk.request(2)]
    assert sorted(r.name for r in requests) == ["claim", "close"]
    assert all(r.context.thread_ref == root for r in requests)


async def test_reactions_claim_and_close(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    await double.react(desk.alice, desk.queue, root, "✋")
    claim = await desk.request()
    assert claim.name == "claim" and claim.context.thread_ref == root
    assert claim.context.room == desk.queue
    first_in_thread = double.messages(root)[0]["id"]
    await double.react(desk.alice, root, first_in_thread, "✔️")
    close = await desk.request(2)
    assert close.name == "close" and close.context.thread_ref == root
    await double.react(desk.alice, desk.queue, root, "👍")
    await asyncio.sleep(0.1)
    assert len(desk.core.requests) == 2


async def test_a_refused_reaction_is_answered_in_the_thread_without_a_ping(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    await double.react(desk.mallory, desk.queue, root, "✋")
    answer = await double.wait_for(lambda: double.messages(root)[1])
    assert answer["content"].startswith("mallory: Sorry, only volunteers of queue support")
    assert double.payloads[answer["id"]]["allowed_mentions"]["parse"] == []


async def test_the_bots_own_reactions_are_ignored(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    await double.react(double.bot_user_id, desk.queue, root, "✋")
    await asyncio.sleep(0.2)
    assert desk.core.requests == []


async def test_answers_arrive_after_the_three_seconds_thanks_to_defer(desk: Desk) -> None:
    double = desk.double
    double.ack_deadline = 0.5
    desk.core.delay = 1.0  # slower than the deadline
    root = await desk.post()
    iid = await double.slash(desk.alice, root, "close")
    answered = await answers(double, iid, 2)
    assert answered[0]["type"] == 5 and answered[1]["data"]["content"] == "done: close"


async def test_slash_search_with_args_and_no_number(desk: Desk) -> None:
    double = desk.double
    iid = await double.slash(desk.alice, desk.queue, "search", {"args": "state:open licence"})
    request = await desk.request()
    assert request.name == "search" and request.args == "state:open licence"
    assert request.context.thread_ref is None and request.context.room == desk.queue
    await answers(double, iid, 2)


async def test_slash_number_then_args_and_merge_in_the_thread(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    await double.slash(desk.alice, desk.queue, "pending", {"number": NUMBER, "args": "3d"})
    pending = await desk.request()
    assert pending.args == f"{NUMBER} 3d" and pending.context.thread_ref is None
    other = "2026112310000099"
    await double.slash(desk.alice, root, "merge", {"args": f"#{other}"})
    merge = await desk.request(2)
    assert merge.name == "merge" and merge.args == other
    assert merge.context.thread_ref == root and merge.context.room == desk.queue


# --- pings, notice buttons, links and moves -------------------------------------------------


async def test_a_ping_mentions_only_the_listed_users(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    gateway = desk.adapter.gateway
    users = [f"discord:{desk.alice}", "@vera:example.org", "console:x", f"discord:{desk.alice}"]
    text = f"⏰ [Ticket#{NUMBER}] waits for an answer @everyone <@{desk.mallory}> <@&1>"
    await gateway.post_ping(desk.queue, root, text, users, "ping-1")
    ping = double.messages(root)[-1]
    assert ping["content"] == (
        f"🔔 <@{desk.alice}>\n⏰ \\[Ticket#{NUMBER}\\] waits for an answer @\u200beveryone "
        f"\\<@\u200b{desk.mallory}\\> \\<@&1\\>"
    )
    allowed = double.payloads[ping["id"]]["allowed_mentions"]
    assert allowed["parse"] == []  # no @everyone, no roles, no user found in the text
    assert [str(user) for user in allowed["users"]] == [desk.alice]
    assert not allowed.get("replied_user")

    await gateway.post_ping(desk.queue, None, "2 tickets wait in queue support", users, "ping-2")
    in_channel = double.messages(desk.queue)[-1]
    assert in_channel["content"] == f"🔔 <@{desk.alice}>\n2 tickets wait in queue support"
    assert double.payloads[in_channel["id"]]["allowed_mentions"]["users"] == [int(desk.alice)]

    await gateway.post_ping(desk.queue, root, "for Matrix only", ["@vera:example.org"], "ping-3")
    nobody = double.messages(root)[-1]
    assert "<@" not in nobody["content"]
    allowed = double.payloads[nobody["id"]]["allowed_mentions"]
    assert allowed["parse"] == [] and not allowed.get("users")


async def test_undo_button_on_a_notice_runs_undo_for_the_thread(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    gateway = desk.adapter.gateway
    text = "✉ Reply by alice goes out in 10 s (undo to stop it)."
    await gateway.post_notice(desk.queue, root, text, "notice-1", ["undo"])
    notice = double.messages(root)[-1]
    assert notice["content"] == text
    [row] = notice["components"]
    assert [b["custom_id"] for b in row["components"]] == ["ticketbot:undo"]
    assert row["components"][0]["label"] == "Undo"
    assert double.payloads[notice["id"]]["allowed_mentions"]["parse"] == []

    iid = await double.click_button(desk.alice, root, notice["id"], "ticketbot:undo")
    undo = await desk.request()
    assert undo.name == "undo" and undo.args == ""
    assert undo.context.thread_ref == root and undo.context.room == desk.queue
    assert undo.actor.user_id == f"discord:{desk.alice}"
    responses = await answers(double, iid, 2)
    assert responses[1]["data"]["content"] == "done: undo"
    assert responses[1]["data"]["flags"] & EPHEMERAL

    await gateway.post_notice(desk.queue, root, "plain", "notice-2")
    assert double.messages(root)[-1]["components"] == []


async def test_approve_notice_has_a_button_and_a_check_mark_approves_after_a_restart(
    desk: Desk,
) -> None:
    double = desk.double
    root = await desk.post()
    gateway = desk.adapter.gateway
    text = "📝 Draft reply by tom (trainee) waits for a volunteer of support: approve sends it."
    await gateway.post_notice(desk.queue, root, text, "draft-1", ["approve"])
    notice = double.messages(root)[-1]
    [row] = notice["components"]
    [button] = row["components"]
    assert button["custom_id"] == "ticketbot:approve" and button["label"] == "Approve"
    assert button["style"] == discord.ButtonStyle.success.value
    await gateway.post_notice(desk.queue, root, "✋ Claimed by alice", "plain-1")
    plain = double.messages(root)[-1]

    # a fresh process: nothing cached, the notice's buttons are read from Discord
    await desk.adapter.stop()
    core = FakeCore(desk.core.queues)
    again = await started(double, desk.guild, desk.core.queues, core)
    try:
        await double.react(desk.alice, root, notice["id"], "✅")
        await double.wait_for(lambda: core.requests)
        assert core.requests[0].name == "approve"
        assert core.requests[0].context.thread_ref == root
        assert any(r.path == f"/channels/{root}/messages/{notice['id']}" for r in double.requests)
        await double.react(desk.alice, root, plain["id"], "✅")  # any other message: close
        await double.wait_for(lambda: len(core.requests) == 2)
        assert core.requests[1].name == "close"
        await double.react(desk.alice, desk.queue, root, "✅")  # the root: close
        await double.wait_for(lambda: len(core.requests) == 3)
        assert core.requests[2].name == "close"
        await double.click_button(desk.alice, root, notice["id"], "ticketbot:approve")
        await double.wait_for(lambda: len(core.requests) == 4)
        assert core.requests[3].name == "approve"
        assert core.requests[3].context.thread_ref == root
    finally:
        await again.stop()


# --- files and private answers ------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


async def test_an_answers_files_are_attached_to_it(desk: Desk) -> None:
    double = desk.double
    files = (
        ResultFile("traffic-2026-W47.png", "image/png", PNG),
        ResultFile("response times", "image/png", PNG + b"2"),  # shown inline: .png added
        ResultFile("SPOILER_traffic.csv", "text/csv", b"day,new\n2026-11-23,4\n"),
    )
    desk.core.results["queue"] = CommandResult(True, "Traffic, week 47 @everyone", files=files)
    iid = await double.slash(desk.alice, desk.queue, "queue", {"args": "stats"})
    [defer, followup] = await answers(double, iid, 2)
    assert defer == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert followup["data"]["flags"] & EPHEMERAL
    assert followup["data"]["content"] == "Traffic, week 47 @\u200beveryone"
    message = double.message(desk.queue, followup["message_id"])
    assert message["flags"] & EPHEMERAL
    assert [a["filename"] for a in message["attachments"]] == [
        "traffic-2026-W47.png",
        "response times.png",
        "traffic.csv",  # never hidden behind a spoiler
    ]
    assert [u.content for u in double.uploads] == [f.data for f in files]
    assert double.messages(desk.queue) == []  # nothing posted in the channel


async def test_files_beyond_discords_limits_are_named_instead(desk: Desk) -> None:
    double = desk.double
    double.attachment_size_limit = 5000  # what this server allows, told in the interaction
    big = ResultFile("all-tickets.csv", "text/csv", b"x" * 6000)
    charts = [ResultFile(f"chart-{i}.png", "image/png", PNG) for i in range(12)]
    desk.core.results["audit"] = CommandResult(True, "Audit log", files=(big, *charts))
    iid = await double.slash(desk.alice, desk.queue, "audit")
    [_, answer, note] = await answers(double, iid, 3)
    message = double.message(desk.queue, answer["message_id"])
    assert answer["data"]["content"] == "Audit log"
    assert [a["filename"] for a in message["attachments"]] == [f"chart-{i}.png" for i in range(10)]
    assert note["data"]["flags"] & EPHEMERAL
    assert note["data"]["content"].splitlines() == [
        "📎 Not attached (Discord takes 10 files and 5 KB per message):",
        "• all-tickets.csv (text/csv, 6,000 bytes)",
        "• chart-10.png (image/png, 48 bytes)",
        "• chart-11.png (image/png, 48 bytes)",
    ]
    assert double.rate_limited == 0 and double.server_errors == []


async def test_files_discord_refuses_leave_the_text(desk: Desk) -> None:
    double = desk.double
    chart = ResultFile("traffic.png", "image/png", PNG)
    desk.core.results["queue"] = CommandResult(True, "Traffic", files=(chart,))

    def shrink() -> None:  # the server lost its boost after the interaction was made
        double.attachment_size_limit = 10

    desk.core.during = shrink
    iid = await double.slash(desk.alice, desk.queue, "queue", {"args": "stats"})
    [_, answer] = await answers(double, iid, 2)
    assert answer["data"]["content"] == "Traffic\n📎 Discord refused the files: traffic.png"
    assert double.message(desk.queue, answer["message_id"])["attachments"] == []
    assert answer["data"]["flags"] & EPHEMERAL


# --- the weekly report ---------------------------------------------------------------------------


async def test_a_report_is_one_message_with_its_files(desk: Desk) -> None:
    double = desk.double
    files = (
        ResultFile("traffic-2026-W47.png", "image/png", PNG),
        ResultFile("SPOILER_traffic.csv", "text/csv", b"day,new\n2026-11-23,4\n"),
    )
    text = "📊 Weekly traffic report @everyone\n12 new, 9 closed <@&1>"
    await desk.adapter.gateway.post_report(desk.queue, text, files, "weekly-1")
    await desk.adapter.gateway.post_report(desk.queue, text, files, "weekly-1")  # a retry
    [message] = double.messages(desk.queue)
    assert message["content"] == (
        "📊 Weekly traffic report @\u200beveryone\n12 new, 9 closed \\<@&1\\>"
    )
    assert [a["filename"] for a in message["attachments"]] == [
        "traffic-2026-W47.png",
        "traffic.csv",
    ]
    assert [u.content for u in double.uploads] == [f.data for f in files]
    assert message["flags"] & 4  # no link previews
    [(_, _, body)] = [b for b in bot_bodies(double) if b[1] == f"/channels/{desk.queue}/messages"]
    assert body["allowed_mentions"]["parse"] == []


async def test_a_reports_files_beyond_discords_limits_are_named(desk: Desk) -> None:
    double = desk.double
    big = ResultFile("all-tickets.csv", "text/csv", b"x" * (11 << 20))  # over 10 MiB
    charts = [ResultFile(f"chart-{i}.png", "image/png", PNG) for i in range(11)]
    await desk.adapter.gateway.post_report(desk.queue, "Report", (big, *charts), "weekly-2")
    [message] = double.messages(desk.queue)
    assert [a["filename"] for a in message["attachments"]] == [f"chart-{i}.png" for i in range(10)]
    assert message["content"].splitlines() == [
        "Report",
        "",
        "📎 Not attached (Discord takes 10 files and 10 MB per message):",
        "• all-tickets.csv (text/csv, 11,534,336 bytes)",
        "• chart-10.png (image/png, 48 bytes)",
    ]


async def test_a_report_whose_files_are_refused_still_posts_its_text(desk: Desk) -> None:
    double = desk.double
    double.attachment_size_limit = 10
    chart = ResultFile("traffic.png", "image/png", PNG)
    await desk.adapter.gateway.post_report(desk.queue, "Report", (chart,), "weekly-3")
    text, refused = double.messages(desk.queue)
    assert (text["content"], text["attachments"]) == ("Report", [])
    assert refused["content"] == "📎 Discord refused the files: traffic.png"


async def test_a_private_answer_is_ephemeral(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    desk.core.results["reveal"] = CommandResult(
        True, f"Ticket {NUMBER}: the requester is <mallory@example.org>.", NUMBER, private=True
    )
    iid = await double.slash(desk.alice, root, "reveal")
    [defer, answer] = await answers(double, iid, 2)
    assert defer["data"]["flags"] & EPHEMERAL and answer["data"]["flags"] & EPHEMERAL
    assert "mallory@example.org" in answer["data"]["content"]
    assert double.message(root, answer["message_id"])["flags"] & EPHEMERAL
    assert len(double.messages(root)) == 1  # the thread still holds only the mail


async def test_link_and_a_moved_ticket_loses_its_buttons(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    gateway = desk.adapter.gateway
    link = gateway.link(desk.queue, root)
    assert link == f"https://discord.com/channels/{desk.guild}/{root}"
    moved = replace(ticket_view(state="open"), moved_to=f"queue info: {link}")
    await gateway.update_ticket(desk.queue, root, moved, "move-1")
    message = double.message(desk.queue, root)
    assert message["components"] == []
    fields = {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}
    assert fields == {"State": f"moved · now queue info: <{link}>"}


# --- connection and start-up ------------------------------------------------------------------


async def test_events_still_arrive_after_the_connection_drops(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    await double.drop_connection()
    await double.react(desk.alice, desk.queue, root, "✋")  # sent while disconnected
    await desk.request()
    await double.wait_for(lambda: double.resumes >= 1)
    await double.slash(desk.alice, root, "unclaim")
    assert (await desk.request(2)).name == "unclaim"


async def test_a_public_queue_channel_gets_a_warning(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    [warning] = desk.double.messages(desk.public)
    assert "everyone in this server can read this channel" in warning["content"]
    assert "no tickets of queue lobby are posted here" in warning["content"]
    assert desk.double.messages(desk.queue) == []  # the private one does not
    loud = [
        r
        for r in caplog.get_records("setup")
        if r.levelno == logging.WARNING and "READABLE BY EVERYONE" in r.getMessage()
    ]
    assert len(loud) == 1 and "lobby-queue" in loud[0].getMessage()


async def test_a_public_channel_an_admin_allowed_gets_no_warning(
    discord_double: DiscordDouble,
) -> None:
    double = discord_double
    guild = double.add_guild("Help desk")
    lobby = double.add_channel(guild, "lobby", everyone_can_read=True)
    queues = [
        QueueConfig("lobby", ("lobby@example.org",), discord_channel=int(lobby), public_ok=True)
    ]
    with double.patch_client():
        adapter = await started(double, guild, queues, FakeCore(queues))
        try:
            assert (await adapter.inspector.check_room(lobby)).public  # still public
            assert double.messages(lobby) == []  # but allowed: no warning
        finally:
            await adapter.stop()


async def test_buttons_on_old_messages_work_after_a_restart(desk: Desk) -> None:
    double = desk.double
    root = await desk.post()
    await desk.adapter.stop()
    core = FakeCore(desk.core.queues)
    queues = desk.core.queues
    again = await started(double, desk.guild, queues, core)
    try:
        await double.click_button(desk.alice, desk.queue, root, "ticketbot:close")
        await double.wait_for(lambda: core.requests)
        assert core.requests[0].name == "close" and core.requests[0].context.thread_ref == root
    finally:
        await again.stop()


async def test_intents_are_not_privileged(desk: Desk) -> None:
    intents = discord.Intents._from_value(desk.double.intents)
    assert intents.guilds and intents.guild_messages and intents.guild_reactions
    assert not intents.message_content and not intents.members and not intents.presences


async def test_a_wrong_token_stops_the_start(discord_double: DiscordDouble) -> None:
    guild = discord_double.add_guild("Help desk")
    adapter = DiscordAdapter(DiscordConfig("wrong", int(guild)), [], FakeCore([]))
    with discord_double.patch_client(), pytest.raises(DiscordStartError, match="token"):
        await adapter.start()
    assert adapter.client.is_closed()


async def test_a_server_the_bot_is_not_in_stops_the_start(discord_double: DiscordDouble) -> None:
    discord_double.add_guild("Help desk")
    config = DiscordConfig(discord_double.token, 1234567890123456789)
    adapter = DiscordAdapter(config, [], FakeCore([]), guild_ready_timeout=0.05)
    with discord_double.patch_client(), pytest.raises(DiscordStartError, match="not a member"):
        await adapter.start()
    assert adapter.client.is_closed()
