"""Admins run the desk from Matrix, on real servers: Synapse, Dovecot (IMAP) and an SMTP capture.

The app is built as ``ticketbot run`` builds it. An admin (named in ``admins``) adds a
queue by command, invites the bot to a new private room and binds the queue there,
grants a volunteer access; the next mail to the new address becomes a ticket in that
room and the volunteer works it, until the access is revoked. Public rooms are refused
unless an admin insists (and the audit log says so), ``reveal`` answers by direct message,
and a trainee's draft goes out once a volunteer approves it with ✅.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import Config, parse_config
from bot.domain import ArticleKind
from tests.e2e.test_email_matrix_loop import messages, wait_for
from tests.e2e.test_lifecycle_matrix import (
    MARIA,
    QUIET_REMINDERS,
    ChatRoom,
    Person,
    eventually,
    imap_section,
    new_ticket,
    running,
    ticket,
)
from tests.fakes import FakeClock
from tests.servers.dovecot import ImapAccount
from tests.servers.smtp import SmtpCapture
from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.servers


# --- people, rooms and the app -------------------------------------------------------------------


@dataclass
class Desk:
    """ada runs the desk (``admins``), vera volunteers in info, tom is a trainee-to-be and
    mallory works in no queue; the bot has an account of its own."""

    synapse: SynapseServer
    ada: Person
    vera: Person
    tom: Person
    mallory: Person
    bot_id: str

    async def room(
        self, name: str, members: list[Person], preset: str = "private_chat"
    ) -> ChatRoom:
        """A room ada creates and invites the bot to; ``members`` are invited and join."""
        invite = [self.bot_id, *(m.user_id for m in members)]
        room_id = await asyncio.to_thread(
            self.synapse.create_room, self.ada.token, invite, name, preset
        )
        for member in members:
            await asyncio.to_thread(self.synapse.join, member.token, room_id)
        return ChatRoom(self.synapse, room_id, self.ada)

    def bot_joined(self, room: ChatRoom) -> bool:
        path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room.room_id, safe='')}"
        answer = self.synapse.request("GET", f"{path}/joined_members", token=self.ada.token)
        return self.bot_id in answer["joined"]

    async def command(self, room: ChatRoom, who: Person, text: str, root: str = "") -> str:
        """Say ``text`` in ``room`` (in ``root``'s thread if given); the bot's answer."""
        if root:
            event = await asyncio.to_thread(room.say_in_thread, who, root, text)
        else:
            event = await asyncio.to_thread(room.say, who, text)
        answer: str = await wait_for(f"the answer to {text!r}", lambda: room.answer_to(event))
        return answer


@pytest.fixture
async def desk(synapse: SynapseServer) -> Desk:
    suffix = uuid.uuid4().hex[:8]

    async def person(name: str) -> Person:
        return Person(*await asyncio.to_thread(synapse.register, f"{name}{suffix}", "pw"))

    ada, vera, tom, mallory = [await person(n) for n in ("ada", "vera", "tom", "mallory")]
    await asyncio.to_thread(synapse.register, f"ticketbot{suffix}", "bot-pw")
    bot_id = f"@ticketbot{suffix}:{synapse.server_name}"
    return Desk(synapse, ada, vera, tom, mallory, bot_id)


def desk_config(
    tmp_path: Path,
    desk: Desk,
    imap: ImapAccount,
    smtp: SmtpCapture,
    queues: list[dict[str, Any]],
) -> Config:
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path}/desk.db"},
        "mail": {
            "imap": imap_section(imap),
            "smtp": {"host": smtp.host, "port": smtp.port, "security": "none"},
        },
        "matrix": {"homeserver": desk.synapse.url, "user_id": desk.bot_id, "password": "bot-pw"},
        "tickets": {"undo_seconds": 0},
        "reminders": QUIET_REMINDERS,
        "admins": [desk.ada.user_id],
        "queue": queues,
    }
    return parse_config(data, tmp_path / "bot.toml", {})


def info_queue(room: ChatRoom, desk: Desk) -> dict[str, Any]:
    return {
        "name": "info",
        "addresses": ["info@example.org"],
        "matrix_room": room.room_id,
        "volunteers": [desk.vera.user_id],
        "default": True,
    }


async def owned_by(app: App, number: str, user_id: str) -> bool:
    return (await ticket(app, number)).owner == user_id


async def count(app: App, number: str, kind: ArticleKind) -> int:
    found = await ticket(app, number)
    assert found.id is not None
    ticket_id = found.id
    articles = await app.store.run(lambda repo: repo.articles(ticket_id))
    return sum(1 for a in articles if a.kind is kind)


# --- a queue added, bound, staffed and unstaffed by command --------------------------------------


async def test_an_admin_adds_binds_and_staffs_a_queue_and_access_follows_at_once(
    tmp_path: Path, desk: Desk, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    info = await desk.room("info", [desk.vera, desk.mallory])
    config = desk_config(tmp_path, desk, imap_account, smtp_capture, [info_queue(info, desk)])
    async with running(config, FakeClock()) as app:
        await wait_for("the bot in the info room", lambda: desk.bot_joined(info))

        # (a) not an admin: refused, and nothing changes
        before = app.live.current
        refusal = await desk.command(
            info, desk.mallory, "!queue add press --address press@example.org"
        )
        assert refusal.startswith("Sorry, queue is for admins")
        assert app.live.current == before
        assert app.live.current.find_queue("press") is None

        # (b) the admin adds the queue, invites the bot to a new private room and binds it
        added = await desk.command(info, desk.ada, "!queue add press --address press@example.org")
        assert added.startswith("Queue press added (press@example.org)")
        press = await desk.room("press", [desk.vera])
        await wait_for("the bot accepting the admin's invite", lambda: desk.bot_joined(press))
        bound = await desk.command(press, desk.ada, "!queue bind press")
        assert bound == "Queue press is bound to this room; new tickets appear here."
        assert app.live.current.queue("press").matrix_room == press.room_id
        assert app.matrix.handler.rooms[press.room_id] == press.room_id
        granted = await desk.command(press, desk.ada, f"!access grant {desk.vera.user_id} press")
        assert "now has act access to press" in granted

        root, number = await new_ticket(
            press,
            imap_account,
            "Interview request",
            "Could someone from your team talk to our radio show?",
            to="press@example.org",
        )
        assert (await ticket(app, number)).queue == "press"
        assert info.root_for("Interview request") is None
        await asyncio.to_thread(press.say_in_thread, desk.vera, root, "!claim")
        await eventually("vera's claim", lambda: owned_by(app, number, desk.vera.user_id))
        await wait_for("the claim notice", lambda: "Claimed by" in press.thread_text(root))

        # (c) revoked: the volunteer's very next command is refused, nothing is added
        revoked = await desk.command(press, desk.ada, f"!access revoke {desk.vera.user_id} press")
        assert "no longer has access to press" in revoked
        notes_before = await count(app, number, ArticleKind.NOTE)
        refused = await desk.command(press, desk.vera, "!note calling them back", root)
        assert refused == "Sorry, only volunteers of queue press may act on its tickets."
        refused = await desk.command(press, desk.vera, "!unclaim", root)
        assert refused == "Sorry, only volunteers of queue press may act on its tickets."
        assert await count(app, number, ArticleKind.NOTE) == notes_before
        assert (await ticket(app, number)).owner == desk.vera.user_id
        await asyncio.sleep(1.0)
        bot_says = [e["content"]["body"] for e in press.thread(root) if e["sender"] == desk.bot_id]
        assert not any("Internal note" in body for body in bot_says)


# --- public rooms --------------------------------------------------------------------------------


async def test_public_rooms_are_refused_unless_an_admin_insists_and_that_is_audited(
    tmp_path: Path, desk: Desk, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    info = await desk.room("info", [desk.vera])
    lobby = await desk.room("lobby", [], preset="public_chat")
    queues = [
        info_queue(info, desk),
        {"name": "lobby", "addresses": ["lobby@example.org"], "matrix_room": lobby.room_id},
    ]
    config = desk_config(tmp_path, desk, imap_account, smtp_capture, queues)
    async with running(config, FakeClock()) as app:
        # bound in bot.toml to a public room: kept out of use from the start
        await eventually("the privacy check at start", lambda: _blocked(app, lobby.room_id))
        reason = app.live.blocked[("matrix", lobby.room_id)]
        assert "join rule public" in reason
        assert app.live.current.queue("lobby").matrix_room is None
        assert lobby.room_id not in app.matrix.handler.rooms
        assert app.live.current.queue("info").matrix_room == info.room_id

        # binding a public room by command is refused ...
        await desk.command(info, desk.ada, "!queue add town --address town@example.org")
        hall = await desk.room("town hall", [], preset="public_chat")
        await wait_for("the bot in the public room", lambda: desk.bot_joined(hall))
        refused = await desk.command(hall, desk.ada, "!queue bind town")
        assert refused.startswith("Refused: this room is public (anyone may join it")
        assert app.live.current.queue("town").matrix_room is None
        assert hall.room_id not in app.matrix.handler.rooms

        # ... unless the admin insists, which the audit log records
        allowed = await desk.command(hall, desk.ada, "!queue bind town --public-ok")
        assert allowed == "Queue town is bound to this room; new tickets appear here."
        assert app.live.current.queue("town").public_ok
        assert app.matrix.handler.rooms[hall.room_id] == hall.room_id
        audit = await desk.command(info, desk.ada, "!audit")
        [override] = [line for line in audit.splitlines() if "privacy.override" in line]
        assert desk.ada.user_id.lstrip("@") in override
        assert f"town bound to public matrix room {hall.room_id}" in override

        await new_ticket(
            hall, imap_account, "Open day", "When is the open day?", to="town@example.org"
        )


async def _blocked(app: App, room_id: str) -> bool:
    return ("matrix", room_id) in app.live.blocked


# --- reveal by direct message --------------------------------------------------------------------


async def test_reveal_reaches_the_asker_by_direct_message_and_never_the_room(
    tmp_path: Path, desk: Desk, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    info = await desk.room("info", [desk.vera, desk.mallory])
    config = desk_config(tmp_path, desk, imap_account, smtp_capture, [info_queue(info, desk)])
    async with running(config, FakeClock()):
        await wait_for("the bot in the info room", lambda: desk.bot_joined(info))
        done = await desk.command(info, desk.ada, "!privacy pseudonymize info on")
        assert done.startswith("Queue info: chat now shows requesters as pseudonyms")
        root, number = await new_ticket(
            info, imap_account, "Photo licence", "May I print the lighthouse photo?"
        )
        assert MARIA not in str(info.events()), "pseudonyms: the address is not shown"

        said = await desk.command(info, desk.vera, "!reveal", root)
        assert said == "🔒 Sent you a direct message."

        def invited_dm() -> str | None:
            sync = desk.synapse.request(
                "GET", "/_matrix/client/v3/sync?timeout=0", token=desk.vera.token
            )
            invites = sync.get("rooms", {}).get("invite", {})
            return next(iter(invites), None)

        dm_id = await wait_for("vera's invite to a direct room", invited_dm)
        await asyncio.to_thread(desk.synapse.join, desk.vera.token, dm_id)
        dm = ChatRoom(desk.synapse, dm_id, desk.vera)
        [answer] = [e for e in messages(dm.events()) if e["sender"] == desk.bot_id]
        assert answer["content"]["body"] == (
            f"Ticket {number}: the requester is Maria Lopez <{MARIA}>."
        )
        members = desk.synapse.request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(dm_id, safe='')}/joined_members",
            token=desk.vera.token,
        )["joined"]
        assert set(members) == {desk.vera.user_id, desk.bot_id}, "nobody else reads it"

        # the room never shows it, not to mallory either, and the audit log says who looked
        assert MARIA not in str(info.events())
        assert "the requester is" not in str(info.events())
        audit = await desk.command(info, desk.ada, f"!audit --ticket {number}")
        assert f"{desk.vera.user_id.lstrip('@')} ticket.reveal" in audit.replace("\u200d", "")


# --- a trainee's draft, approved with ✅ ---------------------------------------------------------


async def test_a_volunteers_check_mark_sends_a_trainees_draft_exactly_once(
    tmp_path: Path, desk: Desk, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    info = await desk.room("info", [desk.vera, desk.tom])
    config = desk_config(tmp_path, desk, imap_account, smtp_capture, [info_queue(info, desk)])
    async with running(config, FakeClock()) as app:
        await wait_for("the bot in the info room", lambda: desk.bot_joined(info))
        granted = await desk.command(
            info, desk.ada, f"!access grant {desk.tom.user_id} info trainee"
        )
        assert "now has trainee access to info" in granted
        root, number = await new_ticket(
            info, imap_account, "Opening hours", "When are you open on Sundays?"
        )

        await asyncio.to_thread(
            info.say_in_thread, desk.tom, root, "!reply We open at ten on Sundays."
        )

        def draft_notice() -> dict[str, Any] | None:
            for event in info.thread(root):
                if event["content"].get("body", "").startswith("📝 Draft reply by"):
                    return event
            return None

        notice = await wait_for("the draft's notice", draft_notice)
        assert "react ✅ to this message, to send it" in notice["content"]["body"]
        await asyncio.sleep(1.0)
        assert smtp_capture.messages == [], "a draft waits for approval"

        check_mark = {"rel_type": "m.annotation", "event_id": notice["event_id"], "key": "✅"}
        await asyncio.to_thread(info.send, desk.vera, "m.reaction", {"m.relates_to": check_mark})
        [sent] = await asyncio.to_thread(smtp_capture.wait_for, 1, 20.0)
        assert sent.rcpt_tos == (MARIA,)
        assert "We open at ten on Sundays." in sent.message.get_content()
        await wait_for("the approval notice", lambda: "approved by" in info.thread_text(root))

        # approving again finds nothing to send; the ticket was never closed
        again = await desk.command(info, desk.vera, "!approve", root)
        assert again == f"Ticket {number} has no draft reply waiting for approval."
        await asyncio.sleep(1.0)
        assert len(smtp_capture.messages) == 1
        assert not (await ticket(app, number)).state.is_closed


# --- stats over a desk with a few thousand tickets -----------------------------------------------


async def test_stats_posts_charts_whose_table_matches_a_count_of_the_tickets(
    tmp_path: Path, desk: Desk, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    from datetime import date

    from tests.reports.seed import generate, seed_database

    seeded = seed_database(
        f"sqlite:///{tmp_path}/desk.db", generate(date(2026, 11, 22), 30, seed=5, scale=4.0)
    )
    first, last = date(2026, 11, 1), date(2026, 11, 14)
    expected: dict[str, int] = {}
    for t in seeded.tickets:
        if first <= t.created_at.date() <= last:
            expected[t.queue] = expected.get(t.queue, 0) + 1
    assert sum(expected.values()) > 1000, "a few thousand tickets in all, over a thousand here"

    info = await desk.room("info", [desk.vera, desk.mallory])
    config = desk_config(tmp_path, desk, imap_account, smtp_capture, [info_queue(info, desk)])
    async with running(config, FakeClock()) as app:
        await wait_for("the bot in the info room", lambda: desk.bot_joined(info))
        table = await desk.command(info, desk.ada, "!stats --from 2026-11-01 --to 2026-11-14")
        rows = {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}
        for queue, received in expected.items():
            assert rows[queue][1] == str(received), (queue, rows.get(queue))

        def images() -> list[dict[str, Any]] | None:
            found = [
                e
                for e in messages(info.events())
                if e["sender"] == desk.bot_id and e["content"].get("msgtype") == "m.image"
            ]
            return found if len(found) >= 2 else None

        charts = await wait_for("the two charts", images)
        for event in charts:
            content = event["content"]
            assert content["info"]["mimetype"] == "image/png"
            assert 10_000 < content["info"]["size"] < 500_000
            assert content["info"]["w"] >= 600 and content["info"]["h"] >= 400
            assert content["url"].startswith("mxc://")
        # a volunteer sees her queues only; mallory works in none
        refusal = await desk.command(info, desk.mallory, "!stats")
        assert "not a volunteer" in refusal
        assert app.live.current.find_queue("info") is not None
