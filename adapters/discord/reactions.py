"""Reactions as commands: ✋ on a ticket claims it, ✅ closes it, ↩️ undoes a waiting reply,
and ✅ on a notice with an Approve button approves the trainee's draft it announces.

Raw reaction events are used because they arrive for every message, also ones
the client never cached (a ticket posted before the last restart). A reaction has
no ephemeral answer, so a refusal is posted as a short line in the ticket's thread,
naming the volunteer without pinging anyone; where there is no thread it goes to
the volunteer as a direct message. A success needs no answer: the thread shows it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import discord

from adapters.discord.gateway import DiscordGateway
from adapters.discord.interactions import CommandExecutor, person_of
from adapters.discord.mapping import (
    Person,
    Place,
    QueueChannels,
    offered_actions,
    reaction_command,
    request_from_reaction,
    thread_of,
)
from adapters.discord.render import answer_chunks
from bot.commands import CommandResult

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
_PLACES_REMEMBERED = 1000


class ReactionHandler:
    """Turns ✋/✅/↩️ in queue channels and ticket threads into claim/close/undo."""

    def __init__(
        self,
        client: discord.Client,
        commands: CommandExecutor,
        channels: QueueChannels,
        gateway: DiscordGateway,
    ) -> None:
        self._client = client
        self._commands = commands
        self._channels = channels
        self._gateway = gateway
        self._places: OrderedDict[int, Place | None] = OrderedDict()

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        me = self._client.user
        if payload.guild_id is None or (me is not None and payload.user_id == me.id):
            return
        if payload.member is not None and payload.member.bot:
            return
        emoji = str(payload.emoji)
        command = reaction_command(emoji)
        if command is None:
            return
        place = await self._place(payload.channel_id)
        if place is None or self._channels.queue_of(place) is None:
            return
        person = await self._person(payload)
        offered = await self._offered(payload, place) if command == "close" else frozenset()
        request = request_from_reaction(
            emoji, person, place, payload.message_id, self._channels, offered
        )
        if request is None:
            return
        try:
            result = await self._commands.execute(request)
        except Exception:
            log.exception("discord: %s by %s failed", request.name, request.actor.user_id)
            result = CommandResult(False, f"Sorry, {request.name} failed; the bot's log says why.")
        if not result.ok:
            await self._refuse(person, thread_of(request.context), result.message)

    # --- internals -------------------------------------------------------------------------

    async def _place(self, channel_id: int) -> Place | None:
        """The channel, and for a thread its parent; None when Discord will not say."""
        if channel_id in self._channels:
            return Place(channel_id)
        if channel_id in self._places:
            return self._places[channel_id]
        channel = self._client.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self._client.fetch_channel(channel_id)
            except discord.HTTPException as exc:
                log.debug("discord: channel %s of a reaction is unknown: %s", channel_id, exc)
                return None
        place = Place(
            channel_id, channel.parent_id if isinstance(channel, discord.Thread) else None
        )
        self._places[channel_id] = place
        while len(self._places) > _PLACES_REMEMBERED:
            self._places.popitem(last=False)
        return place

    async def _offered(
        self, payload: discord.RawReactionActionEvent, place: Place
    ) -> frozenset[str]:
        """The buttons of the bot's own message in a ticket's thread that was reacted to.

        Only there can ✅ mean something other than close (an Approve notice). The
        message comes from the cache, else from Discord (the notice may predate a
        restart); if Discord will not say, ✅ keeps its usual meaning.
        """
        me = self._client.user
        if (
            place.parent_id is None
            or payload.message_id == place.channel_id  # the thread's starter is the root
            or me is None
            or payload.message_author_id not in (None, me.id)
        ):
            return frozenset()
        message = discord.utils.get(self._client.cached_messages, id=payload.message_id)
        if message is None:
            channel = self._client.get_partial_messageable(
                place.channel_id, guild_id=payload.guild_id, type=discord.ChannelType.public_thread
            )
            try:
                message = await channel.fetch_message(payload.message_id)
            except discord.HTTPException as exc:
                log.debug(
                    "discord: message %s of a reaction is unknown: %s", payload.message_id, exc
                )
                return frozenset()
        if message.author.id != me.id:
            return frozenset()
        return offered_actions(
            child.custom_id
            for row in message.components
            if isinstance(row, discord.ActionRow)
            for child in row.children
            if isinstance(child, discord.Button) and child.custom_id
        )

    async def _person(self, payload: discord.RawReactionActionEvent) -> Person:
        """Who reacted, with roles; the event carries the member unless the guild is uncached."""
        if payload.member is not None:
            return person_of(payload.member)
        guild = self._client.get_guild(payload.guild_id or 0)
        if guild is not None:
            try:
                return person_of(await guild.fetch_member(payload.user_id))
            except discord.HTTPException as exc:
                log.warning("discord: cannot look up member %s: %s", payload.user_id, exc)
        return Person(payload.user_id, "")

    async def _refuse(self, person: Person, thread_id: int | None, message: str) -> None:
        name = person.display_name or "Sorry"
        text = f"{name}: {message}"
        if thread_id is not None:
            try:
                await self._gateway.post_text(thread_id, text)
                return
            except discord.HTTPException as exc:
                log.info("discord: cannot answer in thread %s (%s); sending a DM", thread_id, exc)
        try:
            user = self._client.get_user(person.user_id) or await self._client.fetch_user(
                person.user_id
            )
            await user.send(answer_chunks(message)[0], allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("discord: cannot tell %s why %r was refused: %s", person.user_id, text, exc)
