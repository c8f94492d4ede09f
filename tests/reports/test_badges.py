"""Backlog badges: who waits how long per queue, as SVG and JSON fit for a public page."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from bot.reports import badge_files
from bot.reports.badge import badge_json, badge_svg, colour, file_stems, message
from bot.reports.data import BadgeData
from storage.reports import ReportQueries
from storage.store import SqlStore
from tests.reports import expected
from tests.reports.conftest import NOW, SeededDb

SVG = "{http://www.w3.org/2000/svg}"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
AT = datetime(2026, 11, 23, 12, tzinfo=UTC)


async def test_waiting_tickets_and_the_oldest_wait_agree_with_a_plain_count(
    store: SqlStore, seeded_db: SeededDb
) -> None:
    badges = await store.run(lambda repo: ReportQueries().report_backlog(None, NOW))
    want = expected.waiting(seeded_db.seeded, NOW)
    assert {b.queue: (b.waiting, b.oldest_age_seconds) for b in badges} == want
    assert all(b.generated_at == NOW for b in badges)
    assert sum(b.waiting for b in badges) > 10, "the seeded desk has tickets waiting"


async def test_a_queue_brings_its_sub_queues_and_an_unused_one_waits_for_nothing(
    store: SqlStore,
) -> None:
    badges = await store.run(lambda repo: ReportQueries().report_backlog(["info", "board"], NOW))
    assert [b.queue for b in badges] == ["board", "info", "info::de"]
    assert badges[0] == BadgeData("board", 0, None, NOW)


async def test_badge_files_are_svg_and_json_without_personal_data(
    store: SqlStore, seeded_db: SeededDb
) -> None:
    badges = await store.run(lambda repo: ReportQueries().report_backlog(None, NOW))
    files = badge_files(badges)
    assert [f.name for f in files] == [
        "info.svg",
        "info.json",
        "info--de.svg",
        "info--de.json",
        "permissions.svg",
        "permissions.json",
        "press.svg",
        "press.json",
    ]
    requesters = {t.requester for t in seeded_db.seeded.tickets}
    for item in files:
        text = item.data.decode()
        assert not EMAIL.search(text), item.name
        assert not any(r in text for r in requesters)
        if item.name.endswith(".svg"):
            assert item.content_type == "image/svg+xml"
            root = ET.fromstring(item.data)
            assert root.tag == f"{SVG}svg"
        else:
            assert item.content_type == "application/json"
            assert set(json.loads(text)) == {
                "queue",
                "waiting",
                "oldest_age_seconds",
                "oldest_age",
                "generated_at",
                "schemaVersion",
                "label",
                "message",
                "color",
            }


def test_the_svg_says_queue_and_count_in_two_boxes() -> None:
    badge = BadgeData("info::de", 12, 3 * 86400 + 7200, AT)
    root = ET.fromstring(badge_svg(badge))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts == ["info::de", "info::de", "12 waiting · oldest 3d", "12 waiting · oldest 3d"]
    assert root.find(f"{SVG}title") is not None
    assert root.get("aria-label") == "info::de: 12 waiting · oldest 3d"
    boxes = [r for r in root.iter(f"{SVG}rect") if r.get("fill", "").startswith("#")]
    assert [r.get("fill") for r in boxes][1:3] == ["#555", "#e05d44"]
    widths = [int(r.get("width", "0")) for r in boxes[1:3]]
    assert int(root.get("width", "0")) == sum(widths)
    assert widths[1] > widths[0], "the longer text gets the wider box"


def test_the_json_gives_the_figures_and_a_shields_endpoint() -> None:
    data = json.loads(badge_json(BadgeData("press", 2, 5400, AT)))
    assert data == {
        "queue": "press",
        "waiting": 2,
        "oldest_age_seconds": 5400,
        "oldest_age": "1h",
        "generated_at": "2026-11-23T12:00:00+00:00",
        "schemaVersion": 1,
        "label": "press",
        "message": "2 waiting · oldest 1h",
        "color": "brightgreen",
    }
    idle = json.loads(badge_json(BadgeData("press", 0, None, AT)))
    assert (idle["message"], idle["oldest_age"], idle["oldest_age_seconds"]) == (
        "0 waiting",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("waiting", "age", "expected_colour"),
    [
        (0, None, "brightgreen"),
        (3, 23 * 3600, "brightgreen"),
        (3, 24 * 3600, "yellow"),
        (3, 3 * 86400 - 1, "yellow"),
        (3, 3 * 86400, "red"),
    ],
)
def test_the_colour_follows_the_oldest_wait(
    waiting: int, age: int | None, expected_colour: str
) -> None:
    assert colour(BadgeData("q", waiting, age, AT)) == expected_colour


def test_names_are_escaped_in_the_svg_and_made_safe_for_files() -> None:
    hostile = "a&b<c>\"d'</text><script>x</script>"
    root = ET.fromstring(badge_svg(BadgeData(hostile, 1, 60, AT)))
    assert next(t.text for t in root.iter(f"{SVG}text")) == hostile
    assert root.find(f"{SVG}script") is None and not list(root.iter("script"))
    assert message(BadgeData(hostile, 1, 60, AT)) == "1 waiting · oldest 1m"
    stems = file_stems(["info::de", "info--de", "../../etc/passwd", ".hidden", "Presse & PR", ""])
    assert stems == ["info--de", "info--de-2", "etc-passwd", "hidden", "Presse--PR", "queue"]
    assert all("/" not in s and not s.startswith(".") for s in stems)
