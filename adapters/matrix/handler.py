"""nio event callbacks that turn volunteers' messages and reactions into commands.

A command touches the database and may take a moment; nio awaits its callbacks
inside the sync loop, so each command runs as its own task and the loop carries on
receiving events. Tasks are kept referenced (asyncio only holds weak references)
and their failures are logged, never lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

import nio

from adapters.matrix.gateway import MatrixGateway
from adapters.matrix.inbound import Where, command_in, reaction_command
from adapters.matrix.render import Content, notice_contents, reply_relation, thread_relation
from adapters.matrix.rooms import MatrixError
from bot.commands import ChatContext, CommandRequest, CommandResult
from bot.domain import Actor

log = logging.getLogger(__name__)

PLATFORM = "matrix"


class CommandExecutor(Protocol):
    """What the handler needs of :class:`bot.commands.CommandService`."""

    async def execute(self, request: CommandRequest) -> CommandResult: ...


class CommandHandler:
    """Reacts to events in queue rooms; everything else is ignored.

    ``rooms`` maps each queue room's id to the name the config gives it (an id or an
    alias): the core compares a command's room with the configured binding, so it
    must see the configured name. ``not_before_ms`` drops events older than the
    bot's start, such as the history a sync delivers when a room is joined.
    """

    def __init__(
        self,
        commands: CommandExecutor,
        gateway: MatrixGateway,
        bot_user: str,
        rooms: Mapping[str, str],
        not_before_ms: int | None = None,
    ) -> None:
        self._commands = commands
        self._gateway = gateway
        self._bot_user = bot_user
        self.rooms = dict(rooms)
        self.not_before_ms = int(time.time() * 1000) if not_before_ms is None else not_before_ms
        self._tasks: set[asyncio.Task[None]] = set()

    # --- nio callbacks ---------------------------------------------------------------------------

    async def on_message(self, room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        if not self._relevant(room, event.sender, event.server_timestamp):
            return
        content = event.source.get("content", {})
        parsed = command_in(event.body, content)
        if parsed is None:
            return
        request = self._request(room, event.sender, parsed.name, parsed.args, parsed.where)
        self._spawn(self._run(room.room_id, request, parsed.where, event.event_id))

    async def on_reaction(self, room: nio.MatrixRoom, event: nio.ReactionEvent) -> None:
        if not self._relevant(room, event.sender, event.server_timestamp):
            return
        name = reaction_command(event.key)
        if name is None:
            return
        self._spawn(self._react(room, event.sender, name, event.reacts_to))

    # --- lifecycle -------------------------------------------------------------------------------

    async def drain(self, timeout: float = 10.0) -> None:
        """Let running commands finish (up to ``timeout``), then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # --- internals -------------------------------------------------------------------------------

    def _relevant(self, room: nio.MatrixRoom, sender: str, timestamp: int) -> bool:
        return (
            room.room_id in self.rooms
            and sender != self._bot_user
            and timestamp >= self.not_before_ms
        )

    def _request(
        self, room: nio.MatrixRoom, sender: str, name: str, args: str, where: Where
    ) -> CommandRequest:
        actor = Actor(PLATFORM, sender, room.user_name(sender) or sender)
        context = ChatContext(PLATFORM, self.rooms[room.room_id], where.thread_ref)
        return CommandRequest(actor, name, args, context)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("matrix command failed", exc_info=task.exception())

    async def _react(self, room: nio.MatrixRoom, sender: str, name: str, reacts_to: str) -> None:
        """A reaction on a root message, or on any message in a ticket's thread (a notice
        offering ↩️ undo, say): the thread's root is the ticket."""
        where = Where(await self._thread_root(room.room_id, reacts_to), True)
        request = self._request(room, sender, name, "", where)
        await self._run(room.room_id, request, where, reacts_to)

    async def _thread_root(self, room_id: str, event_id: str) -> str:
        """The root of the thread ``event_id`` is in; ``event_id`` itself when in none."""
        resp = await self._gateway.client.room_get_event(room_id, event_id)
        if not isinstance(resp, nio.RoomGetEventResponse):
            log.debug("matrix: cannot fetch %s: %s", event_id, resp)
            return event_id
        relates = resp.event.source.get("content", {}).get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
            root = relates.get("event_id")
            if isinstance(root, str):
                return root
        return event_id

    async def _run(self, room_id: str, request: CommandRequest, where: Where, anchor: str) -> None:
        """Carry out one command and answer unless the ticket's thread already shows it."""
        try:
            result = await self._commands.execute(request)
        except Exception:
            log.exception("matrix: %s by %s failed", request.name, request.actor.user_id)
            result = CommandResult(False, f"Sorry, {request.name} failed; the bot's log says why.")
        if result.ok and result.shown_in_thread:
            return
        if where.in_thread and where.thread_ref is not None:
            reply_to = None if anchor == where.thread_ref else anchor
            relation = thread_relation(where.thread_ref, reply_to)
        else:
            relation = reply_relation(anchor)
        try:
            await self._answer(room_id, result.message, relation)
        except MatrixError:
            # e.g. a reaction on a message inside a thread: a thread cannot start there
            if relation == reply_relation(anchor):
                raise
            await self._answer(room_id, result.message, reply_relation(anchor))

    async def _answer(self, room_id: str, text: str, relation: Content) -> None:
        for content in notice_contents(text, relation):
            await self._gateway.send(room_id, content)
