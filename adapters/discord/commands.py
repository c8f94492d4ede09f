"""The shared command vocabulary as Discord slash commands: /claim, /reply, /close, ...

One slash command per entry of :data:`bot.commands.COMMANDS`, each with an optional
``number`` (not needed inside a ticket's thread). They are guild commands of the
configured server: Discord shows guild commands as soon as they are synced, while
global ones can take up to an hour, and the bot serves one server anyway.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from adapters.discord.interactions import InteractionHandler
from bot.commands import COMMANDS, CommandSpec

NUMBER_HELP = "Ticket number; leave it out inside the ticket's thread"


def register_commands(
    tree: app_commands.CommandTree[Any],
    handler: InteractionHandler,
    guild: discord.abc.Snowflake,
) -> None:
    """Add every command to ``tree`` as a command of ``guild`` (synced at start)."""
    for spec in COMMANDS.values():
        tree.add_command(_command(spec, handler), guild=guild, override=True)


def _command(
    spec: CommandSpec, handler: InteractionHandler
) -> app_commands.Command[Any, Any, None]:
    name = spec.name
    description = spec.summary[:100]
    if not spec.needs_ticket:

        async def plain(interaction: discord.Interaction[Any]) -> None:
            await handler.on_slash(interaction, name, None)

        return app_commands.Command(name=name, description=description, callback=plain)

    @app_commands.describe(number=NUMBER_HELP)
    async def with_number(interaction: discord.Interaction[Any], number: str | None = None) -> None:
        await handler.on_slash(interaction, name, number)

    return app_commands.Command(name=name, description=description, callback=with_number)
