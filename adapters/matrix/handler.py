"""nio event callbacks that turn volunteers' messages and reactions into commands.

A command touches the database and may take a moment; nio awaits its callbacks
inside the sync loop, so each command runs as its own task and the loop carries on
receiving events. Tasks are kept referenced (asyncio only holds weak references)
and their failures are logged, never lost.

Commands are read in queue rooms from everyone (the core decides who may do what).
In any other room the bot is in (a room an admin invited it to so as to bind a queue
there, a room whose queue was unbound, a direct room) only admins are heard: binding
a room starts with a command in a room that is not a queue room yet. Anyone else is
ignored there without an answer, so the bot never chatters in rooms it does not serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

import nio

from adapters.matrix.direct import DirectRooms
from adapters.matrix.gateway import MatrixGateway
from adapters.matrix.inbound import (
    Where,
    command_in,
    offered_actions,
    reaction_command,
    reaction_on_notice,
)
from adapters.matrix.media import file_content
from adapters.matrix.render import Content, notice_contents, reply_relation, thread_relation
from adapters.matrix.rooms import MatrixError
from bot.commands import ChatContext, CommandRequest, CommandResult
from bot.domain import Actor
from bot.files import ResultFile

log = logging.getLogger(__name__)

PLATFORM = "matrix"
#: Said in the room where a private answer was asked for; the answer itself is not.
SENT_PRIVATELY = "🔒 Sent you a direct message."
NOT_SENT_PRIVATELY = (
    "🔒 That answer is for you alone, but a direct message to you failed, so it is not "
    "shown here. Try again later; the bot's log says why."
)


class CommandExecutor(Protocol):
    """What the handler needs of :class:`bot.commands.CommandService`."""

    async def execute(self, request: CommandRequest) -> CommandResult: ...


class CommandHandler:
    """Reacts to events in queue rooms, and to admins' commands in the bot's other rooms.

    ``rooms`` maps each queue room's id to the name the config gives it (an id or an
    alias): the core compares a command's room with the configured binding, so it
    must see the configured name. ``admins`` are the Matrix ids heard outside queue
    rooms. Both are replaced when admins change the config at run time.
    ``not_before_ms`` drops events older than the bot's start, such as the history a
    sync delivers when a room is joined.
    """

    def __init__(
        self,
        commands: CommandExecutor,
        gateway: MatrixGateway,
        bot_user: str,
        rooms: Mapping[str, str],
        not_before_ms: int | None = None,
        *,
        admins: Iterable[str] = (),
        direct: DirectRooms | None = None,
    ) -> None:
        self._commands = commands
        self._gateway = gateway
        self._bot_user = bot_user
        self.rooms = dict(rooms)
        self.admins = frozenset(admins)
        self.direct = direct or DirectRooms(gateway.client)
        self.not_before_ms = int(time.time() * 1000) if not_before_ms is None else not_before_ms
        self._tasks: set[asyncio.Task[None]] = set()

    # --- nio callbacks ---------------------------------------------------------------------------

    async def on_message(self, room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        if not self._fresh(event.sender, event.server_timestamp):
            return
        configured = self._command_room(room.room_id, event.sender)
        if configured is None:
            return
        content = event.source.get("content", {})
        parsed = command_in(event.body, content)
        if parsed is None:
            return
        request = self._request(
            room, configured, event.sender, parsed.name, parsed.args, parsed.where
        )
        self.spawn(self._run(room.room_id, request, parsed.where, event.event_id))

    async def on_reaction(self, room: nio.MatrixRoom, event: nio.ReactionEvent) -> None:
        """Reactions count in queue rooms only: they act on tickets, which live there."""
        if not self._fresh(event.sender, event.server_timestamp):
            return
        configured = self.rooms.get(room.room_id)
        if configured is None:
            return
        name = reaction_command(event.key)
        if name is None:
            return
        self.spawn(self._react(room, configured, event.sender, name, event.reacts_to))

    # --- lifecycle -------------------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that :meth:`drain` waits for; its failure is logged."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

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

    def _fresh(self, sender: str, timestamp: int) -> bool:
        return sender != self._bot_user and timestamp >= self.not_before_ms

    def _command_room(self, room_id: str, sender: str) -> str | None:
        """The room as the core should see it, or None when the command is not heard here.

        A queue room goes by its configured name; any other room by its id, and only
        for admins.
        """
        configured = self.rooms.get(room_id)
        if configured is not None:
            return configured
        if sender in self.admins:
            return room_id
        return None

    def _request(
        self,
        room: nio.MatrixRoom,
        configured: str,
        sender: str,
        name: str,
        args: str,
        where: Where,
    ) -> CommandRequest:
        actor = Actor(PLATFORM, sender, room.user_name(sender) or sender)
        context = ChatContext(PLATFORM, configured, where.thread_ref)
        return CommandRequest(actor, name, args, context)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("matrix command failed", exc_info=task.exception())

    async def _react(
        self, room: nio.MatrixRoom, configured: str, sender: str, name: str, reacts_to: str
    ) -> None:
        """A reaction on a root message, or on any message in a ticket's thread (a notice
        offering ↩️ undo, say): the thread's root is the ticket. On the bot's notice of a
        trainee's draft, ✅ approves the draft instead of closing the ticket."""
        root, offered = await self._reacted_to(room.room_id, reacts_to)
        where = Where(root, True)
        command = reaction_on_notice(name, offered)
        request = self._request(room, configured, sender, command, "", where)
        await self._run(room.room_id, request, where, reacts_to)

    async def _reacted_to(self, room_id: str, event_id: str) -> tuple[str, tuple[str, ...]]:
        """The root of the thread ``event_id`` is in (``event_id`` itself when in none), and
        the actions the message offers when it is one of the bot's notices."""
        resp = await self._gateway.client.room_get_event(room_id, event_id)
        if not isinstance(resp, nio.RoomGetEventResponse):
            log.debug("matrix: cannot fetch %s: %s", event_id, resp)
            return event_id, ()
        source = resp.event.source
        content = source.get("content", {})
        offered = offered_actions(content) if source.get("sender") == self._bot_user else ()
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
            root = relates.get("event_id")
            if isinstance(root, str):
                return root, offered
        return event_id, offered

    async def _run(self, room_id: str, request: CommandRequest, where: Where, anchor: str) -> None:
        """Carry out one command and answer unless the ticket's thread already shows it.

        A private answer goes to the asker's direct room; the room only learns that it
        was sent. Files follow the answer, where the answer went.
        """
        try:
            result = await self._commands.execute(request)
        except Exception:
            log.exception("matrix: %s by %s failed", request.name, request.actor.user_id)
            result = CommandResult(False, f"Sorry, {request.name} failed; the bot's log says why.")
        post = _Poster(self._gateway, room_id, where, anchor)
        if result.private:
            sent = await self._send_privately(request.actor.user_id, result)
            await post.text(SENT_PRIVATELY if sent else NOT_SENT_PRIVATELY)
            return
        if not (result.ok and result.shown_in_thread):
            await post.text(result.message)
        for file in result.files:
            await post.file(file)

    async def _send_privately(self, user_id: str, result: CommandResult) -> bool:
        """Send ``result`` (text and files) to ``user_id`` alone; False when it failed."""
        try:
            room_id = await self.direct.room_for(user_id)
            for content in notice_contents(result.message, None):
                await self._gateway.send(room_id, content)
            for file in result.files:
                await self._gateway.send_file(room_id, file)
        except MatrixError as exc:
            log.error("matrix: a private answer to %s failed: %s", user_id, exc)
            return False
        return True


