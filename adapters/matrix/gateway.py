"""The outbox's view of Matrix: post a ticket, its articles, edits and notices.

Every send uses the outbox item's ``key`` (plus a suffix per message) as the Matrix
transaction id. When a post is retried after a timeout whose request did reach the
server, the homeserver recognises the transaction id and answers with the event it
already created instead of posting a duplicate. Synapse remembers transaction ids
per user *and device* for 24 hours, so the bot must keep one ``device_id``.

nio answers errors with response objects instead of raising; this gateway raises
:class:`MatrixError` so the outbox counts the attempt as failed and retries.
"""

from __future__ import annotations

import logging
import uuid

import nio

from adapters.matrix.render import (
    Content,
    article_contents,
    notice_contents,
    thread_relation,
    ticket_content,
    ticket_edit_content,
)
from adapters.matrix.rooms import MatrixError, RoomDirectory, describe
from bot.chat import ArticleView, TicketView

log = logging.getLogger(__name__)


class MatrixGateway:
    """:class:`bot.chat.ChatGateway` on a logged-in ``nio.AsyncClient``.

    ``room`` arguments are the rooms as configured (``!id:server`` or
    ``#alias:server``); ``root_ref`` is the event id of the ticket's root message.
    """

    name = "matrix"

    def __init__(self, client: nio.AsyncClient, rooms: RoomDirectory | None = None) -> None:
        self._client = client
        self.rooms = rooms or RoomDirectory(client)

    async def post_ticket(
        self, room: str, ticket: TicketView, first: ArticleView | None, key: str
    ) -> str:
        room_id = await self.rooms.resolve(room)
        root = await self.send(room_id, ticket_content(ticket), f"{key}:root")
        if first is not None:
            await self._send_all(room_id, article_contents(first, thread_relation(root)), key)
        return root

    async def post_article(
        self, room: str, root_ref: str, ticket: TicketView, article: ArticleView, key: str
    ) -> None:
        room_id = await self.rooms.resolve(room)
        await self._send_all(room_id, article_contents(article, thread_relation(root_ref)), key)

    async def update_ticket(self, room: str, root_ref: str, ticket: TicketView, key: str) -> None:
        room_id = await self.rooms.resolve(room)
        await self.send(room_id, ticket_edit_content(root_ref, ticket), f"{key}:edit")

    async def post_notice(self, room: str, root_ref: str, text: str, key: str) -> None:
        room_id = await self.rooms.resolve(room)
        await self._send_all(room_id, notice_contents(text, thread_relation(root_ref)), key)

    async def send(self, room_id: str, content: Content, txn_id: str | None = None) -> str:
        """Send one ``m.room.message``; return its event id or raise :class:`MatrixError`.

        Without ``txn_id`` a random one is used: fine for answers to commands, which
        are not retried.
        """
        resp = await self._client.room_send(
            room_id, "m.room.message", content, tx_id=txn_id or uuid.uuid4().hex
        )
        if not isinstance(resp, nio.RoomSendResponse):
            raise MatrixError(f"sending to {room_id} failed: {describe(resp)}")
        return str(resp.event_id)

    async def _send_all(self, room_id: str, contents: list[Content], key: str) -> None:
        """Send the parts of one article or notice in order, ``key:1``, ``key:2``, ..."""
        for index, content in enumerate(contents, start=1):
            await self.send(room_id, content, f"{key}:{index}")
