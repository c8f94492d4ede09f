"""``ticketbot import-otrs``: an OTRS/Znuny database becomes tickets that keep their numbers.

The OTRS side is a real PostgreSQL database of its own, made from the published OTRS 6
schema (the subset in otrs_schema.sql) and filled with generated tickets: four queues
(one non-ASCII), every state type, articles of each sender type and channel, binary
attachments stored as OTRS stores them on PostgreSQL (base64 in TEXT), history with
closes and merges. It is imported into a SQLite desk and into a PostgreSQL desk through
``bot.cli.main``, as a person runs it; a follow-up mail tagged with an old number is then
taken in from a Maildir by the real intake.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from psycopg2 import sql

from adapters.email.maildir import MaildirSource
from adapters.email.parse import parser_for
from bot.config import ConfigError
from bot.domain import ArticleKind, SendState, TicketState
from bot.importing.otrs import OtrsMappingError, resolve_queues
from bot.routing import ticket_number_in_subject
from storage import models
from tests.cli_runs import Run, read_db, run_command
from tests.core.conftest import desk_config, mail, make_desk
from tests.servers.postgres import connect

SCHEMA = Path(__file__).with_name("otrs_schema.sql")
T0 = datetime(2019, 6, 12, 8, 0)  # OTRS stores naive timestamps (here in UTC)
MAX_ATTACHMENT = 40_000  # the desk's [mail] max_attachment_bytes in these tests

# ids from the initial insert in otrs_schema.sql
STATE_IDS = {
    "new": 1,
    "closed successful": 2,
    "closed unsuccessful": 3,
    "open": 4,
    "removed": 5,
    "pending reminder": 6,
    "pending auto close+": 7,
    "merged": 9,
}
OPEN_STATE = 4
AGENT, SYSTEM, CUSTOMER = 1, 2, 3  # article_sender_type
EMAIL, PHONE, INTERNAL, CHAT = 1, 2, 3, 4  # communication_channel
HISTORY = {"NewTicket": 1, "FollowUp": 2, "StateUpdate": 7, "Merged": 8}
QUEUES = ["info", "Support::Press", "Raw", "Ünïcode Fragen"]  # queue ids 1..4


@dataclass
class Expected:
    """What one OTRS ticket must become."""

    tn: str
    queue: str  # OTRS queue name
    state: str
    requester: str
    articles: list[dict[str, Any]] = field(default_factory=list)
    closed_at: datetime | None = None
    merged_into: str | None = None


@dataclass
class OtrsData:
    url: str
    expected: dict[str, Expected]
    next_id: int


def _b64(data: bytes) -> str:
    """As Perl's encode_base64: lines of 76 characters."""
    return base64.encodebytes(data).decode("ascii")


