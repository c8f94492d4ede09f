"""Smoke tests for the real-server fixtures: Synapse and PostgreSQL really work."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import psycopg2
import pytest
from nio import AsyncClient, RoomMessageText, RoomSendResponse, SyncResponse, WhoamiResponse

from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.servers


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _client(synapse: SynapseServer, user_id: str, token: str) -> AsyncClient:
    client = AsyncClient(synapse.url, user_id)
    client.user_id = user_id
    client.access_token = token
    return client


def test_synapse_answers_and_registers(synapse: SynapseServer) -> None:
    assert synapse.url.startswith("http://127.0.0.1:")
    assert synapse.request("GET", "/_matrix/client/versions")["versions"]
    localpart = _unique("admin")
    user_id, token = synapse.register(localpart, "secret", admin=True)
    assert user_id == f"@{localpart}:{synapse.server_name}"
    whoami = synapse.request("GET", "/_matrix/client/v3/account/whoami", token=token)
    assert whoami["user_id"] == user_id


async def test_synapse_message_between_two_nio_clients(synapse: SynapseServer) -> None:
    alice_id, alice_token = synapse.register(_unique("alice"), "alice-password")
    bob_id, bob_token = synapse.register(_unique("bob"), "bob-password")
    room_id = synapse.create_room(alice_token, invite=[bob_id], name="smoke")
    assert synapse.join(bob_token, room_id) == room_id

    alice = _client(synapse, alice_id, alice_token)
    bob = _client(synapse, bob_id, bob_token)
    try:
        whoami = await bob.whoami()
        assert isinstance(whoami, WhoamiResponse), whoami
        assert whoami.user_id == bob_id

        assert isinstance(await alice.sync(timeout=0), SyncResponse)
        body = f"hello bob {uuid.uuid4().hex}"
        sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
        assert isinstance(sent, RoomSendResponse), sent

        synced = await bob.sync(
            timeout=0, full_state=True, sync_filter={"room": {"timeline": {"limit": 50}}}
        )
        assert isinstance(synced, SyncResponse), synced
        assert room_id in synced.rooms.join
        messages = [
            event
            for event in synced.rooms.join[room_id].timeline.events
            if isinstance(event, RoomMessageText)
        ]
        assert [(m.sender, m.body) for m in messages] == [(alice_id, body)]
        assert messages[0].event_id == sent.event_id
    finally:
        await alice.close()
        await bob.close()


def test_synapse_send_text_helper(synapse: SynapseServer) -> None:
    user_id, token = synapse.register(_unique("carol"), "carol-password")
    room_id = synapse.create_room(token)
    event_id = synapse.send_text(token, room_id, "note to self")
    event = synapse.request(
        "GET", f"/_matrix/client/v3/rooms/{room_id}/event/{event_id}", token=token
    )
    assert event["sender"] == user_id
    assert event["content"]["body"] == "note to self"


def test_postgres_session_database(postgres_url: str) -> None:
    assert urlsplit(postgres_url).scheme == "postgresql"
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)
    conn.close()


def test_postgres_per_test_database(postgres_db_url: str, postgres_url: str) -> None:
    name = urlsplit(postgres_db_url).path.lstrip("/")
    assert name != urlsplit(postgres_url).path.lstrip("/")
    conn = psycopg2.connect(postgres_db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("select 1, current_database()")
            assert cur.fetchone() == (1, name)
            cur.execute("create table t (x int)")
            cur.execute("insert into t values (42)")
            cur.execute("select x from t")
            assert cur.fetchone() == (42,)
        conn.commit()
    finally:
        conn.close()
