"""Servers going away under the running bot: Dovecot, Synapse, and an SMTP server saying 4xx.

The bot runs in this process (``build_app`` + ``app.run()`` as a task). Dovecot and
Synapse are separate instances started here, not the session ones, so they can be
stopped and started again on the same port while the bot keeps running.

* Dovecot away (twice: its sessions kicked with ``* BYE`` then the server stopped, or
  every Dovecot process SIGKILLed): the watcher logs each failed check, retries after
  1, 2, 4 ... s (no busy loop), logs in again once the server is back, and takes in the
  mail delivered to the maildir during the outage and the mail appended after it, each
  exactly once.
* Synapse away: a mail arriving meanwhile is a ticket at once; its root message waits
  in the outbox and is posted exactly once when Synapse is back.
* SMTP answering 451 three times: the reply is retried from the outbox and sent exactly
  once; the thread says "could not be sent yet" once and "sent after 4 attempts" once.

The outages last seconds, not the minute the faults issue asks for: the code paths are
the same (the IMAP watcher's and the Matrix sync loop's backoff, the outbox's retry
schedule), only the number of doublings differs, and CI stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from bot.app import App, build_app
from bot.config import parse_config
from bot.domain import ArticleKind, SendState
from bot.status import StatusService
from tests.servers.dovecot import (
    LOOPBACK,
    DovecotStartError,
    ImapAccount,
    _identities,
    _stop,
    _write_users,
    launch,
    make_workdir,
)
from tests.servers.ports import free_port
from tests.servers.smtp import SmtpCapture
from tests.servers.synapse import (
    STARTUP_TIMEOUT,
    SynapseServer,
    _get_ok,
    start_synapse,
    synapse_python,
)

pytestmark = pytest.mark.servers

OUTAGE_SECONDS = 6.0
REQUESTER = "maria.lopez@example.net"
IMAP_LOGGER = "adapters.email.imap"


# --- helpers -------------------------------------------------------------------------------


def mail(subject: str, message_id: str, body: str = "Hello.") -> bytes:
    return (
        f"From: Maria Lopez <{REQUESTER}>\r\n"
        "To: info@example.org\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Mon, 23 Nov 2026 09:12:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


async def wait_for(
    what: str, probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2
) -> Any:
    """Poll ``probe`` (in a thread: it may block) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(probe)
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.asynccontextmanager
async def running(app: App) -> AsyncIterator[App]:
    """Run the app as a task; cancel it and wait for it to finish afterwards."""
    task = asyncio.create_task(app.run(), name="app")
    try:
        yield app
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)


def base_config(tmp_path: Path, imap: ImapAccount, **sections: Any) -> dict[str, Any]:
    queue: dict[str, Any] = {
        "name": "info",
        "addresses": ["info@example.org"],
        "volunteers": ["@alice:example.org"],
        "default": True,
    }
    queue.update(sections.pop("queue", {}))
    return {
        "storage": {"url": f"sqlite:///{tmp_path}/desk.db"},
        "mail": {
            "imap": {
                "host": imap.host,
                "port": imap.port,
                "security": "none",
                "username": imap.username,
                "password": imap.password,
                "idle": True,
                "poll_seconds": 5,
                "timeout_seconds": 10,
            },
            "files": {"path": str(tmp_path / "out")},
        },
        "outbox": {"retry_seconds": 1},
        "tickets": {"undo_seconds": 0},
        "queue": [queue],
        **sections,
    }


# --- a Dovecot of our own, to stop and start on the same port -------------------------------


