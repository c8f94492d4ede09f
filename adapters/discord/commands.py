"""The shared command vocabulary as Discord slash commands: /claim, /reply, /pending, ...

One slash command per entry of :data:`bot.commands.COMMANDS`, admin commands included
(``/queue``, ``/access``, ``/admin``, ``/rule``, ``/audit``, ``/privacy``): they take
everything in ``args`` (``/queue args:bind info``) and set no Discord permission, as
the core refuses whoever is not one of the desk's admins. A command about one
ticket has an optional ``number`` (not needed inside a ticket's thread); one that
takes short arguments (``pending 3d``, ``move info::de``, ``search state:open``) has
an optional ``args`` text as well; ``reply`` and ``note`` ask for their text in a
modal. They are guild commands of the configured server: Discord shows guild
commands as soon as they are synced, while global ones can take up to an hour, and
the bot serves one server anyway.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from adapters.discord.interactions import InteractionHandler
from bot.commands import COMMANDS, CommandSpec

NUMBER_HELP = "Ticket number; leave it out inside the ticket's thread"
#: Discord's limits: commands per guild, and the length of a description.
MAX_COMMANDS = 100
DESCRIPTION_LIMIT = 100


def register_commands(
    tree: app_commands.CommandTree[Any],
    handler: InteractionHandler,
    guild: discord.abc.Snowflake,
) -> None:
    """Add every command to ``tree`` as a command of ``guild`` (synced at start)."""
    specs = list(COMMANDS.values())
    if len(specs) > MAX_COMMANDS:
        raise ValueError(f"{len(specs)} commands; Discord takes at most {MAX_COMMANDS}")
    for spec in specs:
        tree.add_command(slash_command(spec, handler), guild=guild, override=True)


def args_help(spec: CommandSpec) -> str:
    """What goes in ``args``: the usage without the name and the number, and an example
    (or the summary) where that fits in Discord's 100 characters.

    ``pending [NUMBER] DURATION|DATE [reminder|autoclose]`` gives ``DURATION|DATE
    [reminder|autoclose], e.g. 3d autoclose``.
    """
    # the name once more after a "|" (``queue status | queue list``) says nothing either
    words = [word for word in spec.usage.split() if word != spec.name]
    if words and words[0] == "[NUMBER]":
        words = words[1:]
    text = " ".join(words) or "arguments"
    if spec.name == "merge":
        text = "OTHER: the number of the ticket to fold this one into"
    example = spec.example.removeprefix(spec.name).strip()
    if example:
        candidates = [f"{text}, e.g. {example}", text, f"e.g. {example}"]
    else:
        candidates = [f"{text}: {spec.summary}", text]
    for candidate in candidates:
        if len(candidate) <= DESCRIPTION_LIMIT:
            return candidate
    return text[: DESCRIPTION_LIMIT - 1] + "…"


def describe(spec: CommandSpec) -> str:
    """The command's description in Discord's list; admin commands say they are for admins,
    so nobody wonders why they are refused (the core decides who is one)."""
    suffix = " (admins)" if spec.admin else ""
    summary = spec.summary
    if len(summary) + len(suffix) > DESCRIPTION_LIMIT:
        summary = summary[: DESCRIPTION_LIMIT - len(suffix) - 1] + "…"
    return summary + suffix


def slash_command(
    spec: CommandSpec, handler: InteractionHandler
) -> app_commands.Command[Any, Any, None]:
    """``/name [number] [args]``: which options depends on the spec."""
    name = spec.name
    description = describe(spec)
    help_args = args_help(spec)

    if spec.needs_ticket and spec.takes_args:

        @app_commands.describe(number=NUMBER_HELP, args=help_args)
        async def number_and_args(
            interaction: discord.Interaction[Any],
            number: str | None = None,
            args: str | None = None,
        ) -> None:
            await handler.on_slash(interaction, name, number, args)

        return app_commands.Command(name=name, description=description, callback=number_and_args)

    if spec.needs_ticket:

        @app_commands.describe(number=NUMBER_HELP)
        async def with_number(
            interaction: discord.Interaction[Any], number: str | None = None
        ) -> None:
            await handler.on_slash(interaction, name, number)

        return app_commands.Command(name=name, description=description, callback=with_number)

    if spec.takes_args:

        @app_commands.describe(args=help_args)
        async def with_args(interaction: discord.Interaction[Any], args: str | None = None) -> None:
            await handler.on_slash(interaction, name, None, args)

        return app_commands.Command(name=name, description=description, callback=with_args)

    async def plain(interaction: discord.Interaction[Any]) -> None:
        await handler.on_slash(interaction, name, None)

    return app_commands.Command(name=name, description=description, callback=plain)
