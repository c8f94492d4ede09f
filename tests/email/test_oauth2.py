"""OAuth2 (XOAUTH2) for IMAP and SMTP, against a real Dovecot and a real SMTP server.

Both servers check every access token at a token-introspection endpoint of the test
suite's own OAuth2 provider (tests/servers/oauth2.py), which is also the token
endpoint the bot refreshes at: short-lived tokens, rotated refresh tokens and revoked
ones are the provider's switches. The refresh token is bootstrapped the way an
operator does it, with ``ticketbot oauth2 set-token`` (its function, given stdin), and
lives in a real SQLite database's ``job_state``.
"""

# The fixtures come from tests/servers/oauth2.py by import (tests/conftest.py is shared),
# so pytest's fixture parameters shadow the imported names on purpose.
# ruff: noqa: F811

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.email.imap import ImapSettings, ImapWatcher
from adapters.email.oauth2 import (
    REFRESH_TOKEN_KEY,
    JobStateTokenStore,
    OAuth2Error,
    OAuth2Tokens,
    RefreshTokenRefused,
    request_tokens,
)
from adapters.email.smtp import SmtpSender, SmtpSettings
from bot.admin.live import LiveConfig
from bot.app import build_app
from bot.cli import main as cli_main
from bot.cli_oauth2 import run_oauth2
from bot.config import Config, ConfigError, load_config, parse_config
from bot.mail import Address, OutgoingEmail
from bot.metrics import Metrics
from bot.ports import MailSendError
from bot.status import MAIL_STALE, StatusService
from storage.store import SqlStore
from tests.email.test_imap_watcher import FakeIntake, mail, parse
from tests.fakes import FakeClock
from tests.faults.test_servers_away import Console, running
from tests.servers.oauth2 import (  # noqa: F401  (fixtures)
    CLIENT_ID,
    CLIENT_SECRET,
    OAuth2Dovecot,
    OAuth2ImapAccount,
    OAuth2Provider,
    OAuth2SmtpCapture,
    oauth2_dovecot,
    oauth2_provider,
    oauth2_smtp,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.servers

SEEN = b"\\Seen"
IMAP_LOGGER = "adapters.email.imap"


def config_dict(
    tmp_path: Path,
    provider: OAuth2Provider,
    *,
    imap: OAuth2ImapAccount | None = None,
    smtp: OAuth2SmtpCapture | None = None,
    smtp_user: str = "",
) -> dict[str, Any]:
    mail_section: dict[str, Any] = {
        "oauth2": {
            "token_url": provider.token_url,
            "client_id_env": "TEST_OAUTH2_CLIENT_ID",
            "client_secret_env": "TEST_OAUTH2_CLIENT_SECRET",
            "scope": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
            "timeout_seconds": 5,
        }
    }
    if imap is None and smtp is None:
        # a mailbox that is never connected to: [mail.oauth2] must be used by something
        imap = OAuth2ImapAccount("127.0.0.1", 993, "desk@example.org", "")
    if imap is not None:
        mail_section["imap"] = {
            "host": imap.host,
            "port": imap.port,
            "security": "none",
            "username": imap.username,
            "auth": "oauth2",
            "idle": True,
            "poll_seconds": 2,
            "timeout_seconds": 10,
        }
    else:
        mail_section["maildir"] = {"path": str(tmp_path / "maildir")}
    if smtp is not None:
        mail_section["smtp"] = {
            "host": smtp.host,
            "port": smtp.port,
            "security": "none",
            "username": smtp_user,
            "auth": "oauth2",
            "timeout_seconds": 10,
        }
    else:
        mail_section["files"] = {"path": str(tmp_path / "out")}
    return {
        "storage": {"url": f"sqlite:///{tmp_path}/desk.db"},
        "mail": mail_section,
        "queue": [
            {
                "name": "info",
                "addresses": ["info@example.org"],
                "volunteers": ["@alice:example.org"],
                "default": True,
            }
        ],
        "console": {"enabled": True},
    }


ENV = {"TEST_OAUTH2_CLIENT_ID": CLIENT_ID, "TEST_OAUTH2_CLIENT_SECRET": CLIENT_SECRET}


def load(data: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None) -> Config:
    return parse_config(data, tmp_path / "bot.toml", ENV if env is None else env)


async def set_token(config: Config, token: str, *, check: bool = True) -> tuple[int, str]:
    """``ticketbot oauth2 set-token`` with ``token`` on standard input: (status, stderr).

    In a thread, as the command runs its own event loop (it is a separate process).
    """

    def command() -> tuple[int, str]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = run_oauth2(
                config,
                argparse.Namespace(oauth2_action="set-token", no_check=not check),
                stdin=io.StringIO(token + "\n"),
                env={},
            )
        return status, err.getvalue()

    return await asyncio.to_thread(command)


async def stored_token(store: SqlStore) -> str | None:
    return await store.run(lambda repo: repo.job_state(REFRESH_TOKEN_KEY))


def only_disconnects(caplog: pytest.LogCaptureFixture) -> bool:
    """True if every failed check was the kick's dropped connection, none a login problem."""
    failed = [r.getMessage() for r in caplog.records if "check failed" in r.getMessage()]
    return all("(ConnectionError: the server closed the connection" in m for m in failed)


def refused(provider: OAuth2Provider) -> int:
    """How often the token endpoint answered invalid_grant."""
    return [answer for answer, _user in provider.grants].count("invalid_grant")


async def wait_until(what: str, probe: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(probe):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.asynccontextmanager
async def watching(watcher: ImapWatcher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(watcher.run(), name="imap")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)


@contextlib.asynccontextmanager
async def opened(config: Config) -> AsyncIterator[SqlStore]:
    store = await SqlStore.open(config.storage.url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def account(oauth2_dovecot: OAuth2Dovecot) -> OAuth2ImapAccount:
    return oauth2_dovecot.account()


def watcher_for(config: Config, store: SqlStore) -> tuple[ImapWatcher, FakeIntake, OAuth2Tokens]:
    """The bot's watcher as bot/app.py builds it, on a recording intake."""
    assert config.mail.imap is not None and config.mail.oauth2 is not None
    tokens = OAuth2Tokens(config.mail.oauth2, JobStateTokenStore(store), env={})
    intake = FakeIntake()
    settings = ImapSettings.from_config(config.mail.imap, tokens)
    return ImapWatcher(settings, intake, parse, metrics=Metrics()), intake, tokens


def all_seen(account: OAuth2ImapAccount, count: int) -> bool:
    flags = account.flags()
    return len(flags) == count and all(SEEN in f for f in flags.values())


@pytest.fixture
def no_token_in_logs(
    caplog: pytest.LogCaptureFixture, oauth2_provider: OAuth2Provider
) -> Iterator[None]:
    """After the test: no log line holds any token the provider ever handed out."""
    caplog.set_level(logging.DEBUG)
    yield
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    with oauth2_provider._lock:
        tokens = [*oauth2_provider._refresh, *oauth2_provider._access]
    leaked = [t for t in tokens if t in text]
    assert not leaked, f"{len(leaked)} token(s) in the log"


# --- IMAP ----------------------------------------------------------------------------------


async def test_watcher_logs_in_with_xoauth2_and_takes_in_mail(
    tmp_path: Path,
    oauth2_provider: OAuth2Provider,
    oauth2_dovecot: OAuth2Dovecot,
    account: OAuth2ImapAccount,
    no_token_in_logs: None,
) -> None:
    config = load(config_dict(tmp_path, oauth2_provider, imap=account), tmp_path)
    first = oauth2_provider.issue_refresh_token(account.username)
    assert (await set_token(config, first))[0] == 0
    account.append(mail(1))
    account.append(mail(2))

    async with opened(config) as store:
        assert await stored_token(store) == first  # no rotation: the same token is kept
        watcher, intake, tokens = watcher_for(config, store)
        async with watching(watcher):
            await wait_until("both mails flagged", lambda: all_seen(account, 2))
        assert [m for m, _key in intake.ingested] == [
            "<msg-1@example.org>",
            "<msg-2@example.org>",
        ]
    # the bot's token was checked by Dovecot at the provider; the set-token try and
    # the bot's refresh were the only grants
    bot_tokens = set(oauth2_provider.access_tokens(account.username))
    assert any(t in bot_tokens and ok for t, ok in oauth2_provider.introspected)
    assert oauth2_provider.grants == [("ok", account.username)] * 2
    assert tokens.refreshes == 1
    # Dovecot's only passdb is oauth2: every login, the bot's too, was XOAUTH2
    logins = [line for line in oauth2_dovecot.log_text().splitlines() if "Login: user=" in line]
    assert logins and all(f"user=<{account.username}>, method=XOAUTH2" in x for x in logins)


async def test_expiring_token_is_refreshed_rotated_token_stored_and_intake_goes_on(
    tmp_path: Path,
    oauth2_provider: OAuth2Provider,
    oauth2_dovecot: OAuth2Dovecot,
    account: OAuth2ImapAccount,
    caplog: pytest.LogCaptureFixture,
    no_token_in_logs: None,
) -> None:
    oauth2_provider.expires_in = 3  # refreshed 1.5 s early, so after 1.5 s
    oauth2_provider.rotate = True
    config = load(config_dict(tmp_path, oauth2_provider, imap=account), tmp_path)
    first = oauth2_provider.issue_refresh_token(account.username)
    assert (await set_token(config, first))[0] == 0
    async with opened(config) as store:
        after_bootstrap = await stored_token(store)
        assert after_bootstrap != first  # the check at set-token rotated it already
        assert oauth2_provider.refresh_tokens(account.username) == [after_bootstrap]

        watcher, intake, tokens = watcher_for(config, store)
        account.append(mail(1))
        async with watching(watcher):
            await wait_until("mail 1 taken in", lambda: all_seen(account, 1))
            rotated_once = await stored_token(store)
            assert rotated_once not in (first, after_bootstrap)

            for n in (2, 3):
                # the token runs out while the bot is connected; the connection drops
                # (as a server restart would), and the new login needs a new token
                await asyncio.sleep(3.2)
                assert all(oauth2_provider.expired(t) for t in oauth2_provider.granted)
                oauth2_dovecot.kick(account.username)
                account.append(mail(n))
                await wait_until(f"mail {n} taken in", lambda n=n: all_seen(account, n))

            latest = await stored_token(store)
            # each refresh rotated the refresh token and the database has the valid one
            assert oauth2_provider.refresh_tokens(account.username) == [latest]
            assert tokens.refreshes == 3
        assert len(intake.ingested) == 3
    assert only_disconnects(caplog)  # refreshed before use, never refused


async def test_token_refused_before_its_expiry_is_replaced_once(
    tmp_path: Path,
    oauth2_provider: OAuth2Provider,
    oauth2_dovecot: OAuth2Dovecot,
    account: OAuth2ImapAccount,
    caplog: pytest.LogCaptureFixture,
    no_token_in_logs: None,
) -> None:
    config = load(config_dict(tmp_path, oauth2_provider, imap=account), tmp_path)
    assert (await set_token(config, oauth2_provider.issue_refresh_token(account.username)))[0] == 0
    async with opened(config) as store:
        watcher, intake, tokens = watcher_for(config, store)
        account.append(mail(1))
        async with watching(watcher):
            await wait_until("mail 1 taken in", lambda: all_seen(account, 1))
            cached = oauth2_provider.granted[-1]
            assert (cached, True) in oauth2_provider.introspected  # Dovecot checked it
            oauth2_provider.revoke_access_token(cached)  # still "valid for an hour" to the bot
            oauth2_dovecot.kick(account.username)
            account.append(mail(2))
            await wait_until("mail 2 taken in", lambda: all_seen(account, 2))
        assert tokens.refreshes == 2
        assert len(intake.ingested) == 2
    assert "the access token was refused; getting a new one" in caplog.text
    assert only_disconnects(caplog)  # the retry happened inside the one login


async def test_refused_refresh_token_clear_error_bot_keeps_trying_until_set_again(
    tmp_path: Path,
    oauth2_provider: OAuth2Provider,
    oauth2_dovecot: OAuth2Dovecot,
    account: OAuth2ImapAccount,
    caplog: pytest.LogCaptureFixture,
    no_token_in_logs: None,
) -> None:
    oauth2_provider.expires_in = 2
    config = load(config_dict(tmp_path, oauth2_provider, imap=account), tmp_path)
    assert (await set_token(config, oauth2_provider.issue_refresh_token(account.username)))[0] == 0
    async with opened(config) as store:
        watcher, intake, _tokens = watcher_for(config, store)
        live = LiveConfig(config)
        started = datetime.now(UTC)
        account.append(mail(1))
        async with watching(watcher) as task:
            await wait_until("mail 1 taken in", lambda: all_seen(account, 1))

            # the user changed the password: the provider voids the refresh token
            oauth2_provider.revoke_refresh_tokens(account.username)
            await asyncio.sleep(2.1)  # the access token expires too
            oauth2_dovecot.kick(account.username)
            account.append(mail(2))
            await wait_until("a refused refresh", lambda: refused(oauth2_provider) >= 1)
            good_check = watcher.metrics.mail_checked_at[watcher.source]
            await wait_until("another, after the backoff", lambda: refused(oauth2_provider) >= 2)
            assert not task.done()  # the bot runs on, retrying with backoff
            assert len(intake.ingested) == 1
            assert watcher.metrics.mail_checked_at[watcher.source] == good_check

            # health: 15 minutes on, the mailbox is reported stale and health fails
            clock = FakeClock(started + MAIL_STALE + timedelta(minutes=1))
            health = await StatusService(
                live, store, clock, watcher.metrics, [watcher.source]
            ).health()
            assert not health.ok
            assert health.details["mail"][watcher.source]["state"] == "stale"  # type: ignore[index]

            refusals = [
                r.getMessage()
                for r in caplog.records
                if r.name == IMAP_LOGGER and "RefreshTokenRefused" in r.getMessage()
            ]
            assert refusals[:2] == [
                f"{watcher.source}: check failed (RefreshTokenRefused: the refresh token was "
                f"refused by {oauth2_provider.token_url} (invalid_grant: The refresh token has "
                "expired or was revoked.): run `ticketbot oauth2 set-token` with a new refresh "
                f"token); retrying in {delay} s"
                for delay in (2, 4)
            ]

            # the operator runs set-token again; the running bot picks it up
            again = oauth2_provider.issue_refresh_token(account.username)
            assert (await set_token(config, again))[0] == 0
            await wait_until("mail 2 taken in", lambda: all_seen(account, 2), timeout=30)
        assert len(intake.ingested) == 2


async def test_set_token_refuses_a_bad_token_and_stores_nothing(
    tmp_path: Path, oauth2_provider: OAuth2Provider, no_token_in_logs: None
) -> None:
    config = load(config_dict(tmp_path, oauth2_provider), tmp_path)
    status, err = await set_token(config, "rt-never-issued")
    assert status == 1
    assert "the refresh token was refused by" in err and "invalid_grant" in err
    assert "nothing stored" in err and "rt-never-issued" not in err
    async with opened(config) as store:
        assert await stored_token(store) is None

    wrong_client = load(
        config_dict(tmp_path, oauth2_provider),
        tmp_path,
        {**ENV, "TEST_OAUTH2_CLIENT_SECRET": "wrong"},
    )
    status, err = await set_token(
        wrong_client, oauth2_provider.issue_refresh_token("x@example.org")
    )
    assert status == 1
    assert "refused the client (invalid_client: unknown client)" in err
    assert "mail.oauth2.client_id" in err


async def test_endpoint_errors_say_what_went_wrong(
    tmp_path: Path, oauth2_provider: OAuth2Provider
) -> None:
    config = load(config_dict(tmp_path, oauth2_provider), tmp_path).mail.oauth2
    assert config is not None
    token = oauth2_provider.issue_refresh_token("x@example.org")
    wrong_path = replace(config, token_url=oauth2_provider.token_url + "/v2")
    with pytest.raises(OAuth2Error) as raised:
        await asyncio.to_thread(request_tokens, wrong_path, token)
    assert str(raised.value) == f"the token endpoint {wrong_path.token_url} answered HTTP 404"

    nobody = replace(config, token_url=f"http://127.0.0.1:{free_port()}/token")
    with pytest.raises(
        OAuth2Error,
        match=r"^the token endpoint http://127\.0\.0\.1:\d+/token "
        r"could not be reached: \[Errno 111\] Connection refused$",
    ):
        await asyncio.to_thread(request_tokens, nobody, token)


async def test_rotated_token_kept_in_memory_when_the_database_fails(
    tmp_path: Path, oauth2_provider: OAuth2Provider
) -> None:
    """The provider voided the old token already: a failed write must not lose the new one."""
    oauth2_provider.rotate = True
    oauth2_provider.expires_in = 2
    config = load(config_dict(tmp_path, oauth2_provider), tmp_path).mail.oauth2
    assert config is not None

    class FailingOnce:
        def __init__(self, token: str) -> None:
            self.token: str | None = token
            self.failures = 1

        async def load(self) -> str | None:
            return self.token

        async def save(self, token: str) -> None:
            if self.failures:
                self.failures -= 1
                raise OSError("disk full")
            self.token = token

    store = FailingOnce(oauth2_provider.issue_refresh_token("x@example.org"))
    tokens = OAuth2Tokens(config, store)
    await tokens.access_token()
    (current,) = oauth2_provider.refresh_tokens("x@example.org")
    assert store.token != current  # not written, but not lost:
    await asyncio.sleep(1.1)  # past the early-refresh point
    await tokens.access_token()
    (latest,) = oauth2_provider.refresh_tokens("x@example.org")
    assert store.token == latest and tokens.refreshes == 2


async def test_no_refresh_token_names_the_command(
    tmp_path: Path, oauth2_provider: OAuth2Provider
) -> None:
    config = load(config_dict(tmp_path, oauth2_provider), tmp_path)
    assert config.mail.oauth2 is not None
    async with opened(config) as store:
        tokens = OAuth2Tokens(config.mail.oauth2, JobStateTokenStore(store), env={})
        with pytest.raises(Exception, match="no OAuth2 refresh token in the database: run"):
            await tokens.access_token()
        # refresh_token_env seeds the database on first use, then the database wins
        data = config_dict(tmp_path, oauth2_provider)
        data["mail"]["oauth2"]["refresh_token_env"] = "SEED"
        seeded = load(data, tmp_path).mail.oauth2
        assert seeded is not None
        seed = oauth2_provider.issue_refresh_token("x@example.org")
        tokens = OAuth2Tokens(seeded, JobStateTokenStore(store), env={"SEED": seed})
        await tokens.access_token()
        assert await stored_token(store) == seed


# --- SMTP ----------------------------------------------------------------------------------


def reply(n: int) -> OutgoingEmail:
    return OutgoingEmail(
        sender=Address("help@example.org", "Help Desk"),
        to=(Address("requester@example.net"),),
        subject=f"Re: Question {n}",
        text=f"Answer {n}.\n",
        message_id=f"<ticketbot.oauth2.{n}@example.org>",
    )


async def test_smtp_sends_with_auth_xoauth2_and_replaces_a_refused_token(
    tmp_path: Path,
    oauth2_provider: OAuth2Provider,
    oauth2_smtp: OAuth2SmtpCapture,
    no_token_in_logs: None,
) -> None:
    user = "desk@example.org"
    config = load(
        config_dict(tmp_path, oauth2_provider, smtp=oauth2_smtp, smtp_user=user), tmp_path
    )
    assert config.mail.smtp is not None and config.mail.oauth2 is not None
    assert (await set_token(config, oauth2_provider.issue_refresh_token(user)))[0] == 0
    async with opened(config) as store:
        tokens = OAuth2Tokens(config.mail.oauth2, JobStateTokenStore(store), env={})
        smtp = config.mail.smtp
        sender = SmtpSender(
            SmtpSettings(
                host=smtp.host,
                port=smtp.port,
                security=smtp.security,
                username=smtp.username,
                timeout=smtp.timeout_seconds,
                auth=smtp.auth,
                oauth2=tokens,
            )
        )
        await sender.send(reply(1))
        (first,) = oauth2_smtp.wait_for(1)
        assert first.auth_login == user
        assert first.message["Message-ID"] == "<ticketbot.oauth2.1@example.org>"

        # revoked early: refused once (334 error, 535), then sent with a fresh token
        for token in oauth2_provider.access_tokens(user):
            oauth2_provider.revoke_access_token(token)
        await sender.send(reply(2))
        oauth2_smtp.wait_for(2)
        assert oauth2_smtp.logins == [(user, True), (user, False), (user, True)]
        assert tokens.refreshes == 2

        # the refresh token revoked too: the reply stays queued with the reason
        for token in oauth2_provider.access_tokens(user):
            oauth2_provider.revoke_access_token(token)
        oauth2_provider.revoke_refresh_tokens(user)
        with pytest.raises(MailSendError) as failure:
            await sender.send(reply(3))
        assert failure.value.temporary
        assert isinstance(failure.value.__cause__, RefreshTokenRefused)
        assert "the refresh token was refused" in str(failure.value)
        assert len(oauth2_smtp.messages) == 2


def test_ticketbot_oauth2_set_token_command(
    tmp_path: Path,
    oauth2_provider: OAuth2Provider,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command as run from a shell: bot.toml, the token piped in, nothing printed of it."""
    oauth2_provider.rotate = True
    toml = tmp_path / "bot.toml"
    toml.write_text(
        f'''
[storage]
url = "sqlite:///{tmp_path}/desk.db"

[mail.oauth2]
token_url = "{oauth2_provider.token_url}"
client_id_env = "TEST_OAUTH2_CLIENT_ID"
client_secret_env = "TEST_OAUTH2_CLIENT_SECRET"

[mail.imap]
host = "outlook.office365.com"
username = "desk@example.org"
auth = "oauth2"

[mail.files]
path = "out"

[console]
enabled = true

[[queue]]
name = "info"
addresses = ["info@example.org"]
default = true
'''
    )
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    token = oauth2_provider.issue_refresh_token("desk@example.org")
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert cli_main(["oauth2", "set-token", "--config", str(toml)]) == 0
    finally:  # the command set up logging to this test's stderr for the whole process
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    out, err = capsys.readouterr()
    assert "rotated the refresh token; storing the new one" in out
    assert "stored the refresh token from standard input in the database; the token " in out
    (rotated,) = oauth2_provider.refresh_tokens("desk@example.org")
    for secret in (token, rotated, *oauth2_provider.granted):
        assert secret not in out and secret not in err

    async def stored() -> str | None:
        async with opened(load_config(toml)) as store:
            return await stored_token(store)

    assert asyncio.run(stored()) == rotated

    with pytest.raises(SystemExit) as usage:
        cli_main(["oauth2", "--config", str(toml)])  # the action is required
    assert usage.value.code == 2


# --- the whole bot --------------------------------------------------------------------------


async def test_the_bot_takes_mail_in_and_replies_through_one_shared_token_source(
    tmp_path: Path,
    oauth2_provider: OAuth2Provider,
    oauth2_dovecot: OAuth2Dovecot,
    account: OAuth2ImapAccount,
    oauth2_smtp: OAuth2SmtpCapture,
    no_token_in_logs: None,
) -> None:
    """build_app wires [mail.oauth2] into IMAP and SMTP: mail in, a reply out, one refresh."""
    oauth2_provider.rotate = True
    data = config_dict(
        tmp_path, oauth2_provider, imap=account, smtp=oauth2_smtp, smtp_user=account.username
    )
    data.update(
        console={"user": "@alice:example.org"},
        tickets={"undo_seconds": 0},
        outbox={"retry_seconds": 1},
    )
    config = load(data, tmp_path)
    first = oauth2_provider.issue_refresh_token(account.username)
    assert (await set_token(config, first))[0] == 0
    console = Console.open()
    app = await build_app(config, stdin=console.read_end, stdout=console.out)
    try:
        async with running(app):
            account.append(mail(1))
            await wait_until("the mail flagged", lambda: all_seen(account, 1))
            (ticket,) = await app.store.run(lambda repo: repo.active_tickets())
            os.write(console.write_fd, f"!claim {ticket.number}\n!reply Done, thanks.\n".encode())
            await wait_until(
                "the reply sent",
                lambda: any("Done, thanks." in m.data.decode() for m in oauth2_smtp.messages),
            )
            stored = await app.store.run(lambda repo: repo.job_state(REFRESH_TOKEN_KEY))
    finally:
        console.close()
    assert oauth2_smtp.logins and all(ok for _user, ok in oauth2_smtp.logins)
    assert {m.auth_login for m in oauth2_smtp.messages} == {account.username}
    # set-token's check, then one refresh for IMAP and SMTP both
    assert oauth2_provider.grants == [("ok", account.username)] * 2
    assert oauth2_provider.refresh_tokens(account.username) == [stored]


# --- configuration -------------------------------------------------------------------------


def test_config_errors_name_the_key(tmp_path: Path, oauth2_provider: OAuth2Provider) -> None:
    account = OAuth2ImapAccount("127.0.0.1", 993, "desk@example.org", "")

    def error(mutate: Any, env: dict[str, str] | None = None) -> str:
        data = config_dict(tmp_path, oauth2_provider, imap=account)
        mutate(data["mail"])
        with pytest.raises(ConfigError) as raised:
            load(data, tmp_path, env)
        return str(raised.value)

    assert error(lambda m: m.pop("oauth2")) == (
        'mail.imap.auth: "oauth2" needs a [mail.oauth2] section'
    )
    assert error(lambda m: m["imap"].update(password="p")) == (
        'mail.imap.password: is not used with auth = "oauth2"; remove it'
    )
    assert error(lambda m: m["imap"].update(auth="token")).startswith(
        "mail.imap.auth: must be one of 'password', 'oauth2'"
    )
    assert error(lambda m: m["oauth2"].update(token_url="http://login.example.com/token")) == (
        "mail.oauth2.token_url: must be https:// (http only on loopback), "
        "got 'http://login.example.com/token'"
    )
    assert error(lambda m: None, env={}) == (
        "mail.oauth2.client_id_env: environment variable TEST_OAUTH2_CLIENT_ID is not set"
    )
    assert error(lambda m: m["imap"].update(auth="password", password="p")) == (
        'mail.oauth2: is used by nothing: set auth = "oauth2" in [mail.imap] or [mail.smtp]'
    )
    smtp_without_user = config_dict(tmp_path, oauth2_provider, imap=account)
    smtp_without_user["mail"].pop("files")
    smtp_without_user["mail"]["smtp"] = {"host": "smtp.example.com", "auth": "oauth2"}
    with pytest.raises(ConfigError, match=r"^mail\.smtp\.username: is required$"):
        load(smtp_without_user, tmp_path)
