"""The ``ticketbot`` command line: run, demo, check-config, route, backup, restore, erase,
retention."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot import __version__
from bot.cli_oauth2 import add_parser as add_oauth2_parser
from bot.cli_oauth2 import run_oauth2
from bot.config import Config, ConfigError, load_config
from bot.logformat import setup_logging
from bot.ports import LeasesLost

log = logging.getLogger("ticketbot")

DESCRIPTION = """\
ticketbot: a volunteer help desk in chat. Mail to the team's addresses becomes
tickets in queue rooms (Matrix, or this console); volunteers claim, reply, note
and close them with ! commands; replies go back to the requester by email.
"""

EPILOG = """\
examples:
  ticketbot check-config --config bot.toml   validate a configuration, connect nothing
  ticketbot route --explain mail.eml         which queue a mail would go to, rule by rule
  ticketbot demo                             sample mail, the console, replies as .eml files
  ticketbot run --config /etc/ticketbot/bot.toml
  ticketbot backup /var/backups/ticketbot/ --keep 14   a checked copy, while the bot runs
  ticketbot restore FILE --config new.toml             into an empty database, verified
  ticketbot erase --requester maria@example.net        what erasing her data would do
  ticketbot retention                                  which old closed tickets would go
  ticketbot oauth2 set-token --config bot.toml         store the OAuth2 refresh token
  ticketbot export desk.jsonl.gz                       the whole database into one file
  ticketbot import desk.jsonl.gz --config pg.toml      ... into a new, empty database
  ticketbot import-otrs postgresql://otrs@old/otrs     tickets from OTRS/Znuny, numbers kept
"""

BACKUP_DESCRIPTION = """\
Copy the ticket database to a file while the bot keeps running, and check the copy.

SQLite: the online backup API copies the database as it was at one moment (the bot
goes on writing meanwhile) into one self-contained .db file, which must then pass
PRAGMA integrity_check. PostgreSQL: pg_dump --format=custom writes a .dump file (it
needs a pg_dump at least as new as the server), which is then read back in full with
pg_restore. Either way the sha256 stored with every mail and attachment is checked
against its bytes, and the numbers of tickets, articles and attachments are printed.

The copy is written beside PATH under a hidden temporary name and renamed only when
it is complete and checked: a failed backup leaves nothing, and an older backup at
PATH is replaced only by a good new one. Anything at PATH that is not a backup is
never replaced. Backups hold requesters' personal data and are created readable by
their owner only; keep them that way.

Exit status: 0 written and checked; 1 the backup failed (nothing was written);
2 the configuration is invalid.
"""

BACKUP_EPILOG = """\
examples:
  ticketbot backup /var/backups/ticketbot/ --config /etc/ticketbot/bot.toml
      writes /var/backups/ticketbot/ticketbot-20261123-021500.db (.dump for
      PostgreSQL); the time in the name is UTC
  ticketbot backup /var/backups/ticketbot/ --keep 14 --config /etc/ticketbot/bot.toml
      the same, then removes all but the 14 newest ticketbot-*.db/.dump files there
      (nothing else in the folder is touched)
  ticketbot backup before-upgrade.db --config /etc/ticketbot/bot.toml
      a copy in a file of your choosing
  a crontab line for a nightly backup, two weeks kept:
    15 2 * * * ticketbot backup /var/backups/ticketbot/ --keep 14 --config /etc/ticketbot/bot.toml
"""

RESTORE_DESCRIPTION = """\
Restore a backup made by `ticketbot backup` into the database named by [storage] url
in the configuration, then verify it: the schema version and the numbers of tickets,
articles and attachments must equal the backup's, and every stored mail and
attachment must match its sha256. The kind of backup (SQLite file or pg_dump archive)
is recognised from the file itself.

Restore never overwrites anything. A SQLite database file must not exist yet (or be
an empty file); it is written under a temporary name and renamed into place only
once verified. A PostgreSQL database must have no tables, or only the empty schema
the bot creates at its first start (no tickets, no articles), which is replaced; the
restore runs in one transaction. A database holding tickets is refused, with how
many it holds. Stop the bot before restoring and start it once the restore is
verified.

Exit status: 0 restored and verified; 1 refused, or a check failed; 2 the
configuration is invalid.
"""

RESTORE_EPILOG = """\
examples:
  ticketbot restore /var/backups/ticketbot/ticketbot-20261123-021500.db \\
      --config /etc/ticketbot/bot.toml
      SQLite: the file named by storage.url must not exist yet; move the old one aside
  createdb -O ticketbot ticketbot_restored
  ticketbot restore /var/backups/ticketbot/ticketbot-20261123-021500.dump --config restored.toml
      PostgreSQL: into a new, empty database that restored.toml's storage.url names
"""

ERASE_DESCRIPTION = """\
Erase the personal data of one requester (a GDPR erasure request), as an explicit,
audited, confirmed admin action.

