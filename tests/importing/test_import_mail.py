"""``ticketbot import-mail``: an mbox or a Maildir of past mail becomes closed tickets.

Run in-process through ``bot.cli.main`` against a temporary SQLite database (and once on
the suite's PostgreSQL): threads by Message-ID/In-Reply-To/References and by subject
tags, the team's mail stored as replies already sent, original dates, raw mails kept,
nothing queued for chat or email, a second run adding nothing, and a requester's
follow-up landing in the imported ticket through intake.
"""

from __future__ import annotations

import io
import mailbox
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from bot.domain import ArticleKind, SendState, TicketState
from bot.importing.mail import SourceMail, group_threads
from bot.importing.progress import ProgressBar
from bot.mail import Address, InboundEmail
from storage import models
from tests.cli_runs import Run, read_db, run_command
from tests.core.conftest import mail, make_desk

OLD_TAG = "[Ticket#2019050110000042]"  # a number from the desk's previous system
GARBAGE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR not a mail at all \x00\xff"


def when(year: int, month: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, 0, tzinfo=UTC)


def message(
    sender: str,
    to: str,
    subject: str,
    date: datetime | None,
    message_id: str | None,
    *,
    in_reply_to: str = "",
    references: str = "",
    text: str = "Hello",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if date is not None:
        msg["Date"] = format_datetime(date)
    if message_id is not None:
        msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content(text)
    return msg.as_bytes()


#: Mails in file order; the first thread's reply comes before the mail it answers.
PHOTO_REPLY = message(
    "Info Team <info@example.org>",
    "maria@example.net",
    "Re: Photo rights",
    when(2024, 3, 2),
    "<a2@example.org>",
    in_reply_to="<a1@example.net>",
    references="<a1@example.net>",
    text="Yes, with credit to the photographer.",
)
PHOTO = message(
    "Maria <maria@example.net>",
    "info@example.org",
    "Photo rights",
    when(2024, 3, 1),
    "<a1@example.net>",
    text="May I use the photo?",
)
PHOTO_THANKS = message(
    "Maria <maria@example.net>",
    "info@example.org",
    "Re: Photo rights",
    when(2024, 3, 3),
    "<a3@example.net>",
    in_reply_to="<a2@example.org>",
    references="<a1@example.net> <a2@example.org>",
    text="Thank you!",
)
TAGGED_1 = message(
    "bob@example.net",
    "info@example.org",
    f"{OLD_TAG} Volunteering",
    when(2019, 5, 1),
    "<b1@example.net>",
)
TAGGED_ANSWER = message(
    "info@example.org",
    "bob@example.net",
    f"Re: {OLD_TAG} Volunteering",
    when(2019, 5, 2),
    "<b2@example.org>",
)
TAGGED_2 = message(  # a follow-up found by its subject tag only: no In-Reply-To
    "bob@example.net",
    "info@example.org",
    f"Re: {OLD_TAG} Volunteering",
    when(2019, 5, 3),
    "<b3@example.net>",
)
NO_ID = message("carol@example.net", "info@example.org", "No id here", when(2023, 7, 1), None)
MBOX_MAILS = [PHOTO_REPLY, PHOTO, TAGGED_2, NO_ID, GARBAGE, TAGGED_1, PHOTO_THANKS, TAGGED_ANSWER]


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f"""
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

[[queue]]
name = "press"
addresses = ["press@example.org"]
volunteers = ["@alice:example.org"]
""",
        encoding="utf-8",
    )
    return path


def make_mbox(path: Path, mails: list[bytes]) -> Path:
    box = mailbox.mbox(str(path))
    for raw in mails:
        box.add(raw)
    box.flush()
    box.close()
    return path


