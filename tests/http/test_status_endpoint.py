"""The HTTP endpoint on loopback: backlog badges and the health check, through aiohttp."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.http import HttpServer
from bot.config import ConfigError, HttpConfig
from bot.status import StatusService
from tests.core.conftest import BOB, Desk, desk_config, mail, make_desk


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Desk, str]]:
    desk = await make_desk(tmp_path)
    assert desk.live is not None
    server = HttpServer(
        HttpConfig(port=0, badge_cache_seconds=0), StatusService(desk.live, desk.store, desk.clock)
    )
    await server.start()
    yield desk, f"http://127.0.0.1:{server.port}"
    await server.stop()
    await desk.store.close()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_badges_count_waiting_tickets_without_personal_data(
    served: tuple[Desk, str],
) -> None:
    desk, base = served
    first = await desk.receive(mail("One", sender="maria@example.net"))
    await desk.receive(mail("Two", sender="joao@example.net"))
    desk.clock.advance(3 * 3600)
    assert (await desk.command(BOB, f"!reply {first.ticket_number} Done.")).ok

    status, kind, body = await get(f"{base}/badge/info.json")
    assert status == 200 and kind.startswith("application/json")
    data = json.loads(body)
    assert data["queue"] == "info" and data["waiting"] == 1
    assert data["oldest_age_seconds"] == 3 * 3600
    assert "@" not in body

    status, kind, svg = await get(f"{base}/badge/info.svg")
    assert status == 200 and kind.startswith("image/svg+xml")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and "info" in svg and "@" not in svg

    status, _, _ = await get(f"{base}/badge/nosuchqueue.svg")
    assert status == 404
    status, _, _ = await get(f"{base}/badge/info.png")
    assert status == 404


async def test_health_says_ok_with_the_outbox_backlog_and_fails_without_a_database(
    served: tuple[Desk, str],
) -> None:
    desk, base = served
    await desk.receive(mail())
    status, _, body = await get(f"{base}/healthz")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok" and health["outbox_pending"] >= 1
    await desk.store.close()
    status, _, body = await get(f"{base}/healthz")
    assert status == 503 and json.loads(body)["status"] == "failing"


def test_listen_is_checked_and_named_in_the_error(tmp_path: Path) -> None:
    config = desk_config(tmp_path, extra={"http": {"listen": "127.0.0.1:9200"}})
    assert config.http == HttpConfig(host="127.0.0.1", port=9200)
    for bad in ("9200", "localhost:http", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match=r"http\.listen"):
            desk_config(tmp_path, extra={"http": {"listen": bad}})