def _raw_mail(sender: str, to: str, subject: str, message_id: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg.as_bytes()


class Generator:
    """Fills an OTRS database with tickets; remembers what each must become."""

    def __init__(self, conn: Any, seed: int = 8) -> None:
        self.conn = conn
        self.rand = random.Random(seed)
        self.expected: dict[str, Expected] = {}
        self.article_id = 0
        self.ticket_id = 0

    def base(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(SCHEMA.read_text(encoding="utf-8"))
            for login, first, last in (("jdoe", "Jane", "Doe"), ("mmueller", "Max", "Müller")):
                cur.execute(
                    "INSERT INTO users (login, pw, first_name, last_name, valid_id, create_by, "
                    "create_time, change_by, change_time) VALUES (%s, 'x', %s, %s, 1, 1, "
                    "current_timestamp, 1, current_timestamp)",
                    (login, first, last),
                )
            for name in QUEUES:
                cur.execute(
                    "INSERT INTO queue (name, group_id, system_address_id, salutation_id, "
                    "signature_id, follow_up_id, follow_up_lock, valid_id, create_by, "
                    "create_time, change_by, change_time) VALUES (%s, 1, 1, 1, 1, 1, 0, 1, 1, "
                    "current_timestamp, 1, current_timestamp)",
                    (name,),
                )

    def ticket(self, index: int, *, state: str | None = None, tn: str | None = None) -> Expected:
        rand = self.rand
        self.ticket_id += 1
        tid = self.ticket_id
        created = T0 + timedelta(hours=7 * index)
        tn = tn or f"{created:%Y%m%d}10{index + 1:06d}"
        state = state or rand.choice(list(STATE_IDS))
        if state == "merged" and not self.expected:
            state = "open"
        queue_id = index % len(QUEUES) + 1
        customer = f"kunde{index}@example.net"
        name = rand.choice(["Jürgen Groß", "Zoë Brontë", "山田 太郎", "Ana Núñez"])
        title = (
            rand.choice(["Fotorechte für Straße", "Question about 日本", "Zugang"]) + f" {index}"
        )
        expected = Expected(tn, QUEUES[queue_id - 1], state, customer)
        rows: list[tuple[Any, ...]] = []
        plan = [(CUSTOMER, EMAIL, 1), (AGENT, EMAIL, 1), (AGENT, INTERNAL, 0)]
        if index % 3 == 0:
            plan.insert(1, (SYSTEM, EMAIL, 1))  # an auto reply
        if index % 7 == 0:
            plan.append((CUSTOMER, PHONE, 1))
        if index % 11 == 0:
            plan.append((AGENT, EMAIL, 0))  # an e-mail to a third party, hidden
        if index == 5:
            plan.append((AGENT, CHAT, 1))  # a chat: no article_data_mime row
        when = created
        for number, (sender, channel, visible) in enumerate(plan):
            when += timedelta(minutes=37)
            self.article_id += 1
            aid = self.article_id
            body = f"Grüße aus Köln — article {number} of ticket {tn}\nZeile 2 ✓"
            if sender == CUSTOMER:
                a_from, a_to = f'"{name}" <{customer}>', "info@example.org"
            else:
                a_from, a_to = "Info Team <info@example.org>", customer
            subject = f"[Ticket#{tn}] {title}"
            message_id = f"<{tn}.{number}@otrs.example.org>"
            if index == 9 and number == 2:
                message_id = f"<{tn}.0@otrs.example.org>"  # filed twice in OTRS
            files: list[tuple[str, str, bytes]] = []
            if sender == CUSTOMER and channel == EMAIL and index % 2 == 0:
                size = rand.randrange(1, 30_000)
                files.append(
                    ("scan ü.pdf", 'application/pdf; name="scan.pdf"', rand.randbytes(size))
                )
                files.append(("zero.bin", "application/octet-stream", bytes(range(256)) * 3))
            if index == 4 and number == 0:
                files.append(
                    ("huge.raw", "application/octet-stream", rand.randbytes(MAX_ATTACHMENT + 1))
                )
            if index == 6 and number == 1:
                files.append(("empty.txt", "text/plain", b""))
            creator = 1 if sender != AGENT else rand.choice([2, 3])
            raw = _raw_mail(a_from, a_to, subject, message_id, body) if channel == EMAIL else None
            rows.append(
                (
                    aid,
                    tid,
                    sender,
                    channel,
                    visible,
                    when,
                    creator,
                    a_from,
                    a_to,
                    subject,
                    message_id,
                    body,
                    raw,
                    files,
                )
            )
            kind = (
                ArticleKind.INBOUND
                if sender == CUSTOMER
                else ArticleKind.AUTO_REPLY
                if sender == SYSTEM and channel == EMAIL and visible
                else ArticleKind.REPLY
                if channel == EMAIL and visible
                else ArticleKind.NOTE
            )
            expected.articles.append(
                {
                    "kind": kind,
                    "body": body,
                    "channel": channel,
                    "at": when.replace(tzinfo=UTC),
                    "files": [(f, d) for f, _, d in files if len(d) <= MAX_ATTACHMENT],
                    "dropped": [f for f, _, d in files if len(d) > MAX_ATTACHMENT],
                    "subject": subject,
                }
            )
        changed = when + timedelta(hours=1)
        history: list[tuple[int, str, int, datetime]] = [
            (HISTORY["NewTicket"], f"%%{tn}%%{QUEUES[queue_id - 1]}", 1, created)
        ]
        if state in ("closed successful", "closed unsuccessful", "removed"):
            history.append((HISTORY["StateUpdate"], "%%open%%closed", STATE_IDS[state], when))
            history.append((HISTORY["FollowUp"], "%%note after close", STATE_IDS[state], changed))
            expected.closed_at = when.replace(tzinfo=UTC)
        if state == "merged":
            target = self.expected[next(iter(self.expected))]
            history.append(
                (HISTORY["Merged"], f"%%{tn}%%{tid}%%{target.tn}%%1", STATE_IDS[state], when)
            )
            expected.merged_into = target.tn
        until = int((changed + timedelta(days=3)).replace(tzinfo=UTC).timestamp())
        with self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO ticket (id, tn, title, queue_id, ticket_lock_id, user_id, "
                "responsible_user_id, ticket_priority_id, ticket_state_id, customer_id, "
                "customer_user_id, timeout, until_time, escalation_time, escalation_update_time, "
                "escalation_response_time, escalation_solution_time, create_time, create_by, "
                "change_time, change_by) VALUES (%s, %s, %s, %s, 1, 2, 2, %s, %s, 'c', %s, 0, "
                "%s, 0, 0, 0, 0, %s, 1, %s, 1)",
                (
                    tid,
                    tn,
                    title,
                    queue_id,
                    1 + index % 5,
                    STATE_IDS[state],
                    customer,
                    until if "pending" in state else 0,
                    created,
                    changed,
                ),
            )
            for row in rows:
                (
                    aid,
                    _,
                    sender,
                    channel,
                    visible,
                    at,
                    creator,
                    a_from,
                    a_to,
                    subject,
                    message_id,
                    body,
                    raw,
                    files,
                ) = row
                cur.execute(
                    "INSERT INTO article (id, ticket_id, article_sender_type_id, "
                    "communication_channel_id, is_visible_for_customer, create_time, create_by, "
                    "change_time, change_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (aid, tid, sender, channel, visible, at, creator, at, creator),
                )
                if channel == CHAT:
                    continue
                cur.execute(
                    "INSERT INTO article_data_mime (article_id, a_from, a_to, a_subject, "
                    "a_message_id, a_body, a_content_type, incoming_time, create_time, create_by, "
                    "change_time, change_by) VALUES (%s, %s, %s, %s, %s, %s, "
                    "'text/plain; charset=utf-8', %s, %s, 1, %s, 1)",
                    (aid, a_from, a_to, subject, message_id, body, int(at.timestamp()), at, at),
                )
                if raw is not None:
                    cur.execute(
                        "INSERT INTO article_data_mime_plain (article_id, body, create_time, "
                        "create_by, change_time, change_by) VALUES (%s, %s, %s, 1, %s, 1)",
                        (aid, _b64(raw), at, at),
                    )
                for filename, content_type, data in files:
                    cur.execute(
                        "INSERT INTO article_data_mime_attachment (article_id, filename, "
                        "content_size, content_type, disposition, content, create_time, "
                        "create_by, change_time, change_by) VALUES (%s, %s, %s, %s, "
                        "'attachment', %s, %s, 1, %s, 1)",
                        (aid, filename, str(len(data)), content_type, _b64(data), at, at),
                    )
            for type_id, hname, state_id, at in history:
                cur.execute(
                    "INSERT INTO ticket_history (name, history_type_id, ticket_id, type_id, "
                    "queue_id, owner_id, priority_id, state_id, create_time, create_by, "
                    "change_time, change_by) VALUES (%s, %s, %s, 1, %s, 2, 3, %s, %s, 2, %s, 2)",
                    (hname, type_id, tid, queue_id, state_id, at, at),
                )
        self.expected[tn] = expected
        return expected

    def note(self, ticket_id: int, body: str) -> None:
        """An internal note added to a ticket already there."""
        self.article_id += 1
        want = list(self.expected.values())[ticket_id - 1]
        at = T0 + timedelta(days=2000)
        with self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO article (id, ticket_id, article_sender_type_id, "
                "communication_channel_id, is_visible_for_customer, create_time, create_by, "
                "change_time, change_by) VALUES (%s, %s, %s, %s, 0, %s, 3, %s, 3)",
                (self.article_id, ticket_id, AGENT, INTERNAL, at, at),
            )
            cur.execute(
                "INSERT INTO article_data_mime (article_id, a_from, a_subject, a_body, "
                "incoming_time, create_time, create_by, change_time, change_by) VALUES "
                "(%s, 'Max Müller', 'Notiz', %s, 0, %s, 3, %s, 3)",
                (self.article_id, body, at, at),
            )
        want.articles.append(
            {
                "kind": ArticleKind.NOTE,
                "body": body,
                "channel": INTERNAL,
                "at": at.replace(tzinfo=UTC),
                "files": [],
                "dropped": [],
                "subject": "Notiz",
            }
        )


TICKETS = 240


@pytest.fixture
def otrs(postgres_url: str) -> Iterator[tuple[str, Generator]]:
    """An OTRS database of its own on the suite's PostgreSQL, filled; dropped afterwards."""
    name = f"otrs_{uuid.uuid4().hex[:10]}"
    admin = connect(postgres_url)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
    conn = connect(url)
    try:
        generator = Generator(conn)
        generator.base()
        for index in range(TICKETS):
            generator.ticket(index)
        generator.ticket(TICKETS, tn="10042", state="open")  # an AutoIncrement number
        yield url, generator
    finally:
        conn.close()
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


def write_config(tmp_path: Path, url: str, hook: str = "Ticket#") -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f"""
[storage]
url = "{url}"

[mail]
max_attachment_bytes = {MAX_ATTACHMENT}

[mail.maildir]
path = "mail"

[mail.files]
path = "out"

[tickets]
otrs_ticket_hook = "{hook}"

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


MAP = ["--queue-map", "Support::Press=press", "Ünïcode Fragen=press", "--default-queue", "info"]


async def run(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    return await run_command(capsys, "import-otrs", *args)


def snapshot(repo: Any) -> dict[str, Any]:
    """Every ticket by number: the ticket, its articles with attachment bytes, history."""
    tickets = {}
    for row in models.Ticket.select().order_by(models.Ticket.id):
        ticket = repo.ticket_by_id(row.id)
        articles = []
        for article in repo.articles(row.id):
            files = [(f.filename, f.data) for f in repo.attachment_files(article.id)]
            articles.append((article, files))
        tickets[ticket.number] = {
            "ticket": ticket,
            "articles": articles,
            "history": repo.history(row.id),
        }
    outbox = int(models.OutboxEntry.select().count())
    return {"tickets": tickets, "outbox": outbox}


OUR_QUEUE = {"info": "info", "Support::Press": "press", "Raw": "info", "Ünïcode Fragen": "press"}
OUR_STATE = {
    "new": TicketState.NEW,
    "open": TicketState.OPEN,
    "pending reminder": TicketState.PENDING_REMINDER,
    "pending auto close+": TicketState.PENDING_AUTOCLOSE,
    "closed successful": TicketState.CLOSED_SUCCESSFUL,
    "closed unsuccessful": TicketState.CLOSED_UNSUCCESSFUL,
    "removed": TicketState.CLOSED_UNSUCCESSFUL,
    "merged": TicketState.MERGED,
}


def check_imported(data: dict[str, Any], expected: dict[str, Expected]) -> None:
    tickets = data["tickets"]
    assert set(tickets) == set(expected)
    assert data["outbox"] == 0  # nothing posted, nothing mailed
    ids = {number: entry["ticket"].id for number, entry in tickets.items()}
    for number, want in expected.items():
        entry = tickets[number]
        ticket = entry["ticket"]
        assert ticket.queue == OUR_QUEUE[want.queue], number
        assert ticket.state is OUR_STATE[want.state], number
        assert ticket.requester_email == want.requester
        assert (ticket.pending_until is not None) == ticket.state.is_pending
        assert ticket.merged_into == (ids[want.merged_into] if want.merged_into else None)
        articles = entry["articles"]
        assert len(articles) == len(want.articles), number
        for (article, files), spec in zip(articles, want.articles, strict=True):
            assert article.kind is spec["kind"], (number, spec)
            assert article.created_at == spec["at"]
            if spec["channel"] == CHAT:
                assert "chat article" in article.body
                continue
            assert article.subject == spec["subject"]
            assert article.body.startswith(
                spec["body"] if spec["channel"] != PHONE else "[OTRS phone article]\n"
            )
            assert spec["body"] in article.body
            assert files == spec["files"], number  # the bytes, exactly
            for name in spec["dropped"]:
                assert f"- {name}" in article.body
            if article.kind in (ArticleKind.REPLY, ArticleKind.AUTO_REPLY):
                assert article.send_state is SendState.SENT
            else:
                assert article.send_state is None
        actions = [h.action for h in entry["history"]]
        assert actions[0] == "ticket.imported"
        if want.closed_at is not None:
            (close,) = [h for h in entry["history"] if h.action == "ticket.close"]
            assert close.at == want.closed_at and close.actor_id == "otrs:jdoe"
        else:
            assert "ticket.close" not in actions


async def check_import(
    tmp_path: Path, url: str, otrs: tuple[str, Generator], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, generator = otrs
    config = str(write_config(tmp_path, url))
    expected = generator.expected
    articles = sum(len(e.articles) for e in expected.values())

    first = await run(capsys, dsn, "--config", config, *MAP)
    assert first.code == 0, first
    assert first.figure("tickets made") == len(expected) == TICKETS + 1
    assert first.figure("articles made") == articles
    assert "check: tickets 0 -> 241 (+241)" in first.out and "as reported" in first.out
    assert f"{TICKETS + 1} of the {TICKETS + 1} OTRS ticket numbers are stored here" in first.out
    assert "importing" in first.err and "tickets" in first.err  # the progress bar
    assert first.figure("attachments left out \\(over the \\[mail\\] size limits\\)") == 1
    data = await read_db(url, snapshot)
    check_imported(data, expected)

    again = await run(capsys, dsn, "--config", config, *MAP)
    assert again.code == 0, again
    assert again.figure("tickets made") == 0 and again.figure("articles made") == 0
    assert again.figure("tickets already here") == TICKETS + 1
    assert again.figure("articles already here") == articles
    assert await read_db(url, snapshot) == data
    # intake will not hand out an imported number again on that day
    first_day = T0.date()
    fresh_number = await read_db(url, lambda repo: repo.next_ticket_number(first_day, 10))
    imported_that_day = [tn for tn in expected if tn.startswith(f"{first_day:%Y%m%d}10")]
    assert imported_that_day and fresh_number > max(imported_that_day)

    # OTRS took another ticket and a note on an old one meanwhile: only they come in
    late = generator.ticket(TICKETS + 1, state="open")
    generator.note(2, "Später nachgetragen ✓")
    more = await run(capsys, dsn, "--config", config, *MAP)
    assert more.code == 0, more
    assert more.figure("tickets made") == 1
    assert more.figure("articles made") == len(late.articles) + 1
    assert "added to tickets imported before: 1 article(s)" in more.out
    check_imported(await read_db(url, snapshot), generator.expected)


async def test_import_into_sqlite(
    tmp_path: Path, otrs: tuple[str, Generator], capsys: pytest.CaptureFixture[str]
) -> None:
    await check_import(tmp_path, f"sqlite:///{tmp_path}/desk.db", otrs, capsys)


async def test_import_into_postgresql(
    tmp_path: Path,
    postgres_db_url: str,
    otrs: tuple[str, Generator],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await check_import(tmp_path, postgres_db_url, otrs, capsys)


def _follow_up(to: str, sender: str, subject: str, text: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.net>"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg.set_content(text)
    return msg.as_bytes()


@pytest.mark.parametrize("hook", ["Ticket#", "Call#"])
async def test_follow_up_by_old_number_lands_and_reopens(
    tmp_path: Path, otrs: tuple[str, Generator], capsys: pytest.CaptureFixture[str], hook: str
) -> None:
    dsn, generator = otrs
    url = f"sqlite:///{tmp_path}/desk.db"
    config = str(write_config(tmp_path, url, hook))
    assert (await run(capsys, dsn, "--config", config, *MAP)).code == 0
    closed = next(
        e
        for e in generator.expected.values()
        if e.state == "closed successful" and e.queue == "info"
    )
    short = generator.expected["10042"]  # AutoIncrement: only the configured hook finds it
    maildir = tmp_path / "incoming"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    (maildir / "new" / "1.a").write_bytes(
        _follow_up(
            "info@example.org",
            closed.requester,
            f"Re: [{hook}{closed.tn}] noch eine Frage",
            "Eine Nachfrage, bitte.",
        )
    )
    (maildir / "new" / "2.b").write_bytes(
        _follow_up(
            "info@example.org" if OUR_QUEUE[short.queue] == "info" else "press@example.org",
            short.requester,
            f"AW: [{hook}{short.tn}] again",
            "And one more.",
        )
    )
    desk = await make_desk(
        tmp_path, url, {"tickets": {"undo_seconds": 0, "otrs_ticket_hook": hook}}
    )
    try:
        source = MaildirSource(maildir, desk.intake, parser_for(desk.config.mail))
        assert await source.check_once() == 2
        data = await desk.store.run(snapshot)
    finally:
        await desk.store.close()
    assert len(data["tickets"]) == TICKETS + 1  # no new ticket
    entry = data["tickets"][closed.tn]
    assert entry["ticket"].state is TicketState.OPEN  # reopened, as any closed ticket
    last, _ = entry["articles"][-1]
    assert last.kind is ArticleKind.INBOUND and last.body == "Eine Nachfrage, bitte."
    assert "ticket.reopened" in [h.action for h in entry["history"]]
    short_last, _ = data["tickets"][short.tn]["articles"][-1]
    assert short_last.body == "And one more."


async def test_dry_run_writes_nothing(
    tmp_path: Path, otrs: tuple[str, Generator], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, _ = otrs
    url = f"sqlite:///{tmp_path}/desk.db"
    config = str(write_config(tmp_path, url))
    dry = await run(capsys, dsn, "--config", config, *MAP, "--dry-run")
    assert dry.code == 0, dry
    assert dry.figure("tickets made") == TICKETS + 1
    assert not (tmp_path / "desk.db").exists()
    assert (await run(capsys, dsn, "--config", config, *MAP)).code == 0
    before = await read_db(url, snapshot)
    again = await run(capsys, dsn, "--config", config, *MAP, "--dry-run")
    assert again.code == 0 and again.figure("tickets made") == 0
    assert await read_db(url, snapshot) == before


async def test_usage_and_database_errors(
    tmp_path: Path, otrs: tuple[str, Generator], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, _ = otrs
    config = str(write_config(tmp_path, f"sqlite:///{tmp_path}/desk.db"))
    unknown = await run(capsys, dsn, "--config", config)
    assert unknown.code == 2
    assert "'Raw', 'Support::Press', 'Ünïcode Fragen'" in unknown.err
    assert "--queue-map" in unknown.err
    bad = await run(capsys, dsn, "--config", config, "--queue-map", "Raw")
    assert bad.code == 2 and "--queue-map 'Raw': expected OTRS_QUEUE=OUR_QUEUE" in bad.err
    target = await run(capsys, dsn, "--config", config, "--queue-map", "Raw=sales")
    assert target.code == 2 and "does not have: sales" in target.err
    gone = await run(capsys, dsn + "_missing", "--config", config, *MAP)
    assert gone.code == 1 and "cannot connect to the OTRS database" in gone.err
    assert not (tmp_path / "desk.db").exists()


async def test_number_used_by_another_ticket_is_refused(
    tmp_path: Path, otrs: tuple[str, Generator], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, generator = otrs
    url = f"sqlite:///{tmp_path}/desk.db"
    desk = await make_desk(tmp_path, url)
    taken = next(iter(generator.expected))
    try:
        # a ticket of this desk that happens to have an OTRS number
        outcome = await desk.receive(mail("Hello"))
        await desk.store.run(
            lambda repo: (
                models.Ticket.update(number=taken)
                .where(models.Ticket.number == outcome.ticket_number)
                .execute()
            )
        )
    finally:
        await desk.store.close()
    config = str(write_config(tmp_path, url))
    result = await run(capsys, dsn, "--config", config, *MAP)
    assert result.code == 1
    assert "number taken: 1 OTRS ticket(s) not imported" in result.out and taken in result.out
    assert result.figure("tickets made") == TICKETS


def test_resolve_queues_names_every_unknown_queue() -> None:
    assert resolve_queues(["a", "B"], {"B": "x"}, ["a", "x"], None) == {"a": "a", "B": "x"}
    with pytest.raises(OtrsMappingError, match="'C', 'D'"):
        resolve_queues(["a", "C", "D"], {}, ["a"], None)


def test_ticket_hook_setting_is_checked(tmp_path: Path) -> None:
    assert desk_config(tmp_path).tickets.otrs_ticket_hook == "Ticket#"
    call = desk_config(tmp_path, None, {"tickets": {"otrs_ticket_hook": "Call#"}})
    assert call.tickets.otrs_ticket_hook == "Call#"
    with pytest.raises(ConfigError, match=r"tickets\.otrs_ticket_hook: must be the hook text"):
        desk_config(tmp_path, None, {"tickets": {"otrs_ticket_hook": "[Call#]"}})
    assert ticket_number_in_subject("Re: [Call# 10042] x", ("Call#",)) == "10042"
    assert ticket_number_in_subject("Re: [Call#10042] x") is None
