"""Online, consistent backups of the ticket database, and a restore that never overwrites.

Why it is built this way:

- The bot keeps running while a backup is taken. On SQLite the copy is made with the
  online backup API from a connection that holds one read transaction for the whole copy:
  in WAL mode that pins a single snapshot (writers go on appending to the WAL), so the
  copy is the database as it was at one moment, and the backup is never restarted by the
  bot's writes (a backup stepped without that transaction starts over after every write
  and may never finish on a busy desk). On PostgreSQL ``pg_dump`` reads in one
  repeatable-read snapshot.
- A backup is written to a hidden temporary file beside the target, checked, flushed to
  disk, and only then renamed into place: a crash or a failed check never leaves a
  half-written file under a backup's name, and an older backup of the same name stays
  whole until the new one is complete.
- A backup is only worth something if it can be read back. Every backup is checked
  after it is written (SQLite ``PRAGMA integrity_check``; for a dump, every table's data
  is read back through ``pg_restore``), its counts are taken from the copy itself, and the
  sha256 stored with every raw message and attachment is checked against its bytes.
- A restore writes only into an empty database and checks the result against the backup
  before calling it done: schema version, counts, and every stored hash. Nothing is ever
  overwritten: a database holding tickets is refused, naming how many.
- Credentials never appear on a command line (where ``ps`` shows them to every user):
  ``pg_dump`` and ``pg_restore`` get them through the libpq environment variables.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, unquote, urlparse

import psycopg2
from psycopg2 import sql

from storage import models

Progress = Callable[[str], None]

SQLITE_HEADER = b"SQLite format 3\x00"
PGDUMP_HEADER = b"PGDMP"
DEFAULT_PREFIX = "ticketbot-"
#: What :func:`backup_name` ends a backup's file name with, per kind of database.
SUFFIXES = {"sqlite": ".db", "postgresql": ".dump"}
#: SQLite pages copied per backup step (4 MiB at the default page size): small enough to
#: report progress, large enough that a big database is not copied in tiny slices.
PAGES_PER_STEP = 1024
#: How many problems a failed check lists; the rest are counted.
MAX_PROBLEMS = 20

_TOOL_TIMEOUT = 24 * 3600  # a hung pg_dump should not hang a cron job forever
#: Tables whose rows carry bytes with their sha256 and size. ``attachment`` rows from
#: schema step 3 on hold no bytes of their own but name an ``attachment_blob``.
_BLOB_TABLES = ("raw_message", "attachment_blob", "attachment")
_COUNTED_TABLES = ("ticket", "article", "attachment", "raw_message")
_TICKETBOT_TABLES = frozenset(model._meta.table_name for model in models.ALL_MODELS)

# libpq keywords that may appear in a postgresql:// URL's query, and the environment
# variable libpq reads each from. Keepalive tuning has no variable and does not change
# which database is reached, so it is left out rather than refused.
_PG_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "client_encoding": "PGCLIENTENCODING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "sslcompression": "PGSSLCOMPRESSION",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "requirepeer": "PGREQUIREPEER",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "channel_binding": "PGCHANNELBINDING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
_PG_IGNORED = {"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"}


class BackupError(Exception):
    """A backup or restore could not be made or could not be trusted; nothing was replaced."""


class TargetNotEmpty(BackupError):
    """The restore target already holds data; restore refuses rather than overwrite it."""


class VerificationFailed(BackupError):
    """A check of a backup or of a restored database found something wrong."""

    def __init__(self, what: str, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS]
        more = len(self.problems) - len(shown)
        lines = [what, *(f"  - {p}" for p in shown)]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Contents:
    """What a database or a backup holds, counted at one moment."""

    schema_version: int
    tickets: int
    articles: int
    attachments: int
    raw_messages: int

    def describe(self) -> str:
        return (
            f"schema version {self.schema_version}: {self.tickets} tickets, "
            f"{self.articles} articles, {self.attachments} attachments, "
            f"{self.raw_messages} raw messages"
        )

    def differences(self, other: Contents, mine: str, theirs: str) -> list[str]:
        problems = []
        for name in ("schema_version", "tickets", "articles", "attachments", "raw_messages"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                problems.append(f"{name.replace('_', ' ')}: {a} in {mine}, {b} in {theirs}")
        return problems


class _ContentsView:
    """The counts of a backup or restore, read straight off its :class:`Contents`."""

    contents: Contents

    @property
    def schema_version(self) -> int:
        return self.contents.schema_version

    @property
    def tickets(self) -> int:
        return self.contents.tickets

    @property
    def articles(self) -> int:
        return self.contents.articles

    @property
    def attachments(self) -> int:
        return self.contents.attachments


@dataclass(frozen=True)
class BackupReport(_ContentsView):
    """A backup that was written and checked."""

    path: Path
    kind: str  # "sqlite" | "postgresql"
    contents: Contents
    size: int
    seconds: float
    checks: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        return "\n".join(
            [
                f"backup written: {self.path} ({_size(self.size)}, {self.kind}, "
                f"{self.seconds:.2f} s)",
                f"  {self.contents.describe()}",
                *(f"  checked: {check}" for check in self.checks),
            ]
        )


@dataclass(frozen=True)
class RestoreReport(_ContentsView):
    """A restore that was made and verified against its backup."""

    database: str  # the target, without its password
    source: Path
    kind: str
    contents: Contents
    seconds: float
    checks: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        return "\n".join(
            [
                f"restored {self.source} into {self.database} ({self.seconds:.2f} s)",
                f"  {self.contents.describe()}",
                *(f"  verified: {check}" for check in self.checks),
            ]
        )


# --- public functions ------------------------------------------------------------------------


def backup(
    url: str,
    target: Path,
    *,
    progress: Progress | None = None,
    pages_per_step: int = PAGES_PER_STEP,
) -> BackupReport:
    """Copy the database at ``url`` to the file ``target`` while the bot keeps running.

    The file is replaced atomically if it already holds an older backup; anything else
    at ``target`` is refused. Raises :class:`BackupError` (or :class:`VerificationFailed`)
    when the copy cannot be made or does not check out; then no file is left behind.
    """
    say = progress or _quiet
    target = Path(target)
    kind = url_kind(url)
    _check_replaceable(target)
    started = time.monotonic()
    if kind == "sqlite":
        contents, checks = _backup_sqlite(_sqlite_path(url), target, say, pages_per_step)
    else:
        contents, checks = _backup_postgresql(_PgTarget.from_url(url), target, say)
    return BackupReport(
        path=target,
        kind=kind,
        contents=contents,
        size=target.stat().st_size,
        seconds=time.monotonic() - started,
        checks=checks,
    )


def restore(
    url: str,
    source: Path,
    *,
    progress: Progress | None = None,
    pages_per_step: int = PAGES_PER_STEP,
) -> RestoreReport:
    """Restore the backup file ``source`` into the empty database at ``url``, and verify it.

    Refuses (:class:`TargetNotEmpty`) a database that holds tickets or articles; a SQLite
    target must not exist or be an empty file. Raises :class:`VerificationFailed` when the
    restored data does not match the backup.
    """
    say = progress or _quiet
    source = Path(source)
    kind = backup_kind(source)
    wanted = url_kind(url)
    if kind != wanted:
        raise BackupError(
            f"{source} is a {kind} backup, but the storage url is {wanted}: "
            "restore it into a database of the same kind"
        )
    started = time.monotonic()
    if kind == "sqlite":
        target = _sqlite_path(url)
        contents, checks = _restore_sqlite(source, target, say, pages_per_step)
        database = str(target)
    else:
        pg = _PgTarget.from_url(url)
        contents, checks = _restore_postgresql(source, pg, say)
        database = pg.display
    return RestoreReport(
        database=database,
        source=source,
        kind=kind,
        contents=contents,
        seconds=time.monotonic() - started,
        checks=checks,
    )


def prune_backups(folder: Path, keep: int, prefix: str = DEFAULT_PREFIX) -> list[Path]:
    """Remove all but the ``keep`` newest backups in ``folder``; returns what was removed.

    Only regular files named exactly as :func:`backup_name` names them
    (``PREFIX`` + ``YYYYmmdd-HHMMSS`` + ``.db``/``.dump``) are considered, so nothing
    else in the folder is ever touched. The time in the name decides what is newest (it
    is UTC, so it only ever counts up), not the file's modification time.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1: pruning never removes every backup")
    suffixes = "|".join(re.escape(s) for s in sorted(set(SUFFIXES.values())))
    pattern = re.compile(re.escape(prefix) + r"(\d{8}-\d{6})(?:" + suffixes + ")")
    found: list[tuple[str, str, Path]] = []
    for path in Path(folder).iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_file() and not path.is_symlink():
            found.append((match.group(1), path.name, path))
    found.sort()
    doomed = [path for _, _, path in found[:-keep]]
    for path in doomed:
        path.unlink()
    return doomed


