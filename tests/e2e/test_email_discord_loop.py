"""The Discord loop on real mail servers: Dovecot, an SMTP capture, and the Discord double
driven by the real discord.py client, all through the app as ``ticketbot run`` builds it.

Also: a queue bound to both a Matrix room and a Discord channel shows the ticket in
both, and a claim in Discord is reflected on Matrix.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, build_app
from bot.config import parse_config
from bot.domain import TicketState
from tests.e2e.test_email_matrix_loop import Room, mail, messages, room, wait_for
from tests.servers.discord_double import DiscordDouble
from tests.servers.dovecot import ImapAccount
from tests.servers.smtp import SmtpCapture

pytestmark = pytest.mark.servers
__all__ = ["room"]  # the Matrix room fixture, used by the two-platform test


@dataclass
class Guild:
    double: DiscordDouble
    guild: str
    channel: str
    role: str
    alice: str
    mallory: str


@pytest.fixture
def guild(discord_double: DiscordDouble) -> Guild:
    double = discord_double
    guild = double.add_guild("Response team")
    role = double.add_role(guild, "Info volunteers")
    channel = double.add_channel(guild, "info-queue", allow_roles=[role])
    alice = double.add_member(guild, "alice", roles=[role])
    mallory = double.add_member(guild, "mallory")
    return Guild(double, guild, channel, role, alice, mallory)


def _config(
    tmp_path: Path,
    guild: Guild,
    imap: ImapAccount,
    smtp: SmtpCapture,
    matrix: dict[str, Any] | None = None,
    matrix_room: str | None = None,
) -> dict[str, Any]:
    queue: dict[str, Any] = {
        "name": "info",
        "addresses": ["info@example.org"],
        "discord_channel": int(guild.channel),
        "discord_roles": [int(guild.role)],
        "default": True,
    }
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path}/e2e.db"},
        "mail": {
            "imap": {
                "host": imap.host,
                "port": imap.port,
                "security": "none",
                "username": imap.username,
                "password": imap.password,
                "poll_seconds": 5,
            },
            "smtp": {"host": smtp.host, "port": smtp.port, "security": "none"},
        },
        "discord": {"token": guild.double.token, "guild_id": int(guild.guild)},
        "tickets": {"undo_seconds": 0},
        "queue": [queue],
    }
    if matrix is not None:
        data["matrix"] = matrix
        queue["matrix_room"] = matrix_room
    return data


@contextlib.asynccontextmanager
async def running(
    data: dict[str, Any], tmp_path: Path, double: DiscordDouble
) -> AsyncIterator[App]:
    with double.patch_client():
        app = await build_app(parse_config(data, tmp_path / "bot.toml", {}))
        task = asyncio.create_task(app.run())
        try:
            await wait_for("the bot to be ready on Discord", lambda: double.identifies, 20)
            yield app
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_email_in_ticket_in_discord_reply_out_answer_back(
    tmp_path: Path, guild: Guild, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    double = guild.double
    async with running(_config(tmp_path, guild, imap_account, smtp_capture), tmp_path, double):
        await asyncio.to_thread(
            imap_account.append,
            mail("Photo @everyone", "May I use the photo? [free](http://evil)", "<d1@x.net>"),
        )
        # the embed and its thread appear
        root_message = await wait_for(
            "the ticket's embed",
            lambda: double.messages(guild.channel) and double.messages(guild.channel)[0],
        )
        root = root_message["id"]
        embed = root_message["embeds"][0]
        assert "[Ticket#" in embed["title"]
        number = embed["title"].split("[Ticket#", 1)[1].split("]", 1)[0]
        assert len(root_message["components"][0]["components"]) == 4
        first = await wait_for("the mail in the thread", lambda: double.messages(root))
        assert "@everyone" not in first[0]["content"].replace("@\u200beveryone", "")
        assert "](http" not in first[0]["content"]

        # a volunteer claims with the button; the embed shows the owner
        click = await double.click_button(guild.alice, guild.channel, root, "ticketbot:claim")
        await wait_for("the claim", lambda: len(double.interaction_responses(click)) >= 2)

        def owner() -> str:
            fields = double.message(guild.channel, root)["embeds"][0]["fields"]
            return {f["name"]: f["value"] for f in fields}["Owner"]

        await wait_for("the embed edited to show the owner", lambda: owner() == "alice")

        # replies through the modal; the captured email is right
        click = await double.click_button(guild.alice, guild.channel, root, "ticketbot:reply")
        modal = await double.wait_for(lambda: double.interaction_responses(click)[0]["data"])
        await double.submit_modal(
            guild.alice, guild.channel, modal["custom_id"], {"ticketbot:text": "Yes, with credit."}
        )
        captured = (await asyncio.to_thread(smtp_capture.wait_for, 1, 30.0))[0]
        sent = captured.message
        assert sent["Subject"] == f"Re: [Ticket#{number}] Photo @everyone"
        assert sent["In-Reply-To"] == "<d1@x.net>"
        assert captured.rcpt_tos == ("maria.lopez@example.net",)
        assert "Yes, with credit." in sent.get_content()

        # the requester's answer lands in the thread
        await asyncio.to_thread(
            imap_account.append,
            mail(
                f"Re: {sent['Subject']}",
                "Thanks, all clear now.",
                "<d2@x.net>",
                extra=f"In-Reply-To: {sent['Message-ID']}\r\n",
            ),
        )
        await wait_for(
            "the answer in the thread",
            lambda: any("all clear now" in m["content"] for m in double.messages(root)),
        )

        # a member without the role is refused, ephemerally, and nothing changes
        iid = await double.slash(guild.mallory, root, "close")
        refusal = await wait_for(
            "the refusal", lambda: double.interaction_responses(iid)[1:] or None
        )
        assert refusal[0]["data"]["flags"] & 64
        assert "only volunteers" in refusal[0]["data"]["content"]
        assert owner() == "alice"

        # nothing the bot sent could ping anyone
        for channel in (guild.channel, root):
            for message in double.messages(channel):
                assert double.payloads[message["id"]]["allowed_mentions"]["parse"] == []


async def test_a_queue_on_matrix_and_discord_shows_one_ticket_in_both(
    tmp_path: Path,
    guild: Guild,
    room: Room,
    imap_account: ImapAccount,
    smtp_capture: SmtpCapture,
) -> None:
    double = guild.double
    bot_id = room.alice[0].replace("@alice", "@ticketbot", 1)
    matrix = {"homeserver": room.synapse.url, "user_id": bot_id, "password": "bot-pw"}
    data = _config(tmp_path, guild, imap_account, smtp_capture, matrix, room.room_id)
    async with running(data, tmp_path, double) as app:
        await asyncio.to_thread(imap_account.append, mail("Both", "Seen twice?", "<b1@x.net>"))
        root_message = await wait_for(
            "the Discord embed",
            lambda: double.messages(guild.channel) and double.messages(guild.channel)[0],
        )

        def matrix_root() -> dict[str, Any] | None:
            for event in messages(room.events()):
                content = event["content"]
                if "[Ticket#" in content.get("body", "") and "m.relates_to" not in content:
                    return event
            return None

        await wait_for("the Matrix root message", matrix_root)

        # claim on Discord: the Matrix root message is edited to show it
        await double.click_button(guild.alice, guild.channel, root_message["id"], "ticketbot:claim")

        def matrix_shows_claim() -> bool:
            return any(
                (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
                and "alice" in e["content"]["m.new_content"]["body"]
                for e in messages(room.events())
            )

        await wait_for("the claim shown on Matrix", matrix_shows_claim)
        tickets = await app.store.run(lambda repo: repo.count_tickets())
        assert tickets == 1
        ticket = await app.store.run(lambda repo: repo.ticket_by_id(1))
        assert ticket.state is TicketState.OPEN and ticket.owner == f"discord:{guild.alice}"
