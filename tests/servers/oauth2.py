"""An OAuth2 provider on loopback, a Dovecot that asks it, and an SMTP capture that does too.

Microsoft 365 and Google cannot be had in a test, but what the bot does with them can:
it exchanges a refresh token for access tokens at a token endpoint and logs in with
XOAUTH2; the mail server checks each access token with the provider. So:

* :class:`OAuth2Provider` is a small ``http.server`` app that is both the token
  endpoint (``POST /token``, the ``refresh_token`` grant of RFC 6749: issues access
  tokens with a lifetime the test chooses, rotates refresh tokens when told to,
  answers ``invalid_grant`` for revoked ones) and the token introspection endpoint
  (``POST /introspect``, RFC 7662) the servers ask.
* :func:`oauth2_dovecot` starts a Dovecot of its own (the session one keeps its
  passwd-file) whose only passdb is ``driver = oauth2`` with
  ``introspection_mode = post`` against the provider: the only way in is XOAUTH2 with
  a token the provider calls active.
* :func:`oauth2_smtp` is the aiosmtpd capture of tests/servers/smtp.py with an AUTH
  XOAUTH2 mechanism that introspects the token at the same provider and refuses mail
  without AUTH.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session
from imapclient import IMAPClient

from tests.servers.dovecot import (
    LOOPBACK,
    DovecotStartError,
    ImapAccount,
    _config,
    _dovecot_binary,
    _greeted,
    _identities,
    _stop,
    make_workdir,
)
from tests.servers.ports import free_port
from tests.servers.smtp import SmtpCapture, _authenticator, _Handler

CLIENT_ID = "ticketbot-test-client"
CLIENT_SECRET = "test-client-secret"


@dataclass
class _Access:
    username: str
    expires_at: float  # time.time()


@dataclass
class OAuth2Provider:
    """Token and introspection endpoint in one, with switches for the tests."""

    host: str
    port: int
    #: lifetime of the access tokens handed out by /token
    expires_in: int = 3600
    #: hand out a new refresh token with every grant and void the one used
    rotate: bool = False
    #: what /token answered, newest last: ("ok", username) or (error, "")
    grants: list[tuple[str, str]] = field(default_factory=list)
    #: every token the servers asked about, with the answer
    introspected: list[tuple[str, bool]] = field(default_factory=list)
    #: the access tokens /token handed out, oldest first (not the helpers' own)
    granted: list[str] = field(default_factory=list)
    _refresh: dict[str, str] = field(default_factory=dict, repr=False)
    _access: dict[str, _Access] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def token_url(self) -> str:
        return f"http://{self.host}:{self.port}/token"

    @property
    def introspection_url(self) -> str:
        return f"http://{self.host}:{self.port}/introspect"

    def issue_refresh_token(self, username: str) -> str:
        """A refresh token for ``username``, as the provider's consent screen would give."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = username
        return token

    def issue_access_token(self, username: str, expires_in: float = 3600) -> str:
        token = "at-" + secrets.token_urlsafe(24)
        with self._lock:
            self._access[token] = _Access(username, time.time() + expires_in)
        return token

    def refresh_tokens(self, username: str) -> list[str]:
        """The refresh tokens of ``username`` that are valid now."""
        with self._lock:
            return [t for t, u in self._refresh.items() if u == username]

    def access_tokens(self, username: str) -> list[str]:
        """The access tokens ever given to ``username`` and not revoked (expired ones too)."""
        with self._lock:
            return [t for t, a in self._access.items() if a.username == username]

    def revoke_refresh_tokens(self, username: str) -> None:
        """As when the user changes the password or an admin revokes the sessions."""
        with self._lock:
            for token in [t for t, u in self._refresh.items() if u == username]:
                del self._refresh[token]

    def revoke_access_token(self, token: str) -> None:
        with self._lock:
            self._access.pop(token, None)

    def expired(self, token: str) -> bool:
        """True once ``token`` may no longer be used (run out or revoked)."""
        with self._lock:
            access = self._access.get(token)
            return access is None or access.expires_at <= time.time()

    def active(self, token: str) -> str | None:
        """The user ``token`` is an unexpired access token of, else None (recorded)."""
        with self._lock:
            access = self._access.get(token)
            ok = access is not None and access.expires_at > time.time()
            self.introspected.append((token, ok))
            return access.username if ok and access is not None else None

    # --- called from the HTTP server's threads ----------------------------------------------

    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            self.grants.append(("invalid_client", ""))
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            username = self._refresh.get(form.get("refresh_token", ""))
            if username is None:
                self.grants.append(("invalid_grant", ""))
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "The refresh token has expired or was revoked.",
                }
            answer: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.expires_in}
            if self.rotate:
                del self._refresh[form["refresh_token"]]
                new = "rt-" + secrets.token_urlsafe(24)
                self._refresh[new] = username
                answer["refresh_token"] = new
            self.grants.append(("ok", username))
            expires_in = self.expires_in
        answer["access_token"] = self.issue_access_token(username, expires_in)
        self.granted.append(answer["access_token"])
        return 200, answer

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        username = self.active(form.get("token", ""))
        if username is None:
            return 200, {"active": False}
        return 200, {"active": True, "username": username}


