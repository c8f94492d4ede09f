"""The privacy check for Matrix rooms: may the public read what the bot posts there?

Tickets hold requesters' names, addresses and words, so a queue room must be private.
A Matrix room is taken as public when any of these holds:

* its join rule (``m.room.join_rules``) is ``public``: anyone may walk in and read;
* it is listed in the homeserver's public room directory, where anyone finds it;
* its history is ``world_readable``: anyone may read it without joining at all.

``knock`` (anyone may *ask* to join), ``invite``, ``restricted`` and
``knock_restricted`` (members of named rooms or spaces may join) are not public: a
member of the room, or of a space the admins chose, lets people in. That is the same
trust the admins place in whoever they invite.

When the room cannot be inspected (the bot is not in it, the alias does not resolve, the
server answers with an error), :meth:`MatrixRoomInspector.check_room` raises: the core
then treats the room as public and refuses it, which is the safe way to be wrong.
"""

from __future__ import annotations

from typing import Any

import nio

from adapters.matrix.rooms import MatrixError, RoomDirectory, describe
from bot.ports import RoomCheck

JOIN_RULES = "m.room.join_rules"
HISTORY_VISIBILITY = "m.room.history_visibility"


class MatrixRoomInspector:
    """:class:`bot.ports.RoomInspector` for Matrix rooms (ids or aliases as configured)."""

    def __init__(self, client: nio.AsyncClient, rooms: RoomDirectory) -> None:
        self._client = client
        self._rooms = rooms

    async def check_room(self, room: str) -> RoomCheck:
        room_id = await self._rooms.resolve(room)
        reasons: list[str] = []
        join_rule = (await self._state(room_id, JOIN_RULES, required=True)).get("join_rule")
        if join_rule == "public":
            reasons.append("anyone may join it (join rule public)")
        if await self._listed(room_id):
            reasons.append("it is listed in the public room directory")
        history = (await self._state(room_id, HISTORY_VISIBILITY, required=False)).get(
            "history_visibility"
        )
        if history == "world_readable":
            reasons.append("anyone may read its history without joining (world_readable)")
        return RoomCheck(bool(reasons), "; ".join(reasons))

    async def _state(self, room_id: str, event_type: str, *, required: bool) -> dict[str, Any]:
        """The content of a state event; ``{}`` for an optional one the room never set.

        nio hands an error body back as the event's content, so ``errcode`` is checked
        here.
        """
        resp = await self._client.room_get_state_event(room_id, event_type)
        content = getattr(resp, "content", None)
        if isinstance(resp, nio.RoomGetStateEventResponse) and isinstance(content, dict):
            errcode = content.get("errcode")
            if errcode is None:
                return content
            if errcode == "M_NOT_FOUND" and not required:
                return {}
            reason = f"{errcode}: {content.get('error', '')}"
        else:
            reason = describe(resp)
        raise MatrixError(f"cannot read {event_type} of {room_id}: {reason}")

    async def _listed(self, room_id: str) -> bool:
        resp = await self._client.room_get_visibility(room_id)
        if not isinstance(resp, nio.RoomGetVisibilityResponse):
            raise MatrixError(f"cannot read the directory listing of {room_id}: {describe(resp)}")
        return str(resp.visibility) == "public"
