"""A throwaway Dovecot IMAP server on a loopback port, started once per test session.

The mail adapters are tested against a real IMAP server because the parts that go
wrong in production (UID SEARCH ranges, \\Seen being set by a plain FETCH, MOVE,
IDLE wake-ups, UIDVALIDITY) are server behaviour a fake would only imitate.

Everything lives in one temporary directory: the configuration, the runtime
sockets, the logs, a passwd-file with plain-text test passwords and the maildirs.
Each test gets its own freshly created user (:func:`imap_account`), so tests never
see each other's mail; Dovecot re-reads the passwd-file when it changes, so adding
a user needs no restart.

When the suite runs as root, Dovecot's mail processes run as ``nobody`` (an
unprivileged uid that owns nothing else), its internal processes as the packaged
``dovecot``/``dovenull`` users. As an ordinary user everything runs as that user.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.servers.ports import free_port

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 20.0
USER_BATCH = 200
_NOT_INSTALLED = (
    "Dovecot is not installed: apt-get install dovecot-imapd"
    " (or run scripts/install-test-servers.sh)"
)
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


@dataclass
class ImapAccount:
    """One mailbox user on the test server, with helpers that talk real IMAP to it."""

    host: str
    port: int
    username: str
    password: str

    def imap_toml(self, password_env: str) -> str:
        """The ``[mail.imap]`` section of a ``bot.toml`` for a real ``ticketbot run`` on this
        mailbox: no TLS on loopback, the password from ``password_env``, a check a second."""
        return (
            "[mail.imap]\n"
            f'host = "{self.host}"\n'
            f"port = {self.port}\n"
            'security = "none"\n'
            f'username = "{self.username}"\n'
            f'password_env = "{password_env}"\n'
            "poll_seconds = 1"
        )

    def client(self, *, timeout: float = 10.0) -> IMAPClient:
        """A new logged-in connection; the caller logs it out (or uses it as a context manager)."""
        client = IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
        client.login(self.username, self.password)
        return client

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[bytes, ...] = ()) -> int:
        """Deliver ``raw`` into ``folder`` (created if missing) and return its UID."""
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            response = client.append(folder, raw, flags=flags)
        match = _APPENDUID.search(response or b"")
        assert match is not None, f"no APPENDUID in {response!r}"
        return int(match.group(2))

    def create_folder(self, folder: str) -> None:
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)

    def delete_folder(self, folder: str) -> None:
        with self.client() as client:
            if client.folder_exists(folder):
                client.delete_folder(folder)

    def folders(self) -> list[str]:
        with self.client() as client:
            return [str(name) for _flags, _sep, name in client.list_folders()]

    def uids(self, folder: str = "INBOX") -> list[int]:
        """Every UID in ``folder``, ascending (read-only select: nothing changes)."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return sorted(int(uid) for uid in client.search(["ALL"]))

    def flags(self, folder: str = "INBOX") -> dict[int, set[bytes]]:
        """The flags of every message in ``folder`` by UID, read without changing them."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            if not uids:
                return {}
            fetched = client.fetch(uids, ["FLAGS"])
            return {int(uid): set(data[b"FLAGS"]) for uid, data in fetched.items()}

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as client:
            return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def reset(self) -> None:
        """Delete every message in every folder and every folder but INBOX."""
        with self.client() as client:
            names = [str(name) for _flags, _sep, name in client.list_folders()]
            for name in names:
                client.select_folder(name)
                uids = client.search(["ALL"])
                if uids:
                    client.delete_messages(uids)
                    client.expunge()
                client.unselect_folder()
            for name in sorted(names, key=len, reverse=True):
                if name.upper() != "INBOX":
                    client.delete_folder(name)


@dataclass
class DovecotServer(ImapAccount):
    """The running server; itself usable as the default account, and a factory for more."""

    workdir: Path = field(default_factory=Path)
    log_path: Path = field(default_factory=Path)
    startup_seconds: float = 0.0
    _users_file: Path = field(default_factory=Path, repr=False)
    _users: dict[str, str] = field(default_factory=dict, repr=False)
    _spare: list[str] = field(default_factory=list, repr=False)
    _counter: Iterator[int] = field(default_factory=itertools.count, repr=False)

    def add_user(self) -> ImapAccount:
        """A user nobody has used yet, with an empty mailbox (created on first login).

        Dovecot looks at a changed passwd-file at most once a second, so users are
        written in batches ahead of time rather than one per test; when a batch runs
        out, the next is written and given that second to be noticed.
        """
        if not self._spare:
            self._write_batch()
            if self.startup_seconds:  # already running: wait for Dovecot's next look
                time.sleep(1.1)
        username = self._spare.pop(0)
        return ImapAccount(self.host, self.port, username, self._users[username])

    def _write_batch(self, size: int = USER_BATCH) -> None:
        for _ in range(size):
            username = f"user{next(self._counter)}"
            self._users[username] = secrets.token_urlsafe(12)
            self._spare.append(username)
        _write_users(self._users_file, self._users)

    def kick(self, username: str) -> None:
        """Drop every connection of ``username`` from the server side, as a network cut would."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        subprocess.run(
            [doveadm, "-c", str(self.workdir / "dovecot.conf"), "kick", username],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _write_users(path: Path, users: dict[str, str]) -> None:
    """Rewrite the passwd-file atomically, so Dovecot never reads half a file."""
    text = "".join(f"{name}:{{PLAIN}}{password}::::::\n" for name, password in users.items())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


def _dovecot_binary() -> str:
    found = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
    )
    if found is None:
        pytest.fail(_NOT_INSTALLED, pytrace=False)
    return found