Without --confirm this is a dry run: it lists the tickets where ADDRESS is the
requester, their mail on other tickets, and how many articles, raw mails,
attachments, history lines and outbox entries would change, prints a confirmation
code derived from that list, and changes nothing.

With --confirm CODE, and only if CODE still matches what would be done (a new mail
from them, or a typo, makes it stale and it is refused):
  1. a backup of the whole database is written to [backup] path (or --backup-dir)
     and checked; if it fails, nothing is changed;
  2. in one transaction: subjects, bodies, authors and recipients of those articles
     become "[erased]"; their raw mails and attachments are deleted; the tickets'
     requester becomes erased-<hash>@erased.invalid and their subject "[erased]"; the
     address is cut out of history lines; their outbox entries are emptied (waiting
     ones cancelled); sender marks and auto-response records of the address are
     deleted;
  3. a tombstone data.erased is written to the audit log: who (--by, or the OS
     user), when, the counts, and the sha256 of the address, never the address.
The tickets stay, with their numbers, states and history. Messages already posted
in chat rooms are not reached: redact them there. The backup (and older ones) still
hold the data until they are pruned.

Exit status: 0 erased, or the dry run was shown; 1 refused (wrong or stale code,
failed backup) or failed, nothing changed; 2 invalid configuration or address.
"""

ERASE_EPILOG = """\
examples:
  ticketbot erase --requester maria@example.net --config /etc/ticketbot/bot.toml
      the dry run: what would be erased, and the confirmation code (say 3f9a01bc)
  ticketbot erase --requester maria@example.net --confirm 3f9a01bc --by alice \\
      --config /etc/ticketbot/bot.toml
      back up, erase, and record that alice did it
"""

RETENTION_DESCRIPTION = """\
Remove closed tickets whose last change is older than [retention] closed_after (for
example "2y"), after archiving them. Off unless closed_after is set.

Without --confirm this is a dry run: it lists the candidates (closed_successful,
closed_unsuccessful, merged and spam tickets only: never new, open or pending ones),
how many of all tickets they are, and a confirmation code; nothing changes.

Guards: a run that would remove more than [retention] max_share of all tickets
(default 0.2) is refused, saying by how many; a ticket with outbox work still
waiting, or one a kept ticket refers to (merged into it, continuing it), is kept.

With --confirm CODE, and only if CODE still matches: a backup is written to [backup]
path (or --backup-dir) and checked; every candidate is exported with its articles,
raw mails, attachments (base64), tags, history and outbox to one JSON Lines file in
[retention] archive_dir, which is then read back and checked (every row there, every
file matching its sha256); only then are the tickets deleted, in one transaction.
History lines stay, unlinked from the ticket, and a data.retained tombstone names
the archive and its sha256.

Exit status: 0 removed, nothing to remove, or the dry run was shown; 1 refused (share
guard, wrong or stale code, failed backup or archive check), nothing removed; 2
invalid configuration, or retention is off.
"""

RETENTION_EPILOG = """\
examples:
  ticketbot retention --config /etc/ticketbot/bot.toml
      the dry run: candidates, share of all tickets, the confirmation code (say 9c1e77d0)
  ticketbot retention --confirm 9c1e77d0 --config /etc/ticketbot/bot.toml
      back up, archive to [retention] archive_dir, verify the archive, remove
"""


ROUTE_DESCRIPTION = """\
Show where a mail would go, without the database and without connecting anything: the
file is parsed as intake parses mail, its language is detected, the queue of the address
it was sent to is looked up, and the [[rule]] tables of the configuration are applied in
order (the first enabled rule whose conditions all match wins).

With --explain, every rule is listed with whether it fires and, if not, the first
condition that failed. Marks on the sender (spam, vip, ...) live in the database, which
is not read: give them with --sender-mark to try rules that use them.