def backup_name(kind: str, now: datetime | None = None, prefix: str = DEFAULT_PREFIX) -> str:
    """``ticketbot-YYYYmmdd-HHMMSS.db`` (or ``.dump``), the time in UTC."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{prefix}{moment:%Y%m%d-%H%M%S}{SUFFIXES[kind]}"


def url_kind(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` for a storage url."""
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise BackupError(f"unsupported storage url {redact_url(url)!r}")


def backup_kind(path: Path) -> str:
    """Which kind of backup a file is, from its first bytes: ``"sqlite"`` or ``"postgresql"``."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except OSError as exc:
        raise BackupError(f"{path}: cannot be read: {exc}") from None
    if head.startswith(SQLITE_HEADER):
        return "sqlite"
    if head.startswith(PGDUMP_HEADER):
        return "postgresql"
    raise BackupError(
        f"{path} is not a ticketbot backup (neither a SQLite database nor a pg_dump "
        "custom-format archive)"
    )


def redact_url(url: str) -> str:
    """The url without its password, for messages."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}@{netloc}").geturl()


def find_pg_tool(name: str, server_major: int | None = None) -> Path:
    """``pg_dump``/``pg_restore`` from PATH or ``/usr/lib/postgresql/*/bin``, as Debian
    installs several versions side by side.

    The one of the server's major version when it is installed, else the newest. Not
    simply the newest: pg_dump refuses only servers newer than itself, but an archive from
    a newer pg_dump cannot be read by the server's own pg_restore, and pg_dump 17 and
    later write ``SET transaction_timeout``, which servers before 17 refuse on restore.
    """
    # the real binaries first: on a tie they win over Debian's pg_wrapper on PATH
    candidates = [Path(p) for p in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    found = [(v, c) for c in candidates if (v := _tool_version(c)) is not None]
    chosen = choose_pg_tool(found, server_major)
    if chosen is None:
        raise BackupError(
            f"{name} not found on PATH or in /usr/lib/postgresql/*/bin: install the "
            "PostgreSQL client tools (apt-get install postgresql-client) of the server's "
            "version"
        )
    return chosen


def choose_pg_tool(
    found: Sequence[tuple[tuple[int, ...], Path]], server_major: int | None
) -> Path | None:
    """Of ``(version, path)`` pairs: the newest of the server's major version; else the
    nearest newer major (it can dump the server and writes the least the server does not
    know); else the newest of all, which then names the mismatch. The first listed wins a
    tie."""
    if not found:
        return None

    def newest(pairs: Sequence[tuple[tuple[int, ...], Path]]) -> Path:
        best = pairs[0]
        for pair in pairs[1:]:
            if pair[0] > best[0]:
                best = pair
        return best[1]

    if server_major is None:
        return newest(found)
    same = [f for f in found if f[0][0] == server_major]
    if same:
        return newest(same)
    newer = [f for f in found if f[0][0] > server_major]
    if newer:
        nearest = min(f[0][0] for f in newer)
        return newest([f for f in newer if f[0][0] == nearest])
    return newest(found)


# --- SQLite ----------------------------------------------------------------------------------


def _backup_sqlite(
    source: Path, target: Path, say: Progress, pages_per_step: int
) -> tuple[Contents, tuple[str, ...]]:
    if not source.is_file():
        raise BackupError(f"{source}: no such database file")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError(f"{target} is the live database itself; back up to another file")
    with _temporary_beside(target) as partial:
        src = _open_source(source)
        try:
            src.isolation_level = None  # transactions by hand
            # One read transaction for counting and copying: the snapshot both see.
            src.execute("BEGIN")
            contents = _contents(src.cursor(), "sqlite", str(source))
            say(f"copying {source} ({contents.describe()})")
            dest = sqlite3.connect(partial)
            try:
                src.backup(
                    dest, pages=max(1, pages_per_step), progress=_page_progress(say, "copied")
                )
                # one self-contained file: no -wal beside it to lose when it is copied away
                dest.execute("PRAGMA journal_mode = DELETE")
            finally:
                dest.close()
            src.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise BackupError(f"{source}: copy failed: {exc}") from None
        finally:
            src.close()
        say("checking the copy")
        _, checks = _verify_sqlite_file(partial, contents, "the backup copy", "the source")
        _commit_file(partial, target, replace=True)
    return contents, checks


def _open_source(source: Path) -> sqlite3.Connection:
    """Read-write if allowed (a WAL reader records itself in the -shm file), else read-only.

    Never ``mode=rwc``: a mistyped path must not become a new, empty database.
    """
    try:
        return sqlite3.connect(_sqlite_uri(source, "rw"), uri=True, timeout=10)
    except sqlite3.Error:
        try:
            return sqlite3.connect(_sqlite_uri(source, "ro"), uri=True, timeout=10)
        except sqlite3.Error as exc:
            raise BackupError(f"{source}: cannot be opened: {exc}") from None


def _restore_sqlite(
    source: Path, target: Path, say: Progress, pages_per_step: int
) -> tuple[Contents, tuple[str, ...]]:
    _refuse_unless_sqlite_target_empty(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _temporary_beside(target) as partial:
        try:
            src = sqlite3.connect(_sqlite_uri(source, "ro", immutable=True), uri=True)
        except sqlite3.Error as exc:
            raise BackupError(f"{source}: cannot be opened: {exc}") from None
        try:
            expected = _contents(src.cursor(), "sqlite", str(source))
            say(f"restoring {source} ({expected.describe()})")
            dest = sqlite3.connect(partial)
            try:
                src.backup(
                    dest, pages=max(1, pages_per_step), progress=_page_progress(say, "restored")
                )
                # a backup copied by hand from a live database may be in WAL mode
                dest.execute("PRAGMA journal_mode = DELETE")
            finally:
                dest.close()
        except sqlite3.DatabaseError as exc:
            raise VerificationFailed(f"{source} cannot be read back", [str(exc)]) from None
        finally:
            src.close()
        say("verifying the restored database")
        contents, checks = _verify_sqlite_file(
            partial, expected, f"the database restored from {source}", "the backup"
        )
        _commit_file(partial, target, replace=False)
    return contents, checks


def _verify_sqlite_file(
    path: Path, expected: Contents, mine: str, theirs: str
) -> tuple[Contents, tuple[str, ...]]:
    """integrity_check, counts against ``expected``, and every stored hash."""
    try:
        conn = sqlite3.connect(_sqlite_uri(path, "ro", immutable=True), uri=True)
        try:
            cursor = conn.cursor()
            rows = [str(r[0]) for r in cursor.execute("PRAGMA integrity_check")]
            if rows != ["ok"]:
                raise VerificationFailed(f"{mine} fails PRAGMA integrity_check", rows)
            contents = _contents(cursor, "sqlite", mine)
            problems = contents.differences(expected, mine, theirs)
            checked, bad = _check_blobs_in_db(conn.cursor, "sqlite")
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise VerificationFailed(f"{mine} cannot be read", [str(exc)]) from None
    if problems or bad:
        raise VerificationFailed(f"{mine} does not match {theirs}", problems + bad)
    return contents, (
        "PRAGMA integrity_check ok",
        f"schema version and counts equal {theirs}",
        f"sha256 of {checked} raw messages and attachments ok",
    )


def _refuse_unless_sqlite_target_empty(target: Path) -> None:
    """A restore writes a new database file; it never replaces one that holds anything."""
    for companion in (Path(f"{target}-wal"), Path(f"{target}-journal")):
        if companion.exists() and companion.stat().st_size > 0:
            raise TargetNotEmpty(
                f"refusing to restore into {target}: {companion.name} beside it holds "
                "transactions of a database; move the database and its -wal/-shm/-journal "
                "files aside first"
            )
    if not target.exists():
        return
    if not target.is_file():
        raise TargetNotEmpty(f"refusing to restore into {target}: it is not a regular file")
    if target.stat().st_size == 0:
        return
    raise TargetNotEmpty(
        f"refusing to restore into {target}: it is not empty ({_describe_sqlite(target)}); "
        "restore never overwrites a database. Move it (and any -wal/-shm files) aside, "
        "or point storage.url at a new file"
    )


def _describe_sqlite(path: Path) -> str:
    try:
        conn = sqlite3.connect(_sqlite_uri(path, "ro"), uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "ticket" not in tables:
                return "it is not an empty ticketbot database"
            tickets = conn.execute('SELECT COUNT(*) FROM "ticket"').fetchone()[0]
            return f"it holds {tickets} tickets"
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"it cannot be read as a database: {exc}"


def _sqlite_path(url: str) -> Path:
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(path)


def _sqlite_uri(path: Path, mode: str, *, immutable: bool = False) -> str:
    """A ``file:`` URI: ``mode=rw`` never creates a database that is not there.

    ``immutable`` is for files nothing else writes (a backup, our own temporary copy):
    no locks and no -wal/-shm files are made beside them, even for a copy in WAL mode.
    """
    return f"{path.resolve().as_uri()}?mode={mode}" + ("&immutable=1" if immutable else "")


def _page_progress(say: Progress, verb: str) -> Callable[[int, int, int], None]:
    """Report at the first step, each further tenth, and the end: not a line per step."""
    last = [-1]

    def report(status: int, remaining: int, total: int) -> None:
        done = total - remaining
        tenth = done * 10 // total if total else 10
        if last[0] < 0 or tenth > last[0] or remaining == 0:
            last[0] = tenth
            percent = done * 100 // total if total else 100
            say(f"{verb} {done} of {total} pages ({percent}%)")

    return report


# --- PostgreSQL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PgTarget:
    """A postgresql:// url taken apart: libpq keywords, the same ones the bot connects with."""

    params: dict[str, str]
    display: str

    @classmethod
    def from_url(cls, url: str) -> _PgTarget:
        parts = urlparse(url)
        params: dict[str, str] = {}
        for key, value in parse_qsl(parts.query):
            if key in _PG_IGNORED:
                continue
            if key not in _PG_ENV:
                raise BackupError(
                    f"storage.url option {key!r} cannot be passed to pg_dump/pg_restore "
                    "(they take connection settings from the environment only)"
                )
            params[key] = value
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise BackupError(f"storage url {redact_url(url)!r} names no database")
        params["dbname"] = dbname
        if parts.username:
            params["user"] = unquote(parts.username)
        if parts.password:
            params["password"] = unquote(parts.password)
        if parts.hostname:
            params["host"] = unquote(parts.hostname)
        params["port"] = str(parts.port or 5432)  # as storage.database does
        return cls(params, redact_url(url))

    def environment(self, extra_options: str = "") -> dict[str, str]:
        """The caller's environment plus this database's libpq variables."""
        env = dict(os.environ)
        env.update({_PG_ENV[key]: value for key, value in self.params.items()})
        options = " ".join(filter(None, [self.params.get("options", ""), extra_options]))
        if options:
            env["PGOPTIONS"] = options
        env.setdefault("PGAPPNAME", "ticketbot-backup")
        return env

    def connect(self) -> Any:
        try:
            return psycopg2.connect(**self.params)
        except psycopg2.Error as exc:
            raise BackupError(f"cannot connect to {self.display}: {exc}".strip()) from None

    def server_major(self) -> int:
        """The server's major version: it decides which pg_dump/pg_restore to use."""
        conn = self.connect()
        try:
            version = int(conn.server_version)  # e.g. 150018 for 15.18
        finally:
            conn.close()
        return version // 10000 if version >= 100000 else version // 100


def _backup_postgresql(
    pg: _PgTarget, target: Path, say: Progress
) -> tuple[Contents, tuple[str, ...]]:
    server = pg.server_major()
    pg_dump = find_pg_tool("pg_dump", server)
    pg_restore = find_pg_tool("pg_restore", server)
    with _temporary_beside(target) as partial:
        say(f"dumping {pg.display} (PostgreSQL {server}) with {pg_dump}")
        _run_tool(
            [
                str(pg_dump),
                "--format=custom",
                "--no-owner",
                "--verbose",
                f"--file={partial}",
            ],
            # bytea as hex, so the hashes can be checked from the dump's text
            pg.environment(extra_options="-c bytea_output=hex"),
            say,
        )
        say("reading the dump back")
        contents, checks = _read_dump(pg_restore, partial, say, "the backup")
        _commit_file(partial, target, replace=True)
    return contents, checks


def _restore_postgresql(
    source: Path, pg: _PgTarget, say: Progress
) -> tuple[Contents, tuple[str, ...]]:
    pg_restore = find_pg_tool("pg_restore", pg.server_major())
    say(f"reading {source}")
    # Read the whole archive first: a damaged backup is refused before the target is touched.
    expected, _ = _read_dump(pg_restore, source, say, str(source))
    _make_room_in_postgresql(pg, say)
    say(f"restoring {source} ({expected.describe()}) into {pg.display} with {pg_restore}")
    _run_tool(
        [
            str(pg_restore),
            "--no-owner",
            # grants name roles of the old server; ticketbot needs none beyond ownership
            "--no-privileges",
            # all or nothing: a failure leaves the database as empty as it was
            "--single-transaction",
            "--exit-on-error",
            "--verbose",
            f"--dbname={_conninfo_dbname(pg.params['dbname'])}",
            str(source),
        ],
        pg.environment(),
        say,
    )
    say("verifying the restored database")
    conn = pg.connect()
    try:
        with conn.cursor() as cursor:
            contents = _contents(cursor, "postgresql", pg.display)
        problems = contents.differences(expected, "the restore", "the backup")
        checked, bad = _check_blobs_in_db(conn.cursor, "postgresql")
        conn.rollback()
    except psycopg2.Error as exc:
        problems, bad, checked = [str(exc).strip()], [], 0
    finally:
        conn.close()
    if problems or bad:
        raise VerificationFailed(
            f"the restored database {pg.display} does not match the backup; it holds the "
            "restored data for inspection: do not start the bot on it, and drop and "
            "recreate it before restoring again",
            problems + bad,
        )
    return contents, (
        "pg_restore completed in one transaction",
        "schema version and counts equal the backup",
        f"sha256 of {checked} raw messages and attachments ok",
    )


def _make_room_in_postgresql(pg: _PgTarget, say: Progress) -> None:
    """Refuse a database with data; remove an empty ticketbot schema so the dump fits.

    "Empty" is: no tables, or only ticketbot's tables with no ticket, article, raw
    message or attachment in them (the bot started once on a new database). The check
    and the removal happen in one transaction holding exclusive locks, so a bot writing
    meanwhile cannot slip a ticket in between.
    """
    conn = pg.connect()
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT schemaname, tablename, schemaname = current_schema() FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
            )
            rows: list[tuple[str, str, bool]] = list(cursor.fetchall())
            if not rows:
                return
            tables = [(schema, table) for schema, table, _ in rows]
            unknown = sorted(
                f"{schema}.{table}"
                for schema, table, current in rows
                if not current or table not in _TICKETBOT_TABLES
            )
            if unknown:
                raise TargetNotEmpty(
                    f"refusing to restore into {pg.display}: it holds tables that are not "
                    f"ticketbot's ({', '.join(unknown[:10])}); restore only into an empty "
                    "database"
                )
            qualified = [sql.Identifier(s, t) for s, t in tables]
            cursor.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(qualified)
                )
            )
            counts = {}
            for schema, table in tables:
                if table in _COUNTED_TABLES:
                    cursor.execute(
                        sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(schema, table))
                    )
                    counts[table] = int(cursor.fetchone()[0])
            if any(counts.values()):
                raise TargetNotEmpty(
                    f"refusing to restore into {pg.display}: it holds "
                    f"{counts.get('ticket', 0)} tickets and {counts.get('article', 0)} "
                    "articles; restore never overwrites a database. Restore into a new "
                    "database (createdb) and point storage.url at it"
                )
            say(f"{pg.display} holds an empty ticketbot schema (no tickets): replacing it")
            # no CASCADE: anything else built on these tables (a view) stops the restore
            cursor.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(", ").join(qualified)))
    except psycopg2.Error as exc:
        raise BackupError(f"cannot prepare {pg.display} for the restore: {exc}".strip()) from None
    finally:
        conn.close()


