"""Flood: 5,000 mails within a minute into one queue, with real tickets in the middle.

    python -m bench.flood [--mails 5000] [--seconds 60] [--senders 3] [--real 5]
                          [--connections 4] [--synapse-limits] [--quick]

Examples::

    python -m bench.flood                   # 5,000 mails in a minute (~5 min in all)
    python -m bench.flood --quick           # 1,000 mails in 15 s (~1.5 min)
    python -m bench.flood --quick --synapse-limits   # the bot not exempt from rc_message
    python -m bench.flood --mails 5000 --seconds 30 --senders 1

Real servers on loopback (:mod:`bench.live`): Dovecot, Synapse and ``ticketbot run`` (IMAP
IDLE, SQLite, ``[flood] threshold = 20``, ``window = "1h"``, ``notice_every = 500``), one
queue, one room, and a separate Matrix client (the observer) reading the room.

``--mails`` flood mails from ``--senders`` addresses (round robin, as a script or a mail
loop would send them) are APPENDed over ``--connections`` IMAP connections, paced evenly over
``--seconds``; ``--real`` ordinary mails from other people go in among them, evenly
spread. Measured:

* **nothing lost**: every Message-ID sent is stored as an article (read from the bot's
  database once its intake is done), as a ticket of its own or grouped into its
  sender's flood ticket; every intake record is done;
* **the real tickets**: APPEND -> root message (``origin_server_ts``, and received by the
  observer) for each, while the flood is being taken in;
* **chat rate**: every event the bot sent to the room (messages, edits, reactions), by
  ``origin_server_ts``: total, the most in any 5 s window and in any 1 s, and how many
  would have been refused by the platforms' limits: Discord's 5 messages per 5 s in a
  channel and 50 requests per second overall, and Synapse's default ``rc_message``
  (0.2 per second, burst 10) for a bot that is not exempt (simulated on the observed
  send times: the test Synapse itself has its limits lifted).

Only Matrix: the Discord double (``tests/servers/discord_double.py``) runs inside a
pytest process with a patched discord.py; the limits above are checked against the
Matrix send times, which are the same posts a Discord channel would get.

Results: ``bench/results/flood-<timestamp>.json``. A benchmark: it fails only when a mail
is lost or a server does not start, never for slowness.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.latency import _NUMBER, machine
from bench.live import Desk, Seen, desk, load_average, summary

RESULTS = Path(__file__).resolve().parent / "results"
STORE_TIMEOUT = 600.0  # after the last APPEND, for the intake to finish
QUIET_SECONDS = 10.0  # no new bot event this long after the intake: the outbox is done

DISCORD_CHANNEL = (5, 5.0)  # messages per seconds, per channel
DISCORD_GLOBAL_PER_S = 50
SYNAPSE_RC_MESSAGE = (0.2, 10)  # per_second, burst_count: Synapse's defaults


class LostMail(RuntimeError):
    """Mail went in and was not stored: the one thing this benchmark must never see."""


def flood_mail(run: str, index: int, senders: int) -> tuple[str, bytes]:
    sender = index % senders
    message_id = f"flood-{run}-{index}@flood.example"
    return message_id, (
        f"From: Robot {sender} <robot{sender}@flood.example>\r\nTo: info@example.org\r\n"
        f"Subject: Offer {index}\r\nMessage-ID: <{message_id}>\r\n"
        "Date: Tue, 24 Nov 2026 09:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n"
        f"Buy now, offer number {index}.\r\n"
    ).encode()


def real_mail(run: str, index: int) -> tuple[str, bytes]:
    message_id = f"real-{run}-{index}@example.net"
    return message_id, (
        f"From: Person {index} <person{index}@example.net>\r\nTo: info@example.org\r\n"
        f"Subject: Real question {run}-{index}\r\nMessage-ID: <{message_id}>\r\n"
        "Date: Tue, 24 Nov 2026 09:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"A real person asks a real question ({index}).\r\n"
    ).encode()


def deliver(
    live: Desk,
    run: str,
    mails: int,
    seconds: float,
    senders: int,
    real_at: set[int],
    connections: int,
) -> tuple[set[str], dict[int, float], float]:
    """APPEND the flood paced over ``seconds`` on ``connections`` IMAP connections at once
    (one, an APPEND round trip after the other, managed 5,000 in 189 s on the busy
    test machine); each real mail goes in right after flood mail ``real_at``."""
    sent: set[str] = set()
    real_appended: dict[int, float] = {}
    interval = seconds / mails
    done = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = time.monotonic()

    def worker(share: range) -> None:
        try:
            with live.dovecot.account.client(timeout=120) as client:
                for index in share:
                    if (wait := start + index * interval - time.monotonic()) > 0:
                        time.sleep(wait)
                    message_id, raw = flood_mail(run, index, senders)
                    client.append("INBOX", raw)
                    batch = [message_id]
                    if index in real_at:
                        message_id, raw = real_mail(run, index)
                        client.append("INBOX", raw)
                        real_appended[index] = time.time()
                        batch.append(message_id)
                    with lock:
                        sent.update(batch)
                        done[0] += 1
                        if done[0] % 1000 == 0:
                            print(
                                f"  {done[0]:,}/{mails:,} appended"
                                f" ({time.monotonic() - start:.0f} s)",
                                flush=True,
                            )
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(range(k, mails, connections),), daemon=True)
        for k in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    live.check_alive()
    return sent, real_appended, time.monotonic() - start


def database_counts(path: Path, sent: set[str]) -> dict[str, Any]:
    """Read the bot's SQLite database (read-only, beside the running bot: WAL)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        ids = {str(row[0]).strip("<>") for row in db.execute("SELECT message_id FROM article")}
        intake = db.execute(
            "SELECT count(*), count(done_at) FROM intakerecord"
            if _has_table(db, "intakerecord")
            else "SELECT count(*), count(done_at) FROM intake_record"
        ).fetchone()
        tickets = db.execute("SELECT count(*) FROM ticket").fetchone()[0]
        tag_table = "tickettag" if _has_table(db, "tickettag") else "ticket_tag"
        flood_tickets = db.execute(
            f"SELECT count(DISTINCT ticket_id) FROM {tag_table} WHERE name = 'flood'"
        ).fetchone()[0]
        pending = db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        failed = db.execute("SELECT count(*) FROM outbox WHERE state = 'failed'").fetchone()[0]
    finally:
        db.close()
    return {
        "stored": len(sent & ids),
        "missing": sorted(sent - ids)[:20],
        "missing_count": len(sent - ids),
        "intake_records": intake[0],
        "intake_done": intake[1],
        "tickets": tickets,
        "flood_tickets": flood_tickets,
        "outbox_pending": pending,
        "outbox_failed": failed,
    }


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return row.fetchone() is not None


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any window of ``window`` seconds (sliding)."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def token_bucket_refusals(times: list[float], per_second: float, burst: int) -> int:
    """How many sends Synapse's limiter (a leaky bucket of ``burst``) would have refused."""
    level, last, refused = 0.0, None, 0
    for t in times:
        if last is not None:
            level = max(0.0, level - (t - last) * per_second)
        last = t
        if level + 1 > burst:
            refused += 1
        else:
            level += 1
    return refused


