"""``ticketbot import-otrs DSN``: its command line and its run.

Composes the OTRS reader (:mod:`storage.otrs_import`), the mapping
(:mod:`bot.importing.otrs`) and our store: read the OTRS ticket list in one snapshot,
check the queue mapping before anything is written, then load and write a batch of
tickets per transaction, with a progress bar on standard error and a summary with count
checks on standard output. Exit status as ``import-mail``: 0 done, 1 a database error
or a failed check, 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config import Config
from bot.importing.otrs import (
    BATCH_TICKETS,
    OtrsBatchResult,
    OtrsImporter,
    OtrsMappingError,
    OtrsTally,
    OtrsTicket,
    parse_queue_map,
    resolve_queues,
    summary_lines,
)
from bot.importing.progress import ProgressBar

DESCRIPTION = """\
Import queues, tickets, articles and attachments from an OTRS or Znuny (6.x) database
on PostgreSQL, keeping the old ticket numbers: a requester's follow-up to an old ticket
([Ticket#2019061210000012], or the hook set as [tickets] otrs_ticket_hook) lands on the
imported ticket, and reopens it as for any closed ticket.

Each OTRS queue goes to the queue of the same name here, or as --queue-map says; a queue
with tickets that has neither stops the run before anything is written (or give
--default-queue). States: new, open and pending stay so; closed stays closed (successful
or unsuccessful), removed becomes closed unsuccessful, merged stays merged. The
customer's articles become inbound mail; agents' e-mails replies already sent; system
e-mails auto-replies already sent; internal, hidden, phone and chat articles notes.
Nothing is posted to chat and nothing is mailed. Attachments are kept within the [mail]
size limits. Each ticket's history says ticket.imported, and a closed one's close time
is recorded (ticket.close) so reports count it.

Running it again adds nothing; after OTRS took more tickets (or articles), a new run adds
only those. Tickets are written 50 per transaction, so the bot may run meanwhile.

Exit status: 0 imported; 1 a database error, or a count check failed (a number already
used by a ticket that did not come from OTRS, counts that differ); 2 a usage error
(unknown queues, a bad --queue-map, invalid configuration).
"""

EPILOG = """\
examples:
  ticketbot import-otrs postgresql://otrs:secret@db.example.org/otrs --dry-run
      what would be imported; nothing written
  ticketbot import-otrs postgresql://otrs@localhost/otrs --config bot.toml \\
      --queue-map Raw=info 'Support::Press=press' --default-queue info
  ticketbot import-otrs 'host=/run/postgresql dbname=otrs user=otrs' --otrs-timezone Europe/Berlin
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "import-otrs",
        parents=[common],
        help="import tickets from an OTRS/Znuny database, keeping their numbers",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dsn", metavar="DSN", help="the OTRS database: postgresql://user:password@host/otrs"
    )
    parser.add_argument(
        "--queue-map",
        metavar="OTRS=OURS",
        nargs="+",
        action="extend",
        default=[],
        help="file OTRS queue OTRS into our queue OURS (repeatable)",
    )
    parser.add_argument(
        "--default-queue",
        metavar="QUEUE",
        default=None,
        help="our queue for OTRS queues neither mapped nor named as one of ours",
    )
    parser.add_argument(
        "--otrs-timezone",
        metavar="ZONE",
        default="UTC",
        help="OTRS's OTRSTimeZone, the zone of its timestamps (default: UTC)",
    )
    parser.add_argument("--dry-run", action="store_true", help="read and count only; write nothing")


class _Failed(Exception):
    """A database error: reported, exit status 1."""


def run(config: Config, args: argparse.Namespace) -> int:
    """``ticketbot import-otrs``."""
    from storage.otrs_import import OtrsReader, OtrsReadError

    say = "ticketbot: import-otrs:"
    try:
        queue_map = parse_queue_map(args.queue_map)
        ZoneInfo(args.otrs_timezone)
    except ValueError as exc:
        print(f"{say} {exc}", file=sys.stderr)
        return 2
    except ZoneInfoNotFoundError:
        print(f"{say} --otrs-timezone {args.otrs_timezone!r}: unknown time zone", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        reader = OtrsReader(args.dsn, args.otrs_timezone)
    except OtrsReadError as exc:
        print(f"{say} {exc}", file=sys.stderr)
        return 1
    try:
        try:
            in_use = reader.queues_in_use()
            tickets = reader.tickets()
            articles = reader.article_count()
        except OtrsReadError as exc:
            print(f"{say} {exc}", file=sys.stderr)
            return 1
        unmapped = sorted(set(queue_map) - set(in_use))
        if unmapped:
            print(
                f"{say} --queue-map names OTRS queue(s) without tickets: {', '.join(unmapped)}; "
                f"OTRS queues with tickets: {', '.join(in_use) or '(none)'}",
                file=sys.stderr,
            )
            return 2
        try:
            queues = resolve_queues(
                in_use, queue_map, [q.name for q in config.queues], args.default_queue
            )
        except OtrsMappingError as exc:
            print(f"{say} {exc}", file=sys.stderr)
            return 2
        print(
            f"import-otrs: {len(tickets)} tickets, {articles} articles from "
            f"{_safe(args.dsn)}" + (" (dry run: nothing is written)" if args.dry_run else ""),
            file=sys.stderr,
        )
        for otrs_name, ours in queues.items():
            print(f"  queue {otrs_name} -> {ours} ({in_use[otrs_name]} tickets)", file=sys.stderr)
        tally = OtrsTally(otrs_tickets=len(tickets), otrs_articles=articles)
        importer = OtrsImporter(
            queues=queues,
            source=f"OTRS database {_safe(args.dsn)}",
            now=datetime.now(UTC),
            max_attachment=config.mail.max_attachment_bytes,
            max_total=config.mail.max_total_attachment_bytes,
            raw_limit=config.mail.max_total_attachment_bytes + 1024 * 1024,
            dry_run=args.dry_run,
        )
        ids = [tid for tid, _ in tickets]
        batches = [ids[i : i + BATCH_TICKETS] for i in range(0, len(ids), BATCH_TICKETS)]

        def load(batch: list[int]) -> list[OtrsTicket]:
            loaded = reader.load(batch)
            tally.read_tickets += len(loaded)
            tally.read_articles += sum(len(t.articles) for t in loaded)
            return loaded

        numbers = [tn for _, tn in tickets]
        try:
            if args.dry_run:
                counts, present = _dry_run(config, importer, batches, load, tally), None
            else:
                counts, present = asyncio.run(
                    _write(config, importer, batches, load, tally, numbers)
                )
        except OtrsReadError as exc:
            print(f"{say} {exc}", file=sys.stderr)
            return 1
        except _Failed as exc:
            print(f"{say} {exc}", file=sys.stderr)
            return 1
    finally:
        reader.close()
    lines, ok = summary_lines(
        tally,
        dry_run=args.dry_run,
        counts=counts,
        present_after=present,
        seconds=time.monotonic() - started,
    )
    print("\n".join(lines))
    return 0 if ok else 1


def _safe(dsn: str) -> str:
    """The DSN without its password, for messages and the history."""
    from urllib.parse import urlsplit

    if "://" not in dsn:
        return " ".join(p for p in dsn.split() if not p.startswith("password="))
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _dry_run(
    config: Config, importer: OtrsImporter, batches: list[list[int]], load: Any, tally: OtrsTally
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Counts what a run would do, in one read-only snapshot of our database; a database
    that does not exist yet is neither made nor migrated (everything counts as new)."""
    from storage.maintenance import MaintenanceError, maintenance_database, read_transaction
    from storage.otrs_import import database_counts, stored_tickets
    from storage.store import PeeweeRepository

    url = config.storage.url
    bar = ProgressBar(sys.stderr, "counting", sum(len(b) for b in batches), unit="tickets")
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        for batch in batches:
            for ticket in load(batch):
                tally.tickets_made += 1
                tally.articles_made += len(ticket.articles)
                tally.attachments_made += sum(len(a.attachments) for a in ticket.articles)
            bar.advance(len(batch))
        bar.finish()
        return None
    try:
        with maintenance_database(url) as db, read_transaction(db):
            repo = PeeweeRepository()
            before = database_counts()
            for batch in batches:
                tickets = load(batch)
                known = stored_tickets(t.tn for t in tickets)
                tally.add(importer.write_batch(repo, tickets, known))
                bar.advance(len(batch))
            bar.finish()
            return before, database_counts()
    except MaintenanceError as exc:
        raise _Failed(str(exc)) from None


async def _write(
    config: Config,
    importer: OtrsImporter,
    batches: list[list[int]],
    load: Any,
    tally: OtrsTally,
    numbers: list[str],
) -> tuple[tuple[tuple[int, int], tuple[int, int]] | None, int | None]:
    from bot.ports import StoreUnavailable
    from storage.otrs_import import (
        database_counts,
        numbers_stored,
        raise_ticket_counters,
        stored_tickets,
    )
    from storage.store import SqlStore

    try:
        store = await SqlStore.open(config.storage.url)  # migrates, as the bot does at start
    except StoreUnavailable as exc:
        raise _Failed(f"cannot open the database: {exc}") from None
    try:
        before = await store.run(lambda repo: database_counts())
        bar = ProgressBar(sys.stderr, "importing", sum(len(b) for b in batches), unit="tickets")
        for number, batch in enumerate(batches, 1):
            tickets = load(batch)

            def write(repo: Any, tickets: list[OtrsTicket] = tickets) -> OtrsBatchResult:
                result = importer.write_batch(repo, tickets, stored_tickets(t.tn for t in tickets))
                # intake must never hand out an imported number again
                raise_ticket_counters(result.numbers, config.tickets.system_id)
                return result

            try:
                result = await store.run(write)
            except Exception as exc:
                raise _Failed(
                    f"batch {number} of {len(batches)} failed and was rolled back "
                    f"({type(exc).__name__}: {exc}); {tally.tickets_made} ticket(s) imported "
                    "before it stay. Run it again: what is stored is skipped"
                ) from exc
            tally.add(result)
            bar.advance(len(batch))
        bar.finish()
        if tally.merges:
            tally.merges_linked = await store.run(
                lambda repo: importer.link_merged(repo, tally.merges)
            )
        after = await store.run(lambda repo: database_counts())
        present = await store.run(lambda repo: numbers_stored(numbers))
    finally:
        await store.close()
    return (before, after), present
