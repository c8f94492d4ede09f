"""SIGKILL at every named intake stage, with Matrix: nothing lost, nothing doubled anywhere.

500 mails reach a real Dovecot in waves (about one in ten a follow-up to an earlier
mail, by In-Reply-To/References or by the ``[Ticket#N]`` tag of a ticket already
stored). Before each wave the real ``ticketbot run`` process is started on IMAP, a
Matrix room on the suite's Synapse and ``[mail.files]``, with ``TICKETBOT_CRASH_AT``
naming one stage and count (see :mod:`bot.faults`), cycling twice through
``fetched``, ``parsed``, ``stored``, ``flagged`` and ``posted``; a few runs are instead
killed from outside at a random moment of intake. Every one of those runs must die by
SIGKILL (return code -9) in the middle of its work. A last run without a crash plan
takes the last wave in, finishes everything and stops on SIGTERM.

Then: one article per Message-ID (500), tickets = 500 minus follow-ups, every message
``\\Seen`` on the server, and in the room each ticket's root message exactly once and
each article exactly once, in its ticket's thread. The bot logs in with the same
``device_id`` at every start, so a post retried after a kill reuses its transaction id
and the homeserver answers with the event it already made.

After each kill the test compares the room with the database: a ``posted`` kill must
leave exactly one ticket (root and first article) in the room whose post the bot has
not recorded, so the retry that must not double it really happens. Kills at the other
stages often land in that window too (the outbox posts while intake runs); the summary
on stderr counts them. With a new ``device_id`` at each start the same run doubles one
root per such kill, which is what the final checks would report.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.servers.dovecot import ImapAccount
from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.servers

REPO_ROOT = Path(__file__).resolve().parents[2]
MAILS = 500
INTAKE_STAGES = ("fetched", "parsed", "stored", "flagged", "posted")
WAVE = 30  # mails appended before a run
FLAGGED_WAVE = 80  # more than one FETCH batch (50), so flagged:1 falls mid-stream
RANDOM_KILLS = 3
DEVICE_ID = "TICKETBOT-STAGES"
CRASH_TIMEOUT = 90.0  # a run with a crash plan must have died by then
FINISH_TIMEOUT = 150.0
MARKER = re.compile(r"marker-(\d{4})-end")
ROOT = re.compile(r"\[Ticket#(\d+)\]")


# --- the mail ------------------------------------------------------------------------------


@dataclass
class Mails:
    """The 500 mails: which are follow-ups, and to which earlier mail."""

    rng: random.Random
    targets: dict[int, int] = field(default_factory=dict)  # follow-up index -> original index
    by_tag: set[int] = field(default_factory=set)  # follow-ups that name the ticket by tag

    @staticmethod
    def message_id(index: int) -> str:
        return f"<stages-{index:04d}@example.net>"

    def is_follow_up(self, index: int) -> bool:
        return index % 10 == 9

    def raw(self, index: int, numbers: dict[int, str]) -> bytes:
        """Mail ``index``; ``numbers`` (original index -> ticket number) are the tickets
        already stored, which a follow-up may name by its subject tag."""
        sender = f"requester{index:04d}@example.net"
        subject = f"question {index}"
        extra = ""
        if self.is_follow_up(index):
            originals = [i for i in range(index) if not self.is_follow_up(i)][-60:]
            known = sorted(numbers)  # stored already: their number is known
            by_tag = bool(known) and self.rng.random() < 0.5
            target = self.rng.choice(known if by_tag else originals)
            self.targets[index] = target
            sender = f"requester{target:04d}@example.net"
            if by_tag:
                self.by_tag.add(index)
                subject = f"Re: [Ticket#{numbers[target]}] question {target}"
            else:
                subject = f"Re: question {target}"
                ref = self.message_id(target)
                extra = f"In-Reply-To: {ref}\r\nReferences: {ref}\r\n"
        return (
            f"From: Requester {index} <{sender}>\r\n"
            "To: info@example.org\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: {self.message_id(index)}\r\n"
            f"{extra}"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Text of mail {index}: marker-{index:04d}-end\r\n"
        ).encode()


def append_all(account: ImapAccount, raws: list[bytes]) -> None:
    with account.client() as client:
        for raw in raws:
            client.append("INBOX", raw)


# --- the bot process -------------------------------------------------------------------------


def write_config(
    tmp_path: Path, account: ImapAccount, synapse: SynapseServer, bot_id: str, room_id: str
) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f"""
[storage]
url = "sqlite:///desk.db"
{account.imap_toml("STAGES_TEST_IMAP_PASSWORD")}
[mail.files]
path = "out"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot_id}"
password_env = "STAGES_TEST_MATRIX_PASSWORD"
device_id = "{DEVICE_ID}"
[tickets]
undo_seconds = 0
[reminders]
# the daily digest (a room post at the first minute tick after 08:00 UTC) is not
# what this test counts: with it on, a slow run past a tick posts one more message
digest_at = "off"
[[queue]]
name = "info"
addresses = ["info@example.org"]
matrix_room = "{room_id}"
volunteers = ["@alice:example.org"]
default = true
""",
        encoding="utf-8",
    )
    return path


def start(
    config: Path, log: IO[bytes], passwords: dict[str, str], crash_at: str | None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "TICKETBOT_CRASH_AT"}
    env.update(passwords)
    if crash_at:
        env["TICKETBOT_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config), "--log-level", "INFO"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        cwd=REPO_ROOT,
    )


# --- reading the state back ------------------------------------------------------------------


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return list(conn.execute(sql))
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()


def stored_numbers(db: Path, mails: Mails) -> dict[int, str]:
    """Original mail index -> its ticket's number, for the tickets stored so far."""
    rows = query(
        db,
        "SELECT a.message_id, t.number FROM article a JOIN ticket t ON t.id = a.ticket_id"
        " WHERE a.kind = 'inbound'",
    )
    found = {}
    for message_id, number in rows:
        match = re.fullmatch(r"<stages-(\d{4})@example\.net>", message_id or "")
        if match and not mails.is_follow_up(int(match.group(1))):
            found[int(match.group(1))] = str(number)
    return found


