"""Hostile mail through the whole bot on real servers: Dovecot, Synapse and an SMTP capture.

The parser's unit tests (tests/email/) cover these shapes in isolation; here each one goes
through the real IMAP watcher, intake, storage, the Matrix rendering and, where a reply is
made, the real SMTP sending. For every case the mailbox must move on (every message ends
``\\Seen`` and an ordinary mail appended after the hostile one becomes a ticket too), the
ticket must be readable, every chat post must get through, and nothing may escape as an
exception.

1. A 50 MB attachment: dropped and named in the ticket, memory and time bounded.
2. 1,000 small attachments: kept up to the limits, the rest dropped and named; the thread
   post stays within the Matrix event size.
3. A zip bomb (1 GiB of zeros, nested): stored as opaque bytes, never unpacked.
4. HTML with script, style, a tracking pixel, hidden text and a ``javascript:`` link.
5. A From with 500 addresses (and To and Cc with 500 each).
6. Header injection aimed at the replies (CR/LF hidden in encoded words).
7. Mention and markup injection aimed at the Matrix room.
8. Mail from the desk's own address to itself: no acknowledgement, no loop.

Some expectations (a log line for everything dropped or cut, the memory, event-loop and
database cost of a 50 MB mail) are collected while a test runs and checked at its end,
so one failure names every shortfall at once, with the file and function to look at.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import io
import json
import logging
import re
import resource
import sys
import time
import urllib.parse
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from adapters.email.parse import MAX_ADDRESSES, MAX_PARTS
from bot.app import App, build_app
from bot.config import parse_config
from bot.domain import Article, ArticleKind, SendState, Ticket
from tests.servers.dovecot import ImapAccount
from tests.servers.smtp import CapturedMessage, SmtpCapture
from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.servers

DESK = "info@example.org"
SEEN = b"\\Seen"
MIB = 1024 * 1024
#: Matrix rejects events over 65,536 bytes; the content is what the bot controls.
MATRIX_EVENT_LIMIT = 65_536
ACK_TEXT = "Thank you {requester_name}, your mail is ticket {ticket_number}."
#: Loose bound on the peak RSS growth while one hostile mail is taken in.
RSS_GROWTH_LIMIT = 400 * MIB
#: ...and a hard one, far above what the bot needs today, against gross regressions.
RSS_HARD_LIMIT = 1024 * MIB
#: A Matrix ZWJ that render.py's defang inserts after an ``@`` that could ping.
ZWJ = "\u200d"

log = logging.getLogger(__name__)

#: The only markup render.py writes itself (its module docstring); never any attribute.
OWN_TAGS = frozenset({"p", "b", "i", "br", "blockquote", "code"})


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def real_markup(formatted: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """The elements a client would render from ``formatted_body`` (escaped text is none)."""
    parser = _Tags()
    parser.feed(formatted)
    parser.close()
    return parser.found


def assert_only_own_markup(formatted: str) -> None:
    for tag, attrs in real_markup(formatted):
        assert tag in OWN_TAGS and not attrs, f"<{tag} {attrs}> in {formatted!r}"


# --- mail builders -------------------------------------------------------------------------


def headers(
    subject: str,
    message_id: str,
    sender: str = "Maria Lopez <maria.lopez@example.net>",
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        f"From: {sender}",
        f"To: {DESK}",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        "Date: Mon, 23 Nov 2026 09:12:00 +0000",
        *extra,
        "MIME-Version: 1.0",
    ]


def plain_mail(subject: str, body: str, message_id: str, **kw: Any) -> bytes:
    head = [*headers(subject, message_id, **kw), "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()


def multipart(head: list[str], parts: Sequence[bytes], boundary: str = "=_hostile_b0und") -> bytes:
    top = [*head, f'Content-Type: multipart/mixed; boundary="{boundary}"']
    chunks = ["\r\n".join(top).encode(), b"\r\n\r\nThis is a MIME message.\r\n"]
    for part in parts:
        chunks += [f"--{boundary}\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def text_part(text: str, subtype: str = "plain") -> bytes:
    body = text.replace("\n", "\r\n").encode()
    return f"Content-Type: text/{subtype}; charset=utf-8\r\n\r\n".encode() + body + b"\r\n"


def attachment(name: str, data: bytes, ctype: str = "application/octet-stream") -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = (
        f'Content-Type: {ctype}; name="{name}"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'
    )
    return head.encode() + encoded


def zip_of_zeros(megabytes: int) -> bytes:
    """A zip holding ``megabytes`` MiB of zeros, written in 1 MiB steps (small in memory)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as member,
    ):
        chunk = bytes(MIB)
        for _ in range(megabytes):
            member.write(chunk)
    return out.getvalue()


def nested_bomb(copies: int, megabytes: int) -> bytes:
    """A zip of ``copies`` zips of zeros: copies x megabytes MiB once fully unpacked."""
    inner = zip_of_zeros(megabytes)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for index in range(copies):
            archive.writestr(f"part-{index:02d}.zip", inner)
    return out.getvalue()


# --- memory ----------------------------------------------------------------------------------


def _status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert match is not None, key
    return int(match.group(1))