def _conninfo_dbname(dbname: str) -> str:
    """``dbname='...'``: a database name with ``=`` in it is not taken for a conninfo."""
    escaped = dbname.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


_COPY_LINE = re.compile(rb"COPY (?P<table>\S+) \((?P<columns>.*)\) FROM stdin;")


def _read_dump(
    pg_restore: Path, path: Path, say: Progress, what: str
) -> tuple[Contents, tuple[str, ...]]:
    """Read every table's data out of a custom-format dump: counts, version and hashes.

    This reads (and decompresses) the whole archive, so a damaged one fails here.
    """
    counts: dict[str, int] = {}
    version = 0
    hashes = _HashCheck()
    table = ""
    columns: list[str] = []
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [str(pg_restore), "--data-only", "--file=-", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=_clean_environment(),
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if not table:
                    match = _COPY_LINE.match(line)
                    if match:
                        table = _unquote_identifier(match["table"].split(b".")[-1])
                        columns = [_unquote_identifier(c) for c in match["columns"].split(b", ")]
                        counts.setdefault(table, 0)
                        say(f"reading {table}")
                    continue
                if line == b"\\.\n":
                    table = ""
                    continue
                counts[table] += 1
                if table == "schema_version" or table in _BLOB_TABLES:
                    fields = line.rstrip(b"\n").split(b"\t")
                    row = dict(zip(columns, fields, strict=False))
                    try:
                        if table == "schema_version":
                            version = max(version, int(row["version"]))
                            continue
                        blob_id = row.get("blob_id", _COPY_NULL)
                        hashes.row(
                            table,
                            int(row["id"]),
                            row["sha256"].decode(),
                            int(row["size"]),
                            None if row["data"] == _COPY_NULL else _bytea(row["data"]),
                            None if blob_id == _COPY_NULL else int(blob_id),
                        )
                    except (KeyError, ValueError, IndexError) as exc:
                        hashes.problems.append(
                            f"{table} row {counts[table]} cannot be read: {exc!r}"
                        )
        finally:
            proc.stdout.close()
            returncode = proc.wait(timeout=_TOOL_TIMEOUT)
        if returncode != 0 or table:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip()[-2000:]
            raise VerificationFailed(
                f"{what} cannot be read back with {pg_restore}: it is damaged or not complete",
                [
                    tail
                    or _exit_text(returncode) + (f" inside the data of {table}" if table else "")
                ],
            )
    missing = [t for t in ("schema_version", *_COUNTED_TABLES) if t not in counts]
    if missing:
        raise VerificationFailed(
            f"{what} is not a ticketbot database dump", [f"no table {t}" for t in missing]
        )
    checked, problems = hashes.finish()
    if problems:
        raise VerificationFailed(f"{what} holds data that does not match its hashes", problems)
    contents = Contents(
        schema_version=version,
        tickets=counts["ticket"],
        articles=counts["article"],
        attachments=counts["attachment"],
        raw_messages=counts["raw_message"],
    )
    return contents, (
        "every table read back with pg_restore",
        f"sha256 of {checked} raw messages and attachments ok",
    )


def _unquote_identifier(name: bytes) -> str:
    text = name.decode()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('""', '"')
    return text


_COPY_ESCAPES = {
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"v": b"\v",
}
_COPY_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.DOTALL)
_BYTEA_ESCAPE = re.compile(rb"\\(\\|[0-7]{3})")