class _Endpoint(BaseHTTPRequestHandler):
    provider: OAuth2Provider  # set on the subclass made per server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        path = self.path.split("?", 1)[0]
        if path == "/token":
            status, answer = self.provider._grant(form)
        elif path == "/introspect":
            status, answer = self.provider._introspect(form)
        else:  # as a web server in front would answer: not OAuth2's JSON
            self._send(404, "text/html", b"<h1>Not Found</h1>")
            return
        self._send(status, "application/json", json.dumps(answer).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tokens are in URLs/forms
        pass


@pytest.fixture
def oauth2_provider() -> Iterator[OAuth2Provider]:
    """The provider on a free loopback port for one test."""
    provider = OAuth2Provider(LOOPBACK, free_port())
    handler = type("Endpoint", (_Endpoint,), {"provider": provider})
    server = ThreadingHTTPServer((LOOPBACK, provider.port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="oauth2-provider", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def introspect(url: str, token: str) -> str | None:
    """Ask the introspection endpoint about ``token``: its user, or None (as a server would)."""
    data = urllib.parse.urlencode({"token": token}).encode()
    with urllib.request.urlopen(url, data=data, timeout=5) as response:
        answer = json.loads(response.read())
    return str(answer["username"]) if answer.get("active") else None


# --- Dovecot with an OAuth2 passdb -----------------------------------------------------------


@dataclass
class OAuth2ImapAccount(ImapAccount):
    """A mailbox on the OAuth2 Dovecot; its helper connections log in with their own token."""

    provider: OAuth2Provider | None = None

    def client(self, *, timeout: float = 10.0) -> IMAPClient:
        assert self.provider is not None
        client = IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
        client.oauth2_login(self.username, self.provider.issue_access_token(self.username, 60))
        return client


@dataclass
class OAuth2Dovecot:
    workdir: Path
    port: int
    provider: OAuth2Provider
    _counter: int = 0

    def account(self) -> OAuth2ImapAccount:
        """A user nobody has used yet: any name the provider vouches for has a mailbox."""
        self._counter += 1
        return OAuth2ImapAccount(
            LOOPBACK, self.port, f"desk{self._counter}@example.org", "", provider=self.provider
        )

    def kick(self, username: str) -> None:
        """Drop every connection of ``username`` from the server side."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        subprocess.run(
            [doveadm, "-c", str(self.workdir / "dovecot.conf"), "kick", username],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def log_text(self) -> str:
        path = self.workdir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _oauth2_config(workdir: Path, port: int, ids: dict[str, str | int]) -> str:
    """The session Dovecot's configuration with the passwd-file passdb swapped for oauth2."""
    base = _config(workdir, port, ids)
    start = base.index("passdb {")
    end = base.index("}", start) + 1
    passdb = (
        "passdb {\n"
        "  driver = oauth2\n"
        "  mechanisms = xoauth2 oauthbearer\n"
        f"  args = {workdir}/dovecot-oauth2.conf.ext\n"
        "}"
    )
    config = base[:start] + passdb + base[end:]
    return config.replace("auth_mechanisms = plain login", "auth_mechanisms = xoauth2 oauthbearer")


def _oauth2_ext(url: str) -> str:
    return (
        f"introspection_url = {url}\n"
        "introspection_mode = post\n"
        "force_introspection = yes\n"
        "username_attribute = username\n"
        "active_attribute = active\n"
        "active_value = true\n"
        "timeout_msecs = 5000\n"
    )


@pytest.fixture
def oauth2_dovecot(oauth2_provider: OAuth2Provider) -> Iterator[OAuth2Dovecot]:
    """A Dovecot for one test whose only passdb asks ``oauth2_provider`` about every token."""
    binary = _dovecot_binary()
    ids = _identities()
    workdir = make_workdir("ticketbot-oauth2-dovecot-", ids)
    (workdir / "dovecot-oauth2.conf.ext").write_text(_oauth2_ext(oauth2_provider.introspection_url))
    process: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):
            port = free_port()
            conf = workdir / "dovecot.conf"
            conf.write_text(_oauth2_config(workdir, port, ids))
            with (workdir / "stderr.log").open("ab") as stderr_file:
                process = subprocess.Popen(
                    [binary, "-F", "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr_file,
                )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and process.poll() is None:
                if _greeted(port):
                    break
                time.sleep(0.05)
            else:
                _stop(process)
                text = (workdir / "stderr.log").read_text(errors="replace")
                error = DovecotStartError(
                    f"OAuth2 Dovecot did not start:\n{text}", port_in_use="in use" in text
                )
                if not error.port_in_use:
                    pytest.fail(str(error), pytrace=False)
                process = None
                continue
            break
        else:
            pytest.fail(
                "the OAuth2 Dovecot could not bind a free port in 3 attempts", pytrace=False
            )
        yield OAuth2Dovecot(workdir, port, oauth2_provider)
    finally:
        if process is not None:
            _stop(process)
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


# --- SMTP with AUTH XOAUTH2 ------------------------------------------------------------------


@dataclass
class OAuth2SmtpCapture(SmtpCapture):
    """The SMTP capture, taking AUTH XOAUTH2 tokens the provider calls active."""

    introspection_url: str = ""
    #: (user in the XOAUTH2 string, accepted) for every AUTH XOAUTH2
    logins: list[tuple[str, bool]] = field(default_factory=list)


class _XOAuth2Handler(_Handler):
    def __init__(self, capture: OAuth2SmtpCapture) -> None:
        super().__init__(capture)
        self._oauth2 = capture

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2: ``user=...^Aauth=Bearer ...^A^A``, checked by introspection.

        A refusal is a 334 challenge with a JSON error, answered by the client with an
        empty line, then 535 (as Google and Microsoft do it).
        """
        if len(args) > 1:
            blob = base64.b64decode(args[1])
        else:
            answer = await server.challenge_auth("")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            assert isinstance(answer, bytes)
            blob = answer
        fields = dict(
            part.split("=", 1)
            for part in blob.decode(errors="replace").split("\x01")
            if "=" in part
        )
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        owner = await asyncio.to_thread(introspect, self._oauth2.introspection_url, token)
        accepted = owner is not None and owner == user
        self._oauth2.logins.append((user, accepted))
        if accepted:
            return AuthResult(success=True, auth_data=user.encode())
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        await server.challenge_auth(error)
        return AuthResult(success=False, handled=False)


@pytest.fixture
def oauth2_smtp(oauth2_provider: OAuth2Provider) -> Iterator[OAuth2SmtpCapture]:
    """An SMTP capture for one test that takes only AUTH XOAUTH2 with the provider's tokens."""
    capture = OAuth2SmtpCapture(
        LOOPBACK, free_port(), introspection_url=oauth2_provider.introspection_url
    )
    controller = Controller(
        _XOAuth2Handler(capture),
        hostname=LOOPBACK,
        port=capture.port,
        authenticator=_authenticator(capture),
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield capture
    finally:
        controller.stop()
