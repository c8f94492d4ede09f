"""Slash commands, button clicks and modal submits, carried out by the core.

Discord gives an interaction 3 seconds for its first answer, and a command touches
the database, so the first thing done is ``defer`` (ephemeral, "thinking"): the
user sees "ticketbot is thinking…" and the real answer follows as a followup,
within 15 minutes. The exception is a modal: showing it must itself be the first
answer, and it needs no database.

Every answer is ephemeral (only the volunteer sees it): a refusal, a short "done"
for a change the ticket's thread already shows to everyone, the ``show`` and
``help`` output (``show`` repeats ticket text, which is escaped like all of it), an
admin command's answer, and a ``private`` one (``reveal``). Files the core answers
with (a chart, a CSV) are attached to the answer.

Admin commands (``/queue args:bind info``, ``/access args:grant <@123> info``) carry
no Discord permission of their own: the core knows who the desk's admins are and
refuses everyone else, so whatever the server's settings, a non-admin changes nothing.
"""

from __future__ import annotations

import dataclasses
import io
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
from adapters.discord.render import (
    UPLOAD_LIMIT,
    Upload,
    answer_chunks,
    answer_messages,
    answer_uploads,
)
from adapters.discord.text import cap, escape
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


def upload_limit(interaction: discord.Interaction[Any]) -> int:
    """How many bytes of files one answer may carry here: what Discord says for this
    interaction (it depends on the server's boosts), else the smallest limit a bot meets."""
    limit = getattr(interaction, "filesize_limit", None)
    return limit if isinstance(limit, int) and limit > 0 else UPLOAD_LIMIT


async def send_answer(interaction: discord.Interaction[Any], result: CommandResult) -> None:
    """The core's answer to a deferred interaction, as followups seen by the asker alone.

    Every answer is ephemeral: refusals, confirmations, ``show``, and above all a
    ``private`` one (``reveal`` shows a requester's real address, which must never be
    posted where others read). The first followup fills the "thinking…" message, which
    the ephemeral defer already made private. The result's files (charts, CSV) go on
    the answer's last message, within Discord's limits; those that do not fit are
    named in a note after it. Should Discord refuse the files anyway (a smaller limit
    than it said), the text is sent without them, saying so.
    """
    texts = answer_messages(result)
    last = len(texts) - 1
    uploads, note = answer_uploads(result.files, upload_limit(interaction))
    if note:
        texts += answer_chunks(note)
    for index, text in enumerate(texts):
        files = list(uploads) if index == last else []
        try:
            await _followup(interaction, text, files)
        except discord.HTTPException as exc:
            if not files:
                raise
            log.warning("discord: the answer's files were refused (%s); sending the text", exc)
            names = escape(", ".join(upload.filename for upload in files))
            await _followup(interaction, f"{text}\n📎 Discord refused the files: {names}", [])


async def _followup(interaction: discord.Interaction[Any], text: str, files: list[Upload]) -> None:
    extra: dict[str, Any] = {}
    if files:
        extra["files"] = [discord.File(io.BytesIO(f.data), filename=f.filename) for f in files]
    await interaction.followup.send(
        cap(text), ephemeral=True, allowed_mentions=NO_MENTIONS, suppress_embeds=True, **extra
    )


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
        """Show the text box, unless the user may not work in this queue anyway.

        The check is only a courtesy, so nobody writes a reply that is then refused;
        the core checks again when the text is submitted. Trainees pass: their reply
        becomes a draft a volunteer approves.
        """
        queue = self._channels.queue_of(place)
        if queue is not None and not queue.may_work(actor_for(person)):
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
            await send_answer(interaction, result)
        except discord.HTTPException:
            log.exception("discord: could not answer %s by %s", request.name, request.actor.user_id)

    async def _refuse_at_once(self, interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.response.send_message(
            cap(answer_chunks(text)[0]), ephemeral=True, allowed_mentions=NO_MENTIONS
        )
