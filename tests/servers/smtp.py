"""A real SMTP server (aiosmtpd) on a loopback port that records what it receives.

The SMTP sender is tested against a real server so the bytes on the wire, the
envelope and the reply codes are what smtplib really produces and sees. Each test
gets its own server (:func:`smtp_capture`), which can be told to refuse the next
messages with a temporary (4xx) or permanent (5xx) code, or to require AUTH.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers.ports import free_port

LOOPBACK = "127.0.0.1"
STAGES = ("MAIL", "RCPT", "DATA")


@dataclass(frozen=True)
class CapturedMessage:
    """One accepted message: the envelope as the server saw it and the raw bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    auth_login: str | None = None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class _Failure:
    remaining: int
    code: int
    text: str
    stage: str


@dataclass
class SmtpCapture:
    """The running server, what it has accepted, and switches for failure tests."""

    host: str
    port: int
    messages: list[CapturedMessage] = field(default_factory=list)
    _failure: _Failure | None = field(default=None, repr=False)
    _credentials: tuple[str, str] | None = field(default=None, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def fail_next(
        self, count: int = 1, code: int = 451, text: str = "", *, stage: str = "DATA"
    ) -> None:
        """Answer ``code`` at ``stage`` (MAIL, RCPT or DATA) for the next ``count`` commands.

        At DATA (the default) one command is one message; at RCPT each recipient counts.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        text = text or ("Try again later" if 400 <= code < 500 else "Rejected")
        with self._changed:
            self._failure = _Failure(count, code, text, stage)

    def require_auth(self, username: str, password: str) -> None:
        """Accept AUTH only with these credentials and refuse mail without it (530)."""
        with self._changed:
            self._credentials = (username, password)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[CapturedMessage]:
        """Block until at least ``count`` messages have arrived; fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} message(s) within {timeout} s, got {len(self.messages)}"
                    )
                self._changed.wait(remaining)
            return list(self.messages)

    # --- called from the server's thread -----------------------------------------------------

    def _take_failure(self, stage: str) -> str | None:
        with self._changed:
            failure = self._failure
            if failure is None or failure.stage != stage or failure.remaining <= 0:
                return None
            failure.remaining -= 1
            if failure.remaining == 0:
                self._failure = None
            return f"{failure.code} {failure.text}"

    def _record(self, message: CapturedMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def _auth_required(self) -> bool:
        with self._changed:
            return self._credentials is not None

    def _check_login(self, username: str, password: str) -> bool:
        with self._changed:
            return self._credentials == (username, password)


class _Handler:
    """aiosmtpd handler hooks: refuse where told to, record what is accepted."""

    def __init__(self, capture: SmtpCapture) -> None:
        self._capture = capture

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._capture._auth_required() and not session.authenticated:
            return "530 5.7.0 Authentication required"
        refusal = self._capture._take_failure("MAIL")
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._capture._take_failure("RCPT")
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self._capture._take_failure("DATA")
        if refusal is not None:
            return refusal
        content = envelope.original_content or envelope.content or b""
        login = session.auth_data
        self._capture._record(
            CapturedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=content if isinstance(content, bytes) else content.encode(),
                auth_login=login.decode() if isinstance(login, bytes) else None,
            )
        )
        return "250 Message accepted for delivery"


def _authenticator(capture: SmtpCapture) -> Any:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and capture._check_login(
            auth_data.login.decode(), auth_data.password.decode()
        ):
            return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False)

    return authenticate


@pytest.fixture
def smtp_capture() -> Iterator[SmtpCapture]:
    """An SMTP server on a free loopback port for one test; stopped afterwards."""
    capture = SmtpCapture(LOOPBACK, free_port())
    controller = Controller(
        _Handler(capture),
        hostname=LOOPBACK,
        port=capture.port,
        authenticator=_authenticator(capture),
        auth_require_tls=False,  # loopback only, and the test checks what the client sends
    )
    controller.start()
    try:
        yield capture
    finally:
        controller.stop()
