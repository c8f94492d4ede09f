"""Watching an IMAP folder and taking every new message in exactly once.

The promise this module keeps, with :class:`bot.ports.MailIntake`: nothing lost,
nothing doubled.

* Messages are fetched with ``BODY.PEEK[]``, which leaves ``\\Seen`` alone, so the
  server-side state changes only after :meth:`MailIntake.ingest` has returned, that
  is after the ticket is committed. Then the message is flagged ``\\Seen`` (or moved
  away), and only then :meth:`MailIntake.mark_done` records that.
* A crash between commit and flag leaves the message in
  :meth:`MailIntake.pending_done`; the next check finishes it without ingesting it
  again. A failing ingest stops the check with the message untouched, so it is
  taken in again on the next try (or the one after the backoff).
* Which UIDs are new comes from the intake's cursor (UIDVALIDITY + highest UID
  taken in), not from ``\\Seen``: a person reading the mailbox in a mail program
  cannot hide a message from the bot. When UIDVALIDITY changes the cursor restarts
  at 0; the core's Message-ID check turns the re-read into duplicates, not tickets.

imapclient is synchronous, so every IMAP command runs in a worker thread
(:func:`asyncio.to_thread`) while the intake calls stay on the event loop. One
connection is used by one command at a time: a thread lock serialises the commands
and an asyncio lock serialises whole checks (and IDLE, which occupies the
connection).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, ParamSpec, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from adapters.email.oauth2 import OAuth2Tokens
from adapters.email.parse import MailParser
from adapters.email.parse_worker import ChildParseFailed, parse_in_child
from bot.config import ImapConfig, MailAuth
from bot.faults import checkpoint
from bot.mail import InboundEmail
from bot.metrics import Metrics
from bot.ports import MailIntake, MailKey, Scheduler

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

Security = Literal["tls", "starttls", "none"]
AfterIntake = Literal["flag", "move"]

SEEN = b"\\Seen"
DELETED = b"\\Deleted"
#: Mails up to this size are parsed on the event loop (a thread hand-off costs more).
_PARSE_INLINE_BYTES = 1_000_000
#: Larger mails are parsed in a child process (adapters/email/parse_worker.py): in a
#: thread, their parse still holds the interpreter lock for long stretches.
_PARSE_IN_CHILD_BYTES = 16_000_000
FETCH_BATCH = 50  # messages per FETCH: bounded memory, few round trips
STORE_BATCH = 500  # UIDs per STORE/MOVE command when finishing pending messages
IDLE_MAX_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE before the server's 30 min logout
IDLE_SLICE_SECONDS = 1.0  # how often a waiting IDLE looks up to notice cancel/check_once
BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
LOGOUT_TIMEOUT_SECONDS = 5.0
STALE_AFTER_SECONDS = 300.0  # an unused connection older than this is NOOP-tested first
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ImapSettings:
    """One mailbox folder to watch, and what to do with a message once it is taken in."""

    host: str
    port: int
    security: Security
    username: str
    password: str
    folder: str = "INBOX"
    idle: bool = True
    poll_seconds: float = 60.0
    after_intake: AfterIntake = "flag"
    move_to: str = ""
    timeout: float = 60.0
    #: "oauth2" logs in with XOAUTH2 and a token from ``oauth2`` instead of ``password``
    auth: MailAuth = "password"
    oauth2: OAuth2Tokens | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: ImapConfig, oauth2: OAuth2Tokens | None = None) -> ImapSettings:
        """The settings for the ``[mail.imap]`` section of bot.toml (and [mail.oauth2]'s tokens)."""
        return cls(
            host=config.host,
            port=config.port,
            security=config.security,
            username=config.username,
            password=config.password,
            folder=config.folder,
            idle=config.idle,
            poll_seconds=config.poll_seconds,
            after_intake=config.after_intake,
            move_to=config.move_to,
            timeout=config.timeout_seconds,
            auth=config.auth,
            oauth2=oauth2 if config.auth == "oauth2" else None,
        )

    def __post_init__(self) -> None:
        if self.auth == "oauth2" and self.oauth2 is None:
            raise ValueError('IMAP auth = "oauth2" needs the [mail.oauth2] token source')
        if self.security not in ("tls", "starttls", "none"):
            raise ValueError(f"IMAP security must be tls, starttls or none, not {self.security!r}")
        if self.after_intake not in ("flag", "move"):
            raise ValueError(f"after_intake must be flag or move, not {self.after_intake!r}")
        if self.after_intake == "move" and not self.move_to:
            raise ValueError("after_intake = move needs a move_to folder")
        if self.after_intake == "move" and self.move_to == self.folder:
            raise ValueError("move_to must differ from the watched folder")
        if self.poll_seconds <= 0:
            raise ValueError("poll_seconds must be positive")


class ImapWatcher:
    """Takes in new mail from one IMAP folder: IDLE where possible, polling otherwise."""

    def __init__(
        self,
        settings: ImapSettings,
        intake: MailIntake,
        parse: Callable[[bytes], InboundEmail],
        scheduler: Scheduler | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._connections = 0
        self.source = f"imap:{settings.username}@{settings.host}:{settings.port}/{settings.folder}"
        self._intake = intake
        self._parse = parse
        self._scheduler = scheduler
        # Tests pass a context trusting their own certificate; production verifies normally.
        self._ssl_context = ssl_context
        self._job_key = f"imap-poll:{self.source}"
        self._client: Any = None  # IMAPClient (untyped library)
        self._capabilities: frozenset[bytes] = frozenset()
        self._idling = False
        self._last_used = 0.0
        self._io_lock = threading.Lock()
        self._check_lock = asyncio.Lock()
        self._checks_waiting = 0
        self._backoff = BACKOFF_START_SECONDS
        self._not_before = 0.0
        self._scheduled = False

    # --- public ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Check now, then on every IDLE wake-up or poll, until cancelled; then log out.

        Any failure (connection, server, or an ingest that raised) is logged and
        retried after a backoff of 1 s doubling to 300 s, reset by a good check.
        """
        log.info("watching %s", self.source)
        if self.settings.security == "none" and self.settings.host not in _LOOPBACK:
            log.warning("%s: security = none sends the password unencrypted", self.source)
        try:
            while True:
                try:
                    # Again until a check finds nothing: mail that arrived during a check
                    # was announced during it, and the IDLE after it would not say so
                    # again (found by bench/flood.py: a burst then waited poll_seconds).
                    while await self.check_once():
                        pass
                except Exception as exc:
                    await asyncio.sleep(self._failed(exc))
                    continue
                self._succeeded()
                if self._can_idle():
                    try:
                        await self._idle()
                    except Exception as exc:
                        await asyncio.sleep(self._failed(exc))
                elif self._scheduler is not None:
                    self._scheduler.every(
                        self._job_key, self.settings.poll_seconds, self._scheduled_check
                    )
                    self._scheduled = True
                    await asyncio.Event().wait()  # the scheduler checks from now on
                else:
                    await asyncio.sleep(self.settings.poll_seconds)
        finally:
            if self._scheduled and self._scheduler is not None:
                self._scheduler.cancel(self._job_key)
                self._scheduled = False
            await self._disconnect()
            log.info("stopped watching %s", self.source)

    async def check_once(self) -> int:
        """Take in every message newer than the cursor; return how many were ingested.

        Connects if needed. Raises what went wrong (the message concerned stays
        untouched on the server); the next call carries on where this one stopped.
        """
        self._checks_waiting += 1  # asks a running IDLE to give up the connection
        try:
            await self._check_lock.acquire()
        finally:
            self._checks_waiting -= 1
        try:
            return await self._check()
        finally:
            self._check_lock.release()

    async def close(self) -> None:
        """Log out (for callers that used :meth:`check_once` without :meth:`run`)."""
        async with self._check_lock:
            await self._disconnect()

    # --- one check ---------------------------------------------------------------------------

    async def _check(self) -> int:
        client = await self._connected()
        selected = await self._imap(client.select_folder, self.settings.folder, readonly=False)
        validity = int(selected[b"UIDVALIDITY"])
        cursor = await self._intake.cursor(self.source)
        if cursor is None or cursor.validity != validity:
            if cursor is not None:
                log.warning(
                    "%s: UIDVALIDITY changed from %s to %s; reading the folder from the start",
                    self.source,
                    cursor.validity,
                    validity,
                )
            await self._intake.reset_cursor(self.source, validity)
            last_uid = 0
        else:
            last_uid = cursor.last_uid

        await self._finish_pending(client, validity)

        # "N:*" always matches the highest UID, even when it is below N.
        found = await self._imap(client.search, ["UID", f"{last_uid + 1}:*"])
        new = sorted(uid for uid in (int(u) for u in found) if uid > last_uid)
        if new:
            log.debug("%s: %d new message(s) after UID %d", self.source, len(new), last_uid)
        count = 0
        for batch in _chunks(new, FETCH_BATCH):
            fetched = await self._imap(client.fetch, batch, [b"BODY.PEEK[]"])
            # Flag what this batch took in with one STORE at its end (or when it stops
            # early), not one round trip a message: the flags still follow the commits,
            # and a crash in between is finished by _finish_pending at the next check.
            taken: list[MailKey] = []
            try:
                for uid in batch:
                    raw = fetched.get(uid, {}).get(b"BODY[]")
                    if raw is None:
                        log.info("%s: UID %d disappeared before it was fetched", self.source, uid)
                        continue
                    key = MailKey(self.source, validity, str(uid))
                    try:
                        checkpoint("fetched")
                        data = bytes(raw)
                        email = await self._parsed(data)
                        checkpoint("parsed")
                        await self._intake.ingest(email, key)
                        checkpoint("stored")
                    except Exception:
                        log.error(
                            "%s: taking in UID %d failed; it stays unflagged and is tried again",
                            self.source,
                            uid,
                            exc_info=True,
                        )
                        raise
                    taken.append(key)
                    count += 1
            finally:
                if taken:
                    await self._imap(self._finish_sync, client, [int(k.item) for k in taken])
                    checkpoint("flagged")
                    await self._intake.mark_done_many(taken)
        return count

    async def _parsed(self, data: bytes) -> InboundEmail:
        """Parse where it does not hold up the event loop (chat, commands, the outbox)."""
        if len(data) <= _PARSE_INLINE_BYTES:
            return self._parse(data)
        if len(data) > _PARSE_IN_CHILD_BYTES and isinstance(self._parse, MailParser):
            try:
                return await parse_in_child(
                    data, self._parse.max_attachment_bytes, self._parse.max_total_attachment_bytes
                )
            except ChildParseFailed as exc:
                log.warning(
                    "%s: parsing a %d MB mail in a child process failed (%s); parsing it here",
                    self.source,
                    len(data) // 1_000_000,
                    exc,
                )
        # a big mail takes seconds to parse: not on the event loop
        return await asyncio.to_thread(self._parse, data)

    async def _finish_pending(self, client: Any, validity: int) -> None:
        """Flag or move what a previous run committed but never flagged, then mark it done."""
        pending = await self._intake.pending_done(self.source)
        if not pending:
            return
        current = sorted(
            int(key.item) for key in pending if key.validity == validity and key.item.isdigit()
        )
        log.info("%s: finishing %d message(s) taken in before", self.source, len(current))
        for batch in _chunks(current, STORE_BATCH):
            await self._imap(self._finish_sync, client, batch)
        for key in pending:
            if key.validity != validity:
                # Its UID means nothing any more; the message itself, if still there, is
                # read again under the new UIDVALIDITY, found a duplicate, and flagged then.
                log.info("%s: %s is from an old UIDVALIDITY; nothing to flag", self.source, key)
        await self._intake.mark_done_many(pending)

    def _finish_sync(self, client: Any, uids: list[int]) -> None:
        """Mark taken-in messages on the server: \\Seen, and moved away in move mode."""
        client.add_flags(uids, [SEEN], silent=True)
        if self.settings.after_intake != "move":
            return
        target = self.settings.move_to
        if b"MOVE" in self._capabilities:
            client.move(uids, target)
            return
        client.copy(uids, target)
        client.add_flags(uids, [DELETED], silent=True)
        if b"UIDPLUS" in self._capabilities:
            client.uid_expunge(uids)
        else:
            # A plain EXPUNGE would also remove every message a person merely marked
            # \Deleted in this folder. Leave ours marked; the copy is safe in move_to.
            log.warning(
                "%s: the server has neither MOVE nor UIDPLUS; %d message(s) copied to %s "
                "and marked \\Deleted, not expunged",
                self.source,
                len(uids),
                target,
            )

    # --- IDLE --------------------------------------------------------------------------------

    def _can_idle(self) -> bool:
        return self.settings.idle and self._client is not None and b"IDLE" in self._capabilities

    async def _idle(self) -> None:
        """Wait in IDLE for new mail, at most poll_seconds (and 25 min), or until check_once."""
        async with self._check_lock:
            client = await self._connected()
            await self._imap(client.idle)
            self._idling = True
            deadline = time.monotonic() + min(self.settings.poll_seconds, IDLE_MAX_SECONDS)
            while self._checks_waiting == 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(remaining, IDLE_SLICE_SECONDS)
                started = time.monotonic()
                responses = await self._imap(client.idle_check, wait)
                if any(_is_new_mail(response) for response in responses):
                    log.debug("%s: new mail announced", self.source)
                    break
                if any(_is_no(response) for response in responses):
                    # e.g. the folder was deleted and re-created: look again now rather
                    # than at the next IDLE renewal
                    log.info("%s: the server reported a problem during IDLE; checking", self.source)
                    break
                if any(_is_bye(response) for response in responses):
                    await self._disconnect(polite=False)
                    raise ConnectionError("the server closed the connection during IDLE")
                if not responses and time.monotonic() - started < wait / 2:
                    # imapclient returns at once with nothing when the socket hit EOF;
                    # ending IDLE makes a dead connection raise instead of spinning.
                    break
            self._idling = False
            await self._imap(client.idle_done)

    # --- scheduler-driven polling ------------------------------------------------------------

    async def _scheduled_check(self) -> None:
        """The scheduler's job: a check, with the same backoff as :meth:`run` on failure."""
        if time.monotonic() < self._not_before:
            return
        try:
            await self.check_once()
        except Exception as exc:
            self._not_before = time.monotonic() + self._failed(exc)
        else:
            self._succeeded()

    def _failed(self, exc: Exception) -> float:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_SECONDS)
        log.warning(
            "%s: check failed (%s: %s); retrying in %.0f s",
            self.source,
            type(exc).__name__,
            exc,
            delay,
        )
        return delay

    def _succeeded(self) -> None:
        self._backoff = BACKOFF_START_SECONDS
        self._not_before = 0.0
        self.metrics.mail_checked_at[self.source] = datetime.now(UTC)

    # --- connection --------------------------------------------------------------------------

    async def _connected(self) -> Any:
        """The open connection, opened (or re-opened when it went stale) as needed."""
        if self._client is not None and time.monotonic() - self._last_used > STALE_AFTER_SECONDS:
            try:
                await self._io(self._client.noop)
            except Exception as exc:
                log.info("%s: idle connection is gone (%s); reconnecting", self.source, exc)
                await self._disconnect(polite=False)
        if self._client is None:
            self._client = await self._login()
            self._last_used = time.monotonic()
            self._connections += 1
            if self._connections > 1:
                self.metrics.reconnects["imap"] += 1
            log.info("%s: connected", self.source)
        return self._client

    async def _login(self) -> Any:
        """Connect and log in: with the password, or with an OAuth2 access token (XOAUTH2).

        A refused token is dropped and the login tried once more with a fresh one: the
        provider may have revoked it before the expiry it announced.
        """
        tokens = self.settings.oauth2
        if tokens is None:
            return await self._io(self._connect_sync)
        token = await tokens.access_token()
        try:
            return await self._io(self._connect_sync, token)
        except LoginError:
            log.info("%s: the access token was refused; getting a new one", self.source)
            tokens.invalidate(token)
            return await self._io(self._connect_sync, await tokens.access_token())

    def _connect_sync(self, access_token: str | None = None) -> Any:
        settings = self.settings
        context = self._ssl_context or ssl.create_default_context()
        client = IMAPClient(
            settings.host,
            settings.port,
            ssl=settings.security == "tls",
            ssl_context=context if settings.security == "tls" else None,
            timeout=settings.timeout,
        )
        try:
            if settings.security == "starttls":
                client.starttls(context)
            if access_token is None:
                client.login(settings.username, settings.password)
            else:
                client.oauth2_login(settings.username, access_token)
            self._capabilities = frozenset(bytes(c).upper() for c in client.capabilities())
            if settings.after_intake == "move" and not client.folder_exists(settings.move_to):
                client.create_folder(settings.move_to)
                log.info("%s: created folder %s", self.source, settings.move_to)
        except BaseException:
            _shutdown_quietly(client)
            raise
        return client

    async def _disconnect(self, *, polite: bool = True) -> None:
        """Close the connection if open; never raises (it may already be dead).

        ``polite`` ends IDLE and logs out. After a failed command the protocol state
        is unknown and a LOGOUT could wait for the full timeout, so then the socket
        is simply closed.
        """
        client, self._client = self._client, None
        idling, self._idling = self._idling, False
        if client is None:
            return
        if polite:
            await self._io(_logout_quietly, client, idling)
        else:
            await self._io(_shutdown_quietly, client)

    async def _imap(self, command: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one IMAP command in a thread; any failure closes the connection.

        A failed command leaves the protocol state unknown, so the next check starts
        from a fresh login rather than guessing.
        """
        try:
            result = await self._io(command, *args, **kwargs)
        except Exception:
            await self._disconnect(polite=False)
            raise
        self._last_used = time.monotonic()
        return result

    async def _io(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``function`` in a worker thread, one at a time per connection.

        The thread lock matters after a cancellation: the abandoned thread still
        finishes its command, and the logout that follows waits for it.
        """

        def locked() -> T:
            with self._io_lock:
                return function(*args, **kwargs)

        return await asyncio.to_thread(locked)


def _logout_quietly(client: Any, idling: bool) -> None:
    """End IDLE and log out, giving a slow server only a few seconds (we are stopping)."""
    try:
        client.socket().settimeout(LOGOUT_TIMEOUT_SECONDS)
        if idling:
            client.idle_done()
        client.logout()
    except Exception as exc:
        log.debug("logout failed (%s); closing the socket", exc)
        _shutdown_quietly(client)


def _shutdown_quietly(client: Any) -> None:
    try:
        client.shutdown()
    except Exception as exc:
        log.debug("closing the IMAP socket failed: %s", exc)


def _is_new_mail(response: Any) -> bool:
    """An IDLE response like ``(3, b'EXISTS')`` or ``(1, b'RECENT')``."""
    return (
        isinstance(response, tuple)
        and len(response) >= 2
        and isinstance(response[0], int)
        and response[1] in (b"EXISTS", b"RECENT")
    )


def _is_no(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 1 and response[0] == b"NO"


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 1 and response[0] == b"BYE"


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
