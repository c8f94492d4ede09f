"""The ``ticketbot`` command line: run, demo, check-config, route, backup, restore."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from bot import __version__
from bot.config import Config, ConfigError, load_config

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
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("apscheduler", "nio", "peewee", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


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
    _setup_logging(getattr(args, "log_level", None) or default_level)

    if command == "check-config":
        print(_summary(config))
        return 0
    if command == "route":
        return _route(config, args.path, args.explain, args.sender_mark)
    if command == "backup":
        return _backup(config, args.path, args.keep)
    if command == "restore":
        return _restore(config, args.path)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
