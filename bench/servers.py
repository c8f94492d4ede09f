"""A throwaway Dovecot for the benchmarks, built from the test suite's own helpers.

The configuration, the identities the processes run as, the passwd-file writer, the
greeting probe and the shutdown are those of :mod:`tests.servers.dovecot` (imported,
not copied), so the benchmark measures the same server setup the tests use. Only the
start-up loop is here, because the test module's is a pytest fixture.

Mail can be put into the user's INBOX two ways (:func:`load`):

``maildir``
    Write the messages as files into ``~/Maildir/new`` before the user's first
    login, in delivery order; Dovecot indexes them on the first SELECT and gives them
    UIDs in file-name order, which is the order written. By far the fastest.
``append``
    IMAP APPEND over one connection, one command per message.

Either way :func:`verify` then checks over IMAP that the folder holds exactly the
expected Message-IDs, in UID order.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.dovecot import (
    LOOPBACK,
    DovecotStartError,
    ImapAccount,
    _dovecot_binary,
    _identities,
    _stop,
    _write_users,
    launch,
    make_workdir,
)
from tests.servers.ports import free_port

USERNAME = "bench"
APPEND_CHUNK = 200  # messages per connection when loading by APPEND


class ServerUnavailable(RuntimeError):
    """A server the benchmark needs could not be started; the message says what to do."""


@dataclass
class BenchDovecot:
    """The running server and its one mailbox user."""

    account: ImapAccount
    workdir: Path
    binary: str
    mail_uid: int
    mail_gid: int
    startup_seconds: float

    @property
    def maildir(self) -> Path:
        """The user's INBOX on disk (``mail_location = maildir:~/Maildir``)."""
        return self.workdir / "home" / self.account.username / "Maildir"

    @property
    def log_path(self) -> Path:
        return self.workdir / "dovecot.log"

    def version(self) -> str:
        result = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        return result.stdout.strip() or result.stderr.strip()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def dovecot() -> Iterator[BenchDovecot]:
    """Start Dovecot on a free loopback port with one user; stop it and delete everything after."""
    try:
        binary = _dovecot_binary()
    except pytest.fail.Exception as exc:  # the test helper reports through pytest
        raise ServerUnavailable(str(exc)) from None
    ids = _identities()
    mail_uid, mail_gid = int(ids["mail_uid"]), int(ids["mail_gid"])
    workdir = make_workdir("ticketbot-bench-dovecot-", ids)
    password = secrets.token_urlsafe(12)
    _write_users(workdir / "users", {USERNAME: password})
    process: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):  # another process may take the free port first
            port = free_port()
            try:
                process, seconds = launch(workdir, port, ids)
            except DovecotStartError as exc:
                if not exc.port_in_use:
                    raise ServerUnavailable(str(exc)) from None
                continue
            server = BenchDovecot(
                account=ImapAccount(LOOPBACK, port, USERNAME, password),
                workdir=workdir,
                binary=binary,
                mail_uid=mail_uid,
                mail_gid=mail_gid,
                startup_seconds=seconds,
            )
            break
        else:
            raise ServerUnavailable("Dovecot could not bind a free port in 3 attempts")
        yield server
    finally:
        if process is not None:
            _stop(process)
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


def write_maildir(server: BenchDovecot, messages: Sequence[bytes]) -> None:
    """Deliver ``messages`` as Maildir files, in order; only before the user's first login.

    File names follow the Maildir convention (``time.MseqPpid.host,S=size``) with
    increasing times, so Dovecot assigns UIDs in the order of ``messages``; ``S=`` lets
    it skip stat'ing each file for its size.
    """
    if server.maildir.exists():
        raise RuntimeError(f"{server.maildir} exists: write_maildir only works on a new user")
    for sub in ("tmp", "new", "cur"):
        (server.maildir / sub).mkdir(parents=True)
    for path in (server.maildir.parent, server.maildir, *server.maildir.iterdir()):
        os.chown(path, server.mail_uid, server.mail_gid)
    base = 1_700_000_000
    pid = os.getpid()
    for index, raw in enumerate(messages):
        name = f"{base + index}.M{index:06d}P{pid}.bench,S={len(raw)}"
        tmp = server.maildir / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, server.mail_uid, server.mail_gid)
        tmp.rename(server.maildir / "new" / name)


def append_imap(server: BenchDovecot, messages: Sequence[bytes]) -> None:
    """Deliver ``messages`` by IMAP APPEND, in order."""
    for start in range(0, len(messages), APPEND_CHUNK):
        with server.account.client(timeout=60) as client:
            for raw in messages[start : start + APPEND_CHUNK]:
                client.append("INBOX", raw)


def load(server: BenchDovecot, messages: Sequence[bytes], method: str) -> float:
    """Put ``messages`` into the INBOX with ``method`` (maildir or append); return seconds."""
    started = time.perf_counter()
    if method == "maildir":
        write_maildir(server, messages)
    elif method == "append":
        append_imap(server, messages)
    else:
        raise ValueError(f"unknown load method {method!r}")
    return time.perf_counter() - started


def verify(server: BenchDovecot, message_ids: Sequence[str]) -> list[int]:
    """Check over IMAP that the INBOX holds exactly ``message_ids`` in UID order; return UIDs.

    Also the first SELECT of freshly written Maildir files, so Dovecot's indexing
    happens here and not in the first measured run.
    """
    with server.account.client(timeout=120) as client:
        client.select_folder("INBOX")
        uids = sorted(int(uid) for uid in client.search(["ALL"]))
        if len(uids) != len(message_ids):
            raise RuntimeError(
                f"Dovecot sees {len(uids)} messages, expected {len(message_ids)}\n"
                f"{server.log_tail()}"
            )
        seen: list[str] = []
        field = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
        for start in range(0, len(uids), 500):
            batch = uids[start : start + 500]
            fetched = client.fetch(batch, [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            for uid in batch:
                header = bytes(fetched[uid][field]).decode("ascii", "replace")
                seen.append(header.partition(":")[2].strip())
    if seen != list(message_ids):
        wrong = next(i for i, (a, b) in enumerate(zip(seen, message_ids, strict=True)) if a != b)
        raise RuntimeError(
            f"the INBOX is not in delivery order: UID {uids[wrong]} holds {seen[wrong]},"
            f" expected {message_ids[wrong]}"
        )
    return uids


def reset_seen(server: BenchDovecot) -> None:
    """Clear ``\\Seen`` on every message, as the watcher sets it after each intake."""
    with server.account.client(timeout=60) as client:
        client.select_folder("INBOX")
        uids = client.search(["SEEN"])
        if uids:
            client.remove_flags(uids, [b"\\Seen"], silent=True)
