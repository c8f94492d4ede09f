"""Discord chat adapter: tickets as embeds with buttons and a thread each in queue channels.

``DiscordAdapter`` (client.py) owns the client, the slash commands, the persistent
buttons and the reaction listener; its ``gateway`` (``DiscordGateway``, gateway.py)
is what the outbox posts through. render.py and text.py hold the pure rules that keep
email text from pinging anyone, producing markup or breaking Discord's limits;
mapping.py turns what Discord reports into the core's command requests.
"""

from adapters.discord.client import DiscordAdapter, DiscordStartError
from adapters.discord.gateway import DiscordError, DiscordGateway
from adapters.discord.interactions import CommandExecutor

__all__ = [
    "CommandExecutor",
    "DiscordAdapter",
    "DiscordError",
    "DiscordGateway",
    "DiscordStartError",
]
