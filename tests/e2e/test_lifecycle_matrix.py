"""The ticket lifecycle on real servers: Dovecot (IMAP), an SMTP capture and Synapse.

The same scenarios as tests/core/test_lifecycle.py, but through the app as ``ticketbot
run`` builds it: mail appended to Dovecot becomes a ticket in a Matrix room, volunteers
type ``!commands`` in Synapse, replies are read back from the SMTP capture. A FakeClock
is handed to ``build_app`` so pending dates fall due without sleeping: the test moves the
clock and calls ``app.reminders.tick()`` itself.

The last scenario needs no chat at all: two desks (each an app with its own mailbox and
a console binding) send each other acknowledgements through a "mail relay" the test
plays, and the loop must die out.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import io
import re
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.app import App, build_app
from bot.config import Config, parse_config
from bot.domain import ArticleKind, Ticket, TicketState
from bot.repository import Repository
from tests.e2e.test_email_matrix_loop import in_thread, messages, wait_for
from tests.fakes import FakeClock
from tests.servers.dovecot import DovecotServer, ImapAccount
from tests.servers.smtp import CapturedMessage, SmtpCapture
from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.servers

T = TypeVar("T")

MARIA = "maria.lopez@example.net"
MARIA_FROM = f"Maria Lopez <{MARIA}>"
#: Fake "now" when the app starts (FakeClock's default: Monday 2026-11-23 10:00 UTC).
START = FakeClock().now()
#: Reminders the scenarios do not test stay quiet; the test calls tick() itself.
QUIET_REMINDERS = {
    "unclaimed_after": "off",
    "unanswered_after": "off",
    "digest_at": "off",
    "check_seconds": 3600,
}

# --- mail --------------------------------------------------------------------------------------


def raw_mail(
    subject: str,
    body: str,
    *,
    sender: str = MARIA_FROM,
    to: str = "info@example.org",
    message_id: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A plain-text UTF-8 mail as a mail client would deliver it (CRLF line ends)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.net>"
    msg["Date"] = "Mon, 23 Nov 2026 09:12:00 +0000"
    for name, value in headers:
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


def strip_headers(raw: bytes, names: Sequence[str]) -> bytes:
    """``raw`` without the header fields ``names`` (folded continuation lines included)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    wanted = {n.lower().encode() for n in names}
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.partition(b":")[0].strip().lower() in wanted
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + sep + body


def sender_of(captured: CapturedMessage) -> str:
    return str(captured.message["From"].addresses[0].addr_spec).lower()


# --- Matrix ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    user_id: str
    token: str


@dataclass
class ChatRoom:
    """One Matrix room, read and written over the client API as a real user would."""

    synapse: SynapseServer
    room_id: str
    reader: Person

    def _path(self, tail: str) -> str:
        return f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room_id, safe='')}/{tail}"

    def events(self) -> list[dict[str, Any]]:
        answer = self.synapse.request(
            "GET", self._path("messages?dir=b&limit=500"), token=self.reader.token
        )
        return list(reversed(answer["chunk"]))

    def send(self, who: Person, event_type: str, content: dict[str, Any]) -> str:
        path = self._path(f"send/{event_type}/e2e-{uuid.uuid4().hex}")
        event_id: str = self.synapse.request("PUT", path, content, who.token)["event_id"]
        return event_id

    def say(self, who: Person, text: str) -> str:
        return self.send(who, "m.room.message", {"msgtype": "m.text", "body": text})

    def say_in_thread(self, who: Person, root: str, text: str) -> str:
        relation = {"rel_type": "m.thread", "event_id": root}
        content = {"msgtype": "m.text", "body": text, "m.relates_to": relation}
        return self.send(who, "m.room.message", content)

    # -- what the bot posted -------------------------------------------------------------------

    def roots(self) -> list[dict[str, Any]]:
        """The ticket root messages in the room (messages with a [Ticket#…] and no relation)."""
        return [
            e
            for e in messages(self.events())
            if "[Ticket#" in e["content"].get("body", "") and "m.relates_to" not in e["content"]
        ]

    def root_for(self, text: str) -> dict[str, Any] | None:
        """The root message whose headline contains ``text`` (a subject or a number)."""
        for event in self.roots():
            headline = event["content"]["body"].split("\n", 1)[0]
            if text in headline:
                return event
        return None

    def thread(self, root: str) -> list[dict[str, Any]]:
        return [e for e in messages(self.events()) if in_thread(e, root)]

    def thread_text(self, root: str) -> str:
        return "\n".join(e["content"].get("body", "") for e in self.thread(root))

    def answer_to(self, event_id: str) -> str | None:
        """The bot's notice answering the command ``event_id`` (a reply to it), if any."""
        for event in messages(self.events()):
            content = event["content"]
            reply = (content.get("m.relates_to") or {}).get("m.in_reply_to") or {}
            if content.get("msgtype") == "m.notice" and reply.get("event_id") == event_id:
                body: str = content["body"]
                return body
        return None

    def latest_edit(self, root: str) -> dict[str, Any] | None:
        """``m.new_content`` of the newest ``m.replace`` edit of ``root``."""
        edits = [
            e["content"]["m.new_content"]
            for e in messages(self.events())
            if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
            and e["content"]["m.relates_to"].get("event_id") == root
        ]
        return edits[-1] if edits else None


