"""Erasing one requester's personal data, on SQLite and on a real PostgreSQL.

The desk is filled through the real core: Maria's ticket with attachments, her
follow-up, a volunteer's reply, Bob's ticket carrying the same logo, and a mail of
Maria's on Bob's ticket. The dry run must change nothing; a wrong or stale code and a
failed backup must change nothing; a confirmed erase must leave no trace of her
address or name in any row of any table, keep every ticket, and leave Bob's data whole.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from peewee import OperationalError

import storage.erase
from bot.cli import main
from bot.mail import Address, AttachmentData
from bot.repository import SearchQuery
from storage.backup import BackupError, backup_kind
from storage.erase import erase, plan_erasure
from storage.maintenance import MaintenanceError, StaleCode
from tests.cli_runs import write_desk_config as write_config
from tests.core.conftest import ALICE, Desk, mail, make_desk
from tests.storage.test_backup import table_rows

MARIA = "maria@example.net"
LOGO = b"\x89PNG logo shared by everyone" * 50
PASSPORT = b"%PDF passport scan of Maria"


@dataclass
class Filled:
    url: str
    maria: str  # her ticket's number
    bob: str  # Bob's ticket's number


@pytest.fixture(params=["sqlite", "postgresql"])
async def filled(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Filled]:
    url = (
        request.getfixturevalue("postgres_db_url")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path}/desk.db"
    )
    desk = await make_desk(tmp_path, url)
    try:
        numbers = await fill(desk)
    finally:
        await desk.store.close()
    yield Filled(url, *numbers)


async def fill(desk: Desk) -> tuple[str, str]:
    maria = await desk.receive(
        replace(
            mail(
                "Lighthouse photo",
                message_id="<q1@example.net>",
                text="Hello, may I use the lighthouse photo?\nMaria Muster",
            ),
            attachments=(
                AttachmentData("logo.png", "image/png", LOGO),
                AttachmentData("passport.pdf", "application/pdf", PASSPORT),
            ),
        )
    )
    await desk.receive(mail("Re: Lighthouse photo", in_reply_to="<q1@example.net>"))
    await desk.command(ALICE, f"!claim {maria.ticket_number}")
    await desk.command(ALICE, f"!reply {maria.ticket_number} Dear Maria, yes, with credit.")
    bob = await desk.receive(
        replace(
            mail(
                "Press pass",
                message_id="<bob1@example.net>",
                text="A press pass for the festival, please.\nBob",
            ),
            sender=Address("bob@example.net", "Bob"),
            attachments=(AttachmentData("logo.png", "image/png", LOGO),),
        )
    )
    # Maria writes into Bob's ticket: her mail there is hers too
    await desk.receive(
        mail("Re: Press pass", in_reply_to="<bob1@example.net>", text="lighthouse again")
    )

    def marks(repo: Any) -> None:
        repo.mark_sender(MARIA, "vip", desk.clock.now(), "asked nicely")
        repo.record_auto_response(MARIA, desk.clock.now(), None)

    await desk.store.run(marks)
    await desk.flush()
    return maria.ticket_number, bob.ticket_number


def everything(url: str) -> str:
    return repr(table_rows(url))


def failing_backup(url: str, target: Path, **kwargs: Any) -> Any:
    raise BackupError(f"{target.parent}: no space left on device")


async def reopen(tmp_path: Path, url: str) -> Desk:
    return await make_desk(tmp_path / "again", url)


async def found(desk: Desk, words: str) -> set[str]:
    page = await desk.store.run(
        lambda repo: repo.search(SearchQuery(text=words), ["info", "press"], 0, 50)
    )
    return {hit.number for hit in page.hits}


async def lighthouse(folder: Path, url: str) -> set[str]:
    desk = await make_desk(folder, url)
    try:
        return await found(desk, "lighthouse")
    finally:
        await desk.store.close()


# --- the dry run and the guards ----------------------------------------------------------------


async def test_the_dry_run_lists_everything_and_changes_nothing(filled: Filled) -> None:
    before = table_rows(filled.url)

    plan = plan_erasure(filled.url, "  Maria@Example.NET ")

    assert table_rows(filled.url) == before
    assert re.fullmatch(r"[0-9a-f]{8}", plan.code)
    assert plan_erasure(filled.url, MARIA).code == plan.code, "the same plan, the same code"
    assert [t.number for t in plan.tickets] == [filled.maria]
    assert [number for _, number in plan.elsewhere] == [filled.bob]
    counts = plan.counts()
    assert counts["articles"] == 4  # her mail, her follow-up, the reply, her mail on Bob's
    assert counts["raw_messages"] == 3 and counts["attachments"] == 2
    assert counts["attachment_blobs"] == 1, "the logo is Bob's too: only the passport goes"
    assert counts["sender_marks"] == 1 and counts["auto_responses"] == 1
    assert counts["audit_entries"] >= 2  # "ticket.created from maria@...", the held mail ...
    text = plan.describe(MARIA)
    assert filled.maria in text and f"article {plan.elsewhere[0][0]} on {filled.bob}" in text
    assert plan.replacement.startswith("erased-") and plan.replacement.endswith("@erased.invalid")


async def test_a_wrong_or_stale_code_is_refused_and_changes_nothing(
    filled: Filled, tmp_path: Path
) -> None:
    plan = plan_erasure(filled.url, MARIA)
    before = table_rows(filled.url)

    with pytest.raises(StaleCode, match="does not match what erase would do now"):
        erase(filled.url, MARIA, "deadbeef", tmp_path / "backups")
    assert table_rows(filled.url) == before
    assert not (tmp_path / "backups").exists(), "no backup either: the code is checked first"

    desk = await reopen(tmp_path, filled.url)  # a new mail of hers after the dry run
    try:
        await desk.receive(mail("One more thing", text="and the map?"))
    finally:
        await desk.store.close()
    grown = table_rows(filled.url)
    with pytest.raises(StaleCode) as refused:
        erase(filled.url, MARIA, plan.code, tmp_path / "backups")
    new_code = plan_erasure(filled.url, MARIA).code
    assert new_code != plan.code and new_code not in str(refused.value), "read the list first"
    assert table_rows(filled.url) == grown


async def test_a_failed_backup_changes_nothing(filled: Filled, tmp_path: Path) -> None:
    plan = plan_erasure(filled.url, MARIA)
    before = table_rows(filled.url)

    with pytest.raises(MaintenanceError, match="the backup before erasing failed"):
        erase(filled.url, MARIA, plan.code, tmp_path / "backups", backup_fn=failing_backup)

    assert table_rows(filled.url) == before


async def test_an_error_halfway_rolls_everything_back(
    filled: Filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_erasure(filled.url, MARIA)
    before = table_rows(filled.url)
    real = storage.erase._apply_erasure

    def then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)  # every change made, none committed yet
        raise OperationalError("database is locked")

    monkeypatch.setattr(storage.erase, "_apply_erasure", then_fail)
    with pytest.raises(MaintenanceError, match=r"database refused .*rolled back"):
        erase(filled.url, MARIA, plan.code, tmp_path / "backups")

    assert table_rows(filled.url) == before


# --- the erase ---------------------------------------------------------------------------------


async def test_erase_leaves_no_trace_of_her_and_keeps_every_ticket(
    filled: Filled, tmp_path: Path
) -> None:
    before = table_rows(filled.url)
    assert "maria" in everything(filled.url).lower()
    assert await lighthouse(tmp_path / "before", filled.url) == {filled.maria, filled.bob}
    plan = plan_erasure(filled.url, MARIA)
    messages: list[str] = []

    report = erase(
        filled.url, MARIA, plan.code, tmp_path / "backups", by="alice", progress=messages.append
    )

    after = table_rows(filled.url)
    assert plan_erasure(filled.url, MARIA).empty, "erased once, nothing is left to erase"
    assert "maria" not in repr(after).lower(), "no row of any table names her"
    assert "muster" not in repr(after).lower()
    assert "<q1@example.net>" in repr(after), "Message-IDs stay: they thread and dedupe mail"
    if filled.url.startswith("sqlite:///"):
        # nor any byte of the file: the search index is compacted, freed pages are zeroed
        # and the write-ahead log is checkpointed
        path = Path(filled.url[len("sqlite:///") :])
        wal = Path(f"{path}-wal")
        on_disk = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        assert b"maria" not in on_disk.lower() and b"lighthouse" not in on_disk
        assert PASSPORT not in on_disk
        assert any("compacting the search index" in m for m in messages)
    # the backup was taken first, and still holds her (until it is pruned)
    assert report.backup is not None and report.backup.path.parent == tmp_path / "backups"
    assert backup_kind(report.backup.path) in ("sqlite", "postgresql")
    assert any("backup written and checked" in m for m in messages)
    assert any(m.startswith("blanking 4 article") for m in messages)
    # every ticket stays, with its number and state
    assert [(t[1], t[3]) for t in after["ticket"]] == [(t[1], t[3]) for t in before["ticket"]]
    assert len(after["article"]) == len(before["article"])

    desk = await reopen(tmp_path, filled.url)
    try:

        def read(repo: Any) -> Any:
            hers = repo.ticket_by_number(filled.maria)
            bobs = repo.ticket_by_number(filled.bob)
            return (
                hers,
                repo.articles(hers.id),
                bobs,
                repo.articles(bobs.id),
                [repo.attachment_files(a.id) for a in repo.articles(bobs.id)],
                repo.history(hers.id),
            )

        hers, her_articles, bobs, bob_articles, bob_files, history = await desk.store.run(read)
        assert hers.requester_email == plan.replacement and hers.requester_name == ""
        assert hers.subject == "[erased]" and hers.state.value == "open"
        assert {(a.subject, a.body, a.author, a.author_name) for a in her_articles} == {
            ("[erased]", "[erased]", "[erased]", "[erased]")
        }
        assert all(a.attachments == [] and a.to == () for a in her_articles)
        assert bobs.requester_email == "bob@example.net"
        assert bob_articles[0].body == "A press pass for the festival, please.\nBob"
        assert bob_articles[0].author == "bob@example.net"
        assert bob_articles[1].body == "[erased]"
        assert [f.data for f in bob_files[0]] == [LOGO], "the shared logo is still Bob's"
        assert [r.action for r in history][-1] == "data.erased"
        # the search index follows: her words are found nowhere now
        assert await found(desk, "lighthouse") == set()
        assert await found(desk, "festival") == {filled.bob}
        # the desk goes on: a new mail of hers is a new ticket, stored in full
        outcome = await desk.receive(mail("Hello again", message_id="<q9@example.net>"))
        assert outcome.created
    finally:
        await desk.store.close()

    tombstones = [r for r in after["audit_log"] if r[5] == "data.erased" and r[6] is None]
    assert len(tombstones) == 1
    _, _, platform, actor, _, _, _, detail, *_ = tombstones[0]
    assert (platform, actor) == ("cli", "alice")
    recorded = json.loads(detail)
    assert recorded["address_sha256"] == hashlib.sha256(MARIA.encode()).hexdigest()
    assert recorded["tickets"] == [filled.maria]
    assert recorded["counts"]["attachments"] == 2 and recorded["backup"] == str(report.backup.path)
    blobs = after["attachment_blob"]
    assert [bytes(b[3]) for b in blobs] == [LOGO], "the passport's bytes are gone"


async def test_erasing_an_unknown_address_does_nothing(filled: Filled, tmp_path: Path) -> None:
    before = table_rows(filled.url)
    plan = plan_erasure(filled.url, "nobody@example.net")
    assert plan.empty
    report = erase(filled.url, "nobody@example.net", plan.code, tmp_path / "b")
    assert report.backup is None and table_rows(filled.url) == before
    with pytest.raises(MaintenanceError, match="is not an email address"):
        plan_erasure(filled.url, "maria at example.net")


# --- the command line --------------------------------------------------------------------------


async def test_cli_erase_dry_run_then_confirmed(
    filled: Filled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "live", filled.url)
    before = table_rows(filled.url)

    assert main(["erase", "--requester", MARIA, "--config", str(config)]) == 0
    out, _ = capsys.readouterr()
    code = re.search(r"confirmation code: ([0-9a-f]{8})", out)
    assert code is not None and f"--confirm {code.group(1)}" in out
    assert "nothing was changed" in out and filled.maria in out
    assert table_rows(filled.url) == before

    wrong = ["erase", "--requester", MARIA, "--confirm", "00000000", "--config", str(config)]
    assert main(wrong) == 1
    _, err = capsys.readouterr()
    assert "erase refused" in err and "does not match" in err
    assert main(["erase", "--requester", "nonsense", "--config", str(config)]) == 2

    argv = ["erase", "--requester", MARIA, "--confirm", code.group(1), "--by", "alice"]
    assert main([*argv, "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("erased: 1 ticket(s) now without their requester, 4 article(s)")
    assert "data.erased by alice" in out
    assert "blanking 4 article(s)" in err, "progress goes to standard error"
    backups = list((tmp_path / "live" / "var" / "backups").iterdir())
    assert len(backups) == 1, "the backup goes to [backup] path by default"
    assert "maria" not in everything(filled.url).lower()

    assert main([*argv, "--config", str(config)]) == 1, "the same code again is stale"


def test_cli_erase_help_explains_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["erase", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--confirm" in out and "Exit status: 0" in out


def test_erase_needs_the_current_schema_and_never_migrates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.execute('CREATE TABLE "schema_version" ("id" INTEGER PRIMARY KEY, "version" INTEGER)')
    conn.execute('INSERT INTO "schema_version" VALUES (1, 1)')
    conn.commit()
    conn.close()
    with pytest.raises(MaintenanceError, match="schema version 1, this ticketbot writes"):
        plan_erasure(url, MARIA)
    conn = sqlite3.connect(tmp_path / "old.db")
    assert conn.execute('SELECT MAX("version") FROM "schema_version"').fetchone() == (1,)
    conn.close()
