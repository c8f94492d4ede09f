"""The bot's Matrix account: log in, join the queue rooms, listen for commands.

:class:`MatrixAdapter` owns the ``nio.AsyncClient``. Its :attr:`~MatrixAdapter.gateway`
shares that client, so the outbox posts with the same login (and device) that
the listener uses.

Starting skips history on purpose: the first sync only learns where "now" is, and
commands are read from there on. A command typed while the bot was down, or long
ago in a room it joins later, is never carried out by surprise.

Admins change the queue rooms while the bot runs (``queue bind`` in a room, ``queue
unbind``); :meth:`MatrixAdapter.apply_config` follows at once, so the next command in a
newly bound room is a queue command and the next one in an unbound room is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import nio

from adapters.matrix.direct import DirectRooms
from adapters.matrix.gateway import MatrixGateway
from adapters.matrix.handler import CommandExecutor, CommandHandler
from adapters.matrix.privacy import MatrixRoomInspector
from adapters.matrix.rooms import MatrixError, RoomDirectory, describe
from bot.admin.live import LiveConfig
from bot.config import Config, MatrixConfig, QueueConfig
from bot.waiting import wait_set

log = logging.getLogger(__name__)

#: How long the homeserver may hold a sync request open when nothing happens (ms).
SYNC_TIMEOUT_MS = 30_000
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0


class MatrixStartError(Exception):
    """The bot cannot log in; the message says why (wrong password, bad token)."""


class MatrixAdapter:
    """Login, room membership and the sync loop of the bot's Matrix account.

    Call :meth:`start` (log in, join, first sync), then run :meth:`run` as a task
    until :meth:`stop`. ``commands`` is the :class:`bot.commands.CommandService`
    (anything with its ``execute``).

    ``admins`` are the Matrix ids whose invites the bot accepts to any room and whose
    commands it hears outside queue rooms. Without them, the admins of the live config
    the command service holds are used; :meth:`apply_config` replaces them with every
    change, so a revoked admin is not heard from the next event on.
    """

    def __init__(
        self,
        config: MatrixConfig,
        queues: Iterable[QueueConfig],
        commands: CommandExecutor,
        *,
        admins: Iterable[str] | None = None,
        store_path: str | Path | None = None,
        ssl: bool | ssl_module.SSLContext = True,
        client_config: nio.AsyncClientConfig | None = None,
    ) -> None:
        #: Reconnects counted for /metrics; the composition root shares its counter.
        self.reconnects: Counter[str] = Counter()
        #: This connection's state for /healthz ("ok", "failing: ..."), shared likewise.
        self.connections: dict[str, str] = {}
        self.config = config
        self._queue_rooms = _queue_rooms(queues)
        self._commands = commands
        if store_path is not None:
            Path(store_path).mkdir(parents=True, exist_ok=True)
        self.client = nio.AsyncClient(
            config.homeserver,
            config.user_id,
            device_id=config.device_id,
            store_path=str(store_path) if store_path is not None else "",
            config=client_config or default_client_config(),
            ssl=ssl,  # aiohttp also takes an SSLContext
        )
        self.rooms = RoomDirectory(self.client)
        self.gateway = MatrixGateway(self.client, self.rooms)
        #: The privacy check of Matrix rooms (:class:`bot.ports.RoomInspector`).
        self.inspector = MatrixRoomInspector(self.client, self.rooms)
        self.direct = DirectRooms(self.client)
        self.handler = CommandHandler(
            commands,
            self.gateway,
            config.user_id,
            {},
            admins=_live_admins(commands) if admins is None else admins,
            direct=self.direct,
        )
        self._stopping = asyncio.Event()
        self._run_finished = asyncio.Event()
        self._running = False
        self._started = False
        #: Bumped by every :meth:`apply_config`: a slow room lookup started for an older
        #: config must not overwrite the rooms of a newer one.
        self._generation = 0

    @property
    def admins(self) -> frozenset[str]:
        return self.handler.admins

    # --- run-time changes ------------------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Follow the config admins changed: queue rooms and admins (a LiveConfig listener).

        Rooms named by id (what ``queue bind`` stores) take effect before this returns;
        an alias not looked up yet, and joining a bound room the bot is not in, follow
        in the background. Before :meth:`start` the change is only noted.
        """
        self.handler.admins = frozenset(config.admins)
        self._queue_rooms = _queue_rooms(config.queues)
        self._generation += 1
        if not self._started:
            return
        rooms, unresolved = self._known_rooms()
        self.handler.rooms = rooms
        missing = [room_id for room_id in rooms if room_id not in self.client.rooms]
        if unresolved or missing:
            self.handler.spawn(self._follow_rooms(self._generation))

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, join every queue room, and sync once to skip the history."""
        await self._login()
        generation = self._generation
        rooms = await self._join_queue_rooms()
        self.handler.rooms = rooms
        self.handler.not_before_ms = int(time.time() * 1000)
        resp = await self.client.sync(timeout=0, full_state=True)
        if not isinstance(resp, nio.SyncResponse):
            raise MatrixError(f"first sync failed: {describe(resp)}")
        await self._accept_waiting_invites()
        for room_id in rooms:
            room = self.client.rooms.get(room_id)
            if room is not None and room.encrypted:
                log.warning(
                    "matrix room %s is encrypted; the bot neither reads nor writes encrypted "
                    "messages there",
                    rooms[room_id],
                )
        # Callbacks only now: the first sync's timeline is history, not commands.
        self.client.add_event_callback(self.handler.on_message, nio.RoomMessageText)
        self.client.add_event_callback(self.handler.on_reaction, nio.ReactionEvent)
        self.client.add_event_callback(self._on_invite, nio.InviteMemberEvent)
        self._started = True
        if generation != self._generation:  # admins changed the rooms while we joined
            self.handler.spawn(self._follow_rooms(self._generation))
        log.info("matrix: %s listening in %d room(s)", self.client.user_id, len(rooms))

    async def run(self) -> None:
        """Sync until :meth:`stop`, backing off (1 s doubling to 60 s) while failing.

        A loop of its own rather than nio's ``sync_forever``: that one retries an
        error answer (a 502 from a proxy, say) at once and forever, without a pause.
        """
        backoff = FIRST_BACKOFF
        self._running = True
        failing = False
        try:
            while not self._stopping.is_set():
                try:
                    await self._sync_once()
                    backoff = FIRST_BACKOFF
                    self.connections["matrix"] = "ok"
                    if failing:  # the homeserver answers again: a reconnect, for /metrics
                        failing = False
                        self.reconnects["matrix"] += 1
                        log.info("matrix: sync works again")
                except Exception as exc:
                    failing = True
                    self.connections["matrix"] = f"failing: {exc}"[:200]
                    log.warning("matrix sync failed (%s); retrying in %.0f s", exc, backoff)
                    if await self._stopped_within(backoff):
                        break
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            self._running = False
            self._run_finished.set()

    async def stop(self) -> None:
        """End :meth:`run`, let running commands finish, and close the HTTP session."""
        self._stopping.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._run_finished.wait(), timeout=10)
        await self.handler.drain()
        await self.client.close()

    # --- internals -------------------------------------------------------------------------------

    async def _login(self) -> None:
        if self.config.access_token:
            self.client.restore_login(
                self.config.user_id, self.config.device_id, self.config.access_token
            )
            whoami = await self.client.whoami()
            if not isinstance(whoami, nio.WhoamiResponse):
                raise MatrixStartError(f"matrix access token rejected: {describe(whoami)}")
            if whoami.user_id != self.config.user_id:
                raise MatrixStartError(
                    f"matrix access token belongs to {whoami.user_id}, not {self.config.user_id}"
                )
            return
        if not self.config.password:
            raise MatrixStartError("matrix: give a password or an access_token")
        resp = await self.client.login(self.config.password, device_name=self.config.device_name)
        if not isinstance(resp, nio.LoginResponse):
            raise MatrixStartError(
                f"matrix login as {self.config.user_id} failed: {describe(resp)}"
            )

    def _known_rooms(self) -> tuple[dict[str, str], list[str]]:
        """Queue rooms whose id is known without asking the server (id -> configured name),
        and the aliases still to be looked up."""
        rooms: dict[str, str] = {}
        unresolved: list[str] = []
        for configured in self._queue_rooms:
            room_id = self.rooms.cached(configured)
            if room_id.startswith("#"):
                unresolved.append(configured)
            else:
                rooms[room_id] = configured
        return rooms, unresolved

    async def _follow_rooms(self, generation: int) -> None:
        """Look up new aliases and join new queue rooms, then use them, unless a newer
        config has arrived meanwhile (its own follow-up does the same)."""
        rooms = await self._join_queue_rooms(skip_joined=True)
        if generation == self._generation:
            self.handler.rooms = rooms

    async def _join_queue_rooms(self, *, skip_joined: bool = False) -> dict[str, str]:
        """Join (or accept the invite to) every queue room; return room id -> configured name.

        A room the bot cannot enter yet is logged, not fatal: inviting the bot later
        is enough, it accepts invites to queue rooms while running.
        """
        rooms: dict[str, str] = {}
        for configured in list(self._queue_rooms):
            try:
                room_id = await self.rooms.resolve(configured)
            except MatrixError as exc:
                log.error("matrix queue room %s: %s", configured, exc)
                continue
            rooms[room_id] = configured
            if skip_joined and room_id in self.client.rooms:
                continue
            resp = await self.client.join(room_id)
            if not isinstance(resp, nio.JoinResponse):
                log.error(
                    "matrix: cannot join queue room %s yet (%s); invite %s to it",
                    configured,
                    describe(resp),
                    self.config.user_id,
                )
        return rooms

    async def _on_invite(self, room: nio.MatrixRoom, event: nio.InviteMemberEvent) -> None:
        """Accept invites to queue rooms, and an admin's invite to any room (the first step
        of binding a queue there); any other room stays unjoined."""
        if event.state_key != self.client.user_id or event.membership != "invite":
            return
        await self._accept_invite(room.room_id, event.sender)

    async def _accept_waiting_invites(self) -> None:
        """Invites that arrived while the bot was down (the first sync lists them, before
        any callback is registered)."""
        for room_id, room in list(self.client.invited_rooms.items()):
            inviter = getattr(room, "inviter", None)
            await self._accept_invite(room_id, inviter if isinstance(inviter, str) else "")

    async def _accept_invite(self, room_id: str, inviter: str) -> None:
        if room_id in self.handler.rooms:
            why = f"queue room {self.handler.rooms[room_id]}"
        elif inviter in self.handler.admins:
            why = f"invited by admin {inviter}"
        else:
            log.info(
                "matrix: ignoring invite to %s from %s (not a queue room, not an admin)",
                room_id,
                inviter or "someone",
            )
            return
        resp = await self.client.join(room_id)
        if isinstance(resp, nio.JoinResponse):
            log.info("matrix: joined %s (%s)", room_id, why)
        else:
            log.error("matrix: cannot join %s: %s", room_id, describe(resp))

    async def _sync_once(self) -> None:
        """One long-poll sync; callbacks run inside it. Returns early on :meth:`stop`."""
        sync = asyncio.ensure_future(self.client.sync(timeout=SYNC_TIMEOUT_MS))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sync, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not sync.done():
                sync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sync
        if sync.cancelled():
            return
        resp = sync.result()
        if isinstance(resp, nio.SyncResponse):
            return
        if getattr(resp, "status_code", None) == "M_UNKNOWN_TOKEN" and self.config.password:
            log.warning("matrix: the session ended (%s); logging in again", describe(resp))
            await self._login()
            return
        raise MatrixError(describe(resp))

    async def _stopped_within(self, seconds: float) -> bool:
        return await wait_set(self._stopping, seconds)


def _queue_rooms(queues: Iterable[QueueConfig]) -> list[str]:
    return sorted({q.matrix_room for q in queues if q.matrix_room})


def _live_admins(commands: object) -> frozenset[str]:
    """The admins of the live config ``commands`` (a CommandService) holds, if it has one.

    ``bot/app.py`` builds the adapter from the queues alone; every later change arrives
    through :meth:`MatrixAdapter.apply_config`.
    """
    live = getattr(commands, "live", None)
    if isinstance(live, LiveConfig):
        return frozenset(live.current.admins)
    return frozenset()


def default_client_config() -> nio.AsyncClientConfig:
    """Give up on a dead connection after a few tries, so the outbox can retry later.

    nio's default retries a timed-out request forever, which would stall the outbox.
    Encryption is off: the bot serves unencrypted queue rooms.
    """
    return nio.AsyncClientConfig(
        max_timeouts=3,
        request_timeout=60,
        encryption_enabled=False,
        store_sync_tokens=False,
    )
