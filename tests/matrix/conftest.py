"""The ``desk`` fixture: a bot account, a volunteer and a room on the test Synapse."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.matrix.helpers import PASSWORD, Desk
from tests.servers.synapse import SynapseServer


@pytest.fixture
async def desk(synapse: SynapseServer, tmp_path: Path) -> AsyncIterator[Desk]:
    tag = uuid.uuid4().hex[:8]
    bot_user, bot_token = synapse.register(f"bot{tag}", PASSWORD)
    volunteer_user, volunteer_token = synapse.register(f"vera{tag}", PASSWORD)
    path = f"/_matrix/client/v3/profile/{urllib.parse.quote(volunteer_user)}/displayname"
    synapse.request("PUT", path, {"displayname": "Vera Volunteer"}, volunteer_token)
    room_id = synapse.create_room(volunteer_token, invite=[bot_user], name="support")
    the_desk = Desk(
        synapse, tmp_path, bot_user, bot_token, volunteer_user, volunteer_token, room_id
    )
    try:
        yield the_desk
    finally:
        for client in the_desk.clients:
            await client.close()