@dataclass
class People:
    """Accounts of one test: alice (a volunteer), mallory (volunteer of nothing), the bot."""

    synapse: SynapseServer
    alice: Person
    mallory: Person
    bot_id: str

    async def room(self, name: str) -> ChatRoom:
        """A room alice creates; the bot and mallory are invited, mallory joins."""
        room_id = await asyncio.to_thread(
            self.synapse.create_room, self.alice.token, [self.bot_id, self.mallory.user_id], name
        )
        await asyncio.to_thread(self.synapse.join, self.mallory.token, room_id)
        return ChatRoom(self.synapse, room_id, self.alice)


@pytest.fixture
async def people(synapse: SynapseServer) -> People:
    suffix = uuid.uuid4().hex[:8]
    alice = await asyncio.to_thread(synapse.register, f"alice{suffix}", "alice-pw")
    mallory = await asyncio.to_thread(synapse.register, f"mallory{suffix}", "mallory-pw")
    await asyncio.to_thread(synapse.register, f"ticketbot{suffix}", "bot-pw")
    return People(
        synapse,
        Person(*alice),
        Person(*mallory),
        f"@ticketbot{suffix}:{synapse.server_name}",
    )


# --- the app -----------------------------------------------------------------------------------


def imap_section(account: ImapAccount, **extra: Any) -> dict[str, Any]:
    return {
        "host": account.host,
        "port": account.port,
        "security": "none",
        "username": account.username,
        "password": account.password,
        "idle": True,
        "poll_seconds": 5,
        **extra,
    }


def matrix_config(
    tmp_path: Path,
    people: People,
    imap: ImapAccount,
    smtp: SmtpCapture,
    queues: list[dict[str, Any]],
    **sections: Any,
) -> Config:
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path}/desk.db"},
        "mail": {
            "imap": imap_section(imap),
            "smtp": {"host": smtp.host, "port": smtp.port, "security": "none"},
        },
        "matrix": {
            "homeserver": people.synapse.url,
            "user_id": people.bot_id,
            "password": "bot-pw",
        },
        "tickets": {"undo_seconds": 0},
        "reminders": QUIET_REMINDERS,
        "queue": queues,
        **sections,
    }
    return parse_config(data, tmp_path / "bot.toml", {})


