"""SIGKILL around replies: every reply reaches the SMTP server, at most doubled, never lost.

The real ``ticketbot run`` process takes a few mails in from a real Dovecot; the
volunteer answers each of them with ``!reply`` typed on the console (the bot's stdin);
the replies go to an SMTP server on loopback that is slow on purpose (a pause before
it accepts DATA and a longer one before it answers QUIT). The test kills the bot with
SIGKILL around those sends and restarts it each time, cycling through three kinds of
kill:

* ``random``: at a random moment after the server saw MAIL FROM (mostly inside the
  DATA pause, so the server never accepts that copy, or just after the send);
* ``record``: the documented window. When the server accepts the message it also
  takes the SQLite write lock (before answering 250), so the bot cannot record the
  send; the kill falls while it waits for the lock. Every such kill must cost exactly
  one extra copy, with the same Message-ID;
* ``quit``: inside the server's slow answer to QUIT, after it accepted the message.
  The bot must have recorded the send by then (it does not wait for QUIT), so these
  kills must cost nothing.

At each kill the test reads the dead process's database and the server's messages, so
it knows exactly which replies were accepted but unrecorded, and checks the final
count per Message-ID against that, not against a range.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.servers.dovecot import ImapAccount
from tests.servers.ports import free_port
from tests.servers.smtp import LOOPBACK, SmtpCapture, _Handler

pytestmark = pytest.mark.servers

REPO_ROOT = Path(__file__).resolve().parents[2]
TICKETS = 24
MODES = ("random", "record", "quit")
KILLS = 12  # four of each kind
DATA_DELAY = 0.3  # the server thinks this long before accepting a message
QUIT_DELAY = 1.0  # and this long before answering QUIT
VOLUNTEER = "@alice:example.org"


# --- a slow SMTP server that tells the test where a send is --------------------------------


@dataclass
class SlowCapture(SmtpCapture):
    """The suite's SMTP capture, slowed down, counting sends started and accepted."""

    started: int = 0  # MAIL commands seen
    accepted: int = 0  # messages accepted (recorded in ``messages``)
    progress: threading.Condition = field(default_factory=threading.Condition, repr=False)
    armed: str = ""  # what to do at the next accept: "record" or "quit" (see on_accept)
    db: Path | None = None
    db_lock: sqlite3.Connection | None = None
    hold_data: bool = False  # set by an armed "quit": later messages are not accepted

    def count(self, what: str) -> int:
        with self.progress:
            value: int = getattr(self, what)
            return value

    def wait_past(self, what: str, baseline: int, timeout: float) -> bool:
        """Wait until the counter ``what`` is above ``baseline``; False on timeout."""
        with self.progress:
            return self.progress.wait_for(lambda: self.count(what) > baseline, timeout)

    def bump(self, what: str) -> None:
        with self.progress:
            setattr(self, what, getattr(self, what) + 1)
            self.progress.notify_all()

    def arm(self, mode: str, db: Path) -> None:
        with self.progress:
            self.armed, self.db = mode, db

    def on_accept(self) -> None:
        """Called by the server on accepting a message, before it answers 250.

        ``record``: take the database's write lock, so the bot cannot record the send.
        ``quit``: hold every later message in its DATA pause, so that while the test
        waits inside this message's QUIT pause no other message is accepted (and sits,
        for the moment of one database write, accepted but not yet recorded).
        """
        with self.progress:
            armed, self.armed = self.armed, ""
            if armed == "quit":
                self.hold_data = True
        if armed == "record":
            assert self.db is not None
            conn = sqlite3.connect(
                self.db, timeout=10, isolation_level=None, check_same_thread=False
            )
            conn.execute("BEGIN IMMEDIATE")  # the bot's next write waits for us
            with self.progress:
                self.db_lock = conn

    def holding(self) -> bool:
        with self.progress:
            return self.hold_data

    def disarm(self) -> None:
        with self.progress:
            conn, self.db_lock = self.db_lock, None
            self.armed, self.hold_data = "", False
        if conn is not None:
            conn.rollback()
            conn.close()

    def message_ids(self) -> Counter[str]:
        with self._changed:
            return Counter(str(m.message["Message-ID"]) for m in self.messages)


class _SlowHandler(_Handler):
    def __init__(self, capture: SlowCapture) -> None:
        super().__init__(capture)
        self._slow = capture

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self._slow.bump("started")
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # A client killed during these pauses cancels the handler (aiosmtpd does that on
        # a lost connection): the message was never accepted, as with a real server.
        await asyncio.sleep(DATA_DELAY)
        while self._slow.holding():
            await asyncio.sleep(0.05)
        status = await super().handle_DATA(server, session, envelope)  # records it
        if status.startswith("250"):
            self._slow.on_accept()
            self._slow.bump("accepted")
        return status

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(QUIT_DELAY)
        return "221 Bye"