def _copy_unescape(field_bytes: bytes) -> bytes:
    """Undo COPY's text escaping (``\\n``, ``\\\\``, ``\\ooo``, ``\\xhh``)."""
    if b"\\" not in field_bytes:
        return field_bytes

    def one(match: re.Match[bytes]) -> bytes:
        octal, hexa, other = match.groups()
        if octal:
            return bytes([int(octal, 8) & 0xFF])
        if hexa:
            return bytes([int(hexa, 16)])
        return _COPY_ESCAPES.get(other, other)

    return _COPY_ESCAPE.sub(one, field_bytes)


def _bytea(field_bytes: bytes) -> bytes:
    """A bytea column's value from a COPY line: hex (``\\x...``) or the old escape format."""
    if field_bytes.startswith(b"\\\\x"):  # hex, its backslash doubled by COPY: the fast path
        return bytes.fromhex(field_bytes[3:].decode())
    text = _copy_unescape(field_bytes)
    if text.startswith(b"\\x"):
        return bytes.fromhex(text[2:].decode())
    return _BYTEA_ESCAPE.sub(
        lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1), 8)]), text
    )


# --- shared checks ---------------------------------------------------------------------------


def _contents(cursor: Any, dialect: str, what: str) -> Contents:
    """Counts and schema version, read with ``cursor`` (inside the caller's transaction)."""
    if dialect == "sqlite":
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    tables = {row[0] for row in cursor.fetchall()}
    missing = [t for t in ("schema_version", *_COUNTED_TABLES) if t not in tables]
    if missing:
        raise BackupError(f"{what} is not a ticketbot database (no table {missing[0]})")
    counts = {}
    for table in _COUNTED_TABLES:
        cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
        counts[table] = int(cursor.fetchone()[0])
    cursor.execute('SELECT MAX("version") FROM "schema_version"')
    version = int(cursor.fetchone()[0] or 0)
    return Contents(
        schema_version=version,
        tickets=counts["ticket"],
        articles=counts["article"],
        attachments=counts["attachment"],
        raw_messages=counts["raw_message"],
    )


