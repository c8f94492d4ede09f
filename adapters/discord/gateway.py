"""The outbox's view of Discord: post a ticket, its articles, edits, notices and pings.

Nothing the bot posts pings anyone (``AllowedMentions.none()``), except a ping
(:meth:`DiscordGateway.post_ping`), whose ``allowed_mentions`` names exactly the
users it is for.

Errors are not caught here: a ``discord.HTTPException`` (or ``NotFound``,
``Forbidden``) reaches the outbox, which counts the attempt as failed and retries
later. A 429 never gets that far: discord.py waits out the rate limit and repeats
the request itself, so a burst of posts is delayed, never dropped.

Retries and duplicates. Discord has no transaction ids like Matrix, so a retried
post could appear twice. Two things prevent that:

* every message carries a nonce derived from the outbox key, sent with
  ``enforce_nonce``: for a few minutes Discord answers a repeat with the message it
  already created instead of a new one;
* the gateway remembers, per outbox key and for the life of the process, which
  steps already succeeded (the root message's id, the thread, how many parts of an
  article were sent), so a retry after a failed thread creation reuses the root
  message instead of posting a second one.

A crash between a send and the outbox recording it can still double-post when the
retry comes after the nonce window; nothing on Discord's side can prevent that.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import discord

from adapters.discord.render import (
    ANSWER_UPLOAD_LIMIT,
    OutMessage,
    answer_uploads,
    article_messages,
    notice_messages,
    ping_messages,
    thread_name,
    ticket_embed,
)
from adapters.discord.text import cap
from bot.chat import ArticleView, TicketView
from bot.files import ResultFile

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
#: Threads stay in the channel list for a week without activity (Discord's maximum).
THREAD_ARCHIVE_MINUTES: Literal[10080] = 10080
#: Discord's error code for "a thread has already been created for this message".
THREAD_ALREADY_CREATED = 160004
#: Outbox keys remembered; far more than can be retrying at once.
REMEMBERED_KEYS = 10_000
#: HTTP status of a request whose files are over the server's limit (error code 40005).
TOO_LARGE = 413

K = TypeVar("K")
V = TypeVar("V")


class DiscordError(Exception):
    """Discord is not set up as the config says (a queue channel that is not a text channel)."""


class _Memo(Generic[K, V]):
    """A bounded map that forgets its oldest entries: progress of recent outbox items."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass
class _TicketProgress:
    root: int | None = None
    thread: bool = False


