"""The bot's Discord account: connect, register commands and buttons, listen.

:class:`DiscordAdapter` owns the ``discord.Client``. Its :attr:`~DiscordAdapter.gateway`
shares that client, so the outbox posts over the same login the listeners use.

Intents are the minimum: guilds (channels, threads, roles), guild messages (thread
events) and guild reactions. No privileged intent: the bot never reads message
content (commands are slash commands, buttons and reactions) and never lists
members (an interaction or a reaction carries the member's roles).

Reconnecting is discord.py's job: ``connect(reconnect=True)`` resumes the gateway
session after a dropped connection, with backoff, for as long as the process runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import discord
from discord import app_commands

from adapters.discord.commands import register_commands
from adapters.discord.gateway import DiscordGateway
from adapters.discord.inspector import ChannelInspector, everyone_can_view
from adapters.discord.interactions import CommandExecutor, InteractionHandler
from adapters.discord.mapping import QueueChannels
from adapters.discord.reactions import ReactionHandler
from adapters.discord.views import ActionButtons, TicketButtons, offered_buttons
from bot.config import Config, DiscordConfig, QueueConfig

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

PUBLIC_QUEUE_WARNING = (
    "⚠️ ticketbot: everyone in this server can read this channel, and tickets hold "
    "requesters' names, addresses and mail, so no tickets of queue {queue} are posted "
    "here. Make the channel private (deny View Channel to the everyone role, allow the "
    "volunteers' role) and restart ticketbot; or, if everyone here may really read "
    "them, an admin runs /queue args:bind {queue} --public-ok in this channel."
)
#: What the bot needs in a queue channel, and why (for the start-up check).
NEEDED_PERMISSIONS = {
    "view_channel": "see the channel",
    "send_messages": "post tickets",
    "embed_links": "show the ticket's card",
    "create_public_threads": "open a thread per ticket",
    "send_messages_in_threads": "post emails and notes in the threads",
    "attach_files": "upload attachments",
    "read_message_history": "edit tickets and see reactions",
}


class DiscordStartError(Exception):
    """The bot cannot start on Discord; the message says why (bad token, not in the server)."""


def intents() -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    chosen.guild_reactions = True
    return chosen


class TicketbotClient(discord.Client):
    """A ``discord.Client`` that hands events to the adapter's handlers."""

    def __init__(self, guild_ready_timeout: float = 2.0) -> None:
        super().__init__(
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=guild_ready_timeout,
        )
        self.on_setup: Callable[[], Awaitable[None]] | None = None
        self.reactions: ReactionHandler | None = None
        #: Reconnects counted for /metrics; the composition root shares its counter.
        self.reconnects: Counter[str] = Counter()
        #: This connection's state for /healthz ("ok", "disconnected"), shared likewise.
        self.connections: dict[str, str] = {}
        self._connected_once = False

    async def setup_hook(self) -> None:
        if self.on_setup is not None:
            await self.on_setup()

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self.reactions is not None:
            await self.reactions.on_raw_reaction_add(payload)

    async def on_resumed(self) -> None:
        log.info("discord: connection resumed")
        self.reconnects["discord"] += 1
        self.connections["discord"] = "ok"

    async def on_disconnect(self) -> None:
        self.connections["discord"] = "disconnected"

    async def on_connect(self) -> None:
        # a new gateway session after the first (resuming failed, or Discord asked for
        # a fresh one) is a reconnect too
        if self._connected_once:
            self.reconnects["discord"] += 1
        self._connected_once = True
        self.connections["discord"] = "ok"