def progress(db: Path) -> tuple[int, int]:
    """(inbound articles stored, matrix outbox items done)."""
    articles = query(db, "SELECT COUNT(*) FROM article WHERE kind = 'inbound'")
    done = query(db, "SELECT COUNT(*) FROM outbox WHERE channel = 'matrix' AND state = 'done'")
    return (articles[0][0] if articles else 0, done[0][0] if done else 0)


def pending_posts(db: Path) -> int:
    rows = query(db, "SELECT COUNT(*) FROM outbox WHERE channel = 'matrix' AND state != 'done'")
    return int(rows[0][0]) if rows else 0


def room_events(synapse: SynapseServer, token: str, room_id: str) -> list[dict[str, Any]]:
    """Every event of the room, oldest first."""
    events: list[dict[str, Any]] = []
    base = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id, safe='')}/messages"
    since: str | None = None
    while True:
        params = {"dir": "b", "limit": "1000"}
        if since is not None:
            params["from"] = since
        answer = synapse.request("GET", f"{base}?{urllib.parse.urlencode(params)}", token=token)
        chunk = answer.get("chunk", [])
        events.extend(chunk)
        since = answer.get("end")
        if not chunk or since is None:
            break
    return list(reversed(events))


@dataclass
class RoomView:
    """The bot's messages in the room, sorted by what they show."""

    roots: dict[str, list[str]] = field(default_factory=dict)  # ticket number -> event ids
    threads: dict[int, list[str]] = field(default_factory=dict)  # mail index -> thread roots
    other: Counter[str] = field(default_factory=Counter)  # anything else, by relation type
    other_samples: list[dict[str, Any]] = field(default_factory=list)  # their content


def read_room(synapse: SynapseServer, token: str, room_id: str, bot_id: str) -> RoomView:
    view = RoomView()
    for event in room_events(synapse, token, room_id):
        if event.get("type") != "m.room.message" or event.get("sender") != bot_id:
            continue
        content = event.get("content", {})
        body = str(content.get("body", ""))
        relation = content.get("m.relates_to") or {}
        if not relation and (found := ROOT.search(body)):
            view.roots.setdefault(found.group(1), []).append(event["event_id"])
        elif relation.get("rel_type") == "m.thread" and (marked := MARKER.search(body)):
            view.threads.setdefault(int(marked.group(1)), []).append(relation["event_id"])
        else:
            view.other[relation.get("rel_type", "none")] += 1
            view.other_samples.append(content)
    return view


