"""Slash commands, button clicks and modal submits, carried out by the core.

Discord gives an interaction 3 seconds for its first answer, and a command touches
the database, so the first thing done is ``defer`` (ephemeral, "thinking"): the
user sees "ticketbot is thinking…" and the real answer follows as a followup,
within 15 minutes. The exception is a modal: showing it must itself be the first
answer, and it needs no database.

Every answer is ephemeral (only the volunteer sees it): a refusal, a short "done"
for a change the ticket's thread already shows to everyone, the ``show`` and
``help`` output (``show`` repeats ticket text, which is escaped like all of it).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

import discord

from adapters.discord.mapping import (
    TEXT_COMMANDS,
    BadNumber,
    Person,
    Place,
    QueueChannels,
    actor_for,
    args_for,
    normalise_number,
    request_from_button,
    request_from_slash,
)
from adapters.discord.render import answer_chunks, answer_messages
from adapters.discord.text import cap
from adapters.discord.views import TextModal
from bot.commands import CommandRequest, CommandResult

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


class CommandExecutor(Protocol):
    """What the adapter needs of :class:`bot.commands.CommandService`."""

    async def execute(self, request: CommandRequest) -> CommandResult: ...


def role_ids(member: discord.Member) -> frozenset[int]:
    """The member's role ids, including roles not (yet) in the client's cache.

    ``Member.roles`` only lists roles the cached guild knows; the interaction's own
    data lists them all (kept in ``_roles``), and a volunteer must not be refused
    because of a cache gap.
    """
    ids = {role.id for role in member.roles}
    ids.update(int(role) for role in getattr(member, "_roles", ()))
    return frozenset(ids)


def person_of(user: discord.User | discord.Member) -> Person:
    """Who acted; only a guild member has roles (commands are guild commands, so always)."""
    if isinstance(user, discord.Member):
        return Person(user.id, user.display_name, role_ids(user))
    return Person(user.id, user.display_name)


def place_of(interaction: discord.Interaction[Any]) -> Place:
    """Where the interaction happened; a thread's parent says which queue it belongs to."""
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        return Place(channel.id, channel.parent_id)
    if channel is not None:
        return Place(channel.id)
    return Place(interaction.channel_id or 0)


class InteractionHandler:
    """Runs volunteers' slash commands, button clicks and modal submits."""

    def __init__(self, commands: CommandExecutor, channels: QueueChannels) -> None:
        self._commands = commands
        self._channels = channels

    async def on_slash(
        self,
        interaction: discord.Interaction[Any],
        name: str,
        number: str | None,
        args: str | None = None,
    ) -> None:
        person, place = person_of(interaction.user), place_of(interaction)
        try:
            request = request_from_slash(name, number, "", person, place, self._channels, args=args)
        except BadNumber as exc:
            await self._refuse_at_once(interaction, str(exc))
            return
        if name in TEXT_COMMANDS:
            await self._open_modal(interaction, request, normalise_number(number), person, place)
            return
        await self._run(interaction, request)

    async def on_button(self, interaction: discord.Interaction[Any], action: str) -> None:
        if interaction.message is None:
            await self._refuse_at_once(interaction, "This button belongs to no ticket.")
            return
        person, place = person_of(interaction.user), place_of(interaction)
        message_id = interaction.message.id
        request = request_from_button(action, "", person, place, message_id, self._channels)
        if action in TEXT_COMMANDS:
            await self._open_modal(interaction, request, None, person, place)
            return
        await self._run(interaction, request)

    async def on_modal(self, interaction: discord.Interaction[Any], modal: TextModal) -> None:
        request = dataclasses.replace(
            modal.template,
            actor=actor_for(person_of(interaction.user)),
            args=args_for(modal.number, modal.text.value),
        )
        await self._run(interaction, request)

    # --- internals -------------------------------------------------------------------------

    async def _open_modal(
        self,
        interaction: discord.Interaction[Any],
        request: CommandRequest,
        number: str | None,
        person: Person,
        place: Place,
    ) -> None:
        """Show the text box, unless the user may not act in this queue anyway.

        The check is only a courtesy, so nobody writes a reply that is then refused;
        the core checks again when the text is submitted.
        """
        queue = self._channels.queue_of(place)
        if queue is not None and not queue.may_act(actor_for(person)):
            await self._refuse_at_once(
                interaction, f"Sorry, only volunteers of queue {queue.name} may act on its tickets."
            )
            return
        what = "Reply by email" if request.name == "reply" else "Internal note"
        title = f"{what} · Ticket#{number}" if number else what
        await interaction.response.send_modal(TextModal(self, request, number, title))

    async def _run(self, interaction: discord.Interaction[Any], request: CommandRequest) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            result = await self._commands.execute(request)
        except Exception:
            log.exception("discord: %s by %s failed", request.name, request.actor.user_id)
            result = CommandResult(False, f"Sorry, {request.name} failed; the bot's log says why.")
        try:
            for text in answer_messages(result):
                await interaction.followup.send(
                    cap(text), ephemeral=True, allowed_mentions=NO_MENTIONS, suppress_embeds=True
                )
        except discord.HTTPException:
            log.exception("discord: could not answer %s by %s", request.name, request.actor.user_id)

    async def _refuse_at_once(self, interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.response.send_message(
            cap(answer_chunks(text)[0]), ephemeral=True, allowed_mentions=NO_MENTIONS
        )
