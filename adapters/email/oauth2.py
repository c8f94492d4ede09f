"""OAuth2 access tokens for IMAP and SMTP (XOAUTH2), from a refresh token kept in the database.

Microsoft 365 and Google take no passwords for IMAP/SMTP any more: the client logs in
with a short-lived *access token*, which it gets from the provider's token endpoint
in exchange for a long-lived *refresh token* (the ``refresh_token`` grant, RFC 6749
section 6). Why it is built the way it is:

* The refresh token lives in the database (``job_state`` under
  :data:`REFRESH_TOKEN_KEY`), not in bot.toml or the environment, because providers
  may hand out a new one with every refresh (rotation) and then refuse the old one; a
  file the bot cannot write would go stale at the first rotation. It is read from
  the database at every refresh, so ``ticketbot oauth2 set-token`` fixes a refused
  token while the bot runs, without a restart.
* Access tokens are kept in memory only and refreshed :data:`EARLY_SECONDS` before
  they expire (half their lifetime for tokens shorter than two minutes), so a login
  never starts with a token about to run out; a server that refuses a token anyway
  (revoked early, clocks apart) makes the caller :meth:`OAuth2Tokens.invalidate` it
  and try once more with a fresh one.
* One :class:`OAuth2Tokens` serves both IMAP and SMTP: two clients refreshing the same
  grant would rotate each other's refresh token away.
* No token is ever logged or put into an error message; errors name the endpoint and
  what it answered (``invalid_grant`` means: run ``ticketbot oauth2 set-token`` again).

The HTTP call uses the standard library (one POST an hour does not justify a client
library) in a worker thread, so the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from bot.config import OAuth2Config

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The ``job_state`` key the refresh token is kept under.
REFRESH_TOKEN_KEY = "oauth2.refresh_token"
#: Refresh this long before the access token expires.
EARLY_SECONDS = 60.0
#: Assumed lifetime when the endpoint does not say (``expires_in`` is only RECOMMENDED).
DEFAULT_EXPIRES_SECONDS = 3600
SET_TOKEN_HINT = "run `ticketbot oauth2 set-token` with a new refresh token"
_MAX_DESCRIPTION = 300


class OAuth2Error(Exception):
    """No access token could be had; the message says from where and why (never a token)."""


class RefreshTokenRefused(OAuth2Error):
    """The endpoint answered ``invalid_grant``: the refresh token is expired or revoked."""


class NoRefreshToken(OAuth2Error):
    """Nothing was bootstrapped yet: no refresh token in the database or the environment."""


class RefreshTokenStore(Protocol):
    """Where the current refresh token is kept between runs."""

    async def load(self) -> str | None: ...

    async def save(self, token: str) -> None: ...


class _Store(Protocol):
    """The part of :class:`storage.store.SqlStore` used here: a unit of work on the repository."""

    async def run(self, work: Callable[[Any], T]) -> T: ...


class JobStateTokenStore:
    """The refresh token in the database's key-value ``job_state`` table (no own table)."""

    def __init__(self, store: _Store, key: str = REFRESH_TOKEN_KEY) -> None:
        self._store = store
        self._key = key

    async def load(self) -> str | None:
        value: str | None = await self._store.run(lambda repo: repo.job_state(self._key))
        return value or None

    async def save(self, token: str) -> None:
        await self._store.run(lambda repo: repo.set_job_state(self._key, token))


@dataclass(frozen=True)
class Grant:
    """What the token endpoint gave for one refresh: the tokens and the lifetime."""

    access_token: str
    expires_in: float
    refresh_token: str | None  # a rotated refresh token, or None when it stays the same

    def __repr__(self) -> str:  # tokens stay out of logs and tracebacks
        return f"Grant(expires_in={self.expires_in}, rotated={self.refresh_token is not None})"


