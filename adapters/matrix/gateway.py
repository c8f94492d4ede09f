"""The outbox's view of Matrix: post a ticket, its articles, edits, notices and pings.

Every send uses the outbox item's ``key`` (plus a suffix per message) as the Matrix
transaction id. When a post is retried after a timeout whose request did reach the
server, the homeserver recognises the transaction id and answers with the event it
already created instead of posting a duplicate. Synapse remembers transaction ids
per user *and device* for 24 hours, so the bot must keep one ``device_id``.

nio answers errors with response objects instead of raising; this gateway raises
:class:`MatrixError` so the outbox counts the attempt as failed and retries.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence

import nio

from adapters.matrix.media import file_content
from adapters.matrix.render import (
    Content,
    article_contents,
    notice_contents,
    permalink,
    ping_contents,
    thread_relation,
    ticket_content,
    ticket_edit_content,
)
from adapters.matrix.rooms import MatrixError, RoomDirectory, describe
from bot.chat import ArticleView, TicketView
from bot.commands import REACTIONS
from bot.files import ResultFile

log = logging.getLogger(__name__)

#: Actions offered under a notice that a reaction gives too: the bot adds that reaction
#: to the notice, so clicking it is enough. ✅ stands for close on a ticket, but on a
#: notice offering approve it approves (see :func:`adapters.matrix.inbound.reaction_on_notice`).
ACTION_REACTIONS = {
    **{name: emoji for emoji, name in REACTIONS.items() if name == "undo"},
    "approve": "✅",
}
#: Uploads remembered by transaction id, so a retried report does not upload its files
#: again; far more than a report has files.
REMEMBERED_UPLOADS = 100


class UploadRefused(MatrixError):
    """The homeserver will not take this file (``M_TOO_LARGE``): retrying cannot help."""


class MatrixGateway:
    """:class:`bot.chat.ChatGateway` on a logged-in ``nio.AsyncClient``.

    ``room`` arguments are the rooms as configured (``!id:server`` or
    ``#alias:server``); ``root_ref`` is the event id of the ticket's root message.
    """

    name = "matrix"

    def __init__(self, client: nio.AsyncClient, rooms: RoomDirectory | None = None) -> None:
        self._client = client
        self.rooms = rooms or RoomDirectory(client)
        self._uploads: OrderedDict[str, str] = OrderedDict()

    @property
    def client(self) -> nio.AsyncClient:
        return self._client

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

    async def post_notice(
        self, room: str, root_ref: str, text: str, key: str, actions: Sequence[str] = ()
    ) -> None:
        """The notice; with ``undo`` (``approve``) among ``actions`` the bot also reacts ↩️
        (✅) on it, so a volunteer can click that reaction instead of typing the command
        in the thread. Every part names the actions it offers (``ACTIONS_KEY``), which is
        how a reaction on it is understood later."""
        room_id = await self.rooms.resolve(room)
        contents = notice_contents(text, thread_relation(root_ref), actions)
        last = await self._send_all(room_id, contents, key)
        for action in dict.fromkeys(a for a in actions if a in ACTION_REACTIONS):
            await self.react(room_id, last, ACTION_REACTIONS[action], f"{key}:react:{action}")

    async def post_ping(
        self, room: str, root_ref: str | None, text: str, users: Sequence[str], key: str
    ) -> None:
        """A reminder in the ticket's thread (or the room) that notifies exactly ``users``.

        Ids of other platforms (``discord:1``) are left out; see
        :func:`adapters.matrix.render.ping_contents`.
        """
        room_id = await self.rooms.resolve(room)
        relation = thread_relation(root_ref) if root_ref is not None else None
        await self._send_all(room_id, ping_contents(text, users, relation), key)

    async def post_report(
        self, room: str, text: str, files: Sequence[ResultFile], key: str
    ) -> None:
        """The text as an ``m.notice``, then each file as ``m.image`` (shown inline) or
        ``m.file``, all in the room itself and pinging nobody.

        Every part has its own transaction id from ``key`` (``key:text:1``, ``key:f0``),
        so a retry re-sends nothing that arrived. A file the homeserver refuses as too
        large is named in a notice instead: the rest of the report still goes out.
        """
        room_id = await self.rooms.resolve(room)
        await self._send_all(room_id, notice_contents(text, None), f"{key}:text")
        for index, file in enumerate(files):
            txn_id = f"{key}:f{index}"
            try:
                url = await self._upload_once(file, txn_id)
            except UploadRefused as exc:
                log.error("matrix: the report's file %s was refused: %s", file.name, exc)
                size = f"{file.content_type}, {len(file.data):,} bytes"
                note = f"📎 {file.name} ({size}) is too large for this homeserver: not shown."
                await self._send_all(room_id, notice_contents(note, None), txn_id)
                continue
            await self.send(room_id, file_content(file, url, None), txn_id)

    def link(self, room: str, root_ref: str) -> str:
        """A matrix.to permalink to the ticket's root message."""
        room_id = self.rooms.cached(room)
        server = (self._client.user_id or "").partition(":")[2]
        return permalink(room_id, root_ref, server if room_id.startswith("!") else "")

    async def react(self, room_id: str, event_id: str, key: str, txn_id: str) -> str:
        """Annotate ``event_id`` with the reaction ``key``; return the reaction's event id."""
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        resp = await self._client.room_send(room_id, "m.reaction", content, tx_id=txn_id)
        if not isinstance(resp, nio.RoomSendResponse):
            raise MatrixError(f"reacting in {room_id} failed: {describe(resp)}")
        return str(resp.event_id)

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

    async def send_file(
        self, room_id: str, file: ResultFile, relates_to: Content | None = None
    ) -> str:
        """Upload ``file`` and show it (``m.image`` or ``m.file``); return the event id."""
        url = await self.upload(file)
        return await self.send(room_id, file_content(file, url, relates_to))

    async def upload(self, file: ResultFile) -> str:
        """Put ``file`` in the homeserver's media repository; its ``mxc://`` address.

        Raises :class:`MatrixError` when refused, :class:`UploadRefused` when the file is
        over the server's size limit.
        """
        resp, _ = await self._client.upload(
            io.BytesIO(file.data),
            content_type=file.content_type,
            filename=file.name,
            filesize=len(file.data),
        )
        if not isinstance(resp, nio.UploadResponse):
            error = UploadRefused if _too_large(resp) else MatrixError
            raise error(f"uploading {file.name} failed: {describe(resp)}")
        return str(resp.content_uri)

    async def _upload_once(self, file: ResultFile, txn_id: str) -> str:
        """:meth:`upload`, unless a file already went up for ``txn_id``: the event sent
        with that transaction id (if it was) shows that one anyway."""
        remembered = self._uploads.get(txn_id)
        if remembered is not None:
            return remembered
        url = await self.upload(file)
        self._uploads[txn_id] = url
        while len(self._uploads) > REMEMBERED_UPLOADS:
            self._uploads.popitem(last=False)
        return url

    async def _send_all(self, room_id: str, contents: list[Content], key: str) -> str:
        """Send the parts of one article or notice in order, ``key:1``, ``key:2``, ...

        Returns the last part's event id.
        """
        last = ""
        for index, content in enumerate(contents, start=1):
            last = await self.send(room_id, content, f"{key}:{index}")
        return last


def _too_large(resp: object) -> bool:
    """Whether an upload error says the file is over the homeserver's limit."""
    return getattr(resp, "status_code", None) == "M_TOO_LARGE"