class DiscordAdapter:
    """Login, commands, buttons and reactions of the bot's Discord account.

    Call :meth:`start` (connect, wait until ready, sync commands, check the queue
    channels), then run :meth:`run` as a task until :meth:`stop`. ``commands`` is
    the :class:`bot.commands.CommandService` (anything with its ``execute``).

    The composition root also registers :attr:`inspector` as the core's privacy check
    of Discord channels and :meth:`apply_config` as a listener of config changes, so
    queues bound, unbound or re-granted by admins' commands take effect at once.
    """

    def __init__(
        self,
        config: DiscordConfig,
        queues: Iterable[QueueConfig],
        commands: CommandExecutor,
        *,
        ready_timeout: float = READY_TIMEOUT,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        """``guild_ready_timeout`` is how long discord.py waits for more servers after
        the gateway's READY before it counts as ready; tests shorten it."""
        self.config = config
        self.channels = QueueChannels(queues)
        self.client = TicketbotClient(guild_ready_timeout)
        #: The privacy check the core runs on queue channels (``bot.ports.RoomInspector``).
        self.inspector = ChannelInspector(self.client, config.guild_id)
        self.tree: app_commands.CommandTree[TicketbotClient] = app_commands.CommandTree(self.client)
        self.interactions = InteractionHandler(commands, self.channels)
        self.gateway = DiscordGateway(
            self.client, config.guild_id, self._buttons, self._action_buttons
        )
        self.reactions = ReactionHandler(self.client, commands, self.channels, self.gateway)
        self.client.reactions = self.reactions
        self.client.on_setup = self._setup
        register_commands(self.tree, self.interactions, discord.Object(config.guild_id))
        self._ready_timeout = ready_timeout
        self._connection: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, connect, wait until ready, sync the commands, check the queue channels.

        On any failure the client is closed again before the error is raised.
        """
        try:
            await self.client.login(self.config.token)
        except discord.LoginFailure as exc:
            await self.client.close()
            raise DiscordStartError(f"discord: the bot token was rejected ({exc})") from exc
        except BaseException:
            await self.client.close()
            raise
        self._connection = asyncio.create_task(
            self.client.connect(reconnect=True), name="discord-gateway"
        )
        try:
            await self._wait_until_ready(self._connection)
            guild = self.client.get_guild(self.config.guild_id)
            if guild is None:
                raise DiscordStartError(
                    f"discord: the bot is not a member of server {self.config.guild_id}; "
                    "invite it with the bot and applications.commands scopes"
                )
            synced = await self.tree.sync(guild=guild)
            log.info("discord: %d slash command(s) synced to %s", len(synced), guild.name)
            await self._check_channels(guild)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "discord: %s listening in %d queue channel(s)", self.client.user, len(self.channels.ids)
        )

    async def run(self) -> None:
        """Wait until the client closes; discord.py reconnects and resumes meanwhile."""
        if self._connection is None:
            raise RuntimeError("DiscordAdapter.run() before start()")
        await self._connection

    async def stop(self) -> None:
        """Close the connection (also ending :meth:`run`)."""
        for task in list(self._checks):
            task.cancel()
        await self.client.close()
        connection = self._connection
        if connection is None:
            return
        done, _ = await asyncio.wait({connection}, timeout=STOP_TIMEOUT)
        if not done:
            connection.cancel()
        elif not connection.cancelled() and connection.exception() is not None:
            log.warning("discord: the connection had ended with %r", connection.exception())

    def apply_config(self, config: Config) -> None:
        """Follow the config in force (``LiveConfig.on_change``): a channel an admin binds
        with ``queue bind`` is a queue channel from the next event on, an unbound one
        stops being one, and changed access applies to the next button or modal.

        A newly bound channel is checked for the bot's own permissions in the
        background, as at start: the bind itself is answered over the interaction, so
        a channel the bot may not post or open threads in would otherwise only show up
        as failing posts.
        """
        added, removed = self.channels.update(config.queues)
        for channel_id in removed:
            log.info("discord: channel %s is no longer a queue channel", channel_id)
        for channel_id in added:
            queue = self.channels.queue(channel_id)
            log.info(
                "discord: channel %s is now the channel of queue %s",
                channel_id,
                queue.name if queue is not None else "?",
            )
        guild = self.client.get_guild(self.config.guild_id) if self.client.is_ready() else None
        if guild is None or not added:
            return  # before the start: the start checks every channel anyway
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._check_permissions(guild, added), name="discord-check")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    # --- internals -------------------------------------------------------------------------

    def _buttons(self) -> discord.ui.View:
        return TicketButtons(self.interactions)

    def _action_buttons(self, actions: Sequence[str]) -> discord.ui.View | None:
        offered = offered_buttons(actions)
        return ActionButtons(self.interactions, offered) if offered else None

    async def _setup(self) -> None:
        """At login: the buttons of every root message and notice, also those posted
        before a restart."""
        self.client.add_view(TicketButtons(self.interactions))
        self.client.add_view(ActionButtons(self.interactions))

    async def _wait_until_ready(self, connection: asyncio.Task[None]) -> None:
        ready = asyncio.ensure_future(self.client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {ready, connection},
                timeout=self._ready_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if ready in done:
            return
        if connection.done():
            error = connection.exception()
            raise DiscordStartError(f"discord: the connection ended at start: {error!r}") from error
        raise DiscordStartError(f"discord: not ready within {self._ready_timeout:.0f} s")

    async def _check_channels(self, guild: discord.Guild) -> None:
        """At start: log what is wrong with each queue channel, and say in each public one
        why no tickets appear there.

        Whether a public channel is used is not decided here: the core runs the
        privacy check (:attr:`inspector`) right after the start and keeps its queue
        out of it unless an admin allowed it (``--public-ok``); such a channel gets
        no warning.
        """
        for channel in await self._check_permissions(guild, self.channels.ids):
            queue = self.channels.queue(channel.id)
            if queue is not None and not queue.public_ok and everyone_can_view(channel):
                await self._warn_public(queue.name, channel)

    async def _check_permissions(
        self, guild: discord.Guild, channel_ids: Sequence[int]
    ) -> list[discord.TextChannel]:
        """Log each queue channel that is no text channel or where the bot lacks a
        permission it needs; the text channels found."""
        found: list[discord.TextChannel] = []
        for channel_id in channel_ids:
            queue = self.channels.queue(channel_id)
            name = queue.name if queue is not None else "?"
            channel = guild.get_channel(channel_id)
            if not isinstance(channel, discord.TextChannel):
                log.error(
                    "discord: queue %s: channel %s is %s; it must be a text channel the bot sees",
                    name,
                    channel_id,
                    "not found" if channel is None else f"a {channel.type} channel",
                )
                continue
            missing = [
                why
                for permission, why in NEEDED_PERMISSIONS.items()
                if not getattr(channel.permissions_for(guild.me), permission)
            ]
            if missing:
                log.error(
                    "discord: queue %s: in #%s the bot lacks permissions to %s",
                    name,
                    channel.name,
                    ", ".join(missing),
                )
            found.append(channel)
        return found

    async def _warn_public(self, queue: str, channel: discord.TextChannel) -> None:
        log.warning(
            "discord: QUEUE CHANNEL #%s (%s, queue %s) IS READABLE BY EVERYONE IN THE SERVER: "
            "no tickets are posted there. Deny View Channel to @everyone, or have an admin "
            "bind it with --public-ok.",
            channel.name,
            channel.id,
            queue,
        )
        try:
            await self.gateway.post_text(channel.id, PUBLIC_QUEUE_WARNING.format(queue=queue))
        except discord.HTTPException as exc:
            log.warning("discord: could not post the warning in #%s: %s", channel.name, exc)