def unrecorded(db: Path, room: RoomView) -> tuple[int, int]:
    """(roots, articles) in the room whose outbox item is not done: posted, not recorded."""
    tickets = {
        str(number)
        for (number,) in query(
            db,
            "SELECT t.number FROM outbox o JOIN ticket t ON t.id = o.ticket_id"
            " WHERE o.channel = 'matrix' AND o.kind = 'post_ticket' AND o.state != 'done'",
        )
    }
    # an article shows up with its ticket's root (the first) or on its own (a follow-up)
    articles = {
        str(message_id)
        for (message_id,) in query(
            db,
            "SELECT a.message_id FROM outbox o JOIN article a ON a.id = o.article_id"
            " WHERE o.channel = 'matrix' AND o.kind = 'post_article' AND o.state != 'done'",
        )
    }
    firsts = {
        str(message_id)
        for (message_id,) in query(
            db,
            "SELECT a.message_id FROM outbox o JOIN article a ON a.ticket_id = o.ticket_id"
            " WHERE o.channel = 'matrix' AND o.kind = 'post_ticket' AND o.state != 'done'"
            " AND a.id = (SELECT MIN(b.id) FROM article b WHERE b.ticket_id = a.ticket_id)",
        )
    }
    roots = sum(1 for number in room.roots if number in tickets)
    posted = sum(1 for index in room.threads if Mails.message_id(index) in articles | firsts)
    return roots, posted


# --- the test -------------------------------------------------------------------------------


def plan(rng: random.Random) -> list[tuple[str, int]]:
    """(stage or "random", wave size) for every run that must die, in order."""
    runs: list[tuple[str, int]] = []
    for _cycle in range(2):
        for stage in INTAKE_STAGES:
            runs.append((stage, FLAGGED_WAVE if stage == "flagged" else WAVE))
    for _ in range(RANDOM_KILLS):
        runs.insert(rng.randrange(1, len(runs)), ("random", WAVE))
    assert sum(size for _, size in runs) < MAILS
    return runs