@contextlib.asynccontextmanager
async def running(config: Config, clock: FakeClock) -> AsyncIterator[App]:
    """The app built with a FakeClock and run as ``ticketbot run`` runs it."""
    app = await build_app(config, clock=clock)
    task = asyncio.create_task(app.run(), name="ticketbot")
    try:
        yield app
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(
    what: str, probe: Callable[[], Awaitable[T]], timeout: float = 20.0, interval: float = 0.2
) -> T:
    """Await ``probe`` until it gives something truthy (for store queries)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


async def ticket(app: App, number: str) -> Ticket:
    found = await app.store.run(lambda repo: repo.ticket_by_number(number))
    assert found is not None, f"no ticket {number}"
    return found


def number_of(root: dict[str, Any]) -> str:
    found = re.search(r"\[Ticket#(\d+)\]", root["content"]["body"])
    assert found is not None
    return found.group(1)


async def new_ticket(
    room: ChatRoom, imap: ImapAccount, subject: str, body: str, **kwargs: Any
) -> tuple[str, str]:
    """Deliver a mail and wait for its ticket in ``room``: (root event id, ticket number)."""
    await asyncio.to_thread(imap.append, raw_mail(subject, body, **kwargs))
    root = await wait_for(f"the root of {subject!r}", lambda: room.root_for(subject))
    await wait_for(
        f"the first mail of {subject!r} in its thread",
        lambda: body.split("\n", 1)[0] in room.thread_text(root["event_id"]),
    )
    return root["event_id"], number_of(root)


# --- 1. template reply in the requester's language ---------------------------------------------

GERMAN_SUBJECT = "Fotos für die Schulbroschüre"
GERMAN_BODY = (
    "Guten Tag,\n"
    "ich schreibe Ihnen wegen der Fotos vom Leuchtturm, die auf Ihrer Webseite zu sehen sind.\n"
    "Wir möchten eines dieser Bilder gerne in unserer Schulbroschüre verwenden, die im "
    "Frühjahr an alle Eltern verteilt wird.\n"
    "Könnten Sie mir bitte mitteilen, unter welchen Bedingungen das möglich ist und wen wir "
    "als Fotografen nennen sollen?\n"
    "Vielen Dank und freundliche Grüße\n"
    "Maria Lopez"
)


async def test_template_reply_goes_out_in_the_requesters_language(
    tmp_path: Path, people: People, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    room = await people.room("info")
    config = matrix_config(
        tmp_path,
        people,
        imap_account,
        smtp_capture,
        [
            {
                "name": "info",
                "addresses": ["info@example.org"],
                "matrix_room": room.room_id,
                "volunteers": [people.alice.user_id],
                "default": True,
                "salutation": {"en": "Hello {requester_name},", "de": "Hallo {requester_name},"},
            }
        ],
        templates={
            "thanks": {
                "en": "Thank you for your request {ticket_number}; we will answer soon.",
                "de": "Vielen Dank für Ihre Anfrage {ticket_number}; wir melden uns bald.",
            }
        },
    )
    async with running(config, FakeClock()) as app:
        message_id = "<de-1@example.net>"
        root, number = await new_ticket(
            room, imap_account, GERMAN_SUBJECT, GERMAN_BODY, message_id=message_id
        )
        assert (await ticket(app, number)).language == "de"

        await asyncio.to_thread(room.say_in_thread, people.alice, root, "!reply --template thanks")
        captured = (await asyncio.to_thread(smtp_capture.wait_for, 1, 20.0))[0]

    sent = captured.message
    text = sent.get_content().replace("\r\n", "\n")
    assert captured.rcpt_tos == (MARIA,)
    assert sent["Subject"] == f"Re: [Ticket#{number}] {GERMAN_SUBJECT}"
    assert sent["In-Reply-To"] == message_id
    assert text.startswith("Hallo Maria Lopez,\n")
    assert f"Vielen Dank für Ihre Anfrage {number}; wir melden uns bald." in text
    assert "Thank you" not in text and "Hello" not in text
    # the original, quoted under a German attribution line
    assert f"Am 2026-11-23 10:00 UTC schrieb Maria Lopez <{MARIA}>:" in text
    assert "> Könnten Sie mir bitte mitteilen, unter welchen Bedingungen" in text
    assert "> Maria Lopez" in text
    assert len(smtp_capture.messages) == 1


# --- 2. a pending reminder falls due -----------------------------------------------------------


async def test_pending_reminder_falls_due_and_pings_the_owner_in_the_thread(
    tmp_path: Path, people: People, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    room = await people.room("info")
    queue = {
        "name": "info",
        "addresses": ["info@example.org"],
        "matrix_room": room.room_id,
        "volunteers": [people.alice.user_id],
        "default": True,
    }
    clock = FakeClock()
    config = matrix_config(tmp_path, people, imap_account, smtp_capture, [queue])
    async with running(config, clock) as app:
        root, number = await new_ticket(
            room, imap_account, "Licence question", "Which licence do the photos have?"
        )
        alice = people.alice
        await asyncio.to_thread(room.say_in_thread, alice, root, "!claim")
        await eventually("the claim", lambda: _has(app, number, lambda t: t.owner == alice.user_id))
        await asyncio.to_thread(room.say_in_thread, alice, root, "!pending 2h")
        await eventually(
            "the ticket pending",
            lambda: _has(app, number, lambda t: t.state is TicketState.PENDING_REMINDER),
        )
        await wait_for("the pending notice", lambda: "⏸ Pending until" in room.thread_text(root))

        clock.advance(3600)
        assert (await app.reminders.tick()).fell_due == 0, "not due after one hour"
        clock.advance(2 * 3600)
        assert (await app.reminders.tick()).fell_due == 1
        await app.dispatcher.drain_all()

        def ping() -> dict[str, Any] | None:
            for event in room.thread(root):
                if "Reminder due" in event["content"].get("body", ""):
                    return event
            return None

        event = await wait_for("the reminder's ping in the thread", ping)
        content = event["content"]
        assert content["m.mentions"] == {"user_ids": [alice.user_id]}
        assert content["msgtype"] == "m.text", "notices never notify"
        assert alice.user_id in content["body"]
        assert "Pending reminder: this ticket is back" in room.thread_text(root)

        again = await ticket(app, number)
        assert again.state is TicketState.OPEN and again.pending_until is None
        assert again.owner == alice.user_id
        assert (await app.reminders.tick()).fell_due == 0, "each reminder falls due once"
        # no other message mentions anyone
        mentioning = [
            e
            for e in messages(room.events())
            if e["content"].get("m.mentions") not in ({}, None)
            and e["event_id"] != event["event_id"]
        ]
        assert mentioning == []


async def _has(app: App, number: str, check: Callable[[Ticket], bool]) -> bool:
    found = await app.store.run(lambda repo: repo.ticket_by_number(number))
    return found is not None and check(found)


# --- 3. move to another queue and its room -----------------------------------------------------


async def test_move_to_a_sub_queue_reposts_with_history_and_marks_the_old_root(
    tmp_path: Path, people: People, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    info, german = await people.room("info"), await people.room("info de")
    queues: list[dict[str, Any]] = [
        {
            "name": "info",
            "addresses": ["info@example.org"],
            "matrix_room": info.room_id,
            "volunteers": [people.alice.user_id],
            "default": True,
        },
        {"name": "info::de", "matrix_room": german.room_id, "language": "de"},
    ]
    config = matrix_config(tmp_path, people, imap_account, smtp_capture, queues)
    async with running(config, FakeClock()) as app:
        root, number = await new_ticket(
            info, imap_account, "Frage zum Leuchtturm", "Darf ich das Foto verwenden?"
        )
        follow_up = raw_mail(f"Re: [Ticket#{number}] Frage zum Leuchtturm", "Es ist dringend.")
        await asyncio.to_thread(imap_account.append, follow_up)
        await wait_for("the follow-up in the thread", lambda: "dringend" in info.thread_text(root))

        await asyncio.to_thread(info.say_in_thread, people.alice, root, "!move info::de")

        # the ticket appears in the German room, with its whole history in the thread
        new = await wait_for("the root in the new room", lambda: german.root_for(number))
        new_root = new["event_id"]
        await wait_for(
            "the history under the new root",
            lambda: (
                "dringend" in german.thread_text(new_root)
                and "Foto verwenden" in german.thread_text(new_root)
            ),
        )
        assert "queue info::de" in new["content"]["body"]
        assert (await ticket(app, number)).queue == "info::de"

        # the old root says where the ticket went, with a matrix.to link to the new root
        link = "https://matrix.to/#/" + urllib.parse.quote(german.room_id, safe="!")
        link += "/" + urllib.parse.quote(new_root, safe="$")

        def moved_edit() -> dict[str, Any] | None:
            edit = info.latest_edit(root)
            return edit if edit and "moved" in edit["body"] else None

        edit = await wait_for("the old root edited to say it moved", moved_edit)
        assert "queue info::de" in edit["body"] and link in edit["body"]
        assert edit["m.mentions"] == {}
        await wait_for(
            "the move notice in the old thread",
            lambda: any(
                "Moved to queue info::de" in e["content"]["body"] and link in e["content"]["body"]
                for e in info.thread(root)
            ),
        )

        # commands work in the new room's thread
        await asyncio.to_thread(german.say_in_thread, people.alice, new_root, "!claim")
        await eventually(
            "the claim in the new room",
            lambda: _has(app, number, lambda t: t.owner == people.alice.user_id),
        )
        # and the requester's next mail lands under the new root
        late = raw_mail(f"Re: [Ticket#{number}] Frage zum Leuchtturm", "Noch eine Frage.")
        await asyncio.to_thread(imap_account.append, late)
        await wait_for(
            "the next mail in the new thread",
            lambda: "Noch eine Frage" in german.thread_text(new_root),
        )
        assert "Noch eine Frage" not in info.thread_text(root)


# --- 4. merge ----------------------------------------------------------------------------------


async def test_merge_folds_the_history_and_redirects_later_mail(
    tmp_path: Path, people: People, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    room = await people.room("info")
    queue = {
        "name": "info",
        "addresses": ["info@example.org"],
        "matrix_room": room.room_id,
        "volunteers": [people.alice.user_id],
        "default": True,
    }
    config = matrix_config(tmp_path, people, imap_account, smtp_capture, [queue])
    async with running(config, FakeClock()) as app:
        first_root, first = await new_ticket(
            room, imap_account, "Photo licence", "Which licence applies to the photo?"
        )
        second_root, second = await new_ticket(
            room, imap_account, "Photo licence again", "Sorry, asking again about the licence."
        )

        await asyncio.to_thread(room.say_in_thread, people.alice, first_root, f"!merge {second}")

        await wait_for(
            "the merge notice and the first's mail in the second's thread",
            lambda: (
                f"Ticket {first} (Photo licence) merged into this one"
                in (text := room.thread_text(second_root))
                and "Which licence applies" in text
            ),
        )
        await wait_for(
            "the notice in the first's thread",
            lambda: f"Merged into ticket {second}" in room.thread_text(first_root),
        )
        source, target = await ticket(app, first), await ticket(app, second)
        assert source.state is TicketState.MERGED and source.merged_into == target.id
        assert target.id is not None
        target_id = target.id
        articles = await app.store.run(lambda repo: repo.articles(target_id))
        assert [a.subject for a in articles] == ["Photo licence", "Photo licence again"]

        # the requester answers the first ticket's mail: it lands in the second's thread
        answer = raw_mail(f"Re: [Ticket#{first}] Photo licence", "Here is the photo number: 42.")
        await asyncio.to_thread(imap_account.append, answer)
        await wait_for(
            "the answer in the second's thread",
            lambda: "photo number: 42" in room.thread_text(second_root),
        )
        assert "photo number: 42" not in room.thread_text(first_root)
        assert len(await app.store.run(lambda repo: repo.articles(target_id))) == 3
        assert await app.store.run(lambda repo: repo.count_tickets()) == 2

        # the merged ticket takes no more commands
        command = await asyncio.to_thread(room.say_in_thread, people.alice, first_root, "!claim")
        refusal = await wait_for("the refusal", lambda: room.answer_to(command))
        assert "merged" in refusal.lower()


# --- 5. search: filters, access, pages ---------------------------------------------------------


async def test_search_with_filters_only_shows_the_askers_queues_and_pages(
    tmp_path: Path, people: People, imap_account: ImapAccount, smtp_capture: SmtpCapture
) -> None:
    info, press = await people.room("info"), await people.room("press")
    queues: list[dict[str, Any]] = [
        {
            "name": "info",
            "addresses": ["info@example.org"],
            "matrix_room": info.room_id,
            "volunteers": [people.alice.user_id],
            "default": True,
        },
        {
            "name": "press",
            "addresses": ["press@example.org"],
            "matrix_room": press.room_id,
            "volunteers": ["@nobody:localhost"],
        },
    ]
    config = matrix_config(tmp_path, people, imap_account, smtp_capture, queues)
    async with running(config, FakeClock()) as app:
        for index in range(12):
            await asyncio.to_thread(
                imap_account.append, raw_mail(f"Info question {index:02d}", "About photos.")
            )
        await asyncio.to_thread(
            imap_account.append,
            raw_mail("Press question", "About photos.", to="press@example.org"),
        )
        await asyncio.to_thread(
            imap_account.append,
            raw_mail("Someone else", "About photos.", sender="Bob <bob@example.com>"),
        )
        await eventually(
            "14 tickets", lambda: app.store.run(lambda repo: repo.count_tickets() == 14)
        )
        tickets = await app.store.run(lambda repo: repo.active_tickets())
        maria_info = sorted(
            t.number for t in tickets if t.queue == "info" and t.requester_email == MARIA
        )
        press_number = next(t.number for t in tickets if t.queue == "press")
        bob_number = next(t.number for t in tickets if t.requester_email == "bob@example.com")
        assert len(maria_info) == 12
        claimed = maria_info[0]  # claimed: no longer "new"
        # a root in the room means the bot is listening: commands from now on are read
        await wait_for("the root of the claimed ticket", lambda: info.root_for(claimed))
        await asyncio.to_thread(info.say, people.alice, f"!claim {claimed}")
        await eventually("the claim", lambda: _has(app, claimed, lambda t: t.owner is not None))

        ask = await asyncio.to_thread(info.say, people.alice, "!search state:new from:maria")
        page_one = await wait_for("the first page", lambda: info.answer_to(ask))
        assert page_one.startswith("11 tickets match (page 1 of 2)"), page_one
        # the next page's line carries the keyset (after:); typing page:2 works as well
        assert "next: search state:new from:maria page:2 after:" in page_one
        ask = await asyncio.to_thread(info.say, people.alice, "!search state:new from:maria page:2")
        page_two = await wait_for("the second page", lambda: info.answer_to(ask))
        assert page_two.startswith("11 tickets match (page 2 of 2)"), page_two
        listed = _numbers(page_one) + _numbers(page_two)
        assert sorted(listed) == maria_info[1:], "each new info ticket from maria, once"
        for text in (page_one, page_two):
            assert press_number not in text and bob_number not in text and claimed not in text

        # the press ticket is invisible even when asked for by queue
        ask = await asyncio.to_thread(info.say, people.alice, "!search queue:press")
        assert press_number not in await wait_for("the answer", lambda: info.answer_to(ask))

        # a user who is volunteer of nothing is refused
        ask = await asyncio.to_thread(info.say, people.mallory, "!search state:new")
        refusal = await wait_for("the refusal", lambda: info.answer_to(ask))
        assert "not a volunteer of any queue" in refusal
        assert not _numbers(refusal)


def _numbers(text: str) -> list[str]:
    return re.findall(r"^(\d{16,20}) · ", text, re.MULTILINE)


# --- 6. two desks answering each other -----------------------------------------------------------

DESK_A, DESK_B = "info@a.example", "help@b.example"
ACK_LIMIT = 2


@dataclass
class MailDesk:
    app: App
    address: str
    mailbox: ImapAccount

    def use(self) -> App:
        """This desk's app (each store keeps to its own database, see storage.models)."""
        return self.app


