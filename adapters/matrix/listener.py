"""The bot's Matrix account: log in, join the queue rooms, listen for commands.

:class:`MatrixAdapter` owns the ``nio.AsyncClient``. Its :attr:`~MatrixAdapter.gateway`
shares that client, so the outbox posts with the same login (and device) that
the listener uses.

Starting skips history on purpose: the first sync only learns where "now" is, and
commands are read from there on. A command typed while the bot was down, or long
ago in a room it joins later, is never carried out by surprise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import time
from collections.abc import Iterable
from pathlib import Path

import nio

from adapters.matrix.gateway import MatrixGateway
from adapters.matrix.handler import CommandExecutor, CommandHandler
from adapters.matrix.rooms import MatrixError, RoomDirectory, describe
from bot.config import MatrixConfig, QueueConfig

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
    """

    def __init__(
        self,
        config: MatrixConfig,
        queues: Iterable[QueueConfig],
        commands: CommandExecutor,
        *,
        store_path: str | Path | None = None,
        ssl: bool | ssl_module.SSLContext = True,
        client_config: nio.AsyncClientConfig | None = None,
    ) -> None:
        self.config = config
        self._queue_rooms = sorted({q.matrix_room for q in queues if q.matrix_room})
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
        self.handler = CommandHandler(commands, self.gateway, config.user_id, {})
        self._stopping = asyncio.Event()
        self._run_finished = asyncio.Event()
        self._running = False

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, join every queue room, and sync once to skip the history."""
        await self._login()
        rooms = await self._join_queue_rooms()
        self.handler.rooms = rooms
        self.handler.not_before_ms = int(time.time() * 1000)
        resp = await self.client.sync(timeout=0, full_state=True)
        if not isinstance(resp, nio.SyncResponse):
            raise MatrixError(f"first sync failed: {describe(resp)}")
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
        log.info("matrix: %s listening in %d room(s)", self.client.user_id, len(rooms))

    async def run(self) -> None:
        """Sync until :meth:`stop`, backing off (1 s doubling to 60 s) while failing.

        A loop of its own rather than nio's ``sync_forever``: that one retries an
        error answer (a 502 from a proxy, say) at once and forever, without a pause.
        """
        backoff = FIRST_BACKOFF
        self._running = True
        try:
            while not self._stopping.is_set():
                try:
                    await self._sync_once()
                    backoff = FIRST_BACKOFF
                except Exception as exc:
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

    async def _join_queue_rooms(self) -> dict[str, str]:
        """Join (or accept the invite to) every queue room; return room id -> configured name.

        A room the bot cannot enter yet is logged, not fatal: inviting the bot later
        is enough, it accepts invites to queue rooms while running.
        """
        rooms: dict[str, str] = {}
        for configured in self._queue_rooms:
            try:
                room_id = await self.rooms.resolve(configured)
            except MatrixError as exc:
                log.error("matrix queue room %s: %s", configured, exc)
                continue
            rooms[room_id] = configured
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
        """Accept invites to queue rooms only; any other room stays unjoined."""
        if event.state_key != self.client.user_id or event.membership != "invite":
            return
        if room.room_id not in self.handler.rooms:
            log.info("matrix: ignoring invite to %s (not a queue room)", room.room_id)
            return
        resp = await self.client.join(room.room_id)
        if isinstance(resp, nio.JoinResponse):
            log.info("matrix: joined queue room %s", self.handler.rooms[room.room_id])
        else:
            log.error("matrix: cannot join %s: %s", room.room_id, describe(resp))

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
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True


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
