"""Sending replies: over SMTP, or into a directory of .eml files for the demo.

Both implement :class:`bot.ports.MailSender`. The outbox retries a
:class:`MailSendError` with ``temporary=True`` later and gives up on one with
``temporary=False``, so the SMTP sender's main job besides sending is to sort
failures into those two kinds honestly: a 4xx reply, a dropped connection or a
timeout may pass, a 5xx reply for this message will not.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import smtplib
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from adapters.email.compose import message_bytes
from adapters.email.oauth2 import OAuth2Error, OAuth2Tokens, xoauth2_string
from bot.config import MailAuth
from bot.mail import OutgoingEmail
from bot.ports import MailSendError

log = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "none"]


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to submit mail. AUTH is used only when ``username`` is set."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    #: "oauth2" logs in with AUTH XOAUTH2 and a token from ``oauth2`` instead of ``password``
    auth: MailAuth = "password"
    oauth2: OAuth2Tokens | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.auth == "oauth2" and (self.oauth2 is None or not self.username):
            raise ValueError('SMTP auth = "oauth2" needs a username and the [mail.oauth2] tokens')


class _TokenRefused(MailSendError):
    """The server refused the access token: worth one more try with a fresh one."""


class SmtpSender:
    """Submits each reply to an SMTP server, in a worker thread (smtplib blocks)."""

    def __init__(
        self, settings: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._settings = settings
        # Tests pass a context trusting their own certificate; production verifies normally.
        self._ssl_context = ssl_context
        self._server = f"SMTP server {settings.host}:{settings.port}"

    async def send(self, message: OutgoingEmail) -> None:
        """Send ``message`` to all its ``to`` addresses; raise :class:`MailSendError` on failure."""
        data = _render(message)
        sender = _envelope_address(message.sender.email)
        recipients = [_envelope_address(address.email) for address in message.to]
        tokens = self._settings.oauth2 if self._settings.auth == "oauth2" else None
        if tokens is None:
            await asyncio.to_thread(self._send_sync, sender, recipients, data)
        else:
            token = await self._access_token(tokens)
            try:
                await asyncio.to_thread(self._send_sync, sender, recipients, data, token)
            except _TokenRefused:
                # revoked before its announced expiry, or clocks apart: once more, fresh
                log.info("%s refused the access token; getting a new one", self._server)
                tokens.invalidate(token)
                token = await self._access_token(tokens)
                await asyncio.to_thread(self._send_sync, sender, recipients, data, token)
        log.info("sent %s to %s via %s", message.message_id, ", ".join(recipients), self._server)

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    async def _access_token(self, tokens: OAuth2Tokens) -> str:
        """A token for AUTH XOAUTH2; without one the reply stays queued (a setup problem)."""
        try:
            return await tokens.access_token()
        except OAuth2Error as exc:
            raise MailSendError(f"no access token for {self._server}: {exc}") from exc

    def _send_sync(
        self, sender: str, recipients: list[str], data: bytes, access_token: str | None = None
    ) -> None:
        settings = self._settings
        try:
            smtp: smtplib.SMTP
            if settings.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    settings.host, settings.port, timeout=settings.timeout, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
            try:
                smtp.ehlo()
                if settings.security == "starttls":
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if access_token is not None:
                    _auth_xoauth2(smtp, settings.username or "", access_token)
                elif settings.username:
                    smtp.login(settings.username, settings.password or "")
                refused = smtp.sendmail(sender, recipients, data)
            except BaseException:
                _quit_quietly(smtp)
                raise
            # The server has taken the message. Its answer to QUIT is not waited for here:
            # the outbox records the reply as sent only after this returns, and a crash
            # before that sends it again. Waiting for QUIT made that window a QUIT round
            # trip long (up to ``timeout`` with a server slow to answer it) instead of the
            # one database write the operator's guide promises; a kill during a slow QUIT
            # sent the reply twice (tests/faults/test_reply_crash.py).
            threading.Thread(
                target=_quit_quietly, args=(smtp,), name="smtp-quit", daemon=True
            ).start()
        except smtplib.SMTPRecipientsRefused as exc:
            raise self._recipients_error(exc.recipients) from exc
        except smtplib.SMTPAuthenticationError as exc:
            if access_token is not None:
                raise _TokenRefused(
                    f"{self._server} refused the access token "
                    f"({exc.smtp_code} {_text(exc.smtp_error)})",
                    temporary=True,
                ) from exc
            # A wrong password is a configuration error, not a property of this reply:
            # keep the reply queued until someone fixes it (the outbox caps the attempts).
            raise MailSendError(
                f"{self._server} refused the login ({exc.smtp_code} {_text(exc.smtp_error)})",
                temporary=True,
            ) from exc
        except smtplib.SMTPResponseException as exc:  # sender refused, data error, connect error
            raise MailSendError(
                f"{self._server} answered {exc.smtp_code} {_text(exc.smtp_error)}",
                temporary=not 500 <= exc.smtp_code < 600,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise MailSendError(
                f"{self._server} does not support what we need: {exc}", temporary=True
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, refused, timeouts, TLS
            raise MailSendError(
                f"{self._server} could not be reached or dropped the connection: "
                f"{type(exc).__name__}: {exc}",
                temporary=True,
            ) from exc
        if refused:
            # Some recipients took it: sending again would double it for them, so this
            # counts as sent; the refusals are only logged.
            log.warning(
                "%s refused some recipients: %s",
                self._server,
                "; ".join(
                    f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in refused.items()
                ),
            )

    def _recipients_error(self, refused: dict[str, tuple[int, bytes]]) -> MailSendError:
        """Every recipient was refused: temporary only if no refusal was permanent."""
        temporary = all(not 500 <= code < 600 for code, _text_ in refused.values())
        details = "; ".join(
            f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in refused.items()
        )
        return MailSendError(
            f"{self._server} refused the recipients ({details})", temporary=temporary
        )


def _auth_xoauth2(smtp: smtplib.SMTP, username: str, access_token: str) -> None:
    """AUTH XOAUTH2 with the token as initial response.

    A refusal comes as a 334 challenge holding a JSON error; the client must answer it
    with an empty line, and the server then sends the final 535.
    """

    def respond(challenge: bytes | None = None) -> str:
        return xoauth2_string(username, access_token) if challenge is None else ""

    smtp.auth("XOAUTH2", respond, initial_response_ok=True)


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    """Say QUIT, ignoring its answer: once the server took the message, an odd reply to
    QUIT must not turn into an error that makes the outbox send it a second time."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError) as exc:
        log.debug("QUIT failed: %s", exc)
        smtp.close()