def _identities() -> dict[str, str | int]:
    """Which users Dovecot's processes run as: see the module docstring."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return {
            "internal_user": "dovecot",
            "internal_group": "dovecot",
            "login_user": "dovenull",
            "mail_uid": nobody.pw_uid,
            "mail_gid": nobody.pw_gid,
        }
    me = pwd.getpwuid(os.getuid())
    return {
        "internal_user": me.pw_name,
        "internal_group": grp.getgrgid(os.getgid()).gr_name,
        "login_user": me.pw_name,
        "mail_uid": me.pw_uid,
        "mail_gid": os.getgid(),
    }


def _config(workdir: Path, port: int, ids: dict[str, str | int]) -> str:
    # Without root, Dovecot cannot chroot its login and anvil processes.
    chroot = "" if os.geteuid() == 0 else "chroot ="
    return f"""\
# Written by tests/servers/dovecot.py for one test session; nothing outside {workdir}.
base_dir = {workdir}/run
state_dir = {workdir}/state
log_path = {workdir}/dovecot.log
info_log_path = {workdir}/dovecot.log
protocols = imap
listen = {LOOPBACK}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# Tests try wrong passwords on purpose; the default 2 s penalty would only slow them.
auth_failure_delay = 0
default_internal_user = {ids["internal_user"]}
default_internal_group = {ids["internal_group"]}
default_login_user = {ids["login_user"]}
first_valid_uid = {ids["mail_uid"]}
last_valid_uid = {ids["mail_uid"]}
first_valid_gid = {ids["mail_gid"]}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {workdir}/users
}}
userdb {{
  driver = static
  args = uid={ids["mail_uid"]} gid={ids["mail_gid"]} home={workdir}/home/%u
}}
service imap-login {{
  {chroot}
  inet_listener imap {{
    address = {LOOPBACK}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  {chroot}
  # With every client on 127.0.0.1, the per-IP penalty after failed logins would slow
  # down every later test; mode 0 switches penalty tracking off (Dovecot's documented way).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  # The mail processes run as the unprivileged mail uid and report here.
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def _greeted(port: int) -> bool:
    """True once the server accepts a connection on ``port`` and sends its IMAP greeting."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(1024)
                if not chunk:
                    return False
                data += chunk
            sock.sendall(b"a LOGOUT\r\n")
            return data.startswith(b"* OK")
    except OSError:
        return False


class DovecotStartError(RuntimeError):
    """Dovecot did not greet in time; ``port_in_use`` says whether another port may help."""

    def __init__(self, message: str, *, port_in_use: bool) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


def make_workdir(prefix: str, ids: dict[str, str | int]) -> Path:
    """A fresh server folder the unprivileged mail and login processes can enter.

    Not pytest's tmp_path: its parent is 0700 root, which those processes could not enter.
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)
    for sub in ("run", "state", "home"):
        (workdir / sub).mkdir()
    os.chown(workdir / "home", int(ids["mail_uid"]), int(ids["mail_gid"]))
    return workdir


def launch(
    workdir: Path, port: int, ids: dict[str, str | int], timeout: float = STARTUP_TIMEOUT
) -> tuple[subprocess.Popen[bytes], float]:
    """Write the config for ``port``, start Dovecot in the foreground and wait for its greeting.

    Returns the process and the seconds it took; raises :class:`DovecotStartError` (with
    its stderr and log tail) after stopping it when it does not come up.
    """
    conf = workdir / "dovecot.conf"
    conf.write_text(_config(workdir, port, ids))
    started = time.monotonic()
    with (workdir / "stderr.log").open("ab") as stderr_file:
        process = subprocess.Popen(
            [_dovecot_binary(), "-F", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
        )
    while time.monotonic() - started < timeout and process.poll() is None:
        if _greeted(port):
            return process, time.monotonic() - started
        time.sleep(0.05)
    _stop(process)
    stderr = (workdir / "stderr.log").read_text(errors="replace")
    log = workdir / "dovecot.log"
    log_text = log.read_text(errors="replace") if log.exists() else ""
    raise DovecotStartError(
        f"Dovecot did not start within {timeout:.0f} s on port {port}.\n"
        f"stderr:\n{stderr}\nlog tail:\n{chr(10).join(log_text.splitlines()[-40:])}",
        port_in_use="in use" in stderr + log_text,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """Start Dovecot on a free loopback port for the whole session; stop and delete it after."""
    _dovecot_binary()  # fails the test with what to install when it is missing
    ids = _identities()
    workdir = make_workdir("ticketbot-dovecot-", ids)
    users_file = workdir / "users"
    log_path = workdir / "dovecot.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):  # another process may grab the free port before Dovecot does
            port = free_port()
            server = DovecotServer(
                LOOPBACK,
                port,
                "",
                "",
                workdir=workdir,
                log_path=log_path,
                _users_file=users_file,
            )
            default = server.add_user()
            server.username, server.password = default.username, default.password
            try:
                process, server.startup_seconds = launch(workdir, port, ids)
                break
            except DovecotStartError as exc:
                if not exc.port_in_use:
                    pytest.fail(str(exc), pytrace=False)
        else:
            pytest.fail("Dovecot could not bind a free port in 3 attempts", pytrace=False)
        yield server
    finally:
        if process is not None:
            _stop(process)
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


@pytest.fixture
def imap_account(dovecot: DovecotServer) -> ImapAccount:
    """A fresh user with an empty INBOX, so no test sees another test's mail."""
    return dovecot.add_user()