def request_tokens(config: OAuth2Config, refresh_token: str) -> Grant:
    """POST the ``refresh_token`` grant to ``config.token_url`` (blocking); raise OAuth2Error."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": config.client_id,
    }
    if config.client_secret:
        form["client_secret"] = config.client_secret
    if config.scope:
        form["scope"] = config.scope
    request = urllib.request.Request(
        config.token_url,
        data=urllib.parse.urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_seconds) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        try:
            payload = _json_object(exc.read())
        except (OSError, ValueError):
            payload = {}
        finally:
            exc.close()
        raise _endpoint_error(config.token_url, exc.code, payload) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OAuth2Error(
            f"the token endpoint {config.token_url} could not be reached: {reason}"
        ) from None
    try:
        return _grant(_json_object(body), refresh_token)
    except ValueError as exc:
        raise OAuth2Error(
            f"the token endpoint {config.token_url} answered nonsense: {exc}"
        ) from None


def _json_object(body: bytes) -> dict[str, Any]:
    value = json.loads(body.decode("utf-8", errors="replace"))
    if not isinstance(value, dict):
        raise ValueError("the answer is not a JSON object")
    return value


def _grant(payload: Mapping[str, Any], sent_refresh_token: str) -> Grant:
    access = payload.get("access_token")
    if not isinstance(access, str) or not access:
        raise ValueError("no access_token in the answer")
    expires: Any = payload.get("expires_in", DEFAULT_EXPIRES_SECONDS)
    try:
        expires_in = float(expires)  # Microsoft sent it as a string for years
    except (TypeError, ValueError):
        raise ValueError(f"expires_in is not a number: {expires!r}") from None
    if expires_in <= 0:
        raise ValueError(f"expires_in must be positive, got {expires_in}")
    rotated = payload.get("refresh_token")
    if not isinstance(rotated, str) or not rotated or rotated == sent_refresh_token:
        rotated = None
    return Grant(access, expires_in, rotated)


def _endpoint_error(url: str, status: int, payload: Mapping[str, Any]) -> OAuth2Error:
    """The error for an HTTP error answer (RFC 6749 section 5.2), in the operator's words."""
    if not payload.get("error"):  # not an OAuth2 error answer: a proxy, a 500 page
        return OAuth2Error(f"the token endpoint {url} answered HTTP {status}")
    code = str(payload["error"])
    description = str(payload.get("error_description") or "").strip()
    what = f"{code}: {description[:_MAX_DESCRIPTION]}" if description else code
    if code == "invalid_grant":
        return RefreshTokenRefused(
            f"the refresh token was refused by {url} ({what}): {SET_TOKEN_HINT}"
        )
    if code in ("invalid_client", "unauthorized_client"):
        return OAuth2Error(
            f"the token endpoint {url} refused the client ({what}): check "
            "mail.oauth2.client_id / client_id_env and client_secret / client_secret_env"
        )
    if code == "invalid_scope":
        return OAuth2Error(
            f"the token endpoint {url} refused the scope ({what}): check mail.oauth2.scope"
        )
    return OAuth2Error(f"the token endpoint {url} answered HTTP {status} ({what})")


@dataclass(frozen=True)
class _Cached:
    token: str
    refresh_at: float  # on the monotonic clock


class OAuth2Tokens:
    """Access tokens for one account: cached, refreshed early, rotated refresh tokens stored."""

    def __init__(
        self,
        config: OAuth2Config,
        store: RefreshTokenStore,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._store = store
        self._env = os.environ if env is None else env
        self._clock = clock
        self._cached: _Cached | None = None
        self._unsaved: str | None = None  # a rotated refresh token the database refused
        self._lock = asyncio.Lock()
        #: How many times a new access token was fetched (for tests and metrics).
        self.refreshes = 0

    async def access_token(self) -> str:
        """A token valid for a while yet: the cached one, or a fresh one from the endpoint."""
        cached = self._cached
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.token
        async with self._lock:  # IMAP and SMTP asking at once refresh once
            cached = self._cached
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.token
            return await self._refresh()

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: the next :meth:`access_token` fetches a new one."""
        if self._cached is not None and self._cached.token == token:
            self._cached = None

    async def _refresh(self) -> str:
        url = self.config.token_url
        refresh_token = await self._refresh_token()
        grant = await asyncio.to_thread(request_tokens, self.config, refresh_token)
        if grant.refresh_token is not None:
            # Store it before using the access token: if the bot stopped now, the old
            # refresh token might already be void at the provider.
            self._unsaved = grant.refresh_token
            await self._save_rotated()
        margin = min(EARLY_SECONDS, grant.expires_in / 2)
        self._cached = _Cached(grant.access_token, self._clock() + grant.expires_in - margin)
        self.refreshes += 1
        log.info("got an access token from %s, valid for %.0f s", url, grant.expires_in)
        return grant.access_token

    async def _save_rotated(self) -> None:
        """Store a rotated refresh token; if the database fails, keep it in memory meanwhile.

        The provider has voided the old one already, so losing the new one would mean a
        person has to run ``set-token`` again; it is written at the next refresh instead.
        """
        token = self._unsaved
        if token is None:
            return
        try:
            await self._store.save(token)
        except Exception as exc:
            log.warning(
                "%s rotated the refresh token but it could not be stored (%s: %s); "
                "keeping it in memory and storing it at the next refresh",
                self.config.token_url,
                type(exc).__name__,
                exc,
            )
            return
        self._unsaved = None
        log.info("%s rotated the refresh token; the new one is stored", self.config.token_url)

    async def _refresh_token(self) -> str:
        """The stored refresh token; on first use, the one in ``refresh_token_env`` (stored)."""
        if self._unsaved is not None:  # newer than the database's, which is void
            token = self._unsaved
            await self._save_rotated()
            return token
        stored = await self._store.load()
        if stored:
            return stored
        env_name = self.config.refresh_token_env
        seeded = self._env.get(env_name, "").strip() if env_name else ""
        if env_name and seeded:
            await self._store.save(seeded)
            log.info("stored the first refresh token from the environment variable %s", env_name)
            return seeded
        where = f" (and {env_name} is not set)" if env_name else ""
        raise NoRefreshToken(f"no OAuth2 refresh token in the database{where}: {SET_TOKEN_HINT}")


def oauth2_tokens(config: OAuth2Config | None, store: _Store) -> OAuth2Tokens | None:
    """The shared token source for ``[mail.oauth2]`` backed by the database, or None."""
    if config is None:
        return None
    return OAuth2Tokens(config, JobStateTokenStore(store))


def xoauth2_string(username: str, access_token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Google and Microsoft define it."""
    return f"user={username}\x01auth=Bearer {access_token}\x01\x01"