@dataclass
class OwnDovecot:
    """A Dovecot just for one test, configured like the session one (same generator)."""

    workdir: Path
    port: int
    account: ImapAccount
    ids: dict[str, str | int]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def conf(self) -> Path:
        return self.workdir / "dovecot.conf"

    def start(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.process, _seconds = launch(self.workdir, self.port, self.ids, timeout)
                self.starts += 1
                return
            except DovecotStartError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.2)  # e.g. the port not free again yet: try once more

    def stop(self, how: Literal["kick", "crash"] = "kick") -> None:
        """Take the server away.

        Stopping Dovecot's master alone leaves the running ``imap`` processes serving
        their clients, so the bot would never notice. ``kick`` drops the user's
        connections first (the clients get ``* BYE``), then stops the master, like an
        administrator's shutdown; ``crash`` SIGKILLs the master and every process it
        started, so the clients see their connections end without a word.
        """
        process, self.process = self.process, None
        if process is None:
            return
        if how == "kick":
            doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
            subprocess.run(
                [doveadm, "-c", str(self.conf), "kick", self.account.username],
                check=False,  # 68: nobody to kick
                capture_output=True,
                timeout=10,
            )
            _stop(process)
            return
        children = _children(process.pid)
        process.kill()
        process.wait(timeout=10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def deliver(self, raw: bytes) -> None:
        """Drop a message into the maildir behind Dovecot's back, as an MTA would."""
        maildir = self.workdir / "home" / self.account.username / "Maildir"
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.{LOOPBACK}"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, int(self.ids["mail_uid"]), int(self.ids["mail_gid"]))
        tmp.rename(maildir / "new" / name)

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for name in ("stderr.log", "dovecot.log"):
            with contextlib.suppress(OSError):
                text = (self.workdir / name).read_text(errors="replace")
                parts.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)


def _children(parent: int) -> list[int]:
    """The ids of the processes whose parent is ``parent`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


@pytest.fixture
def own_dovecot() -> Iterator[OwnDovecot]:
    ids = _identities()
    workdir = make_workdir("ticketbot-faults-dovecot-", ids)
    account = ImapAccount(LOOPBACK, free_port(), "faulty", uuid.uuid4().hex)
    _write_users(workdir / "users", {account.username: account.password})
    server = OwnDovecot(workdir, account.port, account, ids)
    try:
        server.start()
        yield server
    finally:
        server.stop("crash")  # nothing it started may outlive the test
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


# --- Dovecot away --------------------------------------------------------------------------


@dataclass
class Console:
    """The console adapter's stdin (a pipe we hold open) and stdout."""

    read_end: io.TextIOWrapper
    write_fd: int
    out: io.StringIO = field(default_factory=io.StringIO)

    @classmethod
    def open(cls) -> Console:
        read_fd, write_fd = os.pipe()
        return cls(io.TextIOWrapper(os.fdopen(read_fd, "rb")), write_fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.write_fd)