def window_refusals(times: list[float], limit: int, per: float) -> int:
    """Sends beyond ``limit`` in a sliding ``per``-second window (Discord's channel bucket)."""
    accepted: list[float] = []
    refused = 0
    for t in times:
        recent = [a for a in accepted[-limit:] if t - a < per]
        if len(recent) >= limit:
            refused += 1
        else:
            accepted.append(t)
    return refused


def chat_rate(events: list[Seen], bot_id: str, since: float) -> dict[str, Any]:
    sends = sorted(
        s.origin_ts for s in events if s.event.get("sender") == bot_id and s.origin_ts >= since
    )
    kinds: dict[str, int] = {}
    for s in events:
        if s.event.get("sender") == bot_id and s.origin_ts >= since:
            rel = s.relation.get("rel_type") or "none"
            key = f"{s.event.get('type')}/{rel}"
            kinds[key] = kinds.get(key, 0) + 1
    span = (sends[-1] - sends[0]) if len(sends) > 1 else 0.0
    return {
        "events": len(sends),
        "by_kind": kinds,
        "span_s": round(span, 1),
        "mean_per_s": round(len(sends) / span, 3) if span else None,
        "max_in_5s": max_in_window(sends, 5.0),
        "max_in_1s": max_in_window(sends, 1.0),
        "max_in_60s": max_in_window(sends, 60.0),
        "refused_by_discord_channel_limit": window_refusals(sends, *DISCORD_CHANNEL),
        "over_discord_global_limit": max(0, max_in_window(sends, 1.0) - DISCORD_GLOBAL_PER_S),
        "refused_by_synapse_default_rc_message": token_bucket_refusals(sends, *SYNAPSE_RC_MESSAGE),
    }