def _check_blobs_in_db(new_cursor: Callable[..., Any], dialect: str) -> tuple[int, list[str]]:
    """Hash every raw message and attachment, one row at a time (they can be large).

    Each attachment blob is hashed once, however many attachments share it.
    """
    cursor = new_cursor()
    try:
        if dialect == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = {row[0] for row in cursor.fetchall()}
    finally:
        cursor.close()
    has_blobs = "attachment_blob" in tables  # schema step 3 on
    hashes = _HashCheck()
    for table in _BLOB_TABLES:
        if table not in tables:
            continue
        blob_id = '"blob_id"' if table == "attachment" and has_blobs else "NULL"
        query = f'SELECT "id", "sha256", "size", "data", {blob_id} FROM "{table}" ORDER BY "id"'
        if dialect == "postgresql":
            # a server-side cursor: the rows stream instead of all arriving at once
            cursor = new_cursor(name=f"ticketbot_verify_{table}")
            cursor.itersize = 16
        else:
            cursor = new_cursor()
        try:
            cursor.execute(query)
            for row_id, sha256, size, data, blob in cursor:
                hashes.row(table, int(row_id), sha256, size, data, blob)
        finally:
            cursor.close()
    return hashes.finish()


_COPY_NULL = b"\\N"


class _HashCheck:
    """Checks stored bytes against their sha256 and size, table by table in any order.

    Raw messages and attachments are counted as checked; an attachment that names a
    blob is checked through it (its sha256 and size must be the blob's, and the blob's
    bytes must match), so a damaged blob is reported once per attachment that uses it.
    """

    def __init__(self) -> None:
        self.checked = 0
        self.problems: list[str] = []
        #: blob id -> (stored sha256, stored size, what is wrong with its bytes or None)
        self._blobs: dict[int, tuple[str, int, str | None]] = {}
        #: attachments that name a blob: (attachment id, sha256, size, blob id)
        self._naming_blobs: list[tuple[int, str, int, int]] = []

    def row(
        self, table: str, row_id: int, sha256: str, size: int, data: Any, blob_id: int | None
    ) -> None:
        if table == "attachment_blob":
            self._blobs[row_id] = (sha256, size, _hash_problem(sha256, size, data))
            return
        self.checked += 1
        if table == "attachment" and blob_id is not None:
            self._naming_blobs.append((row_id, sha256, size, blob_id))
            if data is None:
                return  # its bytes are the blob's, checked in finish()
        problem = _hash_problem(sha256, size, data)
        if problem:
            self.problems.append(f"{table} {row_id}: {problem}")

    def finish(self) -> tuple[int, list[str]]:
        """How many raw messages and attachments were checked, and every problem found."""
        used: set[int] = set()
        for attachment_id, sha256, size, blob_id in self._naming_blobs:
            used.add(blob_id)
            blob = self._blobs.get(blob_id)
            where = f"attachment {attachment_id}"
            if blob is None:
                self.problems.append(f"{where}: its attachment_blob {blob_id} is missing")
            elif blob[2] is not None:
                self.problems.append(f"{where}: {blob[2]} (attachment_blob {blob_id})")
            elif (blob[0], blob[1]) != (sha256, size):
                self.problems.append(
                    f"{where}: stored sha256 {sha256} ({size} bytes), but its attachment_blob "
                    f"{blob_id} holds sha256 {blob[0]} ({blob[1]} bytes)"
                )
        for blob_id, (_, _, problem) in sorted(self._blobs.items()):
            if problem is not None and blob_id not in used:
                self.problems.append(f"attachment_blob {blob_id}: {problem}")
        return self.checked, self.problems