def desk_config(
    tmp_path: Path, name: str, address: str, system_id: int, imap: ImapAccount, smtp: SmtpCapture
) -> Config:
    folder = tmp_path / name
    folder.mkdir()
    data = {
        "storage": {"url": f"sqlite:///{folder}/desk.db"},
        "mail": {
            "imap": imap_section(imap, idle=False),
            "smtp": {"host": smtp.host, "port": smtp.port, "security": "none"},
        },
        "console": {"enabled": True},
        "tickets": {"undo_seconds": 0, "system_id": system_id},
        "reminders": QUIET_REMINDERS,
        "autoresponse": {"max_per_sender_per_day": ACK_LIMIT},
        "queue": [
            {
                "name": "desk",
                "addresses": [address],
                "default": True,
                "autoresponse_new": "We received your message; your ticket is {ticket_number}.",
            }
        ],
    }
    return parse_config(data, folder / "bot.toml", {})


@pytest.fixture
async def desks(
    tmp_path: Path, dovecot: DovecotServer, smtp_capture: SmtpCapture
) -> AsyncIterator[tuple[MailDesk, MailDesk]]:
    """Desk A (info@a.example) and desk B (help@b.example), each with its own mailbox.

    Different system ids, as two installations should have: a ticket number one desk
    hands out never names a ticket of the other.
    """
    clock = FakeClock()
    built: list[MailDesk] = []
    try:
        for name, address, system_id in (("a", DESK_A, 10), ("b", DESK_B, 20)):
            mailbox = await asyncio.to_thread(dovecot.add_user)
            config = desk_config(tmp_path, name, address, system_id, mailbox, smtp_capture)
            app = await build_app(config, clock=clock, stdin=io.StringIO(), stdout=io.StringIO())
            built.append(MailDesk(app, address, mailbox))
        yield built[0], built[1]
    finally:
        for desk in built:
            if desk.app.imap is not None:
                await desk.app.imap.close()
            await desk.app.close()


