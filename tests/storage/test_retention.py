"""Retention: old closed tickets archived, the archive verified, then removed.

Each guard gets a test: a zero or tiny age is refused when the configuration is read,
and whatever age reaches the code, only closed tickets are candidates, never new,
open or pending ones; a run over ``max_share`` of all tickets is refused, saying by how
much; a stale code is refused; the archive is read back before anything is deleted; a
failed backup or a bad archive removes nothing; and the tickets that remain are whole,
row for row, with no reference to a removed one. On SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from peewee import OperationalError

import storage.retention as retention
from bot.cli import main
from bot.config import ConfigError
from bot.domain import TicketState
from bot.mail import AttachmentData
from storage import models
from storage.backup import BackupError
from storage.maintenance import MaintenanceError, StaleCode
from storage.retention import apply_retention, plan_retention, verify_archive
from tests.cli_runs import write_desk_config as write_config
from tests.core.conftest import ALICE, Desk, desk_config, mail, make_desk
from tests.storage.test_backup import execute, table_rows

LOGO = b"\x89PNG the team logo" * 40
MINUTES = b"%PDF minutes of the meeting"
TWO_YEARS = timedelta(days=730)


@dataclass
class Scenario:
    url: str
    now: datetime  # when retention runs: every ticket is then older than two years
    numbers: dict[str, str]  # role -> ticket number

    @property
    def closed(self) -> set[str]:
        return {self.numbers[k] for k in ("closed", "unsuccessful", "spam", "merged")}

    @property
    def kept(self) -> set[str]:
        return {self.numbers[k] for k in ("open", "new", "pending", "continued", "busy")}


@pytest.fixture(params=["sqlite", "postgresql"])
async def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Scenario]:
    url = (
        request.getfixturevalue("postgres_db_url")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path}/desk.db"
    )
    desk = await make_desk(tmp_path, url)
    try:
        numbers = await build(desk)
        now = desk.clock.now() + TWO_YEARS + timedelta(days=30)
    finally:
        await desk.store.close()
    yield Scenario(url, now, numbers)


async def build(desk: Desk) -> dict[str, str]:
    """One ticket in every state that matters, each from its own sender."""
    numbers: dict[str, str] = {}

    async def ticket(role: str, *files: AttachmentData) -> str:
        email = mail(f"About {role}", sender=f"{role}@example.net", text=f"{role} text")
        outcome = await desk.receive(replace(email, attachments=files))
        numbers[role] = outcome.ticket_number
        desk.clock.advance(60)
        return outcome.ticket_number

    async def command(text: str) -> None:
        result = await desk.command(ALICE, text)
        assert result.ok, (text, result)

    logo = AttachmentData("logo.png", "image/png", LOGO)
    await ticket("new")
    await ticket("open", logo)
    await command(f"!claim {numbers['open']}")
    await ticket("pending")
    await command(f"!pending {numbers['pending']} 3d")
    closed = await ticket("closed", logo, AttachmentData("minutes.pdf", "application/pdf", MINUTES))
    await command(f"!reply {closed} Thanks, done.")
    await command(f"!tag {closed} add press")
    await command(f"!close {closed}")
    await command(f"!close {await ticket('unsuccessful')} unsuccessful")
    await command(f"!spam {await ticket('spam')}")
    await command(f"!merge {await ticket('merged')} {numbers['open']}")
    # closed long ago, but the open ticket continues it: it must stay
    await command(f"!close {await ticket('continued')}")
    # closed, but a post about it is still waiting in the outbox
    await command(f"!close {await ticket('busy')}")
    await desk.flush()

    def link_and_wait(repo: Any) -> None:
        continued = repo.ticket_by_number(numbers["continued"])
        opened = repo.ticket_by_number(numbers["open"])
        models.Ticket.update(linked_to_id=continued.id).where(
            models.Ticket.id == opened.id
        ).execute()
        busy = repo.ticket_by_number(numbers["busy"])
        later = desk.clock.now() + timedelta(days=3650)
        repo.enqueue("matrix", "notice", busy.id, desk.clock.now(), payload={}, due_at=later)

    await desk.store.run(link_and_wait)
    return numbers


def failing_backup(url: str, target: Path, **kwargs: Any) -> Any:
    raise BackupError(f"{target.parent}: read-only file system")


async def snapshot(tmp_path: Path, url: str, numbers: set[str]) -> dict[str, Any]:
    """Tickets as the bot sees them: fields, articles, files, history."""
    desk = await make_desk(tmp_path / f"view{len(list(tmp_path.glob('view*')))}", url)

    def read(repo: Any) -> dict[str, Any]:
        found = {}
        for number in sorted(numbers):
            ticket = repo.ticket_by_number(number)
            articles = repo.articles(ticket.id)
            found[number] = (
                ticket,
                articles,
                [repo.attachment_files(a.id) for a in articles],
                repo.history(ticket.id),
            )
        return found

    try:
        return dict(await desk.store.run(read))
    finally:
        await desk.store.close()


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0d", "more than 0"),
        ("0 days", "more than 0"),
        ("0y", "more than 0"),
        ("forever", "must be a duration"),
        ("6m", "at least a day"),
        ("12h", "at least a day"),
    ],
)
def test_a_zero_or_tiny_age_is_refused_when_the_config_is_read(
    tmp_path: Path, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        desk_config(tmp_path, extra={"retention": {"closed_after": value}})
    assert refused.value.key == "retention.closed_after"
    assert reason in refused.value.reason and repr(value) in refused.value.reason


def test_retention_settings_are_read(tmp_path: Path) -> None:
    default = desk_config(tmp_path).retention
    assert default.closed_after is None, "off unless asked for"
    assert default.archive_dir == tmp_path / "var" / "archive" and default.max_share == 0.2
    config = desk_config(
        tmp_path,
        extra={"retention": {"closed_after": "2y", "archive_dir": "/srv/a", "max_share": 0.5}},
    ).retention
    assert (config.closed_after, config.archive_dir, config.max_share) == (
        TWO_YEARS,
        Path("/srv/a"),
        0.5,
    )
    assert desk_config(
        tmp_path, extra={"retention": {"closed_after": "1y 26w"}}
    ).retention.closed_after == timedelta(days=365 + 182)
    assert desk_config(tmp_path, extra={"retention": {"closed_after": "off"}}).retention == (
        default
    )
    for share in (0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=r"retention\.max_share: must be a share"):
            desk_config(tmp_path, extra={"retention": {"max_share": share}})
    with pytest.raises(ConfigError, match=r"retention\.keep_forever: unknown setting"):
        desk_config(tmp_path, extra={"retention": {"keep_forever": True}})


# --- the plan and its guards ---------------------------------------------------------------------


async def test_only_closed_tickets_are_ever_candidates(scenario: Scenario) -> None:
    before = table_rows(scenario.url)
    # the smallest age the code accepts: every ticket is older than that
    plan = plan_retention(scenario.url, timedelta(seconds=1), 1.0, now=scenario.now)

    assert table_rows(scenario.url) == before, "the dry run changes nothing"
    assert {t.number for t in plan.tickets} == scenario.closed
    assert {t.state for t in plan.tickets} == {
        "closed_successful",
        "closed_unsuccessful",
        "spam",
        "merged",
    }
    assert plan.kept_referenced == (scenario.numbers["continued"],)
    assert plan.kept_busy == (scenario.numbers["busy"],)
    with pytest.raises(MaintenanceError, match="must be more than 0"):
        plan_retention(scenario.url, timedelta(0), 1.0, now=scenario.now)
    # too young: nothing at all
    assert plan_retention(scenario.url, TWO_YEARS * 2, 1.0, now=scenario.now).tickets == ()


async def test_the_share_guard_refuses_and_says_by_how_much(
    scenario: Scenario, tmp_path: Path
) -> None:
    plan = plan_retention(scenario.url, TWO_YEARS, 0.2, now=scenario.now)
    before = table_rows(scenario.url)

    refusal = plan.refusal()
    assert refusal is not None
    assert "4 of 9 tickets (44.4%) would be removed" in refusal
    assert "max_share = 0.2 (20%)" in refusal and "3 ticket(s) over the limit of 1" in refusal
    with pytest.raises(MaintenanceError, match="3 ticket"):
        apply_retention(
            scenario.url,
            TWO_YEARS,
            0.2,
            plan.code,
            tmp_path / "archive",
            tmp_path / "backups",
            now=scenario.now,
        )
    assert table_rows(scenario.url) == before
    assert not (tmp_path / "backups").exists() and not (tmp_path / "archive").exists()
    assert plan_retention(scenario.url, TWO_YEARS, 0.45, now=scenario.now).refusal() is None


# --- a run ---------------------------------------------------------------------------------------


async def test_a_run_archives_verifies_and_removes_only_the_candidates(
    scenario: Scenario, tmp_path: Path
) -> None:
    kept_before = await snapshot(tmp_path, scenario.url, scenario.kept)
    before = table_rows(scenario.url)
    plan = plan_retention(scenario.url, TWO_YEARS, 0.5, now=scenario.now)
    messages: list[str] = []

    report = apply_retention(
        scenario.url,
        TWO_YEARS,
        0.5,
        plan.code,
        tmp_path / "archive",
        tmp_path / "backups",
        by="alice",
        now=scenario.now,
        progress=messages.append,
    )

    after = table_rows(scenario.url)
    numbers = {row[1] for row in after["ticket"]}
    assert numbers == scenario.kept, "only the closed candidates are gone"
    # the order the run went in: backup, archive, read back, delete
    steps = [
        next(i for i, m in enumerate(messages) if m.startswith(prefix))
        for prefix in (
            "backup written and checked",
            "writing the archive",
            "archive verified",
            "removing 4 ticket(s)",
            "committed",
        )
    ]
    assert steps == sorted(steps)
    assert report.backup is not None and report.backup.path.exists()
    assert report.backup.tickets == 9

    # the tickets that remain are whole: fields, articles, files, history
    assert await snapshot(tmp_path, scenario.url, scenario.kept) == kept_before
    ticket_ids = {row[0] for row in after["ticket"]}
    for row in after["ticket"]:
        merged_into, linked_to = row[15], row[16]
        assert merged_into in ticket_ids | {None} and linked_to in ticket_ids | {None}
    assert {row[1] for row in after["article"]} <= ticket_ids
    article_ids = {row[0] for row in after["article"]}
    assert {row[1] for row in after["attachment"]} <= article_ids
    blobs = [bytes(row[3]) for row in after["attachment_blob"]]
    assert blobs == [LOGO], "the logo the open ticket shares stays; the minutes go"
    # history stays, unlinked, plus a tombstone naming the archive
    assert len(after["audit_log"]) == len(before["audit_log"]) + 1
    tombstone = after["audit_log"][-1]
    assert (tombstone[3], tombstone[5], tombstone[6]) == ("alice", "data.retained", None)
    detail = json.loads(tombstone[7])
    assert report.archive is not None and detail["archive_sha256"] == report.archive.sha256
    assert sorted(detail["tickets"]) == sorted(scenario.closed)
    assert len(after["intake_record"]) == len(before["intake_record"])

    # the archive: private, complete, and the files' bytes in it
    assert report.archive is not None
    archive = report.archive.path
    assert archive.parent == tmp_path / "archive" and archive.stat().st_mode & 0o077 == 0
    lines = [json.loads(line) for line in archive.read_text().splitlines()]
    assert lines[0]["format"] == 1 and lines[0]["tickets"] == 4
    by_number = {line["ticket"]["number"]: line for line in lines[1:]}
    assert set(by_number) == scenario.closed
    closed = by_number[scenario.numbers["closed"]]
    files = [a for article in closed["articles"] for a in article["attachments"]]
    assert [base64.b64decode(f["data_base64"]) for f in files] == [LOGO, MINUTES]
    assert [t["name"] for t in closed["tags"]] == ["press"]
    assert any(a["action"] == "ticket.close" for a in closed["audit"])
    assert all(a["raw_message"] for a in closed["articles"] if a["kind"] == "inbound")
    assert verify_archive(archive, plan).tickets == 4

    # and the desk goes on
    desk = await make_desk(tmp_path / "after", scenario.url)
    try:
        assert (await desk.receive(mail("New question"))).created
        assert await desk.store.run(lambda repo: repo.count_tickets()) == 6
    finally:
        await desk.store.close()


async def test_a_stale_code_is_refused(scenario: Scenario, tmp_path: Path) -> None:
    plan = plan_retention(scenario.url, TWO_YEARS, 0.5, now=scenario.now)
    desk = await make_desk(tmp_path / "desk", scenario.url)
    try:  # a volunteer reopens one of them after the dry run
        result = await desk.command(ALICE, f"!reopen {scenario.numbers['closed']}")
        assert result.ok
    finally:
        await desk.store.close()
    before = table_rows(scenario.url)

    with pytest.raises(StaleCode, match="does not match what retention would do now"):
        apply_retention(
            scenario.url,
            TWO_YEARS,
            0.5,
            plan.code,
            tmp_path / "archive",
            tmp_path / "backups",
            now=scenario.now,
        )
    assert table_rows(scenario.url) == before
    with pytest.raises(StaleCode):
        apply_retention(
            scenario.url,
            TWO_YEARS,
            0.5,
            "12345678",
            tmp_path / "archive",
            tmp_path / "backups",
            now=scenario.now,
        )


async def test_nothing_is_removed_when_the_backup_fails(scenario: Scenario, tmp_path: Path) -> None:
    plan = plan_retention(scenario.url, TWO_YEARS, 0.5, now=scenario.now)
    before = table_rows(scenario.url)
    with pytest.raises(MaintenanceError, match="the backup before removing old tickets failed"):
        apply_retention(
            scenario.url,
            TWO_YEARS,
            0.5,
            plan.code,
            tmp_path / "archive",
            tmp_path / "backups",
            now=scenario.now,
            backup_fn=failing_backup,
        )
    assert table_rows(scenario.url) == before
    assert not (tmp_path / "archive").exists()


async def test_nothing_is_removed_when_the_archive_does_not_read_back(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_retention(scenario.url, TWO_YEARS, 0.5, now=scenario.now)
    before = table_rows(scenario.url)
    real = retention._ticket_lines

    def losing_a_file(db: Any, ticket_ids: list[int]) -> list[dict[str, Any]]:
        lines = real(db, ticket_ids)
        for line in lines:
            for article in line["articles"]:
                for attachment in article["attachments"]:
                    attachment["data_base64"] = base64.b64encode(b"not the file").decode()
        return lines

    monkeypatch.setattr(retention, "_ticket_lines", losing_a_file)
    with pytest.raises(MaintenanceError, match="does not read back as written") as refused:
        apply_retention(
            scenario.url,
            TWO_YEARS,
            0.5,
            plan.code,
            tmp_path / "archive",
            tmp_path / "backups",
            now=scenario.now,
        )
    assert "attachment" in str(refused.value) and "sha256 is" in str(refused.value)
    assert table_rows(scenario.url) == before


async def test_an_error_halfway_through_the_delete_rolls_it_all_back(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_retention(scenario.url, TWO_YEARS, 0.5, now=scenario.now)
    before = table_rows(scenario.url)
    real = retention._delete

    def then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)  # every row deleted, nothing committed yet
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(retention, "_delete", then_fail)
    with pytest.raises(MaintenanceError, match=r"database refused .*rolled back"):
        apply_retention(
            scenario.url,
            TWO_YEARS,
            0.5,
            plan.code,
            tmp_path / "archive",
            tmp_path / "backups",
            now=scenario.now,
        )
    assert table_rows(scenario.url) == before


async def test_a_cut_off_archive_fails_verification(scenario: Scenario, tmp_path: Path) -> None:
    plan = plan_retention(scenario.url, TWO_YEARS, 0.5, now=scenario.now)
    report = apply_retention(
        scenario.url,
        TWO_YEARS,
        0.5,
        plan.code,
        tmp_path / "archive",
        tmp_path / "backups",
        now=scenario.now,
    )
    assert report.archive is not None
    data = report.archive.path.read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MaintenanceError, match=r"cut off|missing"):
        verify_archive(cut, plan)


# --- the command line ----------------------------------------------------------------------------


async def test_cli_retention(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "live", scenario.url)
    assert main(["retention", "--config", str(config)]) == 2
    assert "retention is off" in capsys.readouterr().err

    text = config.read_text().replace(
        "[console]", '[retention]\nclosed_after = "2y"\nmax_share = 0.2\n\n[console]'
    )
    config.write_text(text)
    # the tickets were made "now": make them two and a half years old
    execute(scenario.url, "UPDATE ticket SET updated_at = ?", ("2024-05-01 10:00:00",))
    before = table_rows(scenario.url)
    assert main(["retention", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert "4 of 9 tickets" in out and "3 ticket(s) over the limit of 1" in err
    assert "confirmation code" not in out

    config.write_text(text.replace("max_share = 0.2", "max_share = 0.5"))
    assert main(["retention", "--config", str(config)]) == 0
    out, _ = capsys.readouterr()
    code = re.search(r"confirmation code: ([0-9a-f]{8})", out)
    assert code is not None and scenario.numbers["closed"] in out
    assert table_rows(scenario.url) == before

    argv = ["retention", "--confirm", code.group(1), "--config", str(config)]
    assert main([*argv, "--backup-dir", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("removed: 4 tickets") and "read back and verified" in out
    assert "archived 4 of 4 tickets" in err
    assert [p.suffix for p in (tmp_path / "live" / "var" / "archive").iterdir()] == [".jsonl"]
    assert len(list((tmp_path / "b").iterdir())) == 1
    assert main(argv) == 1, "the same code again is stale"
    states = {TicketState(row[3]) for row in table_rows(scenario.url)["ticket"]}
    assert TicketState.NEW in states and any(s.is_pending for s in states)