@pytest.mark.parametrize("how", ["kick", "crash"])
async def test_imap_server_away_watcher_backs_off_and_loses_nothing(
    tmp_path: Path,
    own_dovecot: OwnDovecot,
    caplog: pytest.LogCaptureFixture,
    how: Literal["kick", "crash"],
) -> None:
    caplog.set_level(logging.INFO, logger=IMAP_LOGGER)
    account = own_dovecot.account
    config = parse_config(
        base_config(tmp_path, account, console={"user": "@alice:example.org"}),
        tmp_path / "bot.toml",
        {},
    )
    console = Console.open()
    app = await build_app(config, stdin=console.read_end, stdout=console.out)

    async def tickets() -> int:
        return await app.store.run(lambda repo: repo.count_tickets())

    try:
        async with running(app):
            for index in range(2):
                await asyncio.to_thread(account.append, mail(f"before {index}", f"<b{index}@x>"))
            deadline = time.monotonic() + 20
            while await tickets() < 2:
                assert time.monotonic() < deadline, "the first mails were not taken in"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # back in IDLE

            # --- the outage ---------------------------------------------------------------
            down_at = time.time()
            await asyncio.to_thread(own_dovecot.stop, how)
            # mail keeps arriving while the IMAP server is down (the MTA writes the maildir)
            for index in range(2):
                own_dovecot.deliver(mail(f"during {index}", f"<d{index}@x>"))
            await asyncio.sleep(OUTAGE_SECONDS - (time.time() - down_at))
            restart_at = time.time()
            await asyncio.to_thread(own_dovecot.start)
            up_at = time.time()
            for index in range(2):
                await asyncio.to_thread(account.append, mail(f"after {index}", f"<a{index}@x>"))

            deadline = time.monotonic() + 30
            while await tickets() < 6:
                assert time.monotonic() < deadline, (
                    f"only {await tickets()} of 6 mails taken in after the restart\n"
                    f"{caplog.text[-3000:]}\n{own_dovecot.log_tail()}"
                )
                await asyncio.sleep(0.1)
            recovered_at = time.time()

            def all_flagged() -> bool:
                flags = account.flags()
                return len(flags) == 6 and all(b"\\Seen" in f for f in flags.values())

            await wait_for("all six messages flagged \\Seen", all_flagged, timeout=10)
            await asyncio.sleep(1.0)  # time for a doubled intake to show, if there were one
            count = await tickets()
            ids = [f"<{w}{i}@x>" for w in "bda" for i in (0, 1)]
            found = await app.store.run(lambda repo: [repo.ticket_by_message_ids([m]) for m in ids])
    finally:
        console.close()

    assert count == 6, "each mail is one ticket: nothing lost, nothing doubled"
    assert len({t.number for t in found if t is not None}) == 6, "every mail has its own ticket"

    records = [r for r in caplog.records if r.name == IMAP_LOGGER]
    failures = [r for r in records if "check failed" in r.getMessage()]
    connects = [r for r in records if r.getMessage().endswith(": connected")]
    log_text = "\n".join(r.getMessage() for r in records)
    assert failures, f"the watcher logged the outage\n{log_text}"
    assert all(down_at - 1 <= r.created <= recovered_at for r in failures), log_text
    # Bounded by the backoff (1 s doubling): over a 6 s outage that is 1, 2, 4 (and maybe
    # an 8 when the server came back just too late), never a busy loop.
    delays = [float(r.getMessage().rsplit("retrying in ", 1)[1].split()[0]) for r in failures]
    assert delays == [2.0**i for i in range(len(delays))], log_text
    assert len(failures) <= 5, f"{len(failures)} failed checks in a {OUTAGE_SECONDS} s outage"
    for earlier, later, delay in zip(failures, failures[1:], delays, strict=False):
        assert later.created - earlier.created >= delay * 0.9, "each retry waited its delay"
    assert len(connects) == 2, f"one login before, one after the outage\n{log_text}"
    assert connects[1].created >= restart_at, "the second login is after the restart"
    assert recovered_at - up_at < 2 * OUTAGE_SECONDS + 5, "mail after the restart came in soon"


# --- Synapse away --------------------------------------------------------------------------


def relaunch_synapse(server: SynapseServer) -> None:
    """Start a stopped homeserver again with its config, database and port unchanged."""
    assert server.process is None, "stop it first"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    with server.output_path.open("ab") as output:
        server.process = subprocess.Popen(
            [
                str(synapse_python()),
                "-m",
                "synapse.app.homeserver",
                "-c",
                str(server.workdir / "homeserver.yaml"),
            ],
            cwd=server.workdir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _get_ok(f"{server.url}/_matrix/client/versions"):
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"Synapse did not come back:\n{server.log_tail()}")
        time.sleep(0.1)


