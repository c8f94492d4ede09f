"""ImapWatcher against a real Dovecot: each message taken in once, flagged only afterwards.

The intake here is a small in-memory fake of :class:`bot.ports.MailIntake` that
behaves like the core (Message-ID dedupe, cursor advanced by ingest, pending until
mark_done) and records every call, with hooks to fail before or after "commit".
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from adapters.email.imap import ImapSettings, ImapWatcher
from bot.mail import Address, InboundEmail
from bot.ports import IntakeOutcome, MailCursor, MailKey
from tests.servers.dovecot import DovecotServer, ImapAccount

pytestmark = pytest.mark.servers

SEEN = b"\\Seen"
Hook = Callable[[InboundEmail, MailKey], Awaitable[None]]


def parse(raw: bytes) -> InboundEmail:
    """Enough parsing for these tests; the real parser is tested on its own."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return InboundEmail(
        raw=raw,
        message_id=str(message.get("Message-ID", "")).strip(),
        subject=str(message.get("Subject", "")),
        sender=Address(str(message.get("From", "someone@example.org"))),
    )


def mail(n: int | str, subject: str = "") -> bytes:
    return (
        f"From: requester{n}@example.org\r\n"
        f"To: help@example.org\r\n"
        f"Subject: {subject or f'Question {n}'}\r\n"
        f"Message-ID: <msg-{n}@example.org>\r\n"
        f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        f"\r\n"
        f"Body of message {n}.\r\n"
    ).encode()


class Crash(Exception):
    """Stands in for the process dying at a chosen point."""