@pytest.fixture
def slow_smtp() -> Iterator[SlowCapture]:
    capture = SlowCapture(LOOPBACK, free_port())
    controller = Controller(_SlowHandler(capture), hostname=LOOPBACK, port=capture.port)
    controller.start()
    try:
        yield capture
    finally:
        controller.stop()


# --- the bot process -----------------------------------------------------------------------


def _config(tmp_path: Path, account: ImapAccount, smtp: SmtpCapture) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f"""
[storage]
url = "sqlite:///desk.db"
{account.imap_toml("REPLY_CRASH_IMAP_PASSWORD")}
[mail.smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
timeout_seconds = 10
[outbox]
retry_seconds = 1
[tickets]
undo_seconds = 0
[console]
user = "{VOLUNTEER}"
[[queue]]
name = "info"
addresses = ["info@example.org"]
volunteers = ["{VOLUNTEER}"]
default = true
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Bot:
    config: Path
    password: str
    log: IO[bytes]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        env = {**os.environ, "REPLY_CRASH_IMAP_PASSWORD": self.password}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--config", str(self.config)],
            stdin=subprocess.PIPE,  # kept open: the console waits for commands, the bot runs
            stdout=self.log,
            stderr=self.log,
            env=env,
            cwd=REPO_ROOT,
        )
        self.starts += 1

    def type(self, lines: list[str]) -> None:
        """Type console commands; a process that already died just loses them."""
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write("".join(f"{line}\n" for line in lines).encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            pass

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stdin is not None:
            self.process.stdin.close()

    def end_input(self, timeout: float) -> int:
        """Close stdin: the bot finishes its outbox and exits; return its status."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()


# --- the database, read from outside -------------------------------------------------------