async def run(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    return await run_command(capsys, "import-mail", *args)


def snapshot(repo: Any) -> dict[str, Any]:
    """Every ticket by its first Message-ID, with articles and history; and the outbox."""
    tickets = {}
    for row in models.Ticket.select().order_by(models.Ticket.id):
        ticket = repo.ticket_by_id(row.id)
        articles = repo.articles(row.id)
        tickets[articles[0].message_id] = {
            "ticket": ticket,
            "articles": articles,
            "raw": [repo.raw_message_of(a.id) for a in articles],
            "history": repo.history(row.id),
        }
    return {
        "tickets": tickets,
        "outbox": models.OutboxEntry.select().count(),
        "auto_responses": models.AutoResponse.select().count(),
        "articles": models.Article.select().count(),
        "audit": models.AuditEntry.select().count(),
    }


async def check_mbox_import(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    config = write_config(tmp_path, url)
    box = make_mbox(tmp_path / "old-info.mbox", MBOX_MAILS)

    first = await run(capsys, str(box), "--queue", "info", "--config", str(config))
    assert first.code == 0, first
    assert first.figure("mails read") == 8
    assert first.figure("imported") == 7
    assert first.figure("skipped as duplicates") == 0
    assert first.figure("unreadable") == 1
    assert "old-info.mbox message 5: no mail headers" in first.out
    assert first.figure("tickets made") == 3
    assert "check: tickets 0 -> 3 (+3), articles 0 -> 7 (+7): as reported" in first.out
    assert re.search(r"reading: 8/8 mails \(100%", first.err)
    assert re.search(r"importing: 7/7 mails \(100%", first.err)

    data = await read_db(url, snapshot)
    assert data["outbox"] == 0 and data["auto_responses"] == 0
    tickets = data["tickets"]
    assert set(tickets) == {"<a1@example.net>", "<b1@example.net>", next(iter(_no_id(tickets)))}

    photo = tickets["<a1@example.net>"]
    ticket = photo["ticket"]
    assert ticket.state is TicketState.CLOSED_SUCCESSFUL
    assert ticket.queue == "info"
    assert (ticket.requester_email, ticket.requester_name) == ("maria@example.net", "Maria")
    assert ticket.subject == "Photo rights"
    assert ticket.created_at == when(2024, 3, 1)
    assert ticket.updated_at == when(2024, 3, 3)
    assert ticket.number.startswith("2024030110")  # the first mail's day, system id 10
    assert ticket.owner is None
    articles = photo["articles"]
    assert [a.message_id for a in articles] == [
        "<a1@example.net>",
        "<a2@example.org>",
        "<a3@example.net>",
    ]
    assert [a.kind for a in articles] == [
        ArticleKind.INBOUND,
        ArticleKind.REPLY,
        ArticleKind.INBOUND,
    ]
    assert [a.created_at for a in articles] == [when(2024, 3, d) for d in (1, 2, 3)]
    reply = articles[1]
    assert reply.send_state is SendState.SENT and reply.sent_at == when(2024, 3, 2)
    assert reply.author == "info@example.org" and reply.to == ("maria@example.net",)
    assert articles[0].send_state is None
    assert "May I use the photo?" in articles[0].body
    assert photo["raw"] == [PHOTO, PHOTO_REPLY, PHOTO_THANKS]  # the evidence, byte for byte
    imported = [h for h in photo["history"] if h.action == "ticket.imported"]
    assert len(imported) == 1 and f"mbox {box}" in imported[0].detail
    assert [h.action for h in photo["history"]] == ["ticket.imported"]

    tagged = tickets["<b1@example.net>"]
    assert tagged["ticket"].created_at == when(2019, 5, 1)
    assert tagged["ticket"].number.startswith("2019050110")
    assert tagged["ticket"].requester_email == "bob@example.net"
    assert [a.message_id for a in tagged["articles"]] == [
        "<b1@example.net>",
        "<b2@example.org>",
        "<b3@example.net>",
    ]
    assert tagged["articles"][1].kind is ArticleKind.REPLY

    (no_id,) = _no_id(tickets).values()
    assert no_id["ticket"].created_at == when(2023, 7, 1)
    assert no_id["ticket"].requester_email == "carol@example.net"
    assert no_id["articles"][0].message_id.startswith("<sha256-")

    again = await run(capsys, str(box), "--queue", "info", "--config", str(config))
    assert again.code == 0, again
    assert again.figure("imported") == 0
    assert again.figure("skipped as duplicates") == 7
    assert again.figure("unreadable") == 1
    assert again.figure("tickets made") == 0
    assert "check: tickets 3 -> 3 (+0), articles 7 -> 7 (+0): as reported" in again.out
    after = await read_db(url, snapshot)
    assert (after["articles"], after["audit"], after["outbox"]) == (7, data["audit"], 0)
    result: dict[str, Any] = tickets
    return result


def _no_id(tickets: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tickets.items() if k.startswith("<sha256-")}


async def test_mbox_import_makes_closed_tickets_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await check_mbox_import(tmp_path, f"sqlite:///{tmp_path}/desk.db", capsys)


@pytest.mark.servers
async def test_mbox_import_on_postgresql(
    tmp_path: Path, postgres_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await check_mbox_import(tmp_path, postgres_db_url, capsys)


async def test_maildir_import_and_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/desk.db"
    config = write_config(tmp_path, url)
    folder = tmp_path / "Maildir"
    box = mailbox.Maildir(str(folder))
    undated = message("dora@example.net", "press@example.org", "Press pass", None, "<d1@x.net>")
    answer = message(
        "press@example.org",
        "dora@example.net",
        "Re: Press pass",
        when(2025, 2, 3),
        "<d2@example.org>",
        in_reply_to="<d1@x.net>",
    )
    keys = {name: box.add(raw) for name, raw in (("undated", undated), ("answer", answer))}
    box.add(GARBAGE)
    box.close()
    # a Maildir file's modification time stands in for a missing Date header
    (undated_file,) = [p for p in folder.rglob(f"{keys['undated']}*") if p.is_file()]
    stamp = when(2025, 2, 1).timestamp()
    os.utime(undated_file, (stamp, stamp))
    (folder / "new" / ".hidden").write_bytes(b"ignored")

    dry = await run(capsys, str(folder), "--queue", "press", "--config", str(config), "--dry-run")
    assert dry.code == 0, dry
    assert dry.figure("mails read") == 3
    assert dry.figure("imported") == 2 and dry.figure("tickets made") == 1
    assert dry.figure("unreadable") == 1
    assert not (tmp_path / "desk.db").exists()  # a dry run creates no database

    done = await run(capsys, str(folder), "--queue", "press", "--config", str(config))
    assert done.code == 0, done
    assert done.figure("imported") == 2 and done.figure("tickets made") == 1
    assert "no mail headers" in done.out

    dry_again = await run(
        capsys, str(folder), "--queue", "press", "--config", str(config), "--dry-run"
    )
    assert dry_again.code == 0, dry_again
    assert dry_again.figure("imported") == 0
    assert dry_again.figure("skipped as duplicates") == 2
    assert "(+0)" in dry_again.out

    data = await read_db(url, snapshot)
    assert data["outbox"] == 0
    (entry,) = data["tickets"].values()
    ticket = entry["ticket"]
    assert ticket.queue == "press" and ticket.state is TicketState.CLOSED_SUCCESSFUL
    assert ticket.created_at == when(2025, 2, 1)
    assert ticket.updated_at == when(2025, 2, 3)
    assert ticket.number.startswith("2025020110")
    assert ticket.requester_email == "dora@example.net"
    assert [a.kind for a in entry["articles"]] == [ArticleKind.INBOUND, ArticleKind.REPLY]


async def test_follow_up_to_an_imported_ticket_lands_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/desk.db"
    config = write_config(tmp_path, url)
    box = make_mbox(tmp_path / "old.mbox", [PHOTO, PHOTO_REPLY])
    assert (await run(capsys, str(box), "--queue", "info", "--config", str(config))).code == 0

    desk = await make_desk(tmp_path, url)
    try:
        imported = await desk.store.run(
            lambda repo: repo.ticket_by_message_ids(["<a1@example.net>"])
        )
        outcome = await desk.receive(
            mail("Re: Photo rights", in_reply_to="<a2@example.org>", text="One more question")
        )
        assert imported is not None and imported.id is not None
        assert not outcome.created and outcome.ticket_number == imported.number
        ticket_id = imported.id
        ticket = await desk.store.run(lambda repo: repo.ticket_by_id(ticket_id))
        articles = await desk.store.run(lambda repo: repo.articles(ticket_id))
    finally:
        await desk.store.close()
    assert ticket.state is TicketState.OPEN  # reopened by the requester's mail
    assert [a.kind for a in articles] == [
        ArticleKind.INBOUND,
        ArticleKind.REPLY,
        ArticleKind.INBOUND,
    ]
    assert articles[-1].body == "One more question"


async def test_appended_mail_joins_its_imported_ticket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/desk.db"
    config = write_config(tmp_path, url)
    box = tmp_path / "old.mbox"
    make_mbox(box, [PHOTO, PHOTO_REPLY])
    assert (await run(capsys, str(box), "--queue", "info", "--config", str(config))).code == 0
    make_mbox(box, [PHOTO_THANKS])  # the archive grew meanwhile
    more = await run(capsys, str(box), "--queue", "info", "--config", str(config))
    assert more.code == 0, more
    assert more.figure("imported") == 1 and more.figure("tickets made") == 0
    assert more.figure("skipped as duplicates") == 2
    assert "added to tickets already stored: 1 mail(s)" in more.out
    data = await read_db(url, snapshot)
    (entry,) = data["tickets"].values()
    assert len(entry["articles"]) == 3
    assert entry["ticket"].updated_at == when(2024, 3, 3)
    assert [h.action for h in entry["history"]] == ["ticket.imported", "ticket.imported"]


async def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, f"sqlite:///{tmp_path}/desk.db"))
    box = str(make_mbox(tmp_path / "a.mbox", [PHOTO]))

    missing = await run(capsys, str(tmp_path / "nothing"), "--queue", "info", "--config", config)
    assert missing.code == 2 and "no such file or folder" in missing.err

    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")
    plain = await run(capsys, str(text), "--queue", "info", "--config", config)
    assert plain.code == 2 and "neither an mbox file nor a Maildir folder" in plain.err

    (tmp_path / "folder").mkdir()
    folder = await run(capsys, str(tmp_path / "folder"), "--queue", "info", "--config", config)
    assert folder.code == 2 and "not a Maildir" in folder.err

    queue = await run(capsys, box, "--queue", "sales", "--config", config)
    assert queue.code == 2
    assert "unknown queue 'sales'; known: info, press" in queue.err
    assert not (tmp_path / "desk.db").exists()


def test_threads_group_by_references_and_tags() -> None:
    def item(key: int, mid: str, subject: str = "s", refs: tuple[str, ...] = ()) -> SourceMail:
        email = InboundEmail(
            raw=b"x",
            message_id=mid,
            subject=subject,
            sender=Address("a@example.net"),
            date=when(2020, 1, 10 - key),
            references=refs,
        )
        return SourceMail(key, f"m{key}", email, when(2000, 1, 1))

    mails = [
        item(0, "<c@x>", refs=("<root@x>",)),  # shares a root not in the source
        item(1, "<b@x>", refs=("<root@x>",)),
        item(2, "<t2@x>", f"Re: {OLD_TAG} x"),
        item(3, "<t1@x>", f"{OLD_TAG} x"),
        item(4, "<alone@x>"),
        item(5, "<b@x>"),  # the same mail filed twice
    ]
    threads, repeats = group_threads(mails)
    assert [[m.key for m in t.mails] for t in threads] == [[4], [3, 2], [1, 0]]
    assert [m.key for m in repeats] == [5]


def clock_of(ticks: list[float]) -> Callable[[], float]:
    return lambda: ticks[0]


def test_progress_bar_redraws_on_a_terminal_and_prints_lines_otherwise() -> None:
    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    for tty in (True, False):
        now = [0.0]
        stream = Stream(tty)
        bar = ProgressBar(stream, "importing", 400, every=5.0, clock=clock_of(now))
        for _ in range(4):
            now[0] += 1.0
            bar.advance(100)
        bar.finish()
        text = stream.getvalue()
        if tty:  # redrawn in place each 0.1 s, ending with a newline
            assert text.count("\r") == 5 and text.endswith("\n")
            assert "importing [" + "#" * 30 + "] 400/400 mails  100/s" in text
        else:  # one line at the end only: the run took less than 5 s
            assert text == "  importing: 400/400 mails (100%, 100/s)\n"
