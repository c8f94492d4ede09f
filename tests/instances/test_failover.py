"""Two real ``ticketbot run`` processes on one PostgreSQL: SIGKILL the active one mid-stream.

Instance A starts first and takes every role (intake, matrix, scheduler); B starts
second and stands by. Mail streams into a real Dovecot while a volunteer answers
tickets with ``!reply`` in their Matrix threads (Synapse), replies going out through an
SMTP capture. In the middle of a wave of mail, A is killed with SIGKILL. B must hold
every role within 30 seconds (the issue's bound), carry on the stream, and at the end:

- every mail is a ticket exactly once (one inbound article per Message-ID);
- every ticket's root message is in the room exactly once, every article once, in its
  ticket's thread (a post A made but had not recorded is retried by B with the same
  transaction id, and the homeserver answers with the event it made before);
- every reply stored is sent exactly once (one captured mail per reply Message-ID),
  except one the SMTP server had accepted in the instant before the kill while A had not
  recorded it yet: that one B sends again with the same Message-ID (the window
  ``bot/outbox.py`` documents; the test reads the server and the database at the kill,
  so it knows exactly which replies were in it), and every ``!reply`` sent while an
  instance held the room was stored;
- B stops cleanly on SIGTERM, giving its roles and claims back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psycopg2
import pytest

from tests.faults.test_intake_stages import read_room
from tests.servers.dovecot import ImapAccount
from tests.servers.smtp import SmtpCapture
from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.servers

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE_ID = "TICKETBOT-FAILOVER"
WAVES = (30, 30, 30)  # mails before the kill, in the wave the kill interrupts, after it
TAKEOVER_BOUND = 30.0
ALL_ROLES = {"intake", "matrix", "scheduler"}


def mail(index: int) -> bytes:
    return (
        f"From: Requester {index} <requester{index:04d}@example.net>\r\n"
        "To: info@example.org\r\n"
        f"Subject: question {index}\r\n"
        f"Message-ID: <failover-{index:04d}@example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Text of mail {index}: marker-{index:04d}-end\r\n"
    ).encode()


def write_config(
    tmp_path: Path,
    url: str,
    account: ImapAccount,
    smtp: SmtpCapture,
    synapse: SynapseServer,
    bot_id: str,
    room_id: str,
    volunteer: str,
) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f"""
[storage]
url = "{url}"
{account.imap_toml("FAILOVER_IMAP_PASSWORD")}
[mail.smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot_id}"
password_env = "FAILOVER_MATRIX_PASSWORD"
device_id = "{DEVICE_ID}"
[instance]
lease_check_seconds = 1
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
volunteers = ["{volunteer}"]
default = true
""",
        encoding="utf-8",
    )
    return path


def start(config: Path, log: IO[bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config), "--log-level", "INFO"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
    )


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    except psycopg2.errors.UndefinedTable:
        return []
    finally:
        conn.close()


def roles_of(url: str) -> dict[str, set[str]]:
    """Instance name -> the roles it said it held at its last heartbeat (live ones only)."""
    rows = query(url, "SELECT name, roles FROM instance WHERE stopped_at IS NULL")
    return {str(name): set(filter(None, str(roles).split(","))) for name, roles in rows}


def wait_for(what: str, probe: Callable[[], Any], timeout: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def test_sigkill_of_the_active_instance_a_standby_takes_over_nothing_lost_or_doubled(
    tmp_path: Path,
    postgres_db_url: str,
    imap_account: ImapAccount,
    smtp_capture: SmtpCapture,
    synapse: SynapseServer,
) -> None:
    url = postgres_db_url
    suffix = uuid.uuid4().hex[:8]
    bot_password = "failover-bot-pw"
    bot_id, _ = synapse.register(f"failoverbot{suffix}", bot_password)
    alice_id, alice = synapse.register(f"failoveralice{suffix}", "alice-pw")
    room_id = synapse.create_room(alice, [bot_id], f"failover {suffix}")
    config = write_config(
        tmp_path, url, imap_account, smtp_capture, synapse, bot_id, room_id, alice_id
    )
    env = {
        "FAILOVER_IMAP_PASSWORD": imap_account.password,
        "FAILOVER_MATRIX_PASSWORD": bot_password,
    }
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a_log, b_log = (path.open("wb") for path in logs)
    a = start(config, a_log, env)
    b: subprocess.Popen[bytes] | None = None
    appended = 0

    def append(count: int) -> None:
        nonlocal appended
        with imap_account.client() as client:
            for index in range(appended, appended + count):
                client.append("INBOX", mail(index))
        appended += count

    def roots() -> dict[str, list[str]]:
        return read_room(synapse, alice, room_id, bot_id).roots

    def reply_to(numbers: list[str], text: str) -> list[str]:
        events = {
            e["content"]["body"]: e["event_id"]
            for e in _room_roots(synapse, alice, room_id, bot_id)
        }
        sent = []
        for number in numbers:
            root = next(event for body, event in events.items() if f"[Ticket#{number}]" in body)
            synapse.request(
                "PUT",
                f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/fo-{uuid.uuid4().hex}",
                {
                    "msgtype": "m.text",
                    "body": f"!reply {text} {number}",
                    "m.relates_to": {"rel_type": "m.thread", "event_id": root},
                },
                alice,
            )
            sent.append(number)
        return sent

    def stored_replies(numbers: list[str]) -> int:
        rows = query(
            url,
            "SELECT COUNT(DISTINCT t.number) FROM article a JOIN ticket t ON t.id = a.ticket_id "
            "WHERE a.kind = 'reply' AND t.number = ANY(%s)",
            (numbers,),
        )
        return int(rows[0][0]) if rows else 0

    try:
        # A takes every role; B, started after, stands by
        a_name = wait_for(
            "instance A to hold every role",
            lambda: next((n for n, r in roles_of(url).items() if r >= ALL_ROLES), None),
            60,
            logs,
        )
        b = start(config, b_log, env)
        wait_for("instance B to register", lambda: len(roles_of(url)) == 2, 60, logs)
        b_name = next(n for n in roles_of(url) if n != a_name)
        time.sleep(2)  # a few lease checks: B must not take anything while A lives
        assert roles_of(url)[b_name] == set(), "B stands by while A holds the roles"

        append(WAVES[0])
        wait_for("the first wave in the room", lambda: len(roots()) >= WAVES[0], 90, logs)
        before = sorted(roots())[:8]
        reply_to(before, "Answer before the kill for")
        wait_for("the first replies stored", lambda: stored_replies(before) == 8, 60, logs)

        # the kill lands in the middle of a wave's intake and posting
        append(WAVES[1])
        wait_for(
            "the second wave under way",
            lambda: len(roots()) > WAVES[0] + 3,
            60,
            logs,
        )
        during = sorted(roots())[8:12]
        reply_to(during, "Answer around the kill for")
        a.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert a.wait(10) == -signal.SIGKILL
        # replies the SMTP server had accepted but A had not recorded yet: the documented
        # window (bot/outbox.py); B sends each of these again, with the same Message-ID
        accepted = {str(m.message["Message-ID"]) for m in smtp_capture.messages}
        recorded = {
            str(r[0])
            for r in query(
                url,
                "SELECT message_id FROM article WHERE kind = 'reply' AND send_state = 'sent'",
            )
        }
        window = accepted - recorded

        taken = wait_for(
            "B to hold every role",
            lambda: roles_of(url).get(b_name, set()) >= ALL_ROLES,
            TAKEOVER_BOUND + 10,
            logs,
        )
        takeover = time.monotonic() - killed_at
        assert taken and takeover <= TAKEOVER_BOUND, f"takeover took {takeover:.1f} s"

        append(WAVES[2])
        total = sum(WAVES)
        wait_for("every mail a ticket", lambda: _inbound(url) >= total, 120, logs)
        wait_for("every ticket in the room", lambda: len(roots()) >= total, 120, logs)
        after = sorted(roots())[-6:]
        time.sleep(2)  # B's Matrix sync is live: commands from now on reach it
        reply_to(after, "Answer after the takeover for")
        wait_for("the later replies stored", lambda: stored_replies(after) == 6, 60, logs)
        wait_for(
            "the outbox empty",
            lambda: query(url, "SELECT COUNT(*) FROM outbox WHERE state <> 'done'")[0][0] == 0,
            120,
            logs,
        )

        # every mail a ticket, once
        rows = query(url, "SELECT message_id FROM article WHERE kind = 'inbound'")
        per_id = Counter(str(r[0]) for r in rows)
        assert len(per_id) == total and set(per_id.values()) == {1}
        assert query(url, "SELECT COUNT(*) FROM ticket")[0][0] == total

        # every post once
        room = read_room(synapse, alice, room_id, bot_id)
        assert len(room.roots) == total
        doubled = {n: ids for n, ids in room.roots.items() if len(ids) != 1}
        assert not doubled, f"roots posted more than once: {doubled}"
        assert sorted(room.threads) == list(range(total))
        assert all(len(v) == 1 for v in room.threads.values()), "each article once"

        # every reply sent once
        replies = {
            str(r[0])
            for r in query(
                url, "SELECT message_id FROM article WHERE kind IN ('reply', 'auto_reply')"
            )
        }
        assert stored_replies(before) == 8 and stored_replies(after) == 6
        sent = Counter(str(m.message["Message-ID"]) for m in smtp_capture.messages)
        assert set(sent) == replies, "every stored reply sent, nothing else"
        expected = {message_id: 2 if message_id in window else 1 for message_id in replies}
        assert dict(sent) == expected, (
            "once each; twice only if accepted but unrecorded at the kill"
        )
        states = query(
            url, "SELECT DISTINCT send_state FROM article WHERE kind IN ('reply', 'auto_reply')"
        )
        assert {r[0] for r in states} == {"sent"}

        print(
            f"\nfailover: takeover {takeover:.1f} s after SIGKILL; {total} mails, "
            f"{len(replies)} replies ({stored_replies(during)} of 4 sent around the kill "
            f"were taken; {len(window)} accepted but unrecorded at the kill, sent again)",
            file=sys.stderr,
        )

        # B stops cleanly: roles and claims given back
        b.send_signal(signal.SIGTERM)
        assert b.wait(30) == 0
        assert roles_of(url) == {a_name: roles_of(url)[a_name]}, "B marked stopped"
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        a_log.close()
        b_log.close()


def _inbound(url: str) -> int:
    rows = query(url, "SELECT COUNT(*) FROM article WHERE kind = 'inbound'")
    return int(rows[0][0]) if rows else 0


def _room_roots(
    synapse: SynapseServer, token: str, room_id: str, bot_id: str
) -> list[dict[str, Any]]:
    from tests.faults.test_intake_stages import room_events

    return [
        e
        for e in room_events(synapse, token, room_id)
        if e.get("type") == "m.room.message"
        and e.get("sender") == bot_id
        and "m.relates_to" not in e.get("content", {})
        and "[Ticket#" in e.get("content", {}).get("body", "")
    ]