@dataclass
class MemoryProbe:
    """Peak RSS growth over a block: VmHWM is reset first where Linux lets us, so the
    peak is this block's own and not an earlier test's; otherwise ru_maxrss is used."""

    start_rss: int = 0
    start_peak: int = 0
    reset: bool = False
    growth: int = 0

    def __enter__(self) -> MemoryProbe:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.reset = True
        except OSError:
            self.reset = False
        self.start_rss = _status_kib("VmRSS") * 1024
        self.start_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.reset:
            self.growth = _status_kib("VmHWM") * 1024 - self.start_rss
        else:  # only a lower bound: the process may have peaked higher before
            self.growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - max(
                self.start_peak, self.start_rss
            )


class LoopLag:
    """The longest the event loop went without running a 50 ms ticker, over a block:
    how long everything else (the Matrix sync, the outbox) stood still."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            self.longest = max(self.longest, now - last - 0.05)
            last = now

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def database_bytes(app: App) -> int:
    """The size of the SQLite database file (its write-ahead log not counted)."""
    return Path(app.config.storage.url.removeprefix("sqlite:///")).stat().st_size


def report(case: str, **values: Any) -> None:
    """Measurements for the run's summary (shown with -s, and in the log on failure)."""
    text = ", ".join(f"{k}={v}" for k, v in values.items())
    log.warning("hostile-mail %s: %s", case, text)
    print(f"\n[hostile-mail] {case}: {text}", file=sys.stderr)


# --- Matrix room -----------------------------------------------------------------------------