def _envelope_address(address: str) -> str:
    """The address for MAIL FROM / RCPT TO: ASCII, with an IDNA-encoded domain."""
    local, _at, domain = address.strip().rpartition("@")
    if domain.isascii():
        return address.strip()
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise MailSendError(f"invalid domain in {address!r}: {exc}", temporary=False) from exc


def _render(message: OutgoingEmail) -> bytes:
    """The MIME bytes; a reply that cannot be rendered (no recipient, a malformed address
    or Message-ID) fails permanently, since sending it again would fail the same way."""
    try:
        return message_bytes(message)
    except ValueError as exc:
        raise MailSendError(
            f"reply {message.message_id!r} cannot be sent: {exc}", temporary=False
        ) from exc


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")


class FileSender:
    """Writes each reply to ``<directory>/<timestamp>-<message-id>.eml`` instead of sending it.

    For the demo and local trials: the replies can be opened in any mail program.
    A resend of the same Message-ID (the outbox's one crash window) replaces the
    earlier file rather than adding a second, like a receiving server would dedupe.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: OutgoingEmail) -> None:
        data = _render(message)
        try:
            path = await asyncio.to_thread(self._write, message.message_id, data)
        except OSError as exc:
            raise MailSendError(f"could not write reply to {self.directory}: {exc}") from exc
        log.info("wrote reply %s to %s", message.message_id, path)

    def path_for(self, message_id: str) -> Path | None:
        """The file already written for ``message_id``, if any."""
        suffix = f"-{_safe_name(message_id)}.eml"
        matches = sorted(
            p for p in self.directory.glob(f"*{suffix}") if p.name[: -len(suffix)].isdigit()
        )
        return matches[-1] if matches else None

    def _write(self, message_id: str, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(message_id)
        if target is None:
            stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
            target = self.directory / f"{stamp}-{_safe_name(message_id)}.eml"
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return target


def _safe_name(message_id: str) -> str:
    """A file-name-safe, bounded form of a Message-ID (angle brackets and slashes dropped)."""
    cleaned = _UNSAFE.sub("_", message_id.strip().strip("<>")).strip("._") or "no-message-id"
    if len(cleaned) <= 150:
        return cleaned
    # Keep long ids apart that share their first 150 characters.
    return f"{cleaned[:140]}-{hashlib.sha256(message_id.encode()).hexdigest()[:9]}"
