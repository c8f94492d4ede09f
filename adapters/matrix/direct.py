"""Direct-message rooms: where an answer meant for one person alone (``reveal``) goes.

Matrix has no ephemeral messages: whatever the bot says in a queue room every member
reads, now and in the room's history. An answer the core marks private is therefore sent
in a direct room with the asker, created with ``is_direct`` (clients list it as a DM)
and reused afterwards. Which room belongs to whom is kept in the bot's ``m.direct``
account data, the place Matrix clients keep it, so a restarted bot finds the same room
instead of inviting the person to a new one each time.

A room is only reused while the person is still in it (joined or invited) and it is not
encrypted (the bot does not encrypt, and a plain message in an encrypted room is shown
with a warning, or not at all).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse

import nio

from adapters.matrix.rooms import MatrixError, describe

log = logging.getLogger(__name__)

DIRECT = "m.direct"


class DirectRooms:
    """Finds, or creates, the bot's direct room with each person."""

    def __init__(self, client: nio.AsyncClient) -> None:
        self._client = client
        self._rooms: dict[str, str] = {}
        #: Rooms this process created, usable before a sync has told nio about them.
        self._created: set[str] = set()
        #: Two private answers for one person at once must not create two rooms.
        self._lock = asyncio.Lock()

    async def room_for(self, user_id: str) -> str:
        """The direct room with ``user_id``; created (and the person invited) when none is
        usable. Raises :class:`MatrixError` when no room can be had."""
        async with self._lock:
            known = self._rooms.get(user_id)
            if known is not None and self._usable(known, user_id):
                return known
            for room_id in reversed(await self._listed(user_id)):
                if self._usable(room_id, user_id):
                    self._rooms[user_id] = room_id
                    return room_id
            room_id = await self._create(user_id)
            self._rooms[user_id] = room_id
            await self._remember(user_id, room_id)
            return room_id

    def _usable(self, room_id: str, user_id: str) -> bool:
        room = self._client.rooms.get(room_id)
        if room is None:
            return room_id in self._created
        return not room.encrypted and user_id in room.users

    async def _create(self, user_id: str) -> str:
        resp = await self._client.room_create(
            is_direct=True,
            preset=nio.RoomPreset.private_chat,
            invite=[user_id],
        )
        if not isinstance(resp, nio.RoomCreateResponse):
            raise MatrixError(f"cannot create a direct room with {user_id}: {describe(resp)}")
        room_id = str(resp.room_id)
        self._created.add(room_id)
        log.info("matrix: direct room %s created for %s", room_id, user_id)
        return room_id

    async def _direct_map(self) -> dict[str, list[str]]:
        """The bot's ``m.direct`` (person -> rooms); empty when never set."""
        resp = await self._client.list_direct_rooms()
        if not isinstance(resp, nio.DirectRoomsResponse):
            if getattr(resp, "status_code", None) != "M_NOT_FOUND":
                log.warning("matrix: cannot read m.direct: %s", describe(resp))
            return {}
        return {
            str(user): [str(room) for room in rooms]
            for user, rooms in resp.rooms.items()
            if isinstance(rooms, list)
        }

    async def _listed(self, user_id: str) -> list[str]:
        return (await self._direct_map()).get(user_id, [])

    async def _remember(self, user_id: str, room_id: str) -> None:
        """Add the room to ``m.direct``; a failure only costs a new room after a restart."""
        mapping = await self._direct_map()
        mapping[user_id] = [*(r for r in mapping.get(user_id, []) if r != room_id), room_id]
        user = urllib.parse.quote(self._client.user_id, safe="")
        path = f"/_matrix/client/v3/user/{user}/account_data/{DIRECT}"
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self._client.access_token}",
        }
        try:
            resp = await self._client.send("PUT", path, json.dumps(mapping), headers)
        except Exception as exc:  # network trouble: the room is there, only not remembered
            log.warning("matrix: cannot write m.direct for %s: %s", user_id, exc)
            return
        try:
            if resp.status != 200:
                log.warning(
                    "matrix: cannot write m.direct for %s: HTTP %s %s",
                    user_id,
                    resp.status,
                    await resp.text(),
                )
        finally:
            resp.release()
