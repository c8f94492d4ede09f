"""Latency: an email's APPEND to its ticket in Matrix, and a volunteer's !claim to the edit.

    python -m bench.latency [--mails 200] [--interval 1.0] [--claims 100] [--quick]
                            [--trace] [--keep-log PATH]

Examples::

    python -m bench.latency                 # the full run: 200 mails, one a second (~5 min)
    python -m bench.latency --quick         # 30 mails and 15 claims (~1.5 min)
    python -m bench.latency --mails 50 --interval 0.5 --claims 0

Real servers on loopback (:mod:`bench.live`): Dovecot, Synapse, ``ticketbot run`` in a
subprocess with IMAP IDLE, and a separate Matrix client (the *observer*) long-polling
``/sync`` in the room.

1. **Mail to chat.** ``--mails`` mails, each from its own sender (so the flood guard
   never groups them), are APPENDed over one IMAP connection, one every ``--interval``
   seconds. For each: *t0* = when Dovecot answered the APPEND (the mail is in the
   mailbox: the earliest the bot can know). The ticket's root message is found by the
   subject's probe token; reported are
   ``origin`` = its ``origin_server_ts`` (Synapse's clock when it stored the event) - t0,
   and ``received`` = when the observer's ``/sync`` answer carried it - t0 (what a
   volunteer's client sees). The bot's "new ticket" log line splits ``origin`` into
   mail side (IDLE wake-up, fetch, parse, store) and chat side (outbox wake-up, render,
   Matrix send). A bare imapclient connection idling on the same INBOX records when
   Dovecot announces each mail (``* N EXISTS``): the baseline for the bot's wake-up;
   ``--trace`` (the bot at DEBUG) gives the bot's own wake-up from its log.
2. **Claim to edit.** For ``--claims`` of those tickets, the volunteer sends
   ``!claim NUMBER`` in the room, one every half second; reported are
   ``origin`` = the edit's (``m.replace`` of the root) ``origin_server_ts`` - the
   ``!claim`` event's ``origin_server_ts`` (both Synapse's clock), and ``received`` =
   when the observer received the edit - just before the ``!claim`` was sent.

Targets: mail-to-chat p95 < 1 s, claim-to-edit p95 < 300 ms. A benchmark: it prints
figures and writes ``bench/results/latency-<timestamp>.json``; it fails only if
something is broken (a server does not start, a ticket or an edit never appears).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import re
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.live import Desk, Seen, desk, load_average, summary

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MAIL_P95_MS = 1000.0
TARGET_CLAIM_P95_MS = 300.0
_NUMBER = re.compile(r"\[Ticket#(\d+)\]")
ROOT_TIMEOUT = 60.0  # after the last APPEND, for the last roots to appear


def probe_mail(run: str, index: int) -> bytes:
    """A plain mail from its own sender; the subject carries a token to find its root by."""
    return (
        f"From: Requester {index} <requester{index}@example.net>\r\n"
        "To: info@example.org\r\n"
        f"Subject: Question {run}-{index:04d}\r\n"
        f"Message-ID: <latency-{run}-{index}@example.net>\r\n"
        "Date: Tue, 24 Nov 2026 09:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, this is question {index}. May we use the photo for our booklet?\r\n"
    ).encode()


def is_root(seen: Seen, bot_id: str) -> bool:
    content = seen.event.get("content", {})
    return (
        seen.event.get("type") == "m.room.message"
        and seen.event.get("sender") == bot_id
        and "m.relates_to" not in content
        and "[Ticket#" in seen.body
    )


def roots_by_token(events: list[Seen], bot_id: str, run: str) -> dict[int, Seen]:
    found: dict[int, Seen] = {}
    pattern = re.compile(rf"Question {re.escape(run)}-(\d{{4}})")
    for seen in events:
        if is_root(seen, bot_id) and (match := pattern.search(seen.body)):
            found.setdefault(int(match.group(1)), seen)
    return found


class IdleWatch:
    """A bare imapclient connection in IDLE on the same INBOX, beside the bot: when the
    server announces each new message (``* N EXISTS``), the baseline for the bot's
    IDLE wake-up (Dovecot itself waits a little before it tells IDLE clients)."""

    def __init__(self, live: Desk) -> None:
        self._client = live.dovecot.account.client(timeout=60)
        self.base = int(self._client.select_folder("INBOX")[b"EXISTS"])
        self.announced: dict[int, float] = {}  # message count -> when first announced
        self._stop = threading.Event()
        self._client.idle()
        self._thread = threading.Thread(target=self._loop, name="idle-watch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for response in self._client.idle_check(0.5):
                if len(response) == 2 and response[1] == b"EXISTS":
                    self.announced.setdefault(int(response[0]), time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._client.idle_done()
            self._client.logout()


def mail_to_chat(live: Desk, run: str, mails: int, interval: float) -> dict[str, Any]:
    """APPEND ``mails`` probes, one per ``interval``; time each to its root message."""
    appended: dict[int, float] = {}
    append_ms: list[float] = []
    watch = IdleWatch(live)
    with live.dovecot.account.client(timeout=60) as client:
        start = time.monotonic()
        for index in range(mails):
            due = start + index * interval
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            raw = probe_mail(run, index)
            before = time.time()
            client.append("INBOX", raw)
            appended[index] = time.time()
            append_ms.append((appended[index] - before) * 1000)
            if index % 25 == 24:
                live.check_alive()
                got = len(roots_by_token(live.observer.snapshot(), live.bot_id, run))
                print(f"  {index + 1}/{mails} appended, {got} roots seen", flush=True)
    time.sleep(1)
    watch.close()
    idle_wake = [
        watch.announced[watch.base + 1 + i] - appended[i]
        for i in range(mails)
        if watch.base + 1 + i in watch.announced
    ]
    announced = live.logged_at("adapters.email.imap", "new mail announced")
    bot_wake, after_wake = [], []
    roots = live.observer.wait_until(
        f"{mails} ticket roots",
        lambda events: (r := roots_by_token(events, live.bot_id, run)) and len(r) == mails and r,
        ROOT_TIMEOUT,
    )
    stored = live.stored_at()
    origin, received, mail_side, chat_side = [], [], [], []
    per_mail = []
    for index in range(mails):
        root = roots[index]
        number = _NUMBER.search(root.body)
        assert number is not None
        t0 = appended[index]
        stored_t = stored.get(number.group(1))
        origin.append(root.origin_ts - t0)
        received.append(root.received - t0)
        if stored_t is not None:
            mail_side.append(stored_t - t0)
            chat_side.append(root.origin_ts - stored_t)
            wake = next((a for a in announced if a >= t0 - 0.002), None)
            if wake is not None and wake <= stored_t:
                bot_wake.append(wake - t0)
                after_wake.append(stored_t - wake)
        per_mail.append(
            {
                "index": index,
                "ticket": number.group(1),
                "root_event": root.event["event_id"],
                "origin_s": round(root.origin_ts - t0, 4),
                "received_s": round(root.received - t0, 4),
                "stored_s": None if stored_t is None else round(stored_t - t0, 4),
            }
        )
    return {
        "mails": mails,
        "interval_s": interval,
        "append_ms": summary([a / 1000 for a in append_ms]),
        "raw_idle_announce": summary(idle_wake),
        "bot_idle_wake": summary(bot_wake),
        "wake_to_stored": summary(after_wake),
        "origin": summary(origin),
        "received": summary(received),
        "mail_side": summary(mail_side),
        "chat_side": summary(chat_side),
        "per_mail": per_mail,
        "roots": {index: (roots[index].event["event_id"], roots[index].body) for index in roots},
    }


def claim_to_edit(live: Desk, roots: dict[int, tuple[str, str]], claims: int) -> dict[str, Any]:
    """``!claim NUMBER`` for ``claims`` of the tickets, one per half second; time each edit."""
    chosen = sorted(roots)[:claims]
    sent: dict[str, tuple[float, str]] = {}  # root event id -> (time before send, claim event)
    for position, index in enumerate(chosen):
        root_id, body = roots[index]
        number = _NUMBER.search(body)
        assert number is not None
        before = time.time()
        claim_event = live.say(live.alice[1], f"!claim {number.group(1)}")
        sent[root_id] = (before, claim_event)
        time.sleep(0.5)
        if position % 25 == 24:
            live.check_alive()
            print(f"  {position + 1}/{len(chosen)} claims sent", flush=True)

    def edits(events: list[Seen]) -> dict[str, Seen] | None:
        found: dict[str, Seen] = {}
        for seen in events:
            relation = seen.relation
            if (
                seen.event.get("sender") == live.bot_id
                and relation.get("rel_type") == "m.replace"
                and relation.get("event_id") in sent
            ):
                new_body = str(seen.event["content"].get("m.new_content", {}).get("body", ""))
                if "alice" in new_body.lower():
                    found.setdefault(str(relation["event_id"]), seen)
        return found if len(found) == len(sent) else None

    edited: dict[str, Seen] = live.observer.wait_until(
        f"{len(sent)} claim edits", edits, ROOT_TIMEOUT
    )
    events = live.observer.snapshot()
    by_id = {s.event["event_id"]: s for s in events}
    origin, received, first_answer = [], [], []
    ahead: dict[str, int] = {}  # what the bot sent between a !claim and its edit
    for root_id, (before, claim_event) in sent.items():
        edit = edited[root_id]
        claim = by_id.get(claim_event)
        if claim is not None:
            origin.append(edit.origin_ts - claim.origin_ts)
            between = [
                s
                for s in events
                if s.event.get("sender") == live.bot_id
                and claim.origin_ts <= s.origin_ts < edit.origin_ts
                and s is not edit
            ]
            if between:
                first_answer.append(min(s.origin_ts for s in between) - claim.origin_ts)
            for s in between:
                kind = s.relation.get("rel_type") or "room message"
                ahead[kind] = ahead.get(kind, 0) + 1
        received.append(edit.received - before)
    return {
        "claims": len(sent),
        "origin": summary(origin),
        "received": summary(received),
        "first_bot_event_after_claim": summary(first_answer),
        "bot_events_before_the_edit": ahead,
    }


def machine() -> dict[str, Any]:
    """CPUs and Python, for the results file (the load average is recorded separately)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_row(label: str, data: dict[str, float], target: float | None = None) -> None:
    if not data.get("n"):
        print(f"  {label:40} (none)")
        return
    verdict = ""
    if target is not None:
        verdict = (
            "  target met"
            if data["p95_ms"] < target
            else f"  MISSED by {data['p95_ms'] - target:.0f} ms"
        )
    print(
        f"  {label:40} p50 {data['p50_ms']:7.0f} ms  p95 {data['p95_ms']:7.0f} ms"
        f"  max {data['max_ms']:7.0f} ms  (n={data['n']}){verdict}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n  python -m bench.latency\n  python -m bench.latency --quick\n"
        "  python -m bench.latency --mails 50 --interval 0.5 --claims 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mails", type=int, default=200, help="mails to send (default 200)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between mails")
    parser.add_argument("--claims", type=int, default=100, help="tickets to !claim (default 100)")
    parser.add_argument("--quick", action="store_true", help="30 mails and 15 claims")
    parser.add_argument(
        "--trace", action="store_true",
        help="run the bot at DEBUG to split the mail side at its IDLE wake-up (slower bot)",
    )  # fmt: skip
    parser.add_argument("--keep-log", type=Path, metavar="PATH", help="copy the bot's log here")
    args = parser.parse_args(argv)
    if args.quick:
        args.mails, args.claims = 30, 15
    if args.mails < 1 or args.claims < 0 or args.claims > args.mails:
        parser.error("--mails must be at least 1 and --claims between 0 and --mails")
    logging.basicConfig(level=logging.WARNING)
    run = secrets.token_hex(3)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.latency", *sys.argv[1:]]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": load_average(),
        "targets_ms": {"mail_p95": TARGET_MAIL_P95_MS, "claim_p95": TARGET_CLAIM_P95_MS},
    }
    say = lambda text: print(text, flush=True)  # noqa: E731
    with desk(say=say, debug=args.trace, keep_log=args.keep_log) as live:
        result["synapse"] = live.synapse.version
        result["dovecot"] = live.dovecot.version()
        # one untimed mail first: the whole path is up (IDLE running, room joined)
        live.dovecot.account.append(probe_mail(f"{run}w", 0))
        live.observer.wait_until(
            "the warm-up ticket", lambda ev: roots_by_token(ev, live.bot_id, f"{run}w"), 60
        )
        print(f"mail to chat: {args.mails} mails, one every {args.interval} s ...", flush=True)
        mail = mail_to_chat(live, run, args.mails, args.interval)
        roots = mail.pop("roots")
        result["mail_to_chat"] = mail
        if args.claims:
            print(f"claim to edit: {args.claims} claims, one every 0.5 s ...", flush=True)
            result["claim_to_edit"] = claim_to_edit(live, roots, args.claims)
        result["observer_limited_syncs"] = live.observer.limited
    result["load_average_end"] = load_average()
    result["total_seconds"] = time.perf_counter() - started

    print(f"\n== latency ({args.mails} mails, {args.claims} claims) ==")
    print_row("APPEND -> root origin_server_ts", mail["origin"], TARGET_MAIL_P95_MS)
    print_row("APPEND -> root received by a client", mail["received"], TARGET_MAIL_P95_MS)
    print_row("  mail side: APPEND -> ticket stored", mail["mail_side"])
    print_row("  chat side: stored -> root origin_ts", mail["chat_side"])
    print_row("baseline: APPEND -> bare IDLE told", mail["raw_idle_announce"])
    if args.trace:
        print_row("  trace: APPEND -> bot's IDLE woken", mail["bot_idle_wake"])
        print_row("  trace: woken -> ticket stored", mail["wake_to_stored"])
    if args.claims:
        claim = result["claim_to_edit"]
        print_row("!claim -> edit (origin_server_ts)", claim["origin"], TARGET_CLAIM_P95_MS)
        print_row("!claim sent -> edit received", claim["received"], TARGET_CLAIM_P95_MS)
        print_row("  !claim -> the bot's first answer", claim["first_bot_event_after_claim"])
        print(f"  bot events between a !claim and its edit: {claim['bot_events_before_the_edit']}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"latency-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    seconds, load = result["total_seconds"], result["load_average_end"]
    print(f"written {path} ({seconds:.0f} s in all, load average {load})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
