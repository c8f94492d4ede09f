"""A throwaway Synapse homeserver for the tests (pytest plugin, see tests/conftest.py).

Synapse lives in its own virtualenv (``<repo>/.venv-synapse``, created by
``scripts/install-test-servers.sh``) because it pins many dependencies that must not
clash with the bot's. Point ``TICKETBOT_SYNAPSE_PYTHON`` at another interpreter that
can ``import synapse`` to use that instead.

Fixture:

``synapse`` (session scope)
    A running homeserver as a :class:`SynapseServer`: ``url``, ``server_name``,
    ``register()``, ``create_room()``, ``join()``, ``request()`` and ``stop()``.
    Accounts live for the whole session, so tests should use localparts of their own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.ports import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "Synapse is not installed: run scripts/install-test-servers.sh (or make test)"
SERVER_NAME = "localhost"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

# Every rate limiter this Synapse version reads (synapse/config/ratelimiting.py, 1.163);
# Synapse ignores keys it does not know, so older versions are fine with this too.
_UNLIMITED = {"per_second": 1000, "burst_count": 1000}
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {
        "per_room": _UNLIMITED,
        "per_user": _UNLIMITED,
        "per_issuer": _UNLIMITED,
    },
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
}


class SynapseError(RuntimeError):
    """A Matrix API call answered with an HTTP error; the message holds the body."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class SynapseServer:
    """A running throwaway homeserver (client API on ``url``, no federation)."""

    url: str
    server_name: str
    registration_shared_secret: str = field(repr=False)
    workdir: Path
    version: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _txn: int = field(default=0, repr=False)

    # --- HTTP ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Call the homeserver's HTTP API; return the decoded JSON answer.

        Raises :class:`SynapseError` on an HTTP error status.
        """
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                answer: dict[str, Any] = json.loads(resp.read() or b"{}")
                return answer
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            exc.close()
            raise SynapseError(method, path, exc.code, detail) from None

    # --- accounts and rooms ---------------------------------------------------

    def register(self, localpart: str, password: str, admin: bool = False) -> tuple[str, str]:
        """Create an account with the shared-secret admin API.

        Returns ``(user_id, access_token)``.
        """
        path = "/_synapse/admin/v1/register"
        nonce = self.request("GET", path)["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    localpart.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        answer = self.request(
            "POST",
            path,
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        return answer["user_id"], answer["access_token"]

    def create_room(
        self,
        token: str,
        invite: Iterable[str] = (),
        name: str | None = None,
        preset: str = "private_chat",
    ) -> str:
        """Create a room as the token's user, inviting ``invite``; return the room id."""
        body: dict[str, Any] = {"preset": preset, "invite": list(invite)}
        if name is not None:
            body["name"] = name
        room_id: str = self.request("POST", "/_matrix/client/v3/createRoom", body, token)["room_id"]
        return room_id

    def join(self, token: str, room_id: str) -> str:
        """Join (or accept the invite to) ``room_id`` as the token's user."""
        path = f"/_matrix/client/v3/join/{urllib.parse.quote(room_id, safe='')}"
        joined: str = self.request("POST", path, {}, token)["room_id"]
        return joined

    def send_text(self, token: str, room_id: str, text: str) -> str:
        """Send an ``m.text`` message; return the event id."""
        self._txn += 1
        path = (
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id, safe='')}"
            f"/send/m.room.message/t{time.monotonic_ns()}-{self._txn}"
        )
        event_id: str = self.request("PUT", path, {"msgtype": "m.text", "body": text}, token)[
            "event_id"
        ]
        return event_id

    # --- lifecycle ----------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """Synapse's WARNING+ log."""
        return self.workdir / "homeserver.log"

    @property
    def output_path(self) -> Path:
        """Synapse's stdout and stderr."""
        return self.workdir / "synapse.out"

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.output_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no output)"

    def stop(self) -> None:
        """Stop the homeserver: SIGTERM, then SIGKILL after 10 s. Idempotent."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def synapse_python() -> Path:
    """The interpreter that can run Synapse, or fail the test with an install hint."""
    override = os.environ.get("TICKETBOT_SYNAPSE_PYTHON")
    python = Path(override) if override else REPO_ROOT / ".venv-synapse" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{INSTALL_HINT} ({python} does not exist)", pytrace=False)
    return python


def write_config(workdir: Path, port: int, shared_secret: str) -> Path:
    """Write homeserver.yaml and its log config into ``workdir``; return the config path.

    Both are written as JSON, which YAML parsers read as YAML. The signing key does not
    exist yet: Synapse generates missing key files itself when it starts.
    """
    log_config = {
        "version": 1,
        "formatters": {
            "precise": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(workdir / "homeserver.log"),
                "encoding": "utf8",
            }
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    log_config_path = workdir / "log.config.yaml"
    log_config_path.write_text(json.dumps(log_config, indent=2) + "\n")

    config: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://{LOOPBACK}:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": [LOOPBACK],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {
            "name": "sqlite3",
            "args": {"database": str(workdir / "homeserver.db")},
        },
        "log_config": str(log_config_path),
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(workdir / f"{SERVER_NAME}.signing.key"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_hex(32),
        "form_secret": secrets.token_hex(32),
        "enable_registration": False,
        # the cheapest password hashing bcrypt allows: registering and logging in
        # users is something the tests do a lot
        "bcrypt_rounds": 4,
        "report_stats": False,
        "enable_metrics": False,
        "suppress_key_server_warning": True,
        "trusted_key_servers": [],
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        **RATE_LIMITS,
    }
    config_path = workdir / "homeserver.yaml"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return config_path


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def start_synapse(workdir: Path) -> SynapseServer:
    """Start Synapse in ``workdir`` and wait until its client API answers."""
    python = synapse_python()
    port = free_port()
    shared_secret = secrets.token_hex(32)
    config_path = write_config(workdir, port, shared_secret)
    server = SynapseServer(
        url=f"http://{LOOPBACK}:{port}",
        server_name=SERVER_NAME,
        registration_shared_secret=shared_secret,
        workdir=workdir,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    with server.output_path.open("wb") as output:
        server.process = subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "-c", str(config_path)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )

    deadline = time.monotonic() + STARTUP_TIMEOUT
    versions_url = f"{server.url}/_matrix/client/versions"
    while not _get_ok(versions_url):
        returncode = server.process.poll()
        if returncode is not None:
            tail = server.log_tail()
            server.stop()
            if "No module named 'synapse'" in tail or "No module named synapse" in tail:
                pytest.fail(f"{INSTALL_HINT} ({python} cannot import synapse)", pytrace=False)
            pytest.fail(
                f"Synapse exited with status {returncode} during startup:\n{tail}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            tail = server.log_tail()
            server.stop()
            pytest.fail(
                f"Synapse did not answer {versions_url} within {STARTUP_TIMEOUT:.0f} s:\n{tail}",
                pytrace=False,
            )
        time.sleep(0.1)

    try:
        server.version = server.request("GET", "/_synapse/admin/v1/server_version").get(
            "server_version"
        )
    except (SynapseError, OSError):
        server.version = None
    return server


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A throwaway Synapse homeserver on a free 127.0.0.1 port, for the whole session."""
    started = time.monotonic()
    server = start_synapse(tmp_path_factory.mktemp("synapse"))
    print(
        f"\nSynapse {server.version} at {server.url} started in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    try:
        yield server
    finally:
        server.stop()