def _query(db: Path, sql: str) -> list[tuple[str, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return [tuple(str(v) for v in row) for row in conn.execute(sql)]
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()


def _tickets(db: Path) -> dict[str, str]:
    """Subject -> ticket number."""
    return {subject: number for number, subject in _query(db, "SELECT number, subject FROM ticket")}


def _replies(db: Path) -> list[tuple[str, str, str]]:
    """(body, Message-ID, send_state) of every reply article."""
    rows = _query(db, "SELECT body, message_id, send_state FROM article WHERE kind = 'reply'")
    return [(body, mid, state) for body, mid, state in rows]


def _sent_count(db: Path) -> int:
    return sum(state == "sent" for _body, _mid, state in _replies(db))


def _email_items_pending(db: Path) -> int:
    rows = _query(db, "SELECT COUNT(*) FROM outbox WHERE channel = 'email' AND state = 'pending'")
    return int(rows[0][0]) if rows else -1


def _wait(what: str, probe: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def _answer(index: int) -> str:
    return f"answer-{index:02d} Yes, you may use the photo."


def test_sigkill_around_replies_never_loses_one_and_doubles_only_in_the_window(
    tmp_path: Path, imap_account: ImapAccount, slow_smtp: SlowCapture
) -> None:
    rng = random.Random(20261124)
    db = tmp_path / "desk.db"
    log_path = tmp_path / "bot.log"
    for index in range(TICKETS):
        imap_account.append(
            (
                f"From: requester{index}@example.net\r\nTo: info@example.org\r\n"
                f"Subject: question {index}\r\nMessage-ID: <reply-crash-{index}@example.net>\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                f"May I use photo {index}?\r\n"
            ).encode()
        )

    def missing_replies() -> list[str]:
        """The !reply commands whose reply is not stored yet.

        Read when no process holds an unread command: before the first commands are
        typed, and right after a restart (the killed process's unread input died with it).
        """
        numbers = _tickets(db)
        stored = {body.split(" ", 1)[0] for body, _mid, _state in _replies(db)}
        return [
            f"!reply {numbers[f'question {index}']} {_answer(index)}"
            for index in range(TICKETS)
            if _answer(index).split(" ", 1)[0] not in stored
        ]

    # Message-ID -> copies the server held, at a kill, of a reply the bot had not recorded
    unrecorded: dict[str, int] = {}
    kills = dict.fromkeys(MODES, 0)
    hits = dict.fromkeys(MODES, 0)  # kills that fell into the double-send window
    started = time.monotonic()
    with log_path.open("ab") as log:
        bot = Bot(_config(tmp_path, imap_account, slow_smtp), imap_account.password, log)
        try:
            bot.start()
            _wait("every mail as a ticket", lambda: len(_tickets(db)) == TICKETS, 30, log_path)
            bot.type(missing_replies())

            def all_sent() -> bool:
                replies = _replies(db)
                return (
                    len(replies) == TICKETS
                    and all(state == "sent" for _b, _m, state in replies)
                    and _email_items_pending(db) == 0
                )

            for round_ in range(KILLS):
                mode = MODES[round_ % len(MODES)]
                counter = "started" if mode == "random" else "accepted"
                if mode != "random":
                    slow_smtp.arm(mode, db)
                baseline = slow_smtp.count(counter)
                deadline = time.monotonic() + 30
                while not slow_smtp.wait_past(counter, baseline, timeout=0.5):
                    if all_sent() or time.monotonic() > deadline:
                        break
                if slow_smtp.count(counter) == baseline:
                    slow_smtp.disarm()
                    break  # every reply is sent: nothing left to kill around
                if mode == "random":  # mostly inside the DATA pause, or just after the send
                    time.sleep(rng.uniform(0.0, DATA_DELAY + 0.3))
                elif mode == "record":  # the bot waits for the database to record the send
                    time.sleep(rng.uniform(0.0, 0.3))
                else:  # inside the server's QUIT pause
                    time.sleep(rng.uniform(0.3, QUIT_DELAY - 0.3))
                bot.kill()
                slow_smtp.disarm()
                kills[mode] += 1
                # let the server notice the dead client (it cancels a DATA still pausing)
                time.sleep(0.3)
                held = slow_smtp.message_ids()
                sent_state = {mid: state for _body, mid, state in _replies(db)}
                hit = False
                for mid, copies in held.items():
                    if sent_state.get(mid) != "sent":
                        hit = hit or unrecorded.get(mid, 0) < copies
                        unrecorded[mid] = copies
                hits[mode] += hit
                recorded = _sent_count(db)
                bot.start()
                bot.type(missing_replies())

                def progressed(before: int = recorded) -> bool:
                    return _sent_count(db) > before or all_sent()

                # Spread the kills over the replies: the next one only after this process
                # has recorded a send (the interrupted one, resent at start).
                _wait("a reply sent after the restart", progressed, 30, log_path)

            _wait("every reply recorded as sent", all_sent, 60, log_path)
            status = bot.end_input(timeout=30)
        finally:
            bot.stop()
            slow_smtp.disarm()
    elapsed = time.monotonic() - started
    log_text = log_path.read_text(errors="replace")
    assert status == 0, f"the bot did not exit cleanly at end of input\n{log_text[-3000:]}"

    replies = _replies(db)
    by_answer = Counter(body.split(" ", 1)[0] for body, _mid, _state in replies)
    assert by_answer == Counter(_answer(i).split(" ", 1)[0] for i in range(TICKETS)), (
        "each !reply stored exactly once"
    )
    assert all(state == "sent" for _b, _m, state in replies), replies

    held = slow_smtp.message_ids()
    expected = {mid: 1 + unrecorded.get(mid, 0) for _body, mid, _state in replies}
    assert set(held) == set(expected), "no reply lost, none sent under another Message-ID"
    for mid, copies in held.items():
        assert copies in (1, 2), f"{mid} received {copies} times"
        assert copies == expected[mid], (
            f"{mid} received {copies} time(s); expected {expected[mid]} "
            f"({unrecorded.get(mid, 0)} kill(s) after the server accepted it, before the bot "
            f"recorded it)\n{log_text[-3000:]}"
        )
    # every copy of a reply is the same reply: same Message-ID, same text, same recipient
    for message in slow_smtp.messages:
        body = message.message.get_content().replace("\r\n", "\n")
        mid = str(message.message["Message-ID"])
        (answer,) = [b for b, m, _s in replies if m == mid]
        assert answer in body
        assert message.rcpt_tos == (f"requester{int(answer[7:9])}@example.net",)

    doubled = sum(unrecorded.values())
    sys.stderr.write(
        f"\nreply crash: {bot.starts} starts, {sum(kills.values())} SIGKILLs {kills}; "
        f"double-send window hit {doubled} time(s) {hits}; {len(held)} replies, "
        f"{sum(held.values())} messages received; {elapsed:.1f} s\n"
    )
    assert kills == dict.fromkeys(MODES, KILLS // len(MODES)), f"every kill happened: {kills}"
    assert hits["record"] == kills["record"], "a kill before the send is recorded resends it"
    assert hits["quit"] == 0, (
        "a kill while the server is slow to answer QUIT must not resend: the bot records "
        "the send as soon as the server accepted it"
    )
    assert doubled == sum(hits.values())