@dataclass
class FakeIntake:
    """An in-memory MailIntake that behaves like the core and records every call."""

    ingested: list[tuple[str, MailKey]] = field(default_factory=list)  # (message id, key)
    message_ids: set[str] = field(default_factory=set)
    cursors: dict[str, MailCursor] = field(default_factory=dict)
    pending: dict[MailKey, None] = field(default_factory=dict)  # insertion-ordered set
    done: list[MailKey] = field(default_factory=list)
    resets: list[tuple[str, int]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    before_commit: Hook | None = None  # may raise: then nothing is stored
    after_commit: Hook | None = None  # may raise: stored, but the caller never hears so

    async def ingest(self, email: InboundEmail, key: MailKey) -> IntakeOutcome:
        if self.before_commit is not None:
            await self.before_commit(email, key)
        duplicate = email.message_id in self.message_ids
        if duplicate:
            self.duplicates.append(email.message_id)
        else:
            self.message_ids.add(email.message_id)
            self.ingested.append((email.message_id, key))
        self.pending[key] = None
        cursor = self.cursors.get(key.source)
        if cursor is None or cursor.validity != key.validity or int(key.item) > cursor.last_uid:
            self.cursors[key.source] = MailCursor(key.validity, int(key.item))
        if self.after_commit is not None:
            await self.after_commit(email, key)
        return IntakeOutcome(f"T{len(self.ingested)}", not duplicate, duplicate)

    async def cursor(self, source: str) -> MailCursor | None:
        return self.cursors.get(source)

    async def reset_cursor(self, source: str, validity: int) -> None:
        self.resets.append((source, validity))
        self.cursors[source] = MailCursor(validity, 0)

    async def pending_done(self, source: str) -> list[MailKey]:
        return [key for key in self.pending if key.source == source]

    async def mark_done(self, key: MailKey) -> None:
        self.pending.pop(key, None)
        self.done.append(key)

    async def mark_done_many(self, keys: Sequence[MailKey]) -> None:
        for key in keys:
            await self.mark_done(key)

    @property
    def ingested_ids(self) -> list[str]:
        return [message_id for message_id, _key in self.ingested]


@dataclass
class FakeScheduler:
    jobs: dict[str, tuple[float, Callable[[], Awaitable[None]]]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)

    def every(self, key: str, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        self.jobs[key] = (seconds, job)

    def cancel(self, key: str) -> None:
        self.jobs.pop(key, None)
        self.cancelled.append(key)


def settings(account: ImapAccount, **overrides: object) -> ImapSettings:
    values: dict[str, object] = {
        "host": account.host,
        "port": account.port,
        "security": "none",
        "username": account.username,
        "password": account.password,
        "idle": False,
        "poll_seconds": 600.0,
        "timeout": 10.0,
    }
    values.update(overrides)
    return ImapSettings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def watching(watcher: ImapWatcher) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``watcher.run()`` in a task for the block; cancel it and wait for it after."""
    task = asyncio.create_task(watcher.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Wait until ``condition()`` holds; return how long it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
async def intake() -> FakeIntake:
    return FakeIntake()


# --- checks ------------------------------------------------------------------------------------


async def test_new_mail_is_ingested_once_in_uid_order_and_flagged_only_afterwards(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    uids = [imap_account.append(mail(n)) for n in (1, 2, 3)]
    flags_during_ingest: dict[int, dict[int, set[bytes]]] = {}

    async def look_at_server(email: InboundEmail, key: MailKey) -> None:
        # A second connection sees the server's flags while the ticket is being made.
        flags_during_ingest[int(key.item)] = await asyncio.to_thread(imap_account.flags)

    intake.before_commit = look_at_server
    watcher = ImapWatcher(settings(imap_account), intake, parse)
    try:
        assert await watcher.check_once() == 3
        assert await watcher.check_once() == 0
    finally:
        await watcher.close()

    assert intake.ingested_ids == [
        "<msg-1@example.org>",
        "<msg-2@example.org>",
        "<msg-3@example.org>",
    ]
    assert [int(key.item) for _id, key in intake.ingested] == uids
    assert intake.done == [key for _id, key in intake.ingested]
    assert not intake.pending
    for uid, seen_then in flags_during_ingest.items():
        assert SEEN not in seen_then[uid], "fetching must not mark the message read"
        # the batch's flags are set together after its last commit, never before one
        for later in uids[uids.index(uid) :]:
            assert SEEN not in seen_then[later], "a message was flagged before its commit"
    assert all(SEEN in flags for flags in imap_account.flags().values())
    source = watcher.source
    assert source == f"imap:{imap_account.username}@127.0.0.1:{imap_account.port}/INBOX"
    assert intake.cursors[source].last_uid == uids[-1]


async def test_works_with_the_real_parser(imap_account: ImapAccount, intake: FakeIntake) -> None:
    from adapters.email.parse import parse_email

    seen: list[InboundEmail] = []

    async def keep(email: InboundEmail, key: MailKey) -> None:
        seen.append(email)

    intake.before_commit = keep
    imap_account.append(mail(1, "Grüße aus Köln"))
    watcher = ImapWatcher(settings(imap_account), intake, parse_email)
    try:
        assert await watcher.check_once() == 1
    finally:
        await watcher.close()
    assert seen[0].message_id == "<msg-1@example.org>"
    assert seen[0].sender.email == "requester1@example.org"
    assert seen[0].subject == "Grüße aus Köln"
    assert "Body of message 1." in seen[0].text


async def test_messages_already_read_by_a_person_are_still_taken_in(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    imap_account.append(mail(1), flags=(SEEN,))
    watcher = ImapWatcher(settings(imap_account), intake, parse)
    try:
        assert await watcher.check_once() == 1
    finally:
        await watcher.close()
    assert intake.ingested_ids == ["<msg-1@example.org>"]


async def test_failing_ingest_leaves_the_message_unflagged_and_it_is_taken_in_next_time(
    imap_account: ImapAccount, intake: FakeIntake, caplog: pytest.LogCaptureFixture
) -> None:
    uids = [imap_account.append(mail(n)) for n in (1, 2, 3)]
    failures = [uids[1]]

    async def fail_once(email: InboundEmail, key: MailKey) -> None:
        if int(key.item) in failures:
            failures.remove(int(key.item))
            raise RuntimeError("database is locked")

    intake.before_commit = fail_once
    watcher = ImapWatcher(settings(imap_account), intake, parse)
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="locked"):
            await watcher.check_once()
        assert f"UID {uids[1]} failed" in caplog.text
        assert intake.ingested_ids == ["<msg-1@example.org>"]  # the check stopped at UID 2
        flags = imap_account.flags()
        assert SEEN in flags[uids[0]]
        assert SEEN not in flags[uids[1]]
        assert SEEN not in flags[uids[2]]

        assert await watcher.check_once() == 2
    finally:
        await watcher.close()
    assert intake.ingested_ids == [f"<msg-{n}@example.org>" for n in (1, 2, 3)]
    assert all(SEEN in flags for flags in imap_account.flags().values())
    assert not intake.duplicates


async def test_crash_after_commit_is_finished_by_the_next_run_without_ingesting_again(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    first, second = imap_account.append(mail(1)), imap_account.append(mail(2))

    async def crash(email: InboundEmail, key: MailKey) -> None:
        if int(key.item) == first:
            raise Crash("killed between commit and flag")

    intake.after_commit = crash
    watcher = ImapWatcher(settings(imap_account), intake, parse)
    try:
        with pytest.raises(Crash):
            await watcher.check_once()
    finally:
        await watcher.close()
    assert SEEN not in imap_account.flags()[first]
    assert list(intake.pending) == [intake.ingested[0][1]]

    intake.after_commit = None
    restarted = ImapWatcher(settings(imap_account), intake, parse)
    try:
        assert await restarted.check_once() == 1  # only the second message is new
    finally:
        await restarted.close()
    assert intake.ingested_ids == ["<msg-1@example.org>", "<msg-2@example.org>"]
    assert not intake.duplicates
    assert not intake.pending
    assert [int(key.item) for key in intake.done] == [first, second]
    assert all(SEEN in flags for flags in imap_account.flags().values())


async def test_cancelled_mid_ingest_stops_cleanly_and_the_next_run_finishes(
    dovecot: DovecotServer, imap_account: ImapAccount, intake: FakeIntake
) -> None:
    uid = imap_account.append(mail(1))
    watcher = ImapWatcher(settings(imap_account, idle=True), intake, parse)
    task = asyncio.create_task(watcher.run())

    async def cancel_after_commit(email: InboundEmail, key: MailKey) -> None:
        task.cancel()  # the ticket is stored; the process is stopped right now
        await asyncio.sleep(0)

    intake.after_commit = cancel_after_commit
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert SEEN not in imap_account.flags()[uid]
    assert len(intake.pending) == 1
    await eventually(lambda: _logged_out(dovecot, imap_account.username))

    intake.after_commit = None
    async with watching(ImapWatcher(settings(imap_account, idle=True), intake, parse)):
        await eventually(lambda: not intake.pending)
    assert SEEN in imap_account.flags()[uid]
    assert len(intake.ingested) == 1
    assert not intake.duplicates


def _logged_out(dovecot: DovecotServer, username: str) -> bool:
    """Whether Dovecot logged a clean LOGOUT (not a dropped connection) for ``username``."""
    return any(
        f"imap({username})" in line and "Logged out" in line
        for line in dovecot.log_tail(400).splitlines()
    )


async def test_a_restarted_watcher_continues_from_the_cursor(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    imap_account.append(mail(1))
    imap_account.append(mail(2))
    watcher = ImapWatcher(settings(imap_account), intake, parse)
    try:
        assert await watcher.check_once() == 2
    finally:
        await watcher.close()

    imap_account.append(mail(3))
    # Someone marks everything unread again in a mail program: the cursor still knows.
    with imap_account.client() as client:
        client.select_folder("INBOX")
        client.remove_flags(client.search(["ALL"]), [SEEN])
    restarted = ImapWatcher(settings(imap_account), intake, parse)
    try:
        assert await restarted.check_once() == 1
    finally:
        await restarted.close()
    assert intake.ingested_ids == [f"<msg-{n}@example.org>" for n in (1, 2, 3)]
    assert not intake.duplicates
    assert len(intake.resets) == 1  # only the very first check had no cursor


async def test_a_new_uidvalidity_resets_the_cursor(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    imap_account.append(mail(1), folder="Tickets")
    old_validity = imap_account.uidvalidity("Tickets")
    watched = settings(imap_account, folder="Tickets")

    async def crash(email: InboundEmail, key: MailKey) -> None:
        if email.message_id == "<msg-2@example.org>":
            raise Crash("killed between commit and flag")

    intake.after_commit = crash
    imap_account.append(mail(2), folder="Tickets")
    watcher = ImapWatcher(watched, intake, parse)
    try:
        with pytest.raises(Crash):
            await watcher.check_once()
    finally:
        await watcher.close()
    intake.after_commit = None
    assert intake.resets == [(watcher.source, old_validity)]
    assert len(intake.pending) == 1  # message 2, under the old UIDVALIDITY

    # The folder is recreated (a restore, a server move): same mail, new UIDs.
    imap_account.delete_folder("Tickets")
    for n in (1, 2, 3):
        imap_account.append(mail(n), folder="Tickets")
    new_validity = imap_account.uidvalidity("Tickets")
    assert new_validity != old_validity

    watcher = ImapWatcher(watched, intake, parse)
    try:
        assert await watcher.check_once() == 3  # 1 and 2 turn out duplicates, 3 is new
    finally:
        await watcher.close()
    assert intake.resets[-1] == (watcher.source, new_validity)
    assert intake.ingested_ids == [f"<msg-{n}@example.org>" for n in (1, 2, 3)]
    assert intake.duplicates == ["<msg-1@example.org>", "<msg-2@example.org>"]
    assert not intake.pending  # the stale old-validity key was marked done too
    assert intake.cursors[watcher.source] == MailCursor(new_validity, 3)
    assert all(SEEN in flags for flags in imap_account.flags("Tickets").values())


async def test_move_mode_moves_taken_in_mail_to_the_other_folder(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    for n in (1, 2):
        imap_account.append(mail(n))
    watcher = ImapWatcher(
        settings(imap_account, after_intake="move", move_to="Ticketed"), intake, parse
    )
    try:
        assert await watcher.check_once() == 2
        imap_account.append(mail(3))
        assert await watcher.check_once() == 1
    finally:
        await watcher.close()
    assert imap_account.uids("INBOX") == []
    moved = imap_account.flags("Ticketed")
    assert len(moved) == 3
    assert all(SEEN in flags for flags in moved.values())
    assert intake.ingested_ids == [f"<msg-{n}@example.org>" for n in (1, 2, 3)]


async def test_move_mode_without_the_move_extension_copies_and_expunges(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    imap_account.append(mail(1))
    watcher = ImapWatcher(
        settings(imap_account, after_intake="move", move_to="Ticketed"), intake, parse
    )

    async def refuse_kept(email: InboundEmail, key: MailKey) -> None:
        if email.message_id == "<msg-kept@example.org>":
            raise RuntimeError("not now")

    intake.before_commit = refuse_kept
    try:
        assert await watcher.check_once() == 1
        # Pretend the server lacks MOVE (RFC 6851), as some still do.
        watcher._capabilities = watcher._capabilities - {b"MOVE"}
        imap_account.append(mail(2))
        # Someone deleted this one in a mail program without expunging: not ours to expunge.
        kept = imap_account.append(mail("kept"), flags=(b"\\Deleted",))
        with pytest.raises(RuntimeError):
            await watcher.check_once()
    finally:
        await watcher.close()
    assert imap_account.uids("INBOX") == [kept]  # UID EXPUNGE removed only message 2
    assert len(imap_account.uids("Ticketed")) == 2
    assert intake.ingested_ids == ["<msg-1@example.org>", "<msg-2@example.org>"]


async def test_move_mode_finishes_a_pending_message_by_moving_it(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    imap_account.append(mail(1))

    async def crash(email: InboundEmail, key: MailKey) -> None:
        raise Crash("killed between commit and move")

    intake.after_commit = crash
    moving = settings(imap_account, after_intake="move", move_to="Ticketed")
    watcher = ImapWatcher(moving, intake, parse)
    try:
        with pytest.raises(Crash):
            await watcher.check_once()
        assert len(imap_account.uids("INBOX")) == 1
        intake.after_commit = None
        assert await watcher.check_once() == 0
    finally:
        await watcher.close()
    assert imap_account.uids("INBOX") == []
    assert len(imap_account.uids("Ticketed")) == 1
    assert not intake.pending
    assert len(intake.ingested) == 1


# --- running: IDLE, polling, reconnecting ------------------------------------------------------


async def test_idle_wakes_up_on_new_mail_within_two_seconds(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    imap_account.append(mail(1))
    watcher = ImapWatcher(settings(imap_account, idle=True, poll_seconds=600), intake, parse)
    async with watching(watcher):
        await eventually(lambda: len(intake.ingested) == 1)
        await asyncio.sleep(0.3)  # let it settle into IDLE
        await asyncio.to_thread(imap_account.append, mail(2))
        took = await eventually(lambda: len(intake.ingested) == 2, timeout=5)
        await eventually(lambda: len(intake.done) == 2)
    assert took < 2.0, f"IDLE took {took:.2f} s to notice new mail"
    assert all(SEEN in flags for flags in imap_account.flags().values())


async def test_check_once_during_idle_takes_over_the_connection(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    watcher = ImapWatcher(settings(imap_account, idle=True, poll_seconds=600), intake, parse)
    async with watching(watcher):
        await eventually(lambda: bool(intake.resets))
        await asyncio.sleep(0.3)
        imap_account.append(mail(1))
        count = await asyncio.wait_for(watcher.check_once(), 5)
        await eventually(lambda: len(intake.ingested) == 1)
    assert count in (0, 1)  # IDLE itself may have seen it first
    assert len(intake.ingested) == 1


async def test_without_idle_the_scheduler_drives_the_polls(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    imap_account.append(mail(1))
    scheduler = FakeScheduler()
    watcher = ImapWatcher(settings(imap_account, poll_seconds=30), intake, parse, scheduler)
    key = f"imap-poll:{watcher.source}"
    async with watching(watcher):
        await eventually(lambda: key in scheduler.jobs)
        assert intake.ingested_ids == ["<msg-1@example.org>"]  # the first check runs at start
        seconds, job = scheduler.jobs[key]
        assert seconds == 30
        imap_account.append(mail(2))
        await job()
        assert intake.ingested_ids == ["<msg-1@example.org>", "<msg-2@example.org>"]
    assert scheduler.cancelled == [key]


async def test_without_idle_or_scheduler_it_sleeps_between_polls(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    watcher = ImapWatcher(settings(imap_account, poll_seconds=0.2), intake, parse)
    async with watching(watcher):
        await eventually(lambda: bool(intake.resets))
        imap_account.append(mail(1))
        await eventually(lambda: len(intake.ingested) == 1, timeout=3)


async def test_reconnects_after_the_server_drops_the_connection(
    dovecot: DovecotServer,
    imap_account: ImapAccount,
    intake: FakeIntake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = ImapWatcher(settings(imap_account, idle=True, poll_seconds=600), intake, parse)
    with caplog.at_level(logging.WARNING, logger="adapters.email.imap"):
        async with watching(watcher):
            await eventually(lambda: bool(intake.resets))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(dovecot.kick, imap_account.username)
            await eventually(lambda: "retrying in 1 s" in caplog.text, timeout=5)
            imap_account.append(mail(1))
            await eventually(lambda: len(intake.done) == 1, timeout=8)
    assert SEEN in imap_account.flags()[imap_account.uids()[0]]


async def test_a_failing_ingest_is_retried_by_run_after_a_backoff(
    imap_account: ImapAccount, intake: FakeIntake, caplog: pytest.LogCaptureFixture
) -> None:
    imap_account.append(mail(1))
    attempts: list[float] = []

    async def fail_first(email: InboundEmail, key: MailKey) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("database is locked")

    intake.before_commit = fail_first
    watcher = ImapWatcher(settings(imap_account, idle=True, poll_seconds=600), intake, parse)
    with caplog.at_level(logging.WARNING, logger="adapters.email.imap"):
        async with watching(watcher):
            await eventually(lambda: len(intake.ingested) == 1, timeout=5)
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 0.9  # the 1 s backoff
    assert "retrying in 1 s" in caplog.text


async def test_wrong_password_is_retried_with_growing_backoff(
    imap_account: ImapAccount, intake: FakeIntake, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = ImapWatcher(settings(imap_account, password="wrong"), intake, parse)
    with caplog.at_level(logging.WARNING, logger="adapters.email.imap"):
        async with watching(watcher):
            await eventually(lambda: "retrying in 2 s" in caplog.text, timeout=6)
    assert "retrying in 1 s" in caplog.text
    assert "wrong" not in caplog.text  # the password never reaches the log


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="move_to"):
        ImapSettings("h", 1, "tls", "u", "p", after_intake="move")
    with pytest.raises(ValueError, match="security"):
        ImapSettings("h", 1, "ssl", "u", "p")  # type: ignore[arg-type]


async def test_starttls_is_required_when_configured(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    # The test server offers no STARTTLS: the watcher must refuse to log in in plain text.
    watcher = ImapWatcher(settings(imap_account, security="starttls"), intake, parse)
    try:
        with pytest.raises(Exception, match="STARTTLS"):
            await watcher.check_once()
    finally:
        await watcher.close()
    assert not intake.resets


async def test_move_mode_without_move_or_uidplus_never_expunges_the_folder(
    imap_account: ImapAccount, intake: FakeIntake
) -> None:
    """A plain EXPUNGE would also delete what a person only marked \\Deleted."""
    watcher = ImapWatcher(
        settings(imap_account, after_intake="move", move_to="Ticketed"), intake, parse
    )
    try:
        imap_account.append(mail(1))
        assert await watcher.check_once() == 1
        watcher._capabilities = watcher._capabilities - {b"MOVE", b"UIDPLUS"}
        kept = imap_account.append(mail("kept"), flags=(b"\\Deleted",))
        ours = imap_account.append(mail(2))
        intake.before_commit = None
        await watcher.check_once()
    finally:
        await watcher.close()
    assert kept in imap_account.uids("INBOX"), "a person's \\Deleted mail was expunged"
    assert b"\\Deleted" in imap_account.flags("INBOX")[ours]
    assert len(imap_account.uids("Ticketed")) >= 2
