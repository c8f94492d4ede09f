"""What the maintenance commands share (``erase``, ``retention``): opening the database
without touching its schema, taking and checking a backup first, confirmation codes that
tie a confirmed run to the dry run it follows, and careful deletion of stored files.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from peewee import Database, DatabaseError, InterfaceError, OperationalError, fn

from storage import models as m
from storage.backup import BackupError, BackupReport, backup, backup_name, url_kind
from storage.database import is_sqlite, open_database
from storage.migrations import LATEST, current_version

Progress = Callable[[str], None]
BackupFunction = Callable[..., BackupReport]
T = TypeVar("T")

#: Rows per ``IN (...)`` list: far below every database's limit on parameters.
CHUNK = 500


class MaintenanceError(Exception):
    """An erase or retention run was refused or failed; nothing was changed."""


class StaleCode(MaintenanceError):
    """The confirmation code does not match what would be done now."""


class InvalidInput(MaintenanceError):
    """What the admin typed cannot be used (an address that is no address)."""


# --- shared by the maintenance commands -------------------------------------------------------


@contextmanager
def maintenance_database(url: str) -> Iterator[Database]:
    """The database at ``url`` for this thread's models, its schema checked, never changed.

    A maintenance command runs beside the bot; it does not migrate. A database at another
    schema version than this ticketbot's is refused: start the bot once to upgrade it.
    """
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        # never create an empty database for a mistyped path
        raise MaintenanceError(f"{url[len('sqlite:///') :]}: no such database file")
    try:
        db = open_database(url)
        db.connect()
        if is_sqlite(db):
            # what this connection deletes or overwrites is zeroed in the file, not left
            # in free pages
            db.execute_sql("PRAGMA secure_delete = ON")  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise MaintenanceError(f"cannot open the database: {exc}") from None
    previous = m.database_proxy.obj
    try:
        version = current_version(db)
        if version != LATEST:
            raise MaintenanceError(
                f"the database is at schema version {version}, this ticketbot writes version "
                f"{LATEST}: start the bot once (it upgrades the schema), then run this again"
            )
        m.database_proxy.initialize(db)
        try:
            yield db
        except (DatabaseError, InterfaceError) as exc:
            # locked too long by the bot, the server gone, a constraint: the open
            # transaction was rolled back by leaving its block
            raise MaintenanceError(
                f"the database refused ({type(exc).__name__}: {exc}); the transaction was "
                "rolled back: run it again"
            ) from None
    finally:
        m.database_proxy.obj = previous
        db.close()


def write_transaction(db: Database) -> Any:
    """SQLite: take the write lock up front (as the bot does). PostgreSQL: READ COMMITTED,
    with the rows to change locked first by the caller."""
    return db.atomic(lock_type="IMMEDIATE") if is_sqlite(db) else db.atomic()


def read_transaction(db: Database) -> Any:
    """One snapshot for every read of a plan: WAL on SQLite, REPEATABLE READ on PostgreSQL."""
    return db.atomic() if is_sqlite(db) else db.atomic(isolation_level="REPEATABLE READ")


def lock_tickets(db: Database, ticket_ids: Sequence[int]) -> None:
    """PostgreSQL: hold these tickets against concurrent changes until the commit (an
    article added to one meanwhile waits, then finds the change). SQLite: the write lock
    taken by :func:`write_transaction` already excludes every other writer."""
    if is_sqlite(db):
        return
    for chunk in chunks(ticket_ids):
        list(m.Ticket.select(m.Ticket.id).where(m.Ticket.id.in_(chunk)).for_update())


def scrub(db: Database, say: Progress) -> None:
    """After a commit that removed personal data, make SQLite forget it on disk too.

    The full-text index keeps deleted words in its segments until they are merged, so it
    is optimised (rewritten; with ``secure_delete`` the freed pages are zeroed); then the
    write-ahead log, which may still hold older versions of changed pages, is
    checkpointed and truncated. Best effort after the commit: a bot reading at that
    moment can keep the log from being truncated, which is reported. PostgreSQL keeps
    old row versions until VACUUM reuses their space (see docs/operators.md).
    """
    if not is_sqlite(db):
        return
    run: Any = db.execute_sql
    try:
        say("compacting the search index, so removed words leave it")
        with write_transaction(db):
            run('INSERT INTO "article_fts"("article_fts") VALUES (\'optimize\')')
        busy, _, _ = run("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except OperationalError as exc:
        say(f"warning: the database could not be compacted now ({exc}); run this again later")
        return
    if busy:
        say(
            "warning: the bot was reading, so the write-ahead log still holds old pages; it "
            "is cleared at the bot's next checkpoint"
        )


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def confirmation_code(*parts: Any) -> str:
    """The first 8 hex digits of a sha256 over the plan: what the admin confirms."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def operator_name() -> str:
    """Who runs the command: the OS user (``--by`` overrides it)."""
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER") or f"uid {os.getuid()}"


