"""The interfaces the core needs from the outside world.

Adapters and storage implement these; the core depends only on the protocols, so
it can be tested with real storage on a temporary SQLite file and recorded chat
gateways, and a new chat platform is a new implementation, never new core logic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from bot.mail import InboundEmail, OutgoingEmail

T = TypeVar("T")


class Clock(Protocol):
    """Where the core reads the time, so tests can move it instead of sleeping."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock: timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class MailKey:
    """Where one message sits in a mail source, so intake can mark it done later.

    ``source`` names the mailbox (``imap:user@host:port/INBOX``, ``maildir:/path``),
    ``validity`` is the IMAP UIDVALIDITY (0 for a Maildir) and ``item`` the UID as
    text or the Maildir file key.
    """

    source: str
    validity: int
    item: str


@dataclass(frozen=True)
class MailCursor:
    """How far an IMAP folder has been taken in: its UIDVALIDITY and the highest stored UID."""

    validity: int
    last_uid: int


@dataclass(frozen=True)
class IntakeOutcome:
    """What intake did with one message."""

    ticket_number: str
    created: bool  # a new ticket (False: follow-up, or a duplicate)
    duplicate: bool  # the Message-ID was already stored; nothing new was written


class MailIntake(Protocol):
    """What a mail source adapter (IMAP, Maildir) calls.

    The contract that keeps mail from being lost or doubled: call :meth:`ingest`,
    and only after it returns flag or move the message on the server, then call
    :meth:`mark_done`. After a crash, :meth:`pending_done` lists messages whose
    ticket is committed but which were never flagged, so the adapter can finish.
    """

    async def ingest(self, email: InboundEmail, key: MailKey) -> IntakeOutcome: ...

    async def cursor(self, source: str) -> MailCursor | None: ...

    async def reset_cursor(self, source: str, validity: int) -> None: ...

    async def pending_done(self, source: str) -> list[MailKey]: ...

    async def mark_done(self, key: MailKey) -> None: ...

    async def mark_done_many(self, keys: Sequence[MailKey]) -> None:
        """:meth:`mark_done` for a whole fetch batch, in one transaction."""


class StoreUnavailable(Exception):
    """The database cannot be reached or is locked: retry later, and flag no mail meanwhile."""


class MailSender(Protocol):
    """Sends one reply; raises :class:`MailSendError` (``temporary``: worth retrying) on failure."""

    async def send(self, message: OutgoingEmail) -> None: ...


class MailSendError(Exception):
    """Sending failed; ``temporary`` is True where a later retry may succeed (4xx, network)."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


class Scheduler(Protocol):
    """Runs periodic jobs; keyed so a job can be replaced or cancelled."""

    def every(self, key: str, seconds: float, job: Callable[[], Awaitable[None]]) -> None: ...

    def cancel(self, key: str) -> None: ...


class LanguageDetector(Protocol):
    """Guesses the language of a mail's text, offline; "" when it cannot tell."""

    def detect(self, text: str) -> str:
        """An ISO 639-1 code ("de", "en") or ""."""


@dataclass(frozen=True)
class RoomCheck:
    """What the privacy check found about a chat room: public, and why."""

    public: bool
    reason: str = ""


class RoomInspector(Protocol):
    """Tells whether a room is readable by the public: a Matrix room anyone may join or
    listed in the directory, a Discord channel @everyone can read."""

    async def check_room(self, room: str) -> RoomCheck: ...


class LeasesLost(Exception):
    """The connection that holds this process's roles is gone: another process may hold
    them by now, so this one must stop doing their work at once."""


class InstanceIdTaken(Exception):
    """Another live process holds this instance id's liveness lock."""


class Leases(Protocol):
    """Who holds which role among the processes sharing one database, and who is alive.

    A lease lasts as long as the process's own connection to the database (PostgreSQL
    advisory locks; on SQLite a lock on a file beside the database), so a killed process
    loses its roles the moment the operating system closes its connection, and nothing
    has to expire.
    """

    async def start(self, instance_id: int) -> None:
        """Take this instance's own liveness lock (others read it with :meth:`alive`)."""

    async def try_acquire(self, role: str) -> bool:
        """Take ``role`` if nobody holds it; True when this process holds it now."""

    async def check(self) -> None:
        """Raise :class:`LeasesLost` when the locks held may have been lost."""

    def held(self) -> None:
        """Raise :class:`LeasesLost` at once if a check already found them lost."""

    async def alive(self, instance_ids: Sequence[int]) -> set[int]:
        """Those of ``instance_ids`` whose process still runs (holds its liveness lock)."""

    async def close(self) -> None:
        """Give everything back (a clean stop hands the roles over at once)."""


class SoleLeases:
    """Leases for a process that is alone on its database (tests, the demo, ``:memory:``):
    every role is granted and no other instance is ever alive."""

    def __init__(self) -> None:
        self.instance_id = 0

    async def start(self, instance_id: int) -> None:
        self.instance_id = instance_id

    async def try_acquire(self, role: str) -> bool:
        return True

    async def check(self) -> None:
        return None

    def held(self) -> None:
        return None

    async def alive(self, instance_ids: Sequence[int]) -> set[int]:
        return {i for i in instance_ids if i == self.instance_id}

    async def close(self) -> None:
        return None