class _Poster:
    """Posts an answer where the command was given: in the ticket's thread, replying to
    the command, or as a plain reply in the room.

    A thread cannot start everywhere (a reaction on a message that is itself in a
    thread, say); when the homeserver refuses the thread, this and every later part of
    the answer goes as a plain reply to the command instead.
    """

    def __init__(self, gateway: MatrixGateway, room_id: str, where: Where, anchor: str) -> None:
        self._gateway = gateway
        self._room_id = room_id
        self._fallback = reply_relation(anchor)
        if where.in_thread and where.thread_ref is not None:
            reply_to = None if anchor == where.thread_ref else anchor
            self._relation = thread_relation(where.thread_ref, reply_to)
        else:
            self._relation = self._fallback

    async def text(self, message: str) -> None:
        async def send(relation: Content) -> None:
            for content in notice_contents(message, relation):
                await self._gateway.send(self._room_id, content)

        await self._with_fallback(send)

    async def file(self, file: ResultFile) -> None:
        """Upload and show one file; a failure is said in the room, not raised."""
        try:
            url = await self._gateway.upload(file)

            async def send(relation: Content) -> None:
                await self._gateway.send(self._room_id, file_content(file, url, relation))

            await self._with_fallback(send)
        except MatrixError as exc:
            log.error("matrix: showing %s failed: %s", file.name, exc)
            await self.text(f"📎 {file.name} could not be shown; the bot's log says why.")

    async def _with_fallback(self, send: Callable[[Content], Awaitable[None]]) -> None:
        try:
            await send(self._relation)
        except MatrixError:
            if self._relation == self._fallback:
                raise
            self._relation = self._fallback
            await send(self._relation)