async def _relay_rounds(
    a: MailDesk, b: MailDesk, smtp: SmtpCapture, rounds: int, strip: Sequence[str]
) -> list[int]:
    """Carry every mail each desk sent to the other desk's mailbox, ``rounds`` times.

    Returns how many mails were carried in each round. ``strip`` names header fields the
    relay removes on the way (a badly behaved responder forwarding what it got).
    """
    carried = 0
    per_round: list[int] = []
    by_address = {a.address: a, b.address: b}
    for _ in range(rounds):
        batch = smtp.messages[carried:]
        carried += len(batch)
        for captured in batch:
            target = by_address[captured.rcpt_tos[0].lower()]
            assert sender_of(captured) != target.address
            raw = strip_headers(captured.data, strip) if strip else captured.data
            await asyncio.to_thread(target.mailbox.append, raw)
        per_round.append(len(batch))
        for desk in (a, b):
            app = desk.use()
            await app.check_mail_once()
            await app.dispatcher.drain_all()
    return per_round


def _acks(smtp: SmtpCapture, sender: str) -> list[CapturedMessage]:
    return [m for m in smtp.messages if sender_of(m) == sender]


async def _start_the_loop(a: MailDesk, b: MailDesk, smtp: SmtpCapture) -> None:
    """B's address writes to A once, by hand: A acknowledges."""
    first = raw_mail("Question", "A question from desk B's address.", sender=DESK_B, to=DESK_A)
    await asyncio.to_thread(a.mailbox.append, first)
    assert await a.use().check_mail_once() == 1
    await a.app.dispatcher.drain_all()
    assert len(smtp.messages) == 1


