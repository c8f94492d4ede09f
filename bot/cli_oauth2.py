"""``ticketbot oauth2 set-token``: put the first OAuth2 refresh token into the database.

The bot logs in to Microsoft 365 or Google mailboxes with access tokens it gets for a
refresh token (adapters/email/oauth2.py). That refresh token has to come from a
person once, through the provider's consent screen; this command takes it from there
into the database, after trying it at the token endpoint, so a mistyped or already
used token is refused here rather than at the bot's next login. The provider may
rotate it on that first try; then the new one is what gets stored.

It lives here, beside bot/cli.py, which wires the adapters like bot/app.py does; the
adapter modules are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from bot.config import Config

DESCRIPTION = """\
Store the OAuth2 refresh token the bot uses for IMAP/SMTP (auth = "oauth2") in the database.

The token is read from the environment variable named by [mail.oauth2]
refresh_token_env when that is set, otherwise from standard input (prompted without
echo on a terminal; the first line of a pipe). It is first tried at token_url with
the refresh_token grant; only a token that works is stored (in job_state, key
oauth2.refresh_token), or the rotated one the endpoint returned. The bot reads it at
its next refresh, so a running bot needs no restart. No token is ever printed.

Exit status: 0 stored; 1 the token endpoint refused it or could not be reached, or the
database failed (nothing stored); 2 no [mail.oauth2] section, no token given, or the
configuration is invalid.
"""

EPILOG = """\
examples:
  ticketbot oauth2 set-token --config bot.toml          paste the token, then Enter
  pass show desk/refresh-token | ticketbot oauth2 set-token --config bot.toml
  TICKETBOT_OAUTH2_REFRESH_TOKEN=... ticketbot oauth2 set-token   with refresh_token_env set
  ticketbot oauth2 set-token --no-check < token.txt     store without trying it first
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``oauth2`` with its one action ``set-token``."""
    parser = sub.add_parser(
        "oauth2",
        parents=[common],
        help="OAuth2 for IMAP/SMTP: store the refresh token (set-token)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="oauth2_action", metavar="ACTION", required=True)
    set_token = actions.add_parser(
        "set-token",
        parents=[common],
        help="try a refresh token at the token endpoint and store it in the database",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    set_token.add_argument(
        "--no-check",
        action="store_true",
        help="store the token without trying it at the token endpoint first",
    )


def run_oauth2(
    config: Config,
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """``ticketbot oauth2 ACTION``; the exit status."""
    stdin = sys.stdin if stdin is None else stdin
    env = os.environ if env is None else env
    oauth2 = config.mail.oauth2
    if oauth2 is None:
        _say("no [mail.oauth2] section in the configuration (see docs/oauth2.md)")
        return 2
    token, source = _read_token(oauth2.refresh_token_env, stdin, env)
    if not token:
        _say(f"no refresh token given ({source} was empty)")
        return 2
    from adapters.email.oauth2 import OAuth2Error, request_tokens

    expires = None
    if not args.no_check:
        try:
            grant = request_tokens(oauth2, token)
        except OAuth2Error as exc:
            _say(f"{exc}; nothing stored")
            return 1
        expires = grant.expires_in
        if grant.refresh_token is not None:
            token = grant.refresh_token
            print("the token endpoint rotated the refresh token; storing the new one")
    try:
        asyncio.run(_store(config, token))
    except Exception as exc:
        _say(f"could not store the refresh token in the database: {exc}")
        return 1
    checked = (
        f"; the token endpoint gave an access token valid for {expires:.0f} s"
        if expires is not None
        else " (not tried: --no-check)"
    )
    print(f"stored the refresh token from {source} in the database{checked}")
    return 0


def _read_token(env_name: str | None, stdin: TextIO, env: Mapping[str, str]) -> tuple[str, str]:
    """(token, where it came from): the configured variable if set, else standard input."""
    if env_name and env.get(env_name, "").strip():
        return env.get(env_name, "").strip(), f"the environment variable {env_name}"
    if stdin.isatty():
        return getpass.getpass("refresh token (not echoed): ").strip(), "standard input"
    return stdin.readline().strip(), "standard input"


async def _store(config: Config, token: str) -> None:
    from adapters.email.oauth2 import JobStateTokenStore
    from storage.store import SqlStore

    store = await SqlStore.open(config.storage.url)
    try:
        await JobStateTokenStore(store).save(token)
    finally:
        await store.close()


def _say(text: str) -> None:
    print(f"ticketbot: oauth2 set-token: {text}", file=sys.stderr)