Exit status: 0 the mail was routed; 2 the file cannot be read or the configuration is
invalid.
"""

ROUTE_EPILOG = """\
examples:
  ticketbot route --explain mail.eml --config /etc/ticketbot/bot.toml
      the parsed sender, recipients, subject and language, then one line per rule:
        rule 1 (German mail to info): fires — language de, a recipient contains ...
        rule 2: no — subject does not match /\\bpress\\b/
      and the resulting queue, priority, tags and spam verdict
  ticketbot route saved.eml --sender-mark spam
      only the result, as if the sender had been marked as spam
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: ./bot.toml)",
    )
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="text for people (default) or JSON lines for a log collector, each with the "
        "ticket number where there is one (overrides [logging] format)",
    )
    common.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=argparse.SUPPRESS,
        help="override [logging] level",
    )
    parser = argparse.ArgumentParser(
        prog="ticketbot",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"ticketbot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "run",
        parents=[common],
        help="run the bot: take in mail, post tickets, answer commands",
        description="Run the bot until stopped (SIGINT/SIGTERM, or end of console input).",
    )
    sub.add_parser(
        "demo",
        parents=[common],
        help="run on the shipped config with sample mail, driven from the terminal",
        description="Run the demo: sample mails become tickets shown here; type ! commands; "
        "end input (Ctrl-D) to stop. Exits 0 at end of input.",
    )
    sub.add_parser(
        "check-config",
        parents=[common],
        help="validate the configuration without connecting anything",
        description="Read and validate the configuration; print a summary, or one line per "
        "problem naming the key. Exit status 0 when valid, 2 when not.",
    )
    migrate = sub.add_parser(
        "migrate",
        parents=[common],
        help="upgrade the database schema in place (the bot also does it at start)",
        description="Bring the database's schema up to this ticketbot's version, step by "
        "step, each in its own transaction; data is kept. --dry-run lists the steps "
        "without changing anything. Take a backup first (ticketbot backup DIR).",
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="list the steps that would run; change nothing"
    )
    route = sub.add_parser(
        "route",
        parents=[common],
        help="show which queue, priority and tags a saved mail (.eml) would get",
        description=ROUTE_DESCRIPTION,
        epilog=ROUTE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    route.add_argument("path", metavar="FILE.eml", help="a saved mail, as raw RFC 5322 bytes")
    route.add_argument(
        "--explain",
        action="store_true",
        help="list every rule with whether it fires and why (or why not)",
    )
    route.add_argument(
        "--sender-mark",
        action="append",
        default=[],
        metavar="MARK",
        help="pretend the sender carries this mark (repeatable); the database is not read",
    )
    backup = sub.add_parser(
        "backup",
        parents=[common],
        help="copy the database to a checked backup file, while the bot runs",
        description=BACKUP_DESCRIPTION,
        epilog=BACKUP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backup.add_argument(
        "path",
        metavar="PATH",
        help="the backup file to write, or a folder to write ticketbot-YYYYmmdd-HHMMSS.db "
        "(.dump for PostgreSQL) into",
    )
    backup.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="with a folder: after a good backup, remove all but the N newest backups there",
    )
    restore = sub.add_parser(
        "restore",
        parents=[common],
        help="restore a backup into an empty database and verify it",
        description=RESTORE_DESCRIPTION,
        epilog=RESTORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    restore.add_argument("path", metavar="PATH", help="a file written by ticketbot backup")
    erase = sub.add_parser(
        "erase",
        parents=[common],
        help="erase one requester's personal data (dry run unless --confirm)",
        description=ERASE_DESCRIPTION,
        epilog=ERASE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    erase.add_argument(
        "--requester", required=True, metavar="ADDRESS", help="the requester's email address"
    )
    _maintenance_arguments(erase)
    retention = sub.add_parser(
        "retention",
        parents=[common],
        help="archive and remove old closed tickets (dry run unless --confirm)",
        description=RETENTION_DESCRIPTION,
        epilog=RETENTION_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _maintenance_arguments(retention)
    _report_parsers(sub, common)
    _import_mail_parser(sub, common)
    from bot.importing.otrs_command import add_parser as add_import_otrs_parser

    add_import_otrs_parser(sub, common)
    from bot.transfer_cli import add_transfer_parsers

    add_transfer_parsers(sub, common)
    add_oauth2_parser(sub, common)
    return parser


def _maintenance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--confirm",
        metavar="CODE",
        help="carry it out: the confirmation code the dry run printed",
    )
    parser.add_argument(
        "--backup-dir",
        metavar="DIR",
        help="where the backup taken first goes (default: [backup] path)",
    )
    parser.add_argument(
        "--by",
        metavar="NAME",
        help="who is doing this, for the audit log (default: the OS user)",
    )


STATS_DESCRIPTION = """\
Write the traffic report of the chat command `stats` to files: tickets received per
queue per day and the backlog at the end of each day (stats-traffic.png, and
stats-traffic.csv with one row per day and queue), and the time to first response
and to close, median and 90th percentile per queue (stats-times.png,
stats-times.csv). The table is printed, then the paths written.

Periods are whole UTC days up to today: the last 7 days unless --week, --month or
--from/--to say otherwise. A queue named brings its sub-queues. The database is read
only, in one snapshot, while the bot runs. How each figure is counted: docs/reports.md.

Exit status: 0 written; 1 the database could not be read; 2 a bad argument or an
invalid configuration.
"""

STATS_EPILOG = """\
examples:
  ticketbot stats --out /tmp/stats --config /etc/ticketbot/bot.toml
      every queue, the last 7 days (today included)
  ticketbot stats info press --month --out /tmp/stats
      queues info (with info::de ...) and press, the last 30 days
  ticketbot stats --month 2026-10 --out reports/2026-10
      the calendar month of October 2026
  ticketbot stats permissions --from 2026-09-01 --to 2026-11-30 --out /tmp/q4
      a quarter, days inclusive (at most 366 days)
"""

BADGE_DESCRIPTION = """\
Write a backlog badge per queue: QUEUE.svg (a shields.io-style badge, e.g.
"info | 12 waiting · oldest 3d") and QUEUE.json (the same figures, also usable as
a shields.io endpoint badge). info::de is written as info--de.svg.

Waiting: new or open tickets (not pending, not closed) with no reply since the
requester last wrote. The colour follows the oldest one's wait: green under a day,
yellow from 1 day, red from 3 days. Badges hold counts and ages only, no personal
data, so they can go on a public status page: run this from cron and copy the files.

Exit status: 0 written; 1 the database could not be read; 2 a bad argument or an
invalid configuration.
"""

BADGE_EPILOG = """\
examples:
  ticketbot badge --out /var/www/status/badges --config /etc/ticketbot/bot.toml
      one .svg and one .json per queue of the configuration
  ticketbot badge info permissions --out /tmp/badges
      queues info and permissions, each with its sub-queues
  a crontab line refreshing them every 10 minutes:
    */10 * * * * ticketbot badge --out /var/www/status/badges --config /etc/ticketbot/bot.toml
"""


def _report_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``stats`` and ``badge`` subcommands: the chat reports, written to files."""
    stats = sub.add_parser(
        "stats",
        parents=[common],
        help="write the traffic charts and CSV of a period to a folder",
        description=STATS_DESCRIPTION,
        epilog=STATS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument(
        "queues", nargs="*", metavar="QUEUE", help="queues to report on (default: all)"
    )
    stats.add_argument("--week", action="store_true", help="the last 7 days (the default)")
    stats.add_argument(
        "--month",
        nargs="?",
        const="",
        metavar="YYYY-MM",
        help="the last 30 days; with YYYY-MM, that calendar month",
    )
    stats.add_argument("--from", dest="from_day", metavar="YYYY-MM-DD", help="first day")
    stats.add_argument(
        "--to", dest="to_day", metavar="YYYY-MM-DD", help="last day, included (default: today)"
    )
    stats.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    badge = sub.add_parser(
        "badge",
        parents=[common],
        help="write a backlog badge (SVG and JSON) per queue to a folder",
        description=BADGE_DESCRIPTION,
        epilog=BADGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    badge.add_argument(
        "queues", nargs="*", metavar="QUEUE", help="queues (default: every configured queue)"
    )
    badge.add_argument("--out", required=True, metavar="DIR", help="folder to write into")


def _report_now() -> datetime:
    """The moment reports are made at (tests put the clock where their data is)."""
    return datetime.now(UTC)


def _report_folder(command: str, out: str) -> Path | None:
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"ticketbot: {command}: --out {out}: {exc.strerror or exc}", file=sys.stderr)
        return None
    return folder


def _write_report_files(command: str, folder: Path, files: Sequence[Any]) -> bool:
    for item in files:
        path = folder / item.name
        try:
            path.write_bytes(item.data)
        except OSError as exc:
            print(f"ticketbot: {command}: {path}: {exc.strerror or exc}", file=sys.stderr)
            return False
        print(f"wrote {path}")
    return True


def _stats(config: Config, args: argparse.Namespace) -> int:
    from bot.reports import stats_report
    from bot.reports.period import parse_stats_words
    from storage.maintenance import MaintenanceError, maintenance_database, read_transaction
    from storage.reports import ReportQueries

    # the words of the chat command, so both read them alike: argparse takes the word
    # after --month as its value, and one that is no YYYY-MM is then read as a queue
    words = list(args.queues)
    words += ["--week"] if args.week else []
    words += ["--month", *([args.month] if args.month else [])] if args.month is not None else []
    words += ["--from", args.from_day] if args.from_day is not None else []
    words += ["--to", args.to_day] if args.to_day is not None else []
    try:
        request = parse_stats_words(words, _report_now(), [queue.name for queue in config.queues])
    except ValueError as exc:
        print(f"ticketbot: stats: {exc}", file=sys.stderr)
        return 2
    folder = _report_folder("stats", args.out)
    if folder is None:
        return 2
    try:
        with maintenance_database(config.storage.url) as db, read_transaction(db):
            data = ReportQueries().report_traffic(request.queues, request.start, request.end)
    except MaintenanceError as exc:
        print(f"ticketbot: stats: {exc}", file=sys.stderr)
        return 1
    report = stats_report(data, request.label)
    print(report.text)
    return 0 if _write_report_files("stats", folder, report.files) else 1


def _badge(config: Config, args: argparse.Namespace) -> int:
    from bot.reports import badge_files
    from bot.reports.badge import message
    from storage.maintenance import MaintenanceError, maintenance_database, read_transaction
    from storage.reports import ReportQueries

    known = {queue.name.lower(): queue.name for queue in config.queues}
    unknown = [name for name in args.queues if name.lower() not in known]
    if unknown:
        print(
            f"ticketbot: badge: unknown queue '{unknown[0]}'; known: {', '.join(known.values())}",
            file=sys.stderr,
        )
        return 2
    queues = [known[name.lower()] for name in args.queues] or list(known.values())
    folder = _report_folder("badge", args.out)
    if folder is None:
        return 2
    try:
        with maintenance_database(config.storage.url) as db, read_transaction(db):
            badges = ReportQueries().report_backlog(queues, _report_now())
    except MaintenanceError as exc:
        print(f"ticketbot: badge: {exc}", file=sys.stderr)
        return 1
    if not args.queues:  # exactly the configured queues, not names the database still has
        badges = [badge for badge in badges if badge.queue in known.values()]
    for badge in badges:
        print(f"{badge.queue}: {message(badge)}")
    return 0 if _write_report_files("badge", folder, badge_files(badges)) else 1


def _migrate(config: Config, dry_run: bool) -> int:
    """``ticketbot migrate``: the schema steps a database lacks, listed and applied."""
    from peewee import DatabaseError

    from storage.database import open_database
    from storage.migrations import LATEST, STEPS, SchemaTooNew, current_version, migrate

    db = open_database(config.storage.url)
    try:
        db.connect()
        version = current_version(db)
        print(f"database schema: step {version}; this ticketbot: step {LATEST}")
        if version > LATEST:
            print(
                "ticketbot: migrate: the database is newer than this ticketbot; "
                "install the newer release",
                file=sys.stderr,
            )
            return 1
        pending = [step for step in STEPS if version < step.VERSION]
        if not pending:
            print("up to date: nothing to do")
            return 0
        for step in pending:
            summary = (step.__doc__ or "").strip().splitlines()[0]
            print(f"  step {step.VERSION}: {summary}")
        if dry_run:
            print("dry run: nothing changed")
            return 0
        applied = migrate(db)
        print(f"applied {applied} step(s); the database is at step {current_version(db)}")
        return 0
    except (SchemaTooNew, DatabaseError) as exc:
        print(f"ticketbot: migrate: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _summary(config: Config) -> str:
    mail = config.mail
    intake = [
        name for name, part in (("imap", mail.imap), ("maildir", mail.maildir)) if part is not None
    ]
    lines = [
        f"{config.path}: OK",
        f"  storage: {config.storage.url.split('@')[-1]}",
        f"  intake: {', '.join(intake)}; replies: {'smtp' if mail.smtp else 'files'}",
    ]
    for queue in config.queues:
        bound = ", ".join(f"{k}={v}" for k, v in queue.bindings(config).items())
        default = " (default)" if queue.default else ""
        lines.append(
            f"  queue {queue.name}{default}: {', '.join(queue.addresses)} -> {bound}; "
            f"{len(queue.volunteers)} volunteer(s)"
        )
    lines.append(f"  admins: {', '.join(config.admins) or 'none (add admins = [...])'}")
    if config.reports.weekly_at is not None:
        day, at = config.reports.weekly_at
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        lines.append(f"  weekly report: {days[day]} {at:%H:%M} UTC")
    if config.http is not None:
        lines.append(f"  http: {config.http.host}:{config.http.port} (/healthz, /badge/QUEUE.svg)")
    lines.append("  (admins' changes by command are kept in the database and win over this file)")
    return "\n".join(lines)


def _progress(message: str) -> None:
    """Progress goes to standard error, so standard output holds only the result."""
    print(f"  {message}", file=sys.stderr, flush=True)


def _backup(config: Config, path: str, keep: int | None) -> int:
    from storage.backup import BackupError, backup, backup_name, prune_backups, url_kind

    target = Path(path)
    folder = target if target.is_dir() else None
    if folder is None and path.endswith(("/", "\\")):
        # meant as a folder: never write a file named like the folder that is missing
        print(f"ticketbot: backup failed: {path}: no such folder", file=sys.stderr)
        return 1
    if keep is not None and (folder is None or keep < 1):
        print("ticketbot: --keep N needs PATH to be a folder and N >= 1", file=sys.stderr)
        return 2
    try:
        if folder is not None:
            target = folder / backup_name(url_kind(config.storage.url))
        report = backup(config.storage.url, target, progress=_progress)
    except BackupError as exc:
        print(f"ticketbot: backup failed: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    if folder is not None and keep is not None:
        for removed in prune_backups(folder, keep):
            print(f"  removed old backup {removed}")
    return 0


def _restore(config: Config, path: str) -> int:
    from storage.backup import BackupError, TargetNotEmpty, restore

    try:
        report = restore(config.storage.url, Path(path), progress=_progress)
    except TargetNotEmpty as exc:
        print(f"ticketbot: restore refused: {exc}", file=sys.stderr)
        return 1
    except BackupError as exc:
        print(f"ticketbot: restore failed: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _erase(config: Config, args: argparse.Namespace) -> int:
    from storage.erase import erase, plan_erasure
    from storage.maintenance import InvalidInput, MaintenanceError

    backup_dir = Path(args.backup_dir) if args.backup_dir else config.backup.path
    try:
        if args.confirm is None:
            plan = plan_erasure(config.storage.url, args.requester)
            print(plan.describe(args.requester.strip()))
            if plan.empty:
                print("nothing of this address is stored: nothing to erase")
                return 0
            print(f"confirmation code: {plan.code}")
            print("nothing was changed. To erase (a backup is taken first), run:")
            print(f"  ticketbot erase --requester {args.requester.strip()} --confirm {plan.code}")
            return 0
        report = erase(
            config.storage.url,
            args.requester,
            args.confirm,
            backup_dir,
            by=args.by,
            progress=_progress,
        )
    except InvalidInput as exc:
        print(f"ticketbot: erase: {exc}", file=sys.stderr)
        return 2
    except MaintenanceError as exc:
        print(f"ticketbot: erase refused: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _retention(config: Config, args: argparse.Namespace) -> int:
    from storage.maintenance import MaintenanceError
    from storage.retention import apply_retention, plan_retention

    settings = config.retention
    if settings.closed_after is None:
        print(
            "ticketbot: retention is off: set [retention] closed_after (for example "
            '"2y") to remove closed tickets after that long',
            file=sys.stderr,
        )
        return 2
    backup_dir = Path(args.backup_dir) if args.backup_dir else config.backup.path
    try:
        if args.confirm is None:
            plan = plan_retention(config.storage.url, settings.closed_after, settings.max_share)
            print(plan.describe(settings.archive_dir))
            if not plan.tickets:
                print("nothing to remove")
                return 0
            refusal = plan.refusal()
            if refusal:
                print(f"ticketbot: retention {refusal}", file=sys.stderr)
                return 1
            print(f"confirmation code: {plan.code}")
            print("nothing was changed. To archive and remove them (a backup is taken first):")
            print(f"  ticketbot retention --confirm {plan.code}")
            return 0
        report = apply_retention(
            config.storage.url,
            settings.closed_after,
            settings.max_share,
            args.confirm,
            settings.archive_dir,
            backup_dir,
            by=args.by,
            progress=_progress,
        )
    except MaintenanceError as exc:
        print(f"ticketbot: retention refused: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _route(config: Config, path: str, explain: bool, sender_marks: Sequence[str]) -> int:
    from adapters.email.parse import parser_for
    from adapters.language import Py3LangidDetector
    from bot.domain import DEFAULT_PRIORITY
    from bot.routing import route_queue
    from bot.rules import Decision, RuleInput, decide
    from bot.rules import explain as explain_rules

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        print(f"ticketbot: route: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    email = parser_for(config.mail)(raw)
    detector = Py3LangidDetector()
    # as intake does: the body's language; none for automatic mail
    language = "" if email.auto_kind else detector.detect(email.text)
    marks = frozenset(mark.strip().lower() for mark in sender_marks if mark.strip())
    item = RuleInput(email=email, language=language, sender_marks=marks)

    by_address = route_queue(email, config.queues)
    via = next((r.email for r in email.recipients if r.email.lower() in by_address.addresses), None)
    loaded = f" (model loaded in {detector.load_seconds:.2f} s)" if detector.load_seconds else ""
    lines = [
        f"{path}:",
        f"  from:     {email.sender or '(none)'}",
        f"  to:       {', '.join(map(str, email.to)) or '(none)'}",
    ]
    if email.cc:
        lines.append(f"  cc:       {', '.join(map(str, email.cc))}")
    if email.delivered_to:
        lines.append(f"  delivered-to: {', '.join(map(str, email.delivered_to))}")
    lines += [
        f"  subject:  {email.subject or '(none)'}",
        f"  language: {language or 'unknown'}{loaded}",
        f"  sender marks: {', '.join(sorted(marks)) or 'none given (the database is not read)'}",
        f"  queue by address: {by_address.name} "
        + (f"(sent to {via})" if via else "(default: sent to no queue address)"),
    ]
    if email.auto_kind:
        lines.append(f"  automatic mail: {email.auto_kind}")
    if explain:
        lines.append("rules:" if config.rules else "rules: none configured")
        if config.rules:
            lines += [f"  {line}" for line in explain_rules(config.rules, item)]
    decision = decide(config.rules, item) or Decision(None, "no rule matched")
    priority = decision.priority
    lines += [
        "result:",
        f"  decided by: {decision.reason}",
        f"  queue:    {decision.queue or by_address.name}",
        f"  priority: {priority if priority is not None else f'{DEFAULT_PRIORITY} (default)'}",
        f"  tags:     {', '.join(decision.tags) or '(none)'}",
        f"  spam:     {'yes' if decision.spam else 'no'}",
    ]
    print("\n".join(lines))
    return 0


IMPORT_MAIL_DESCRIPTION = """\
Import past correspondence, an mbox file or a Maildir folder, as closed tickets of
QUEUE, so the desk's history moves in with it.

Mails are threaded as intake threads them (Message-ID, In-Reply-To, References, and
[Ticket#N] tags in subjects); each thread becomes one ticket, closed successful, with
its original dates: created at its earliest mail's Date (else the mbox From_ line's
time, else the file's modification time), numbered for that day. The requester is the
first mail's sender; mail from the desk's own addresses is the team's side, stored as
replies already sent. Raw mails and attachments are kept as intake keeps them. Nothing
is posted to chat and nothing is mailed. Each ticket's history says ticket.imported.

A Message-ID already stored is skipped (a mail without one gets an id from a hash of its
bytes), so running it twice adds nothing; a thread that continues a stored ticket is
added to it. Mails are written a few hundred per transaction, so the bot may run
meanwhile. Progress goes to standard error; the summary, with a check of the database's
counts before and after, to standard output.

Exit status: 0 imported (unreadable mails are listed, not fatal); 1 a database error,
or the counts do not match; 2 a usage error (PATH missing or neither mbox nor Maildir,
unknown queue, invalid configuration).
"""

IMPORT_MAIL_EPILOG = """\
examples:
  ticketbot import-mail /srv/old-desk/info.mbox --queue info --dry-run
      what would be imported: mails, duplicates, unreadable ones, tickets; nothing written
  ticketbot import-mail /home/desk/Maildir/.Archive --queue press --config bot.toml
"""


def _import_mail_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "import-mail",
        parents=[common],
        help="import an mbox or Maildir of past mail as closed tickets",
        description=IMPORT_MAIL_DESCRIPTION,
        epilog=IMPORT_MAIL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH", help="an mbox file or a Maildir folder")
    parser.add_argument("--queue", required=True, metavar="QUEUE", help="the queue to file into")
    parser.add_argument("--dry-run", action="store_true", help="read and count only; write nothing")


def _import_mail(config: Config, args: argparse.Namespace) -> int:
    """``ticketbot import-mail``: read, thread, then write batch by batch in transactions."""
    import time

    from adapters.email.parse import parser_for
    from bot.importing.mail import (
        ImportTally,
        MailImporter,
        SourceMail,
        Unreadable,
        batches,
        group_threads,
        light,
        summary_lines,
        unreadable_reason,
    )
    from bot.importing.progress import ProgressBar
    from bot.importing.sources import Source, SourceError, source_kind

    names = [queue.name for queue in config.queues]
    if args.queue not in names:
        print(
            f"ticketbot: import-mail: unknown queue '{args.queue}'; known: {', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    path = Path(args.path)
    try:
        source = Source(path, source_kind(path))
    except SourceError as exc:
        print(f"ticketbot: import-mail: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ticketbot: import-mail: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    parse = parser_for(config.mail)
    tally = ImportTally()
    mails: list[SourceMail] = []
    print(
        f"import-mail: {source.label} into queue {args.queue}"
        + (" (dry run: nothing is written)" if args.dry_run else ""),
        file=sys.stderr,
    )
    bar = ProgressBar(sys.stderr, "reading", len(source))
    for item in source:
        tally.read += 1
        if item.data is None:
            tally.unreadable.append(Unreadable(item.origin, item.error))
        else:
            email = parse(item.data)
            why = unreadable_reason(email)
            if why is not None:
                tally.unreadable.append(Unreadable(item.origin, why))
            else:
                mails.append(SourceMail(item.key, item.origin, light(email), item.fallback_date))
        bar.advance()
    bar.finish()
    threads, repeats = group_threads(mails)
    tally.duplicates += len(repeats)
    importer = MailImporter(
        queue=args.queue,
        own_addresses={*config.own_addresses, config.queue(args.queue).reply_from} - {""},
        system_id=config.tickets.system_id,
        source=source.label,
        now=datetime.now(UTC),
        raw_limit=config.mail.max_total_attachment_bytes + 1024 * 1024,
        dry_run=args.dry_run,
    )
    planned = batches(threads)

    def full(planned_mails: Sequence[SourceMail]) -> dict[int, Any]:
        """Each mail of a batch read and parsed again, whole; it must still be the same."""
        emails = {}
        for mail in planned_mails:
            item = source.read(mail.key)
            email = parse(item.data) if item.data is not None else None
            if email is None or email.message_id != mail.email.message_id:
                raise _ImportFailed(
                    f"{mail.origin} changed while importing ({item.error or 'other content'}); "
                    f"{tally.imported} mail(s) imported before it stay. Run it again: what is "
                    "stored is skipped"
                )
            emails[mail.key] = email
        return emails

    try:
        if args.dry_run:
            counts = _import_dry_run(config, importer, threads, planned, tally)
        else:
            counts = asyncio.run(_import_write(config, importer, threads, planned, tally, full))
    except _ImportFailed as exc:
        print(f"ticketbot: import-mail: {exc}", file=sys.stderr)
        return 1
    finally:
        source.close()
    lines, ok = summary_lines(
        tally, dry_run=args.dry_run, counts=counts, seconds=time.monotonic() - started
    )
    print("\n".join(lines))
    return 0 if ok else 1


class _ImportFailed(Exception):
    pass


def _import_dry_run(
    config: Config, importer: Any, threads: Any, planned: Any, tally: Any
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    from bot.importing.mail import plan_without_database
    from storage.importing import database_counts
    from storage.maintenance import MaintenanceError, maintenance_database, read_transaction
    from storage.store import PeeweeRepository

    url = config.storage.url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        tally.add(plan_without_database(threads))  # no database yet: everything is new
        return None
    try:
        with maintenance_database(url) as db, read_transaction(db):
            repo = PeeweeRepository()
            before = database_counts()
            for parts in planned:
                result = importer.write_batch(repo, threads, parts, {})
                importer.committed(result)
                tally.add(result)
            return before, database_counts()
    except MaintenanceError as exc:
        raise _ImportFailed(str(exc)) from None


async def _import_write(
    config: Config,
    importer: Any,
    threads: Any,
    planned: Any,
    tally: Any,
    full: Any,
) -> tuple[tuple[int, int], tuple[int, int]]:
    from bot.importing.progress import ProgressBar
    from bot.ports import StoreUnavailable
    from storage.importing import database_counts
    from storage.store import SqlStore

    try:
        store = await SqlStore.open(config.storage.url)
    except StoreUnavailable as exc:
        raise _ImportFailed(f"cannot open the database: {exc}") from None
    try:
        before = await store.run(lambda repo: database_counts())
        bar = ProgressBar(sys.stderr, "importing", sum(len(p.mails) for b in planned for p in b))
        for number, parts in enumerate(planned, 1):
            emails = full([mail for part in parts for mail in part.mails])

            def write(repo: Any, parts: Any = parts, emails: Any = emails) -> Any:
                return importer.write_batch(repo, threads, parts, emails)

            try:
                result = await store.run(write)
            except Exception as exc:
                raise _ImportFailed(
                    f"batch {number} of {len(planned)} failed and was rolled back "
                    f"({type(exc).__name__}: {exc}); {tally.imported} mail(s) imported before "
                    "it stay. Run it again: what is stored is skipped"
                ) from exc
            importer.committed(result)
            tally.add(result)
            bar.advance(sum(len(part.mails) for part in parts))
        bar.finish()
        after = await store.run(lambda repo: database_counts())
    finally:
        await store.close()
    return before, after


def _run(coro: Coroutine[Any, Any, None]) -> None:
    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        with contextlib.suppress(asyncio.CancelledError):
            await coro

    asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    path = getattr(args, "config", "bot.toml")
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"ticketbot: config error: {exc}", file=sys.stderr)
        return 2
    # the demo talks to a person in this terminal: only warnings unless asked for more
    default_level = "WARNING" if command in ("demo", "route") else config.log_level
    setup_logging(
        getattr(args, "log_level", None) or default_level,
        getattr(args, "log_format", None) or config.log_format,
    )

    if command == "check-config":
        print(_summary(config))
        return 0
    if command == "route":
        return _route(config, args.path, args.explain, args.sender_mark)
    if command == "migrate":
        return _migrate(config, args.dry_run)
    if command == "backup":
        return _backup(config, args.path, args.keep)
    if command == "restore":
        return _restore(config, args.path)
    if command == "erase":
        return _erase(config, args)
    if command == "retention":
        return _retention(config, args)
    if command == "stats":
        return _stats(config, args)
    if command == "badge":
        return _badge(config, args)
    if command == "import-mail":
        return _import_mail(config, args)
    if command == "import-otrs":
        from bot.importing.otrs_command import run as run_import_otrs

        return run_import_otrs(config, args)
    if command in ("export", "import"):
        from bot.transfer_cli import run_export, run_import

        return (run_export if command == "export" else run_import)(config, args)
    if command == "oauth2":
        return run_oauth2(config, args)
    try:
        if command == "demo":
            from bot.demo import run_demo

            _run(run_demo(config))
        else:
            from bot.app import build_app

            async def run() -> None:
                app = await build_app(config)
                await app.run()

            _run(run())
    except ConfigError as exc:
        print(f"ticketbot: config error: {exc}", file=sys.stderr)
        return 2
    except LeasesLost as exc:
        # another instance may hold this one's roles by now; the supervisor restarts it
        # as a standby (exit status 75: EX_TEMPFAIL)
        print(f"ticketbot: stopping: {exc}", file=sys.stderr)
        return 75
    return 0


if __name__ == "__main__":
    sys.exit(main())