def _hash_problem(sha256: str, size: int, data: Any) -> str | None:
    if data is None:
        return "no data"
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        return f"sha256 is {actual}, stored {sha256}"
    if len(data) != size:
        return f"{len(data)} bytes, stored size {size}"
    return None


# --- files and tools -------------------------------------------------------------------------


def _check_replaceable(target: Path) -> None:
    """A backup may replace an older backup, atomically, but never any other file."""
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent}: no such folder")
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_file():
        raise BackupError(f"{target} exists and is not a regular file; refusing to replace it")
    with open(target, "rb") as file:
        head = file.read(20)
    if target.stat().st_size and not head.startswith((SQLITE_HEADER, PGDUMP_HEADER)):
        raise BackupError(f"{target} exists and is not a backup; refusing to replace it")
    # Bytes 18-19 of a SQLite header are 2 in WAL mode: a live database, as the bot
    # keeps it. The backups written here are switched to rollback mode (1).
    if head.startswith(SQLITE_HEADER) and (head[18:20] == b"\x02\x02" or _has_wal(target)):
        raise BackupError(
            f"{target} exists and looks like a live database (WAL mode), not a backup; "
            "refusing to replace it"
        )


def _has_wal(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


@contextlib.contextmanager
def _temporary_beside(target: Path) -> Iterator[Path]:
    """A private (0600) hidden file in the target's folder, removed unless renamed away.

    Beside the target, so the final rename stays on one filesystem and is atomic.
    """
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    partial = Path(name)
    try:
        yield partial
    finally:
        for leftover in [partial, *(Path(f"{partial}-{x}") for x in ("journal", "wal", "shm"))]:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _commit_file(partial: Path, target: Path, *, replace: bool) -> None:
    """Flush ``partial`` to disk and give it the target's name.

    ``replace=False`` (restore) never overwrites: the name is taken with a hard link,
    which fails if something appeared there meanwhile; only an empty file is replaced.
    """
    _fsync(partial)
    if replace:
        os.replace(partial, target)
    else:
        try:
            os.link(partial, target)
        except FileExistsError:
            if target.is_file() and target.stat().st_size == 0:
                os.replace(partial, target)
            else:
                raise TargetNotEmpty(
                    f"refusing to restore into {target}: a file appeared there meanwhile"
                ) from None
        except OSError:  # no hard links on this filesystem
            if target.exists() and target.stat().st_size > 0:
                raise TargetNotEmpty(
                    f"refusing to restore into {target}: a file appeared there meanwhile"
                ) from None
            os.replace(partial, target)
        else:
            partial.unlink()
    _fsync(target.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a directory; the data is synced
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _tool_version(path: Path) -> tuple[int, ...] | None:
    try:
        result = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.(\d+))?", result.stdout)
    if result.returncode != 0 or match is None:
        return None
    return tuple(int(part) for part in match.groups(default="0"))


_TOOL_PROGRESS = re.compile(r"dumping contents of table|processing data for table|warning|error")


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _run_tool(command: list[str], env: dict[str, str], say: Progress) -> None:
    """Run pg_dump/pg_restore; its --verbose lines about table data are the progress."""
    tail: deque[str] = deque(maxlen=30)
    name = Path(command[0]).name
    proc = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stream: IO[bytes] | None = proc.stderr
    assert stream is not None
    try:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            if _TOOL_PROGRESS.search(line):
                say(line)
    finally:
        stream.close()
        returncode = proc.wait(timeout=_TOOL_TIMEOUT)
    if returncode != 0:
        text = "\n".join(line for line in tail if line)
        hint = ""
        if "version mismatch" in text:
            hint = (
                f"\n{name} must be at least as new as the server: install the newer "
                "postgresql-client"
            )
        if "unsupported version" in text:
            hint = f"\nthe archive was written by a newer pg_dump than this {name}"
        raise BackupError(f"{name} failed ({_exit_text(returncode)}):\n{text}{hint}")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def _quiet(message: str) -> None:
    """The default progress: say nothing."""
