"""``ticketbot export`` and ``ticketbot import``: the whole database to one portable file
and back, to move a desk from SQLite to PostgreSQL (or to a new server).

The parsers and the command functions live here so ``bot/cli.py`` only wires them in;
the table-by-table work is in :mod:`storage.transfer`. Progress goes to standard error,
the table of counts to standard output, so a script can keep the one and log the other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from bot import __version__
from bot.config import Config

EXPORT_DESCRIPTION = """\
Write the whole ticket database named by [storage] url (SQLite or PostgreSQL) into one
portable file: every table, every row, ids, dates (UTC) and bytes exactly as stored.
The file is gzip'd JSON lines: a header with the format, the schema version, the kind
of database it came from, when, and each table's number of rows; then the rows.

The database is read in one snapshot, so the bot may keep running (what it writes
after the export started is not in the file). The file is written under a hidden
temporary name and appears under FILE only when complete; an existing FILE is never
replaced. It holds requesters' personal data and is created readable by its owner only.

Exit status: 0 written; 1 the export failed (no FILE was written); 2 refused (FILE
exists, the database is missing or at another schema version, invalid configuration).
"""

EXPORT_EPILOG = """\
examples:
  ticketbot export desk.jsonl.gz --config /etc/ticketbot/bot.toml
      the database of bot.toml into desk.jsonl.gz, with a table of counts
  ticketbot migrate --config old.toml && ticketbot export desk.jsonl.gz --config old.toml
      an older desk: upgrade its schema first (the file must be at this version's)
  moving from SQLite to PostgreSQL: see docs/moving-database.md
"""

IMPORT_DESCRIPTION = """\
Write a file made by `ticketbot export` into the database named by [storage] url, then
count every table: rows in the file, rows written, rows in the database must agree.

The target must be empty: a database holding tickets (or any other rows) is refused
and left exactly as it was; nothing is ever overwritten or deleted. The file is first
read through and checked in full (gzip checksum, every line and value, the counts);
then the schema is created (or upgraded) to this ticketbot's version, which must be the
file's; then the rows are written, table by table, in transactions of up to 2000 rows.
On PostgreSQL the id sequences are then moved past the imported ids.

If an import stops half way (a crash, a full disk), the rows written so far stay: do
not start the bot on that database. Make a new, empty database (or remove the SQLite
file) and import again.

Exit status: 0 imported and every count matches; 1 the import failed, or a count
differs (the table shows which); 2 refused, nothing written (the target is not empty,
the file is damaged, of another schema version, or missing, invalid configuration).
"""

IMPORT_EPILOG = """\
examples:
  ticketbot import desk.jsonl.gz --config /etc/ticketbot/bot.toml
      into the empty database that bot.toml's [storage] url names
  createdb -O ticketbot ticketbot
  ticketbot import desk.jsonl.gz --config postgres.toml
      SQLite to PostgreSQL: postgres.toml has url = "postgresql://ticketbot@/ticketbot"
  ticketbot import desk.jsonl.gz --check-only
      read and check the file in full; touch no database
"""


def add_transfer_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``export`` and ``import`` subcommands."""
    export = sub.add_parser(
        "export",
        parents=[common],
        help="write the whole database into one portable file (to move it)",
        description=EXPORT_DESCRIPTION,
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("file", metavar="FILE", help="the file to write, e.g. desk.jsonl.gz")
    imp = sub.add_parser(
        "import",
        parents=[common],
        help="write a file made by export into an empty database, and check the counts",
        description=IMPORT_DESCRIPTION,
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", metavar="FILE", help="a file written by ticketbot export")
    imp.add_argument(
        "--check-only",
        action="store_true",
        help="read and check the whole file, print its counts; write nothing",
    )


def _bar(label: str, total: int) -> Any:
    from bot.importing.progress import ProgressBar

    return ProgressBar(sys.stderr, label, total, unit="rows")


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def run_export(config: Config, args: argparse.Namespace) -> int:
    from storage.backup import redact_url
    from storage.transfer import Refused, TransferError, export_database

    url = config.storage.url
    print(f"export: {redact_url(url)} into {args.file}", file=sys.stderr)
    try:
        report = export_database(url, Path(args.file), progress=_bar, version=__version__)
    except Refused as exc:
        print(f"ticketbot: export refused: {exc}", file=sys.stderr)
        return 2
    except (TransferError, OSError) as exc:
        print(f"ticketbot: export failed, no file written: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the database went away mid-way, and the like
        print(
            f"ticketbot: export failed, no file written: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(
        f"exported {report.rows} rows of {len(report.counts)} tables (schema version "
        f"{report.schema_version}, {report.source}) to {report.path}: "
        f"{_size(report.size)} in {report.seconds:.2f} s"
    )
    write_counts(sys.stdout, [(name, (n,)) for name, n in sorted(report.counts.items())], ("rows",))
    return 0


def run_import(config: Config, args: argparse.Namespace) -> int:
    from storage.backup import redact_url
    from storage.transfer import Refused, TransferError, check_file, import_database

    path = Path(args.file)
    if not path.is_file():
        print(f"ticketbot: import refused: {path}: no such file", file=sys.stderr)
        return 2
    url = config.storage.url
    try:
        if args.check_only:
            header = check_file(path, progress=_bar, sqlite=url.startswith("sqlite:")).header
            print(
                f"{path}: a complete export of schema version {header.schema_version} from "
                f"{header.source}, made {header.created_at}; every line checked"
            )
            write_counts(sys.stdout, [(name, (n,)) for name, n in header.counts.items()], ("rows",))
            return 0
        print(f"import: {path} into {redact_url(url)}", file=sys.stderr)
        report = import_database(url, path, progress=_bar, say=_say)
    except Refused as exc:
        print(f"ticketbot: import refused, nothing written: {exc}", file=sys.stderr)
        return 2
    except TransferError as exc:
        print(f"ticketbot: import failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the server went away, a disk filled up ...
        print(
            f"ticketbot: import failed: {type(exc).__name__}: {exc}; rows written before it "
            "stay: do not start the bot on this database, make a new empty one and import "
            "again",
            file=sys.stderr,
        )
        return 1
    write_counts(
        sys.stdout,
        [(c.name, (c.in_file, c.written, c.in_database)) for c in report.counts],
        ("in file", "written", "in database"),
        marks={c.name for c in report.counts if not c.ok},
    )
    for check in report.checks:
        print(f"checked: {check}")
    if not report.ok:
        bad = ", ".join(c.name for c in report.counts if not c.ok)
        print(
            f"ticketbot: import failed: the counts differ for {bad}; do not start the bot on "
            f"{report.target}: make a new empty database and import again",
            file=sys.stderr,
        )
        return 1
    print(
        f"imported {report.rows} rows (schema version {report.schema_version}, from "
        f"{report.source}) into {report.target} in {report.seconds:.2f} s"
    )
    return 0


def write_counts(
    out: TextIO,
    rows: list[tuple[str, tuple[int, ...]]],
    headings: tuple[str, ...],
    marks: set[str] | None = None,
) -> None:
    """A table of counts, one line per database table, a ``<-- differs`` mark where wrong."""
    marks = marks or set()
    width = max([len("table"), *(len(name) for name, _ in rows)])
    cells = [max(len(h), 9) for h in headings]
    print(
        "  ".join(
            [f"{'table':<{width}}", *(f"{h:>{w}}" for h, w in zip(headings, cells, strict=True))]
        ),
        file=out,
    )
    for name, counts in rows:
        line = "  ".join(
            [f"{name:<{width}}", *(f"{n:>{w}}" for n, w in zip(counts, cells, strict=True))]
        )
        print(line + ("  <-- differs" if name in marks else ""), file=out)
    totals = [sum(counts[i] for _, counts in rows) for i in range(len(headings))]
    print(
        "  ".join(
            [f"{'total':<{width}}", *(f"{n:>{w}}" for n, w in zip(totals, cells, strict=True))]
        ),
        file=out,
    )


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    amount = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        amount /= 1024
        if amount < 1024 or unit == "GiB":
            break
    return f"{amount:.1f} {unit}"
