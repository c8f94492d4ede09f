"""The privacy check of a Discord channel: can everyone in the server read it?

Tickets hold requesters' names, addresses and mail, so the core keeps queues out of
channels the public can read (at start, and when an admin runs ``queue bind``).
On Discord "the public" is the server's ``@everyone`` role: a channel it may view is
readable by every member, including anyone who joined through an open invite.

The channel is fetched over REST for every check rather than read from the cache: an
admin who just denied View Channel to ``@everyone`` and then runs ``/queue bind``
must be judged on the channel as it is now. Anything that cannot be checked (an
unknown channel, one the bot may not see, one of another server) raises; the core
treats that as public, which is the safe way to fail.
"""

from __future__ import annotations

import discord

from bot.ports import RoomCheck


class ChannelCheckError(Exception):
    """The channel cannot be checked; the message says why (shown to the admin)."""


def everyone_can_view(channel: discord.abc.GuildChannel) -> bool:
    """True when the server's default role (@everyone) may view ``channel``.

    discord.py computes it as Discord does: the role's server-wide permissions, then
    the channel's overwrite for @everyone.
    """
    return channel.permissions_for(channel.guild.default_role).view_channel


def public_reason(channel: discord.abc.GuildChannel) -> str:
    """Why the channel counts as public, for the admin's refusal and the log."""
    return f"@everyone can view #{channel.name}"


class ChannelInspector:
    """:class:`bot.ports.RoomInspector` for the channels of the configured server."""

    def __init__(self, client: discord.Client, guild_id: int) -> None:
        self._client = client
        self._guild_id = guild_id

    async def check_room(self, room: str) -> RoomCheck:
        """Public when @everyone can view the channel; raises when it cannot be told."""
        channel = await self.text_channel(room)
        if everyone_can_view(channel):
            return RoomCheck(True, public_reason(channel))
        return RoomCheck(False, "")

    async def text_channel(self, room: str) -> discord.TextChannel:
        """The queue channel ``room`` (an id as text), fresh from Discord.

        Queues live in text channels of the configured server only: the gateway posts
        a message and a thread per ticket there.
        """
        if not room.isascii() or not room.isdigit():
            raise ChannelCheckError(f"{room!r} is not a Discord channel id")
        guild = self._client.get_guild(self._guild_id)
        if guild is None:
            raise ChannelCheckError(f"the bot is not connected to server {self._guild_id}")
        try:
            channel = await self._client.fetch_channel(int(room))
        except discord.NotFound:
            raise ChannelCheckError(f"there is no channel {room}") from None
        except discord.Forbidden:
            raise ChannelCheckError(f"the bot may not see channel {room}") from None
        if isinstance(channel, discord.Thread):
            raise ChannelCheckError(f"{channel.name} is a thread; bind its channel instead")
        if not isinstance(channel, discord.abc.GuildChannel) or channel.guild.id != guild.id:
            raise ChannelCheckError(f"channel {room} is not in server {guild.name}")
        if not isinstance(channel, discord.TextChannel):
            raise ChannelCheckError(
                f"#{channel.name} is a {channel.type} channel; queues need a text channel"
            )
        return channel