def backup_first(
    url: str,
    folder: Path,
    what: str,
    progress: Progress,
    backup_fn: BackupFunction = backup,
    now: datetime | None = None,
) -> BackupReport:
    """A checked backup before anything is changed, named like the daily ones so it is
    pruned with them; :class:`MaintenanceError` when it cannot be made."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = folder / backup_name(url_kind(url), now)
        progress(f"backing up the database to {target} before {what}")
        report = backup_fn(url, target, progress=progress)
    except (BackupError, OSError) as exc:
        raise MaintenanceError(
            f"the backup before {what} failed, so nothing was changed: {exc}"
        ) from None
    progress(f"backup written and checked: {report.path}")
    return report


def ids(query: Iterable[Any]) -> tuple[int, ...]:
    return tuple(sorted(int(row.id) for row in query))


def in_chunks(values: Sequence[int], make: Callable[[list[int]], Any]) -> list[Any]:
    """The rows of ``make(chunk)`` for every chunk of ``values`` (a long ``IN`` list split)."""
    found: list[Any] = []
    for chunk in chunks(values):
        found.extend(make(chunk))
    return found


def rows(query: Any) -> list[Any]:
    """A query's rows as tuples (peewee's typing knows only model rows)."""
    return list(query.tuples())


def blob_ids_used_only_by(attachment_ids: Sequence[int]) -> tuple[int, ...]:
    """The attachment blobs that no attachment outside ``attachment_ids`` uses."""
    used = {
        int(blob_id)
        for (blob_id,) in in_chunks(
            attachment_ids,
            lambda c: (
                m.Attachment.select(m.Attachment.blob)
                .where(m.Attachment.id.in_(c) & m.Attachment.blob.is_null(False))
                .tuples()
            ),
        )
    }
    mine = set(attachment_ids)
    shared = {
        int(blob_id)
        for attachment_id, blob_id in in_chunks(
            sorted(used),
            lambda c: (
                m.Attachment.select(m.Attachment.id, m.Attachment.blob)
                .where(m.Attachment.blob.in_(c))
                .tuples()
            ),
        )
        if int(attachment_id) not in mine
    }
    return tuple(sorted(used - shared))


def delete_blobs(blob_ids: Sequence[int]) -> int:
    """Delete these blobs where, at this moment, no attachment uses them."""
    deleted = 0
    for chunk in chunks(blob_ids):
        users = m.Attachment.select(m.Attachment.id).where(m.Attachment.blob == m.AttachmentBlob.id)
        deleted += (
            m.AttachmentBlob.delete()
            .where(m.AttachmentBlob.id.in_(chunk) & ~fn.EXISTS(users))
            .execute()
        )
    return deleted


def check_code(given: str, expected: str, command: str) -> None:
    given = given.strip().lower()
    if given != expected:
        # the current code is not shown: it is only for someone who read the list
        raise StaleCode(
            f"confirmation code {given!r} does not match what {command} would do now: "
            "something changed since the dry run, or the code was mistyped; run it again "
            "without --confirm, check the list, and confirm with the code it prints"
        )


def quiet(message: str) -> None:
    """The default progress: say nothing."""
