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

SOURCE = "imap:desk@127.0.0.1:993/INBOX"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Desk, str]]:
    desk = await make_desk(tmp_path)
    assert desk.live is not None
    metrics = desk.intake.metrics  # one set of figures for the whole desk, as in the app
    desk.commands.metrics = metrics
    desk.dispatcher.metrics = metrics
    metrics.mail_checked_at[SOURCE] = desk.clock.now()
    status = StatusService(desk.live, desk.store, desk.clock, metrics, [SOURCE])
    server = HttpServer(HttpConfig(port=0, badge_cache_seconds=0), status)
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


async def test_health_fails_when_the_mailbox_has_not_been_checked_for_long(
    served: tuple[Desk, str],
) -> None:
    desk, base = served
    desk.clock.advance(20 * 60)
    status, _, body = await get(f"{base}/healthz")
    assert status == 503
    assert json.loads(body)["mail"][SOURCE]["state"] == "stale"
    desk.intake.metrics.mail_checked_at[SOURCE] = desk.clock.now()
    status, _, body = await get(f"{base}/healthz")
    assert status == 200 and json.loads(body)["mail"][SOURCE]["state"] == "ok"


async def test_metrics_in_the_prometheus_text_format(served: tuple[Desk, str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    desk, base = served
    first = await desk.receive(mail("One"))
    await desk.receive(mail("Two", to="press@example.org"))
    assert (await desk.command(BOB, f"!claim {first.ticket_number}")).ok
    assert (await desk.command(BOB, f"!reply {first.ticket_number} Yes.")).ok
    await desk.flush()
    desk.intake.metrics.reconnects["imap"] += 1

    status, kind, text = await get(f"{base}/metrics")
    assert status == 200 and kind.startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("ticketbot_mails_taken_in_total", ())] == 2
    assert samples[("ticketbot_replies_sent_total", ())] == 1
    assert samples[("ticketbot_tickets", (("queue", "info"), ("state", "open")))] == 1
    assert samples[("ticketbot_tickets", (("queue", "press"), ("state", "new")))] == 1
    assert samples[("ticketbot_reconnects_total", (("adapter", "imap"),))] == 1
    assert samples[("ticketbot_command_seconds_count", (("command", "claim"),))] == 1
    assert (
        samples[("ticketbot_command_seconds_bucket", (("command", "claim"), ("le", "+Inf")))] == 1
    )


async def test_a_standby_is_healthy_and_says_which_roles_it_waits_for(
    served: tuple[Desk, str],
) -> None:
    """Another instance takes the mail in: its mailbox is nothing this one can be late with."""
    from prometheus_client.parser import text_string_to_metric_families

    desk, base = served
    metrics = desk.intake.metrics
    metrics.instance = "desk-2 (id 7)"
    metrics.roles = {"intake": False, "matrix": False, "scheduler": False}
    desk.clock.advance(60 * 60)  # an hour with no check of its own
    status, _, body = await get(f"{base}/healthz")
    health = json.loads(body)
    assert status == 200, body
    assert health["mail"][SOURCE]["state"] == "standby"
    assert health["instance"] == "desk-2 (id 7)" and health["roles_held"] == []
    assert health["standing_by_for"] == ["intake", "matrix", "scheduler"]

    # it takes intake over: from then on its own checks count, from when it took the role
    metrics.roles = {"intake": True, "matrix": True, "scheduler": True}
    metrics.roles_since["intake"] = desk.clock.now()
    metrics.connections["matrix"] = "failing: homeserver away"  # shown, not fatal: posts wait
    status, _, body = await get(f"{base}/healthz")
    assert status == 200 and json.loads(body)["mail"][SOURCE]["state"] == "ok"
    assert json.loads(body)["chat"] == {"matrix": "failing: homeserver away"}
    desk.clock.advance(20 * 60)
    status, _, body = await get(f"{base}/healthz")
    assert status == 503 and json.loads(body)["mail"][SOURCE]["state"] == "stale"

    _, _, text = await get(f"{base}/metrics")
    held = {
        s.labels["role"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ticketbot_role_held"
    }
    assert held == {"intake": 1.0, "matrix": 1.0, "scheduler": 1.0}