@dataclass
class Room:
    synapse: SynapseServer
    room_id: str
    alice: tuple[str, str]  # the volunteer: user id, token
    bot_id: str

    def _path(self, tail: str) -> str:
        return f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room_id, safe='')}{tail}"

    def messages(self) -> list[dict[str, Any]]:
        chunk = self.synapse.request(
            "GET", self._path("/messages?dir=b&limit=1000"), token=self.alice[1]
        )["chunk"]
        return [e for e in reversed(chunk) if e["type"] == "m.room.message"]

    def ticket_events(self, number: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The ticket's root message and every message in its thread."""
        found = self.messages()
        roots = [
            e
            for e in found
            if f"[Ticket#{number}]" in e["content"].get("body", "")
            and "m.relates_to" not in e["content"]
        ]
        assert len(roots) == 1, f"one root message for {number}: {len(roots)}"
        root = roots[0]
        thread = [
            e
            for e in found
            if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.thread"
            and e["content"]["m.relates_to"].get("event_id") == root["event_id"]
        ]
        return root, thread

    def say_in_thread(self, root: str, text: str) -> None:
        content = {
            "msgtype": "m.text",
            "body": text,
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        }
        self.synapse.request(
            "PUT",
            self._path(f"/send/m.room.message/hostile-{uuid.uuid4().hex}"),
            content,
            self.alice[1],
        )

    def highlights_for_alice(self) -> int:
        """Alice's unread highlight count (pings) in this room, from her own sync."""
        answer = self.synapse.request(
            "GET", "/_matrix/client/v3/sync?timeout=0", token=self.alice[1]
        )
        joined = answer.get("rooms", {}).get("join", {}).get(self.room_id, {})
        return int(joined.get("unread_notifications", {}).get("highlight_count", 0))


def make_room(synapse: SynapseServer) -> Room:
    suffix = uuid.uuid4().hex[:8]
    alice = synapse.register(f"alice{suffix}", "alice-pw")
    synapse.register(f"ticketbot{suffix}", "bot-pw")
    bot_id = f"@ticketbot{suffix}:{synapse.server_name}"
    room_id = synapse.create_room(alice[1], [bot_id], f"hostile {suffix}")
    return Room(synapse, room_id, alice, bot_id)


# --- the desk under test ---------------------------------------------------------------------


@dataclass
class Gaps:
    """Shortfalls of the product against the brief, collected while a test runs."""

    found: list[str] = field(default_factory=list)

    def expect(self, ok: bool, text: str) -> None:
        if not ok:
            self.found.append(text)

    def settle(self) -> None:
        if self.found:
            pytest.fail("product gap: " + " | ".join(self.found))


@dataclass
class Desk:
    app: App
    room: Room
    imap: ImapAccount
    smtp: SmtpCapture
    caplog: pytest.LogCaptureFixture
    gaps: Gaps = field(default_factory=Gaps)

    async def append(self, raw: bytes) -> int:
        return await asyncio.to_thread(self.imap.append, raw)

    async def take_in(self) -> int:
        """One check of the mailbox and everything that follows from it (posts, mail)."""
        count = await self.app.check_mail_once()
        await self.app.dispatcher.drain_all()
        return count

    async def warm_up(self) -> None:
        """Take in one ordinary mail first, so that what a measurement sees is the hostile
        mail's cost and not the language model loading on the first mail (~100 MB)."""
        await self.append(plain_mail("Warm-up", "Just saying hello to the desk.", "<warm@x.net>"))
        assert await self.take_in() == 1

    async def ticket(self, message_id: str) -> Ticket:
        ticket = await self.app.store.run(lambda repo: repo.ticket_by_message_ids([message_id]))
        assert ticket is not None, f"no ticket for {message_id}"
        return ticket

    async def articles(self, ticket: Ticket) -> list[Article]:
        ticket_id = ticket.id
        assert ticket_id is not None
        return await self.app.store.run(lambda repo: repo.articles(ticket_id))

    async def first_inbound(self, ticket: Ticket) -> Article:
        return next(a for a in await self.articles(ticket) if a.kind is ArticleKind.INBOUND)

    async def files(self, article: Article) -> list[Any]:
        article_id = article.id
        assert article_id is not None
        return await self.app.store.run(lambda repo: repo.attachment_files(article_id))

    async def tickets(self) -> int:
        return await self.app.store.run(lambda repo: repo.count_tickets())

    async def events(self, number: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Root and thread of a ticket, polled until the root is there."""
        deadline = time.monotonic() + 15
        while True:
            try:
                return await asyncio.to_thread(self.room.ticket_events, number)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def logged(self, *needles: str) -> list[str]:
        """Log lines (INFO and up) mentioning any of ``needles``, case-insensitively."""
        wanted = [n.lower() for n in needles]
        return [
            r.getMessage()
            for r in self.caplog.records
            if r.levelno >= logging.INFO
            and r.name.split(".")[0] in ("bot", "adapters", "storage")
            and any(n in r.getMessage().lower() for n in wanted)
        ]

    # --- the checks every case makes ---------------------------------------------------------

    async def assert_common(self, hostile: int, tag: str) -> None:
        """The mailbox moved on, every post got through, nothing went wrong unnoticed."""
        message_id = f"<after-{tag}@example.net>"
        await self.append(plain_mail("An ordinary question", "Is the museum open?", message_id))
        assert await self.take_in() == 1, "the ordinary mail after the hostile one is taken in"
        after = await self.ticket(message_id)
        assert after.subject == "An ordinary question"
        assert "museum" in (await self.first_inbound(after)).body
        flags = await asyncio.to_thread(self.imap.flags)
        assert len(flags) == hostile + 1, flags
        assert all(SEEN in f for f in flags.values()), f"a message was left unseen: {flags}"
        assert await self.take_in() == 0, "nothing is taken in twice"
        pending = await self.app.store.run(lambda repo: repo.outbox_pending_count())
        assert pending == 0, "every chat post and mail was carried out (none waits to retry)"
        errors = [
            f"{r.name}: {r.getMessage()}"
            for r in self.caplog.records
            if r.levelno >= logging.ERROR and not r.name.startswith(("nio", "aiohttp"))
        ]
        assert not errors, errors

    def assert_sane_events(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            content = event["content"]
            size = len(json.dumps(content, ensure_ascii=False).encode())
            assert size < MATRIX_EVENT_LIMIT, f"{size} bytes"
            assert content.get("m.mentions") == {}, content.get("m.mentions")


def readable(ticket: Ticket, article: Article) -> None:
    """Subject and body present, or the 'could not read' fallback holding original.eml."""
    if "could not read" in ticket.subject:
        assert any(a.filename == "original.eml" for a in article.attachments)
        return
    assert ticket.subject.strip(), "a subject"
    assert article.body.strip() and article.body.strip() != "(no text)", "a body"


@pytest.fixture
async def open_desk(
    tmp_path: Path,
    synapse: SynapseServer,
    imap_account: ImapAccount,
    smtp_capture: SmtpCapture,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Callable[..., Awaitable[Desk]]]:
    """Builds the app (IMAP + SMTP + Matrix) and logs the bot in; the test drives intake
    and the outbox itself (``take_in``), only the Matrix sync loop runs on its own so that
    commands typed in the room are heard."""
    caplog.set_level(logging.INFO)
    opened: list[tuple[App, asyncio.Task[None]]] = []

    async def open_(mail: dict[str, Any] | None = None) -> Desk:
        room = await asyncio.to_thread(make_room, synapse)
        settings: dict[str, Any] = {
            "storage": {"url": f"sqlite:///{tmp_path}/desk.db"},
            "mail": {
                "imap": {
                    "host": imap_account.host,
                    "port": imap_account.port,
                    "security": "none",
                    "username": imap_account.username,
                    "password": imap_account.password,
                    "idle": False,
                    "poll_seconds": 60,
                    "timeout_seconds": 60,
                },
                "smtp": {
                    "host": smtp_capture.host,
                    "port": smtp_capture.port,
                    "security": "none",
                    "timeout_seconds": 10,
                },
                **(mail or {}),
            },
            "matrix": {"homeserver": synapse.url, "user_id": room.bot_id, "password": "bot-pw"},
            "tickets": {"undo_seconds": 0},
            "outbox": {"retry_seconds": 1},
            "queue": [
                {
                    "name": "info",
                    "addresses": [DESK],
                    "matrix_room": room.room_id,
                    "volunteers": [room.alice[0]],
                    "default": True,
                    "autoresponse_new": ACK_TEXT,
                }
            ],
        }
        app = await build_app(parse_config(settings, tmp_path / "bot.toml", {}))
        assert app.matrix is not None and app.imap is not None
        await app.matrix.start()
        opened.append((app, asyncio.create_task(app.matrix.run(), name="matrix")))
        return Desk(app, room, imap_account, smtp_capture, caplog)

    yield open_
    for app, task in opened:
        if app.imap is not None:
            await app.imap.close()
        await app.close()  # stops the Matrix sync loop too
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)


# --- 1. a 50 MB mail -------------------------------------------------------------------------


async def test_50_mb_attachment_dropped_and_named_memory_and_time_bounded(
    open_desk: Callable[..., Awaitable[Desk]],
) -> None:
    limit = 1_000_000  # [mail] max_attachment_bytes: scan.pdf would pass the 10 MiB default
    desk = await open_desk(mail={"max_attachment_bytes": limit})
    await desk.warm_up()
    huge = 50 * MIB
    raw = multipart(
        headers("The holiday video", "<big@example.net>"),
        [
            text_part("Please find the holiday video attached.\nBest, Maria"),
            attachment("holiday-video.mp4", bytes(range(256)) * (huge // 256), "video/mp4"),
            attachment("scan.pdf", b"%PDF" * 375_000, "application/pdf"),
            attachment("notes.txt", b"a few notes\r\n" * 800, "text/plain"),
        ],
    )
    size = len(raw)
    await desk.append(raw)
    del raw

    db_before = database_bytes(desk.app)
    started = time.monotonic()
    with MemoryProbe() as memory:
        async with LoopLag() as lag:
            assert await desk.take_in() == 1
    seconds = time.monotonic() - started
    db_growth = database_bytes(desk.app) - db_before
    report(
        "50 MB mail",
        raw_mb=round(size / MIB, 1),
        seconds=round(seconds, 2),
        peak_rss_growth_mb=round(memory.growth / MIB, 1),
        hwm_reset=memory.reset,
        event_loop_stalled_s=round(lag.longest, 2),
        database_growth_mb=round(db_growth / MIB, 1),
    )

    ticket = await desk.ticket("<big@example.net>")
    article = await desk.first_inbound(ticket)
    readable(ticket, article)
    assert ticket.subject == "The holiday video"
    assert article.body.startswith("Please find the holiday video attached.")
    assert "[ticketbot: attachments not kept, over the size limit]" in article.body
    # dropped on its encoded size, never decoded: the size is an estimate
    assert "- holiday-video.mp4 (about " in article.body
    assert ", over the limit)" in article.body
    assert "- scan.pdf (about 1500000 bytes, over the limit)" in article.body, "the limit"
    assert [a.filename for a in article.attachments] == ["notes.txt"]
    assert (await desk.files(article))[0].data == b"a few notes\r\n" * 800

    root, thread = await desk.events(ticket.number)
    desk.assert_sane_events([root, *thread])
    posted = "\n".join(e["content"]["body"] for e in thread)
    assert "holiday-video.mp4" in posted and "scan.pdf" in posted, "the thread names them"
    assert "notes.txt (text/plain, 10400 bytes)" in posted, "the kept file is listed"

    assert seconds < 60, f"a 50 MB mail took {seconds:.1f} s"
    await desk.assert_common(hostile=2, tag="big")  # warm-up + hostile
    # a hard bound against gross regressions; the brief's ~400 MB is a recorded gap
    assert memory.growth < RSS_HARD_LIMIT, f"peak RSS grew {memory.growth / MIB:.0f} MiB"
    desk.gaps.expect(
        memory.growth < RSS_GROWTH_LIMIT,
        f"peak RSS grew {memory.growth / MIB:.0f} MiB for a {size / MIB:.0f} MiB mail "
        f"(limit {RSS_GROWTH_LIMIT // MIB} MiB): adapters/email/parse.py _Parser.read_message "
        "parses the whole mail with email.message_from_bytes and decodes the 50 MB part "
        "before attach() compares its size with max_attachment_bytes",
    )
    desk.gaps.expect(
        db_growth < 10 * MIB,
        f"the database grew {db_growth / MIB:.0f} MiB although the attachment was 'not "
        "kept': bot/intake.py _store_article passes raw=email.raw, stored whole by "
        "storage/store.py add_article (RawMessage), while parse_email's docstring says "
        "dropping is 'so a huge upload cannot fill the database'",
    )
    desk.gaps.expect(
        lag.longest < 1.0,
        f"the event loop stood still for {lag.longest:.1f} s (Matrix sync, outbox, every "
        "chat command): adapters/email/imap.py ImapWatcher._check calls self._parse(...) "
        "on the event loop, not in a worker thread",
    )
    desk.gaps.expect(
        bool(desk.logged("holiday-video.mp4", "not kept", "over the limit")),
        "no log line names the dropped attachment (bot/intake.py ingest logs only "
        "'new ticket N from X'; the parser's dropped list goes to the ticket body only)",
    )
    desk.gaps.settle()


# --- 2. a thousand attachments ---------------------------------------------------------------


async def test_thousand_attachments_kept_to_the_limits_rest_named_thread_post_fits(
    open_desk: Callable[..., Awaitable[Desk]],
) -> None:
    each, total_limit = 4000, 2_000_000
    desk = await open_desk(mail={"max_total_attachment_bytes": total_limit})
    await desk.warm_up()
    names = [f"file-{index:04d}.txt" for index in range(1, 1001)]
    raw = multipart(
        headers("A thousand files", "<many@example.net>"),
        [
            text_part("All the files, one per page."),
            *(attachment(name, name.encode().ljust(each, b".")) for name in names),
        ],
    )
    started = time.monotonic()
    await desk.append(raw)
    with MemoryProbe() as memory:
        assert await desk.take_in() == 1
    seconds = time.monotonic() - started
    report(
        "1000 attachments",
        raw_mb=round(len(raw) / MIB, 2),
        seconds=round(seconds, 2),
        peak_rss_growth_mb=round(memory.growth / MIB, 1),
    )

    ticket = await desk.ticket("<many@example.net>")
    article = await desk.first_inbound(ticket)
    readable(ticket, article)
    kept = [a.filename for a in article.attachments]
    # total-bytes limit: the first 500 fit into 2,000,000 bytes
    assert kept == names[: total_limit // each], (len(kept), kept[-3:])
    assert sum(a.size for a in article.attachments) <= total_limit
    # MAX_PARTS counts the multipart itself and the text part, so the parser looks at
    # the first MAX_PARTS - 2 attachments only
    looked_at = names[: MAX_PARTS - 2]
    dropped_by_size = looked_at[len(kept) :]
    for name in dropped_by_size:
        assert f"- {name} ({each} bytes, over the limit)" in article.body, name
    cut_by_parts = names[MAX_PARTS - 2 :]
    assert cut_by_parts == ["file-0999.txt", "file-1000.txt"]

    root, thread = await desk.events(ticket.number)
    desk.assert_sane_events([root, *thread])
    posted = "\n".join(e["content"]["body"] for e in thread)
    assert "file-0001.txt (application/octet-stream, 4000 bytes)" in posted
    assert "… and 450 more" in posted, "the list of kept files is capped at 50 in chat"
    assert "file-0998.txt" in posted, "the last dropped file is named in the thread"
    report("1000 attachments", thread_events=len(thread))

    await desk.assert_common(hostile=2, tag="many")  # warm-up + hostile
    # parts past MAX_PARTS are never read, so they cannot be named; the ticket says so
    assert "parts of this mail were not read: more than 1000 MIME parts" in article.body
    desk.gaps.expect(
        bool(desk.logged("not kept", "over the limit", "file-0501.txt")),
        "no log line for the 498 attachments dropped over max_total_attachment_bytes",
    )
    desk.gaps.expect(
        bool(desk.logged("MIME parts", "rest ignored")),
        "no log line for the MIME parts ignored past MAX_PARTS",
    )
    desk.gaps.settle()


# --- 3. a zip bomb ---------------------------------------------------------------------------


async def test_zip_bomb_stored_opaque_never_unpacked(
    open_desk: Callable[..., Awaitable[Desk]],
) -> None:
    desk = await open_desk()
    await desk.warm_up()
    flat = zip_of_zeros(256)  # 256 MiB of zeros
    nested = nested_bomb(copies=16, megabytes=64)  # 16 x 64 MiB = 1 GiB
    raw = multipart(
        headers("Invoice", "<bomb@example.net>"),
        [
            text_part("Your invoice is attached."),
            attachment("invoice.zip", flat, "application/zip"),
            attachment("archive.zip", nested, "application/x-zip-compressed"),
        ],
    )
    await desk.append(raw)
    started = time.monotonic()
    with MemoryProbe() as memory:
        assert await desk.take_in() == 1
    seconds = time.monotonic() - started
    report(
        "zip bomb",
        zip_kb=(len(flat) // 1024, len(nested) // 1024),
        unpacked_mib=(256, 1024),
        seconds=round(seconds, 2),
        peak_rss_growth_mb=round(memory.growth / MIB, 1),
    )

    ticket = await desk.ticket("<bomb@example.net>")
    article = await desk.first_inbound(ticket)
    readable(ticket, article)
    files = await desk.files(article)
    assert [(f.filename, f.content_type) for f in files] == [
        ("invoice.zip", "application/zip"),
        ("archive.zip", "application/x-zip-compressed"),
    ]
    assert hashlib.sha256(files[0].data).digest() == hashlib.sha256(flat).digest()
    assert hashlib.sha256(files[1].data).digest() == hashlib.sha256(nested).digest()
    assert [a.size for a in article.attachments] == [len(flat), len(nested)]
    assert "zeros.bin" not in article.body and "part-00.zip" not in article.body

    root, thread = await desk.events(ticket.number)
    desk.assert_sane_events([root, *thread])
    posted = "\n".join(e["content"]["body"] for e in thread)
    assert "invoice.zip" in posted and "archive.zip" in posted
    assert "zeros.bin" not in posted, "nothing from inside the archive is shown"
    # flat: the bot holds the mail a few times over (a few MB), never the 1 GiB inside
    assert memory.growth < 100 * MIB, f"peak RSS grew {memory.growth / MIB:.0f} MiB"
    await desk.assert_common(hostile=2, tag="bomb")  # warm-up + hostile


# --- 4. HTML -----------------------------------------------------------------------------------


HOSTILE_HTML = """<!DOCTYPE html><html><head>
<title>TITLE-TEXT</title>
<style>body { color: red } .STYLE-TEXT { display: block }</style>
<script>alert('SCRIPT-TEXT')</script>
</head><body>
<p>Visible question about opening hours.</p>
<div style="display: none; max-height: 0">HIDDEN-PREHEADER</div>
<span style="DISPLAY:NONE">HIDDEN-SPAN</span>
<p hidden>HIDDEN-ATTRIBUTE</p>
<img src=http://track.example/p.gif width=1 height=1>
<img src="x" onerror="alert('ONERROR-TEXT')">
<p><a href="javascript:alert('JS-LINK')">click me</a> and
<a href="https://museum.example/hours">our hours</a></p>
<SCRIPT type="text/javascript">document.write('SCRIPT-2')</SCRIPT>
<iframe src="https://evil.example/frame"></iframe>
<form action="https://evil.example/steal"><input name=pw value=INPUT-VALUE></form>
</body></html>"""


async def test_html_script_style_pixel_hidden_text_and_javascript_link(
    open_desk: Callable[..., Awaitable[Desk]],
) -> None:
    desk = await open_desk()
    subject = "<b>Hours</b> <script>alert(1)</script> <img src=x onerror=alert(2)>"
    head = [*headers(subject, "<html@example.net>"), "Content-Type: text/html; charset=utf-8"]
    raw = ("\r\n".join(head) + "\r\n\r\n" + HOSTILE_HTML.replace("\n", "\r\n")).encode()
    await desk.append(raw)
    assert await desk.take_in() == 1

    ticket = await desk.ticket("<html@example.net>")
    article = await desk.first_inbound(ticket)
    readable(ticket, article)
    body = article.body
    report("html", ticket_body=repr(body))
    assert "Visible question about opening hours." in body
    assert "our hours (https://museum.example/hours)" in body, "a real link keeps its target"
    assert "click me" in body
    for hidden in (
        "TITLE-TEXT",
        "STYLE-TEXT",
        "color: red",
        "SCRIPT-TEXT",
        "SCRIPT-2",
        "alert",
        "HIDDEN-PREHEADER",
        "HIDDEN-SPAN",
        "HIDDEN-ATTRIBUTE",
        "track.example",
        "ONERROR-TEXT",
        "javascript",
        "JS-LINK",
        "INPUT-VALUE",
    ):
        assert hidden not in body, f"{hidden!r} shown in the ticket: {body!r}"

    root, thread = await desk.events(ticket.number)
    events = [root, *thread]
    desk.assert_sane_events(events)
    for event in events:
        formatted = event["content"]["formatted_body"]
        assert_only_own_markup(formatted)  # no <script>, <img>, <a href="javascript:...">
        for tag in ("<script", "<img", "<style", "<iframe", "<a ", "<form", "<input"):
            assert tag not in formatted.lower(), f"{tag} in {formatted!r}"
        assert "javascript:" not in formatted.lower()
        assert "hidden-" not in event["content"]["body"].lower()
    # the subject's markup arrives as text, escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in root["content"]["formatted_body"]
    assert "<script>alert(1)</script>" in root["content"]["body"], "plain body shows it as text"
    await desk.assert_common(hostile=1, tag="html")


# --- 5. a From with 500 addresses --------------------------------------------------------------


async def test_from_with_500_addresses_first_is_requester_lists_capped(
    open_desk: Callable[..., Awaitable[Desk]],
) -> None:
    desk = await open_desk()
    crowd = ", ".join(f"Person {i} <p{i}@example.net>" for i in range(500))
    others = ", ".join(f"r{i}@example.com" for i in range(499))
    copies = ", ".join(f"c{i}@example.com" for i in range(500))
    raw = plain_mail(
        "From everybody",
        "We all have the same question.",
        "<crowd@example.net>",
        sender=crowd,
        extra=[f"Cc: {copies}"],
    ).replace(f"To: {DESK}".encode(), f"To: {DESK}, {others}".encode())
    await desk.append(raw)
    started = time.monotonic()
    assert await desk.take_in() == 1
    report(
        "500 addresses", header_kb=len(crowd) // 1024, seconds=round(time.monotonic() - started, 2)
    )

    ticket = await desk.ticket("<crowd@example.net>")
    article = await desk.first_inbound(ticket)
    readable(ticket, article)
    assert ticket.requester_email == "p0@example.net"
    assert ticket.requester_name == "Person 0"
    assert article.author == "p0@example.net"
    assert len(article.to) == MAX_ADDRESSES and article.to[0] == DESK
    assert (
        len(article.cc) == MAX_ADDRESSES and article.cc[-1] == f"c{MAX_ADDRESSES - 1}@example.com"
    )
    assert ticket.queue == "info"

    # the acknowledgement goes to the requester alone, not to a crowd
    (ack,) = desk.smtp.messages
    assert ack.rcpt_tos == ("p0@example.net",)
    assert [a.addr_spec for a in ack.message["To"].addresses] == ["p0@example.net"]
    assert ack.message["Cc"] is None and ack.message["Bcc"] is None

    root, thread = await desk.events(ticket.number)
    desk.assert_sane_events([root, *thread])
    assert "p1@example.net" not in root["content"]["body"]
    await desk.assert_common(hostile=1, tag="crowd")
    desk.gaps.expect(
        bool(desk.logged(f"more than {MAX_ADDRESSES} addresses", "addresses cut")),
        "no log line says the From/To/Cc lists were cut to MAX_ADDRESSES",
    )
    desk.gaps.settle()


# --- 6. header injection aimed at the replies --------------------------------------------------

INJECTED_FROM = (
    "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40example=2Ecom=0D=0AX-Injected=3A_name?= "
    "<eve@example.net\r\n\tBcc: victim@example.com>"
)
INJECTED_SUBJECT = "=?utf-8?q?Hi=0D=0ABcc=3A_victim=40example=2Ecom=0D=0AX-Injected=3A_subject?="
# the same in base64, and a Reply-To whose first address is the requester, then the victim
INJECTED_REPLY_TO = (
    "=?utf-8?b?"
    + base64.b64encode(b"Eve\r\nBcc: victim@example.com\r\nX-Injected: reply-to").decode()
    + "?= <eve@example.net>, victim@example.com"
)
# an encoded word inside the address itself
INJECTED_ADDRESS = "<=?utf-8?q?mallory=0D=0ABcc=3A_victim=40example=2Ecom?=@example.net>"


def header_block(captured: CapturedMessage) -> list[str]:
    head = captured.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return head.split("\r\n")


def assert_clean_reply(captured: CapturedMessage, requester: str) -> None:
    assert captured.rcpt_tos == (requester,), captured.rcpt_tos
    lines = header_block(captured)
    names = [line.split(":", 1)[0].lower() for line in lines if not line[:1].isspace()]
    assert "bcc" not in names and "x-injected" not in names, names
    assert names.count("to") == 1 and names.count("subject") == 1, names
    allowed = {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
        "auto-submitted",
        "x-auto-response-suppress",
    }
    assert set(names) <= allowed, set(names) - allowed
    assert all("\r" not in line and "\n" not in line for line in lines)
    message = captured.message
    assert [a.addr_spec for a in message["To"].addresses] == [requester]
    subject = str(message["Subject"])
    assert "\r" not in subject and "\n" not in subject, repr(subject)
    assert "victim" not in str(message["To"])


async def test_header_injection_never_reaches_the_reply_headers_or_envelope(
    open_desk: Callable[..., Awaitable[Desk]],
) -> None:
    desk = await open_desk()
    await desk.append(
        plain_mail(
            INJECTED_SUBJECT,
            "Please answer me.",
            "<inject@example.net>",
            sender=INJECTED_FROM,
            extra=[f"Reply-To: {INJECTED_REPLY_TO}"],
        )
    )
    await desk.append(
        plain_mail("Address trick", "And me.", "<inject-addr@example.net>", sender=INJECTED_ADDRESS)
    )
    assert await desk.take_in() == 2

    ticket = await desk.ticket("<inject@example.net>")
    readable(ticket, await desk.first_inbound(ticket))
    assert ticket.requester_email == "eve@example.net"
    assert "\n" not in ticket.requester_name and "\r" not in ticket.requester_name
    assert ticket.subject == "Hi Bcc: victim@example.com X-Injected: subject"
    odd = await desk.ticket("<inject-addr@example.net>")
    report("header injection", requester=ticket.requester_email, odd_requester=odd.requester_email)
    assert "\n" not in odd.requester_email and "\r" not in odd.requester_email

    root, _thread = await desk.events(ticket.number)
    odd_root, _ = await desk.events(odd.number)
    for target in (root, odd_root):
        await asyncio.to_thread(desk.room.say_in_thread, target["event_id"], "!reply Of course.")

    async def replies_stored() -> bool:
        found = [a for t in (ticket, odd) for a in await desk.articles(t)]
        return sum(a.kind is ArticleKind.REPLY for a in found) == 2

    deadline = time.monotonic() + 20
    while not await replies_stored():
        assert time.monotonic() < deadline, "the two !reply commands were not carried out"
        await asyncio.sleep(0.2)
    await desk.app.dispatcher.drain_all()

    # the acknowledgement and the reply to eve; nothing for the encoded-word address
    sent = list(desk.smtp.messages)
    assert len(sent) == 2, [m.rcpt_tos for m in sent]
    for captured in sent:
        assert_clean_reply(captured, "eve@example.net")
    reply = next(m for m in sent if "Of course." in m.message.get_content())
    assert str(reply.message["Subject"]) == (
        f"Re: [Ticket#{ticket.number}] Hi Bcc: victim@example.com X-Injected: subject"
    )
    assert all("victim" not in r for m in sent for r in m.rcpt_tos)

    # the address with an encoded word cannot be written: refused for good, and said so
    odd_replies = [a for a in await desk.articles(odd) if a.kind is not ArticleKind.INBOUND]
    assert odd_replies and all(a.send_state is SendState.FAILED for a in odd_replies)
    _, odd_thread = await desk.events(odd.number)
    assert any("could not be sent and was given up" in e["content"]["body"] for e in odd_thread)
    await desk.assert_common(hostile=2, tag="inject")


# --- 7. mentions and markup aimed at the chat -------------------------------------------------


async def test_mention_and_markup_injection_pings_nobody_and_stays_text(
    open_desk: Callable[..., Awaitable[Desk]],
) -> None:
    desk = await open_desk()
    alice = desk.room.alice[0]
    pill = f'<a href="https://matrix.to/#/{alice}">{alice}</a>'
    subject = f"@room @everyone urgent {pill} <@123456789012345678> [click](https://evil.example)"
    body = "\n".join(
        [
            "@room please look at this",
            "@ROOM @everyone @here",
            pill,
            f"{alice} and {alice.split(':')[0][1:]}",
            "<@123456789012345678> <@&987654321> <#1234>",
            "[click](https://evil.example) **bold** ||spoiler||",
            '<font color="red">red</font> <mx-reply>fake reply</mx-reply>',
        ]
    )
    html_body = f"<p>{pill} <a href='https://matrix.to/#/#room:localhost'>@room</a></p>"
    raw = multipart(
        headers(subject.replace("\n", " "), "<mention@example.net>"),
        [text_part(body), attachment(f"{alice}.txt", b"x", "text/plain")],
    )
    html_raw = multipart(
        headers("Pill in HTML", "<mention-html@example.net>"), [text_part(html_body, "html")]
    )
    await desk.append(raw)
    await desk.append(html_raw)
    before = await asyncio.to_thread(desk.room.highlights_for_alice)
    assert await desk.take_in() == 2

    ticket = await desk.ticket("<mention@example.net>")
    readable(ticket, await desk.first_inbound(ticket))
    html_ticket = await desk.ticket("<mention-html@example.net>")
    events: list[dict[str, Any]] = []
    for number in (ticket.number, html_ticket.number):
        root, thread = await desk.events(number)
        events += [root, *thread]
    desk.assert_sane_events(events)
    for event in events:
        content = event["content"]
        assert content["m.mentions"] == {}, "no user_ids, no room"
        plain, formatted = content["body"], content["formatted_body"]
        for text in (plain, formatted):
            assert not re.search(r"@room", text, re.I), f"@room not defanged: {text!r}"
            assert not re.search(r"(?<!\w)@(?=[a-z0-9._=/+-])", text, re.I), text
        assert_only_own_markup(formatted)  # the pill, <font>, <mx-reply> are text
        assert "<a " not in formatted and "<font" not in formatted, formatted
    joined = "\n".join(e["content"]["formatted_body"] for e in events)
    assert "&lt;a href=&quot;https://matrix.to/#/@" + ZWJ in joined, "the pill is escaped text"
    assert "&lt;@" + ZWJ + "123456789012345678&gt;" in joined
    assert "[click](https://evil.example)" in "\n".join(e["content"]["body"] for e in events)

    after = await asyncio.to_thread(desk.room.highlights_for_alice)
    report("mentions", highlight_before=before, highlight_after=after, events=len(events))
    assert after == before, "nothing the mail says highlights (pings) the volunteer"
    await desk.assert_common(hostile=2, tag="mention")


# --- 8. the desk's own address ------------------------------------------------------------------


async def test_mail_from_own_address_no_acknowledgement_no_loop(
    open_desk: Callable[..., Awaitable[Desk]],
) -> None:
    desk = await open_desk()
    await desk.append(
        plain_mail(
            "Note to self", "Testing the desk.", "<self@example.org>", sender=f"Info <{DESK}>"
        )
    )
    assert await desk.take_in() == 1
    ticket = await desk.ticket("<self@example.org>")
    readable(ticket, await desk.first_inbound(ticket))
    assert ticket.requester_email == DESK
    assert desk.smtp.messages == [], "no acknowledgement to the desk itself"
    assert desk.logged(f"no acknowledgement for {DESK}: it is one of the desk's own addresses")

    # A volunteer answers anyway; whatever goes to the desk's address comes back in. The
    # loop must settle: each round's mail to us is delivered back into the mailbox.
    root, _ = await desk.events(ticket.number)
    await asyncio.to_thread(desk.room.say_in_thread, root["event_id"], "!reply Noted.")
    deadline = time.monotonic() + 20
    while not any(a.kind is ArticleKind.REPLY for a in await desk.articles(ticket)):
        assert time.monotonic() < deadline, "the !reply was not carried out"
        await asyncio.sleep(0.2)
    await desk.app.dispatcher.drain_all()
    delivered = 0
    for _round in range(5):
        fresh = desk.smtp.messages[delivered:]
        if not fresh:
            break
        for captured in fresh:
            if DESK in captured.rcpt_tos:
                await desk.append(captured.data)
        delivered += len(fresh)
        await desk.take_in()
    sent = list(desk.smtp.messages)
    articles = await desk.articles(ticket)
    report(
        "own address",
        tickets=await desk.tickets(),
        sent=len(sent),
        articles=[a.kind.value for a in articles],
        state=(await desk.ticket("<self@example.org>")).state.value,
    )
    assert len(sent) == 1, "only the volunteer's reply went out; it answered nothing back"
    assert sent[0].rcpt_tos == (DESK,)
    assert "Noted." in sent[0].message.get_content()
    assert await desk.tickets() == 1, "the reply coming back is no new ticket"
    assert sum(a.kind is ArticleKind.AUTO_REPLY for a in articles) == 0
    await desk.assert_common(hostile=2, tag="self")