@pytest.fixture
def own_synapse(tmp_path: Path) -> Iterator[SynapseServer]:
    workdir = tmp_path / "synapse"
    workdir.mkdir()
    server = start_synapse(workdir)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Room:
    synapse: SynapseServer
    room_id: str
    alice: tuple[str, str]
    bot_id: str

    def messages(self) -> list[dict[str, Any]]:
        path = (
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room_id, safe='')}"
            "/messages?dir=b&limit=500"
        )
        chunk = self.synapse.request("GET", path, token=self.alice[1])["chunk"]
        return [e for e in reversed(chunk) if e["type"] == "m.room.message"]

    def roots(self) -> dict[str, list[str]]:
        """Ticket number -> event ids of its root messages (the ticket cards, not edits)."""
        found: dict[str, list[str]] = {}
        for event in self.messages():
            body = event["content"].get("body", "")
            if "[Ticket#" in body and "m.relates_to" not in event["content"]:
                number = body.split("[Ticket#", 1)[1].split("]", 1)[0]
                found.setdefault(number, []).append(event["event_id"])
        return found

    def thread(self, root: str) -> list[str]:
        bodies = []
        for event in self.messages():
            relation = event["content"].get("m.relates_to") or {}
            if relation.get("rel_type") == "m.thread" and relation.get("event_id") == root:
                bodies.append(str(event["content"].get("body", "")))
        return bodies

    def say_in_thread(self, token: str, root: str, text: str) -> None:
        path = (
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room_id, safe='')}"
            f"/send/m.room.message/faults-{uuid.uuid4().hex}"
        )
        content = {
            "msgtype": "m.text",
            "body": text,
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        }
        self.synapse.request("PUT", path, content, token)


def make_room(synapse: SynapseServer) -> Room:
    suffix = uuid.uuid4().hex[:8]
    alice = synapse.register(f"alice{suffix}", "alice-pw")
    synapse.register(f"ticketbot{suffix}", "bot-pw")
    bot_id = f"@ticketbot{suffix}:{synapse.server_name}"
    room_id = synapse.create_room(alice[1], [bot_id], f"info {suffix}")
    return Room(synapse, room_id, alice, bot_id)


def matrix_config(tmp_path: Path, imap: ImapAccount, room: Room, **extra: Any) -> dict[str, Any]:
    return base_config(
        tmp_path,
        imap,
        matrix={"homeserver": room.synapse.url, "user_id": room.bot_id, "password": "bot-pw"},
        queue={"matrix_room": room.room_id, "volunteers": [room.alice[0]]},
        **extra,
    )


async def test_matrix_server_away_ticket_stored_at_once_posted_once_when_back(
    tmp_path: Path,
    own_synapse: SynapseServer,
    imap_account: ImapAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    room = await asyncio.to_thread(make_room, own_synapse)
    config = parse_config(matrix_config(tmp_path, imap_account, room), tmp_path / "bot.toml", {})
    app = await build_app(config)

    async with running(app):
        await asyncio.to_thread(imap_account.append, mail("Before the outage", "<s1@x>"))
        roots = await wait_for("the first ticket's root message", room.roots)
        (first_number,) = roots

        await asyncio.to_thread(own_synapse.stop)
        down_at = time.monotonic()
        await asyncio.to_thread(imap_account.append, mail("During the outage", "<s2@x>"))
        appended_at = time.monotonic()

        async def second_ticket() -> Any:
            return await app.store.run(lambda repo: repo.ticket_by_message_ids(["<s2@x>"]))

        while (ticket := await second_ticket()) is None:
            assert time.monotonic() - appended_at < 10, "intake waited for Matrix"
            await asyncio.sleep(0.1)
        stored_after = time.monotonic() - appended_at
        metrics = app.dispatcher.metrics
        while not metrics.connections.get("matrix", "").startswith("failing"):
            assert time.monotonic() - down_at < 60, f"/healthz: {metrics.connections}"
            await asyncio.sleep(0.2)
        health = await StatusService(app.live, app.store, app.clock, metrics).health()
        chat = health.details["chat"]
        assert isinstance(chat, dict) and str(chat["matrix"]).startswith("failing"), health
        assert ticket.number != first_number
        pending = await app.store.run(lambda repo: repo.outbox_pending_count("matrix"))
        assert pending >= 1, "the post waits in the outbox"

        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        await asyncio.to_thread(relaunch_synapse, own_synapse)
        up_at = time.monotonic()

        roots = await wait_for(
            "the second ticket's root message", lambda: ticket.number in room.roots(), timeout=40
        )
        posted_after = time.monotonic() - up_at

        async def outbox_empty() -> bool:
            count = await app.store.run(lambda repo: repo.outbox_pending_count("matrix"))
            return bool(count == 0)

        deadline = time.monotonic() + 30
        while not await outbox_empty():
            assert time.monotonic() < deadline, "the matrix outbox did not empty"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # a doubled post would show now
        roots = await asyncio.to_thread(room.roots)
        thread = await asyncio.to_thread(room.thread, roots[ticket.number][0])
        assert metrics.connections["matrix"] == "ok", "/healthz says the connection is back"
        assert metrics.reconnects["matrix"] >= 1, "/metrics counts the reconnect"

    assert sorted(roots) == sorted([first_number, ticket.number])
    assert len(roots[first_number]) == 1, "the ticket posted before the outage is not posted again"
    assert len(roots[ticket.number]) == 1, f"posted exactly once: {roots}"
    assert sum("During the outage" in b or "Hello." in b for b in thread) == 1, thread
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.outbox" and "outbox matrix" in r.getMessage()
    ]
    assert warnings, "the failed posts were logged"
    assert len(warnings) <= 8, f"retries bounded by the outbox backoff: {warnings}"
    assert stored_after < 5, f"the ticket took {stored_after:.1f} s to be stored"
    assert posted_after < 30, f"posted {posted_after:.1f} s after Synapse was back"