def crash_count(stage: str, wave: int, rng: random.Random) -> int:
    """A count this run reaches while mail is still waiting (so the kill is mid-stream)."""
    if stage == "flagged":
        return 1  # after the first batch of 50, with 30 or more still to come
    if stage == "posted":
        return rng.randint(3, wave // 2)  # the wave alone holds more new tickets than that
    return rng.randint(4, wave - 4)


def test_sigkill_at_every_intake_stage_with_matrix(
    tmp_path: Path, imap_account: ImapAccount, synapse: SynapseServer
) -> None:
    started = time.monotonic()
    rng = random.Random(20261124)
    suffix = uuid.uuid4().hex[:8]
    bot_password = "stages-bot-pw"
    bot_id, bot_token = synapse.register(f"stagesbot{suffix}", bot_password)
    _, watcher = synapse.register(f"stageswatch{suffix}", "watch-pw")
    room_id = synapse.create_room(watcher, [bot_id], f"stages {suffix}")
    config = write_config(tmp_path, imap_account, synapse, bot_id, room_id)
    passwords = {
        "STAGES_TEST_IMAP_PASSWORD": imap_account.password,
        "STAGES_TEST_MATRIX_PASSWORD": bot_password,
    }
    db = tmp_path / "desk.db"
    log_path = tmp_path / "bot.log"
    mails = Mails(rng)

    def intake_lines() -> int:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        return text.count("new ticket") + text.count("follow-up to")

    runs = plan(rng)
    appended = 0
    kills: Counter[str] = Counter()
    windows: Counter[str] = Counter()  # roots posted but unrecorded at a kill, by stage
    report: list[str] = []

    def append_wave(size: int) -> None:
        nonlocal appended
        numbers = stored_numbers(db, mails)
        indexes = range(appended, min(MAILS, appended + size))
        append_all(imap_account, [mails.raw(i, numbers) for i in indexes])
        appended += len(indexes)

    with log_path.open("ab") as log:
        for run_no, (stage, wave) in enumerate(runs, start=1):
            append_wave(wave)
            crash_at = None if stage == "random" else f"{stage}:{crash_count(stage, wave, rng)}"
            before = progress(db)
            log.write(f"\n=== run {run_no}: {crash_at or 'random kill'} ===\n".encode())
            log.flush()
            run_started = time.monotonic()
            process = start(config, log, passwords, crash_at)
            try:
                if crash_at is None:
                    seen = intake_lines()
                    deadline = time.monotonic() + 60
                    while intake_lines() == seen and time.monotonic() < deadline:
                        assert process.poll() is None, f"run {run_no} ended by itself"
                        time.sleep(0.01)
                    time.sleep(rng.uniform(0.0, 0.4))
                    process.send_signal(signal.SIGKILL)
                returncode = process.wait(timeout=CRASH_TIMEOUT)
            except subprocess.TimeoutExpired:
                tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"run {run_no} ({crash_at}) never reached its crash point\n{tail}")
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            after = progress(db)
            assert returncode == -signal.SIGKILL, (
                f"run {run_no} ({crash_at or 'random kill'}) ended with {returncode}, not -9\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
            kills[stage] += 1
            room = read_room(synapse, watcher, room_id, bot_id)
            roots_open, articles_open = unrecorded(db, room)
            windows[stage] += roots_open
            if stage == "posted":
                # the kill fell after the homeserver took the ticket's root and first
                # article, before the bot recorded it: the retry must not post them again
                assert (roots_open, articles_open) == (1, 1), (
                    f"run {run_no} ({crash_at}): {roots_open} root(s) and {articles_open}"
                    " article(s) posted but unrecorded, expected 1 and 1"
                )
            report.append(
                f"  run {run_no:2d} {crash_at or 'random kill':12s} wave {wave:3d}:"
                f" +{after[0] - before[0]:3d} mails stored, +{after[1] - before[1]:3d} posts"
                f" done ({after[0]}/{appended} stored), {roots_open} root(s) and"
                f" {articles_open} article(s) posted but unrecorded at the kill,"
                f" {time.monotonic() - run_started:.1f} s"
            )
            print(report[-1], file=sys.stderr)
            # mid-stream: the run died with mail still to take in (an intake stage) or,
            # for a post or a kill from outside, with mail or posts still to do
            waiting = after[0] < appended
            if stage in ("posted", "random"):
                waiting = waiting or pending_posts(db) > 0
            assert waiting, f"run {run_no} ({crash_at or stage}) had finished its work first"

        # the last run: no crash plan; it takes the rest in, finishes and stops on SIGTERM
        before_last = appended
        append_wave(MAILS - appended)
        log.write(b"\n=== last run: clean ===\n")
        log.flush()
        run_started = time.monotonic()
        process = start(config, log, passwords, None)
        try:
            deadline = time.monotonic() + FINISH_TIMEOUT
            while True:
                stored, _ = progress(db)
                undone = query(db, "SELECT COUNT(*) FROM intake_record WHERE done_at IS NULL")
                if stored == MAILS and pending_posts(db) == 0 and undone == [(0,)]:
                    flags = imap_account.flags()
                    if len(flags) == MAILS and all(b"\\Seen" in f for f in flags.values()):
                        break
                assert process.poll() is None, "the last run ended by itself"
                assert time.monotonic() < deadline, (
                    f"the last run did not finish in {FINISH_TIMEOUT:.0f} s: {stored} stored,"
                    f" {pending_posts(db)} posts open, {undone} intake records not done\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
                time.sleep(0.5)
        finally:
            process.terminate()
            returncode = process.wait(timeout=30)
    log_text = log_path.read_text(errors="replace")
    assert returncode == 0, f"the last run did not stop cleanly ({returncode})\n{log_text[-4000:]}"
    report.append(
        f"  last run (clean, SIGTERM) wave {MAILS - before_last:3d}: finished everything"
        f" in {time.monotonic() - run_started:.1f} s"
    )

    # --- the database and the server ---------------------------------------------------------
    follow_ups = [i for i in range(MAILS) if mails.is_follow_up(i)]
    flags = imap_account.flags()
    unseen = [uid for uid, f in flags.items() if b"\\Seen" not in f]
    assert len(flags) == MAILS and not unseen, f"{len(unseen)} message(s) not \\Seen"
    articles = query(
        db,
        "SELECT a.message_id, t.number FROM article a JOIN ticket t ON t.id = a.ticket_id"
        " WHERE a.kind = 'inbound'",
    )
    per_id = Counter(message_id for message_id, _ in articles)
    assert sorted(per_id) == sorted(mails.message_id(i) for i in range(MAILS))
    assert set(per_id.values()) == {1}, "each Message-ID stored once"
    ticket_of = {message_id: str(number) for message_id, number in articles}
    tickets = query(db, "SELECT number FROM ticket")
    assert len(tickets) == MAILS - len(follow_ups), f"{len(tickets)} tickets"
    for index, target in mails.targets.items():
        assert ticket_of[mails.message_id(index)] == ticket_of[mails.message_id(target)], (
            f"follow-up {index} is not on the ticket of mail {target}"
        )
    failed = query(db, "SELECT kind, last_error FROM outbox WHERE state != 'done'")
    assert not failed, f"outbox items not done: {failed[:5]}"
    roots_in_db = dict(
        query(
            db,
            "SELECT t.number, p.root_ref FROM chat_post p JOIN ticket t ON t.id = p.ticket_id"
            " WHERE p.platform = 'matrix'",
        )
    )

    # every start logged in as the same device (the other one is the registration's)
    devices = synapse.request("GET", "/_matrix/client/v3/devices", token=bot_token)["devices"]
    assert DEVICE_ID in {d["device_id"] for d in devices} and len(devices) == 2, devices

    # --- the room ------------------------------------------------------------------------------
    room = read_room(synapse, watcher, room_id, bot_id)
    roots, in_threads, other = room.roots, room.threads, room.other
    numbers = {str(number) for (number,) in tickets}
    root_copies = sum(len(ids) - 1 for ids in roots.values())
    article_copies = sum(len(ids) - 1 for ids in in_threads.values())
    elapsed = time.monotonic() - started
    print(
        "\nintake stages with Matrix:\n"
        + "\n".join(report)
        + f"\n  kills per stage: {dict(kills)}"
        + f"\n  roots posted but unrecorded at a kill, by stage: {dict(windows)}"
        + f"\n  {MAILS} mails, {len(follow_ups)} follow-ups ({len(mails.by_tag)} by tag),"
        f" {len(tickets)} tickets; room: {len(roots)} roots, {root_copies} duplicate roots,"
        f" {len(in_threads)} articles, {article_copies} duplicate articles, other {dict(other)}"
        f"\n  took {elapsed:.1f} s",
        file=sys.stderr,
    )
    assert set(roots) == numbers, (
        f"roots missing for {sorted(numbers - set(roots))[:10]},"
        f" unknown roots {sorted(set(roots) - numbers)[:10]}"
    )
    doubled = {n: ids for n, ids in roots.items() if len(ids) > 1}
    assert not doubled, f"{len(doubled)} ticket root(s) posted more than once: {doubled}"
    for number, ids in roots.items():
        assert roots_in_db.get(number) == ids[0], f"ticket {number}: stored root is not the post"
    missing = sorted(set(range(MAILS)) - set(in_threads))
    assert not missing, f"{len(missing)} article(s) never posted: {missing[:20]}"
    doubled_articles = {i: ids for i, ids in in_threads.items() if len(ids) > 1}
    assert not doubled_articles, (
        f"{len(doubled_articles)} article(s) posted more than once: {doubled_articles}"
    )
    for index, (thread,) in in_threads.items():
        number = ticket_of[mails.message_id(index)]
        assert thread == roots[number][0], f"mail {index} is not in ticket {number}'s thread"
    assert not other, (
        f"unexpected bot messages in the room: {dict(other)}: {room.other_samples[:5]}"
    )
