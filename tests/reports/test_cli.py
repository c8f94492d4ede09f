"""``ticketbot stats --out`` and ``ticketbot badge --out`` on the seeded desk, in-process."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import pytest

import bot.cli
from bot.cli import main
from storage.reports import ReportQueries
from storage.store import SqlStore
from tests.reports import expected
from tests.reports.conftest import NOW, SeededDb
from tests.reports.test_render import png_size

CONFIG = """
[storage]
url = "{url}"

[mail.maildir]
path = "mail"

[mail.files]
path = "out"

[console]
enabled = true
user = "@alice:example.org"

[[queue]]
name = "info"
addresses = ["info@example.org"]
volunteers = ["@alice:example.org"]
default = true
console = true

[[queue]]
name = "info::de"

[[queue]]
name = "permissions"
addresses = ["permissions@example.org"]
volunteers = ["@bob:example.org"]
console = true

[[queue]]
name = "press"
addresses = ["press@example.org"]
volunteers = ["@carol:example.org"]
console = true
"""


@pytest.fixture
def config(tmp_path: Path, seeded_db: SeededDb, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration for the seeded desk, with the clock where its data is."""
    path = tmp_path / "bot.toml"
    path.write_text(CONFIG.format(url=seeded_db.url), encoding="utf-8")
    monkeypatch.setattr(bot.cli, "_report_now", lambda: NOW)
    return path


def test_stats_writes_charts_and_csv_and_prints_the_table(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], seeded_db: SeededDb
) -> None:
    out = tmp_path / "reports" / "october"
    argv = ["stats", "--config", str(config), "--from", "2026-10-25", "--to", "2026-11-23"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Traffic, 2026-10-25 – 2026-11-23 (30 days)\n")
    names = ["stats-traffic.png", "stats-times.png", "stats-traffic.csv", "stats-times.csv"]
    for name in names:
        assert f"wrote {out / name}" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert png_size((out / "stats-traffic.png").read_bytes()) == (1000, 600)
    assert png_size((out / "stats-times.png").read_bytes()) == (1000, 600)

    start = expected.midnight(NOW.date() - timedelta(days=29))
    end = expected.midnight(NOW.date() + timedelta(days=1))
    days = [start.date() + timedelta(days=n) for n in range(30)]
    want = expected.received(seeded_db.seeded, start, end, days)
    rows = list(
        csv.DictReader(io.StringIO((out / "stats-traffic.csv").read_text(encoding="utf-8-sig")))
    )
    for row in rows:
        i = days.index(date.fromisoformat(row["date"]))
        assert int(row["received"]) == want[row["queue"]][i]


async def test_stats_of_named_queues_reads_what_the_report_reads(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], seeded_db: SeededDb
) -> None:
    out = tmp_path / "out"
    assert main(["stats", "--config", str(config), "--month", "info", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "last 30 days, 2026-10-25 – 2026-11-23" in text
    rows = list(
        csv.DictReader(io.StringIO((out / "stats-times.csv").read_text(encoding="utf-8-sig")))
    )
    assert [r["queue"] for r in rows] == ["info", "info::de", "(all)"]
    store = await SqlStore.open(seeded_db.url)
    try:
        start = expected.midnight(NOW.date() - timedelta(days=29))
        data = await store.run(
            lambda repo: ReportQueries().report_traffic(["info"], start, start + timedelta(days=30))
        )
    finally:
        await store.close()
    assert int(rows[0]["answered_tickets"]) == data.queues[0].first_response.count


def test_badge_writes_svg_and_json_per_configured_queue(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], seeded_db: SeededDb
) -> None:
    out = tmp_path / "badges"
    assert main(["badge", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    want = expected.waiting(seeded_db.seeded, NOW)
    assert printed[0].startswith(f"info: {want['info'][0]} waiting · oldest ")
    assert f"wrote {out / 'info--de.svg'}" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.{ext}"
        for stem in ("info", "info--de", "permissions", "press")
        for ext in ("svg", "json")
    )
    for queue, (waiting, age) in want.items():
        stem = queue.replace("::", "--")
        data = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert (data["queue"], data["waiting"], data["oldest_age_seconds"]) == (
            queue,
            waiting,
            age,
        )
        ET.fromstring((out / f"{stem}.svg").read_bytes())


def test_badge_of_one_queue(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "one"
    assert main(["badge", "press", "--config", str(config), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["press.json", "press.svg"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["stats", "foo"], "ticketbot: stats: unknown queue 'foo'; known: info, info::de, "),
        (["stats", "--from", "2026-13-01"], "ticketbot: stats: --from 2026-13-01 is not a date"),
        (
            ["stats", "--from", "2026-11-05", "--to", "2026-11-01"],
            "ticketbot: stats: --from must be before --to",
        ),
        (["stats", "--week", "--month"], "ticketbot: stats: give only one of --week, --month"),
        (["stats", "--month", "2026-13"], "ticketbot: stats: --month 2026-13 is not a month"),
        (["badge", "nope"], "ticketbot: badge: unknown queue 'nope'; known: info, "),
    ],
)
def test_bad_arguments_are_named_with_status_2(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    out = tmp_path / "nothing"
    assert main([*argv, "--config", str(config), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not out.exists(), "nothing is written for a bad request"


def test_out_must_be_a_folder(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["badge", "--config", str(config), "--out", str(blocker)]) == 2
    assert f"--out {blocker}" in capsys.readouterr().err


def test_a_missing_database_is_an_error_not_a_new_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bot.toml"
    missing = tmp_path / "missing.db"
    config.write_text(CONFIG.format(url=f"sqlite:///{missing}"), encoding="utf-8")
    assert main(["stats", "--config", str(config), "--out", str(tmp_path / "o")]) == 1
    assert "no such database file" in capsys.readouterr().err
    assert not missing.exists()


def test_out_is_required_and_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["stats"])
    assert stopped.value.code == 2
    assert "--out" in capsys.readouterr().err
    for command in ("stats", "badge"):
        with pytest.raises(SystemExit) as stopped:
            main([command, "--help"])
        assert stopped.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"ticketbot {command} " in text