async def test_two_desks_acknowledging_each_other_stop_after_one_acknowledgement(
    desks: tuple[MailDesk, MailDesk], smtp_capture: SmtpCapture
) -> None:
    a, b = desks
    await _start_the_loop(a, b, smtp_capture)
    per_round = await _relay_rounds(a, b, smtp_capture, 6, strip=())
    assert per_round == [1, 0, 0, 0, 0, 0]
    (ack,) = smtp_capture.messages
    assert sender_of(ack) == DESK_A and ack.rcpt_tos == (DESK_B,)
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert "We received your message" in ack.message.get_content()
    # B took A's acknowledgement in, as automatic mail, and stayed quiet
    assert await b.use().store.run(lambda repo: repo.count_tickets()) == 1
    articles = await b.app.store.run(lambda repo: repo.articles(1))
    assert [(x.kind, x.auto_kind) for x in articles] == [(ArticleKind.INBOUND, "auto-replied")]


@pytest.mark.parametrize(
    ("strip", "acks_each"),
    [
        # Threading still ties B's acknowledgement to A's ticket: A stays quiet.
        (("Auto-Submitted", "X-Auto-Response-Suppress"), 1),
        # Nothing ties the mails together any more: only the daily limit stops the loop.
        (
            ("Auto-Submitted", "X-Auto-Response-Suppress", "In-Reply-To", "References"),
            ACK_LIMIT,
        ),
    ],
    ids=["auto-submitted-stripped", "threading-stripped-too"],
)
async def test_a_responder_that_strips_auto_submitted_is_stopped(
    desks: tuple[MailDesk, MailDesk],
    smtp_capture: SmtpCapture,
    strip: tuple[str, ...],
    acks_each: int,
) -> None:
    a, b = desks
    await _start_the_loop(a, b, smtp_capture)
    per_round = await _relay_rounds(a, b, smtp_capture, 2 * ACK_LIMIT + 6, strip=strip)
    assert per_round[-5:] == [0] * 5, f"the loop did not die out: {per_round}"
    from_a, from_b = _acks(smtp_capture, DESK_A), _acks(smtp_capture, DESK_B)
    assert len(from_a) == acks_each and len(from_b) == acks_each, per_round
    assert len(from_a) <= ACK_LIMIT and len(from_b) <= ACK_LIMIT
    for ack in smtp_capture.messages:
        assert ack.message["Auto-Submitted"] == "auto-replied", "each desk marks its own"
    skipped = await a.use().store.run(_skipped_acknowledgements)
    if acks_each == ACK_LIMIT:
        # the limit is what stopped it: A's next new ticket from B went unacknowledged,
        # and its history says so
        assert skipped == 1
    else:
        assert skipped == 0


def _skipped_acknowledgements(repo: Repository) -> int:
    """How many acknowledgements the daily limit held back (from the tickets' histories)."""
    return len(
        [
            entry
            for t in repo.active_tickets()
            for entry in repo.history(t.id or 0)
            if entry.action == "ticket.autoresponse_skipped"
        ]
    )
