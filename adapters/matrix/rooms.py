"""Room aliases (``#help:example.org``) resolved to room ids, once.

The config may name a queue's room by alias, which is what people remember; the
Matrix API wants the room id. Aliases rarely move, so the answer is cached for the
life of the process: one lookup per room, not one per message.
"""

from __future__ import annotations

import logging

import nio

log = logging.getLogger(__name__)


class MatrixError(Exception):
    """A Matrix request the homeserver refused; raised so the outbox retries later."""


class RoomDirectory:
    """Resolves configured room names (ids or aliases) to room ids, with a cache."""

    def __init__(self, client: nio.AsyncClient) -> None:
        self._client = client
        self._ids: dict[str, str] = {}

    async def resolve(self, room: str) -> str:
        """The room id for ``room``; ids pass through, aliases are looked up once."""
        if not room.startswith("#"):
            return room
        cached = self._ids.get(room)
        if cached is not None:
            return cached
        resp = await self._client.room_resolve_alias(room)
        if not isinstance(resp, nio.RoomResolveAliasResponse):
            raise MatrixError(f"cannot resolve room alias {room}: {describe(resp)}")
        self._ids[room] = resp.room_id
        log.info("room alias %s is %s", room, resp.room_id)
        return str(resp.room_id)

    def cached(self, room: str) -> str:
        """The room id when known without asking the server, else ``room`` as given."""
        return self._ids.get(room, room)


def describe(resp: object) -> str:
    """A short reason from a nio error response (they carry ``status_code`` and ``message``)."""
    code = getattr(resp, "status_code", None)
    message = getattr(resp, "message", None)
    if code or message:
        return f"{code or 'error'}: {message or ''}".strip()
    return repr(resp)