def intake_timeline(live: Desk, since: float) -> dict[str, Any]:
    """From the bot's log: when each mail was stored; the rate per 5 s while it ran, and
    the last one's time after ``since`` (the first APPEND), exact where the polled
    ``all_stored_s`` is only an upper bound (it is read after the real tickets appear)."""
    times = []
    for line in live.bot_log():
        message = str(line.get("message", ""))
        if message.startswith(("new ticket ", "follow-up to ticket ")):
            times.append(datetime.fromisoformat(str(line["time"])).timestamp())
    times.sort()
    if len(times) < 2:
        return {"logged": len(times)}
    buckets: dict[int, int] = {}
    for t in times:
        key = int((t - times[0]) // 5)
        buckets[key] = buckets.get(key, 0) + 1
    rates = [buckets.get(k, 0) / 5 for k in range(max(buckets) + 1)]
    return {
        "logged": len(times),
        "first_to_last_s": round(times[-1] - times[0], 1),
        "last_stored_s": round(times[-1] - since, 1),
        "mean_per_s": round(len(times) / (times[-1] - times[0]), 1),
        "per_5s_rates": rates,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flood",
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n  python -m bench.flood\n  python -m bench.flood --quick\n"
        "  python -m bench.flood --quick --synapse-limits\n"
        "  python -m bench.flood --mails 5000 --seconds 30 --senders 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mails", type=int, default=5000, help="flood mails (default 5000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="spread over (default 60)")
    parser.add_argument("--senders", type=int, default=3, help="flood senders (default 3)")
    parser.add_argument("--real", type=int, default=5, help="real mails among them (default 5)")
    parser.add_argument("--connections", type=int, default=4, help="IMAP connections (4)")
    parser.add_argument(
        "--synapse-limits", action="store_true",
        help="keep Synapse's default rc_message (0.2/s, burst 10) for the bot: a bot account"
        " that is not exempt; the bot's sends then meet real 429s",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="1,000 mails in 15 s, 3 real")
    args = parser.parse_args(argv)
    if args.quick:
        args.mails, args.seconds, args.real = 1000, 15.0, 3
    if min(args.mails, args.senders, args.connections) < 1 or args.real < 0 or args.seconds <= 0:
        parser.error("--mails, --senders and --seconds must be positive, --real 0 or more")
    logging.basicConfig(level=logging.WARNING)
    run = secrets.token_hex(3)
    real_at = {args.mails * (k + 1) // (args.real + 1) for k in range(args.real)}
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.flood", *sys.argv[1:]]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": load_average(),
        "mails": args.mails,
        "seconds": args.seconds,
        "senders": args.senders,
        "real_at": sorted(real_at),
        "connections": args.connections,
        "synapse_rc_message": "default (0.2/s, burst 10)" if args.synapse_limits else "lifted",
    }
    say = lambda text: print(text, flush=True)  # noqa: E731
    with desk(say=say, message_limits=args.synapse_limits) as live:
        result["synapse"] = live.synapse.version
        since = time.time()
        print(
            f"flood: {args.mails:,} mails from {args.senders} senders over {args.seconds:.0f} s,"
            f" {args.real} real mails among them ...",
            flush=True,
        )
        t0 = time.monotonic()
        sent, real_appended, took = deliver(
            live, run, args.mails, args.seconds, args.senders, real_at, args.connections
        )
        result["delivered_s"] = round(took, 1)
        print(f"  delivered in {took:.1f} s; waiting for the real tickets and the intake ...")

        def real_roots(events: list[Seen]) -> dict[int, Seen] | None:
            found: dict[int, Seen] = {}
            for seen in events:
                if seen.event.get("sender") != live.bot_id or seen.relation:
                    continue
                for index in real_at:
                    if f"Real question {run}-{index}" in seen.body:
                        found.setdefault(index, seen)
            return found if len(found) == len(real_at) else None

        roots: dict[int, Seen] = (
            live.observer.wait_until("the real tickets", real_roots, STORE_TIMEOUT)
            if real_at
            else {}
        )
        deadline = time.monotonic() + STORE_TIMEOUT
        while True:
            counts = database_counts(live.database, sent)
            if counts["stored"] == len(sent) and counts["intake_done"] == counts["intake_records"]:
                break
            live.check_alive()
            if time.monotonic() > deadline:
                raise LostMail(
                    f"{counts['missing_count']} of {len(sent)} mails not stored after"
                    f" {STORE_TIMEOUT:.0f} s, e.g. {counts['missing'][:5]}"
                )
            time.sleep(1)
        result["all_stored_s"] = round(time.monotonic() - t0, 1)
        print(f"  all {len(sent):,} stored {result['all_stored_s']} s after the first APPEND")
        # the outbox: wait until nothing is pending and the room has been quiet a while
        while True:
            counts = database_counts(live.database, sent)
            events = live.observer.snapshot()
            last = max((s.received for s in events), default=0.0)
            if counts["outbox_pending"] == 0 and time.time() - last > QUIET_SECONDS:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        result["database"] = counts
        result["real"] = {
            str(index): {
                "origin_s": round(roots[index].origin_ts - real_appended[index], 3),
                "received_s": round(roots[index].received - real_appended[index], 3),
            }
            for index in sorted(roots)
        }
        result["real_summary"] = {
            "origin": summary([roots[i].origin_ts - real_appended[i] for i in roots]),
            "received": summary([roots[i].received - real_appended[i] for i in roots]),
        }
        result["chat"] = chat_rate(events, live.bot_id, since)
        result["intake"] = intake_timeline(live, since)
        stored = live.stored_at()
        for index, root in roots.items():
            number = _NUMBER.search(root.body)
            if number and number.group(1) in stored:
                result["real"][str(index)]["stored_s"] = round(
                    stored[number.group(1)] - real_appended[index], 3
                )
        result["observer_limited_syncs"] = live.observer.limited
    result["load_average_end"] = load_average()
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    counts = result["database"]
    if counts["missing_count"]:
        raise LostMail(f"{counts['missing_count']} mails lost: {counts['missing']}")

    chat = result["chat"]
    print(f"\n== flood ({args.mails:,} mails from {args.senders} senders in {took:.0f} s) ==")
    print(
        f"  stored: {counts['stored']:,}/{len(sent):,} mails (none lost), {counts['tickets']}"
        f" tickets, {counts['flood_tickets']} flood tickets; all stored after"
        f" {result['all_stored_s']} s"
    )
    for index, lag in result["real"].items():
        print(
            f"  real mail after flood mail {int(index):>5}: root {lag['origin_s']:.2f} s"
            f" after APPEND (received {lag['received_s']:.2f} s; stored"
            f" {lag.get('stored_s', float('nan')):.2f} s)"
        )
    intake = result["intake"]
    print(
        f"  intake: {intake.get('logged')} mails logged stored over"
        f" {intake.get('first_to_last_s')} s, {intake.get('mean_per_s')} per second;"
        f" the last {intake.get('last_stored_s')} s after the first APPEND"
    )
    print(
        f"  chat: {chat['events']} bot events {chat['by_kind']} over {chat['span_s']} s;"
        f" max {chat['max_in_5s']} in any 5 s, {chat['max_in_1s']} in any 1 s,"
        f" {chat['max_in_60s']} in any 60 s"
    )
    print(
        f"  against limits: Discord 5/5 s per channel would refuse"
        f" {chat['refused_by_discord_channel_limit']}, 50/s overall exceeded by"
        f" {chat['over_discord_global_limit']}; Synapse default rc_message (0.2/s, burst 10)"
        f" would refuse {chat['refused_by_synapse_default_rc_message']}"
    )
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"flood-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"written {path} ({result['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