class DiscordGateway:
    """:class:`bot.chat.ChatGateway` on a ``discord.Client``.

    ``room`` arguments are queue channel ids (as strings, the way
    :meth:`QueueConfig.bindings` gives them); ``root_ref`` is the root message's id,
    which is also the id of the ticket's thread. ``buttons`` makes the view sent
    under each root message, ``action_buttons`` the one under a notice offering
    actions (Undo); the adapter registers views with the same buttons as persistent
    at start, which is what answers the clicks.
    """

    name = "discord"

    def __init__(
        self,
        client: discord.Client,
        guild_id: int,
        buttons: Callable[[], discord.ui.View],
        action_buttons: Callable[[Sequence[str]], discord.ui.View | None] | None = None,
    ) -> None:
        self._client = client
        self._guild_id = guild_id
        self._buttons = buttons
        self._action_buttons = action_buttons
        self._tickets: _Memo[str, _TicketProgress] = _Memo(REMEMBERED_KEYS)
        self._parts_sent: _Memo[str, int] = _Memo(REMEMBERED_KEYS)

    # --- ChatGateway ---------------------------------------------------------------------

    async def post_ticket(
        self, room: str, ticket: TicketView, first: ArticleView | None, key: str
    ) -> str:
        progress = self._tickets.get(key)
        if progress is None:
            progress = _TicketProgress()
            self._tickets.put(key, progress)
        if progress.root is None:
            channel = await self._text_channel(int(room))
            view = self._buttons()
            message = await channel.send(
                embed=ticket_embed(ticket),
                view=view,
                allowed_mentions=NO_MENTIONS,
                nonce=nonce(key, "root"),
            )
            # The persistent view registered at start answers clicks on every message;
            # this per-message copy would only pile up in memory.
            view.stop()
            progress.root = message.id
        if not progress.thread:
            await self._create_thread(int(room), progress.root, ticket)
            progress.thread = True
        if first is not None:
            await self._send_all(progress.root, article_messages(first, ticket.number), key)
        return str(progress.root)

    async def post_article(
        self, room: str, root_ref: str, ticket: TicketView, article: ArticleView, key: str
    ) -> None:
        await self._send_all(int(root_ref), article_messages(article, ticket.number), key)

    async def update_ticket(self, room: str, root_ref: str, ticket: TicketView, key: str) -> None:
        channel = self._client.get_partial_messageable(
            int(room), guild_id=self._guild_id, type=discord.ChannelType.text
        )
        message = channel.get_partial_message(int(root_ref))
        if ticket.moved_to:
            # the ticket lives on elsewhere: its old root offers nothing to click
            await message.edit(embed=ticket_embed(ticket), view=None, allowed_mentions=NO_MENTIONS)
            return
        # No ``view``: the buttons stay as they are.
        await message.edit(embed=ticket_embed(ticket), allowed_mentions=NO_MENTIONS)

    async def post_notice(
        self, room: str, root_ref: str, text: str, key: str, actions: Sequence[str] = ()
    ) -> None:
        """A line in the ticket's thread; ``actions`` become buttons under it (Undo)."""
        view = self._action_buttons(actions) if actions and self._action_buttons else None
        await self._send_all(int(root_ref), notice_messages(text), key, view=view)

    async def post_ping(
        self, room: str, root_ref: str | None, text: str, users: Sequence[str], key: str
    ) -> None:
        """A reminder in the ticket's thread (or the queue channel) pinging only ``users``.

        ``discord:123`` becomes ``<@123>``; other platforms' ids are left out. The
        message's ``allowed_mentions`` names exactly these users: no roles, no
        ``@everyone``, whatever the text says (and it is escaped anyway).
        """
        ids = discord_user_ids(users)
        mentions = discord.AllowedMentions(
            everyone=False,
            users=[discord.Object(user) for user in ids],
            roles=False,
            replied_user=False,
        )
        target = int(root_ref) if root_ref is not None else int(room)
        messages = ping_messages(text, ids)
        await self._send_all(target, messages, key, mentions=mentions if ids else None)

    async def post_report(
        self, room: str, text: str, files: Sequence[ResultFile], key: str
    ) -> None:
        """One message in the channel: the text (escaped, pinging nobody) with the files
        attached, images shown inline.

        Up to 10 files and as many bytes as the server takes (at most 25 MiB) go on the
        message; the text names those left out. A text too long for one message goes
        in parts, the files on the last. Should Discord refuse the files anyway, the
        text goes without them, saying so.
        """
        channel = await self._text_channel(int(room))
        limit = min(channel.guild.filesize_limit, ANSWER_UPLOAD_LIMIT)
        uploads, note = answer_uploads(files, limit)
        messages = notice_messages(f"{text}\n\n{note}" if note else text)
        messages[-1] = OutMessage(messages[-1].content, uploads)
        done = self._parts_sent.get(key) or 0
        for index in range(done, len(messages)):
            try:
                await self._send(channel.id, messages[index], nonce(key, str(index)))
            except discord.HTTPException as exc:
                if exc.status != TOO_LARGE or not messages[index].uploads:
                    raise
                await self._send_without_files(channel.id, messages[index], key, exc)
            self._parts_sent.put(key, index + 1)

    def link(self, room: str, root_ref: str) -> str:
        """A link to the ticket's thread (its id is the root message's)."""
        return f"https://discord.com/channels/{self._guild_id}/{root_ref}"

    # --- for the adapter ------------------------------------------------------------------

    async def post_text(self, channel_id: int, text: str) -> None:
        """A line from the bot in a channel or thread (answers, warnings); escaped, no pings."""
        once = uuid.uuid4().hex
        for index, message in enumerate(notice_messages(text)):
            await self._send(channel_id, message, nonce(once, str(index)))

    # --- internals -------------------------------------------------------------------------

    async def _send_without_files(
        self, channel_id: int, message: OutMessage, key: str, error: discord.HTTPException
    ) -> None:
        """``message`` after Discord refused its files as too large: the text, then a line
        naming them."""
        log.warning("discord: the report's files were refused (%s); sending the text", error)
        await self._send(channel_id, OutMessage(message.content), nonce(key, "bare"))
        names = ", ".join(upload.filename for upload in message.uploads)
        for index, line in enumerate(notice_messages(f"📎 Discord refused the files: {names}")):
            await self._send(channel_id, line, nonce(key, f"refused:{index}"))

    async def _text_channel(self, channel_id: int) -> discord.TextChannel:
        channel = self._client.get_channel(channel_id)
        if channel is None:
            channel = await self._client.fetch_channel(channel_id)
        if not isinstance(channel, discord.TextChannel):
            raise DiscordError(f"discord channel {channel_id} is not a text channel")
        return channel

    async def _create_thread(self, channel_id: int, root: int, ticket: TicketView) -> None:
        channel = await self._text_channel(channel_id)
        try:
            await channel.get_partial_message(root).create_thread(
                name=thread_name(ticket), auto_archive_duration=THREAD_ARCHIVE_MINUTES
            )
        except discord.HTTPException as exc:
            if exc.code != THREAD_ALREADY_CREATED:
                raise
            log.info("discord: thread of ticket %s already existed", ticket.number)

    async def _send_all(
        self,
        thread_id: int,
        messages: Sequence[OutMessage],
        key: str,
        *,
        view: discord.ui.View | None = None,
        mentions: discord.AllowedMentions | None = None,
    ) -> None:
        """Send the parts in order; a retry starts after the last part that went through.

        ``view`` (buttons) goes under the last part; ``mentions`` applies to the first
        part, the only one a ping's mentions are in; every other part pings nobody.
        """
        done = self._parts_sent.get(key) or 0
        last = len(messages) - 1
        try:
            for index in range(done, len(messages)):
                await self._send(
                    thread_id,
                    messages[index],
                    nonce(key, str(index)),
                    view=view if index == last else None,
                    mentions=mentions if index == 0 else None,
                )
                self._parts_sent.put(key, index + 1)
        finally:
            if view is not None:
                # as for the root: the persistent view registered at start answers clicks
                view.stop()

    async def _send(
        self,
        channel_id: int,
        message: OutMessage,
        nonce: str,
        *,
        view: discord.ui.View | None = None,
        mentions: discord.AllowedMentions | None = None,
    ) -> None:
        """One message into a channel or thread: never a link preview, and no ping unless
        ``mentions`` names someone (a reminder)."""
        channel = self._client.get_partial_messageable(channel_id, guild_id=self._guild_id)
        content = cap(message.content)
        allowed = mentions if mentions is not None else NO_MENTIONS
        extra: dict[str, Any] = {}
        if message.uploads:
            extra["files"] = [
                discord.File(io.BytesIO(u.data), filename=u.filename) for u in message.uploads
            ]
        if view is not None:
            extra["view"] = view
        await channel.send(
            content, allowed_mentions=allowed, suppress_embeds=True, nonce=nonce, **extra
        )


def discord_user_ids(users: Sequence[str]) -> list[int]:
    """The Discord users among the core's user ids (``discord:123`` -> 123), once each."""
    ids: list[int] = []
    for user in users:
        platform, _, number = user.partition(":")
        if platform == "discord" and number.isascii() and number.isdigit() and len(number) < 21:
            ids.append(int(number))
    return list(dict.fromkeys(ids))


def nonce(key: str, part: str) -> str:
    """A message nonce (at most 25 characters) that is the same on every retry of ``key``."""
    return hashlib.sha256(f"{key}:{part}".encode()).hexdigest()[:25]