# --- SMTP refusing for a while ------------------------------------------------------------


async def test_smtp_4xx_for_a_while_reply_retried_and_sent_once(
    tmp_path: Path,
    synapse: SynapseServer,
    imap_account: ImapAccount,
    smtp_capture: SmtpCapture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    room = await asyncio.to_thread(make_room, synapse)
    settings = matrix_config(tmp_path, imap_account, room)
    del settings["mail"]["files"]
    settings["mail"]["smtp"] = {
        "host": smtp_capture.host,
        "port": smtp_capture.port,
        "security": "none",
        "timeout_seconds": 10,
    }
    config = parse_config(settings, tmp_path / "bot.toml", {})
    app = await build_app(config)
    refusals = 3

    async with running(app):
        await asyncio.to_thread(imap_account.append, mail("Photo please", "<m1@x>"))
        roots = await wait_for("the ticket's root message", room.roots)
        ((number, (root,)),) = roots.items()

        smtp_capture.fail_next(refusals, 451, "4.3.0 Try again later")
        await asyncio.to_thread(
            room.say_in_thread, room.alice[1], root, "!reply Yes, with credit to the photographer."
        )
        captured = await asyncio.to_thread(smtp_capture.wait_for, 1, 20.0)

        def sent_notice() -> bool:
            return any("Reply sent after" in b for b in room.thread(root))

        await wait_for("the notice that the reply got through", sent_notice, timeout=15)
        await asyncio.sleep(1.5)  # a second send would show now
        thread = await asyncio.to_thread(room.thread, root)
        ticket = await app.store.run(lambda repo: repo.ticket_by_number(number))
        assert ticket is not None and ticket.id is not None
        ticket_id = ticket.id
        articles = await app.store.run(lambda repo: repo.articles(ticket_id))
        pending = await app.store.run(lambda repo: repo.outbox_pending_count("email"))

    assert len(smtp_capture.messages) == 1, "sent exactly once after the server recovered"
    assert captured[0].rcpt_tos == (REQUESTER,)
    assert "Yes, with credit" in captured[0].message.get_content()
    (reply,) = [a for a in articles if a.kind is ArticleKind.REPLY]
    assert reply.send_state is SendState.SENT
    assert reply.send_attempts == refusals + 1
    assert str(captured[0].message["Message-ID"]) == reply.message_id
    assert pending == 0
    not_yet = [b for b in thread if "could not be sent yet" in b]
    assert len(not_yet) == 1, f"the thread says so once: {thread}"
    assert "451" in not_yet[0]
    assert sum(f"Reply sent after {refusals + 1} attempts" in b for b in thread) == 1, thread
    failures = [r for r in caplog.records if "reply for item" in r.getMessage()]
    assert len(failures) == refusals, [r.getMessage() for r in failures]
