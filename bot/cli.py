"""The ``ticketbot`` command line: run, demo, check-config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from bot import __version__
from bot.config import Config, ConfigError, load_config

log = logging.getLogger("ticketbot")

DESCRIPTION = """\
ticketbot: a volunteer help desk in chat. Mail to the team's addresses becomes
tickets in queue rooms (Matrix, or this console); volunteers claim, reply, note
and close them with ! commands; replies go back to the requester by email.
"""

EPILOG = """\
examples:
  ticketbot check-config --config bot.toml   validate a configuration, connect nothing
  ticketbot demo                             sample mail, the console, replies as .eml files
  ticketbot run --config /etc/ticketbot/bot.toml
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: ./bot.toml)",
    )
    common.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=argparse.SUPPRESS,
        help="override [logging] level",
    )
    parser = argparse.ArgumentParser(
        prog="ticketbot",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"ticketbot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "run",
        parents=[common],
        help="run the bot: take in mail, post tickets, answer commands",
        description="Run the bot until stopped (SIGINT/SIGTERM, or end of console input).",
    )
    sub.add_parser(
        "demo",
        parents=[common],
        help="run on the shipped config with sample mail, driven from the terminal",
        description="Run the demo: sample mails become tickets shown here; type ! commands; "
        "end input (Ctrl-D) to stop. Exits 0 at end of input.",
    )
    sub.add_parser(
        "check-config",
        parents=[common],
        help="validate the configuration without connecting anything",
        description="Read and validate the configuration; print a summary, or one line per "
        "problem naming the key. Exit status 0 when valid, 2 when not.",
    )
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("apscheduler", "nio", "peewee", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


def _summary(config: Config) -> str:
    mail = config.mail
    intake = [
        name for name, part in (("imap", mail.imap), ("maildir", mail.maildir)) if part is not None
    ]
    lines = [
        f"{config.path}: OK",
        f"  storage: {config.storage.url.split('@')[-1]}",
        f"  intake: {', '.join(intake)}; replies: {'smtp' if mail.smtp else 'files'}",
    ]
    for queue in config.queues:
        bound = ", ".join(f"{k}={v}" for k, v in queue.bindings(config).items())
        default = " (default)" if queue.default else ""
        lines.append(
            f"  queue {queue.name}{default}: {', '.join(queue.addresses)} -> {bound}; "
            f"{len(queue.volunteers)} volunteer(s)"
        )
    return "\n".join(lines)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        with contextlib.suppress(asyncio.CancelledError):
            await coro

    asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    path = getattr(args, "config", "bot.toml")
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"ticketbot: config error: {exc}", file=sys.stderr)
        return 2
    # the demo talks to a person in this terminal: only warnings unless asked for more
    default_level = "WARNING" if command == "demo" else config.log_level
    _setup_logging(getattr(args, "log_level", None) or default_level)

    if command == "check-config":
        print(_summary(config))
        return 0
    try:
        if command == "demo":
            from bot.demo import run_demo

            _run(run_demo(config))
        else:
            from bot.app import build_app

            async def run() -> None:
                app = await build_app(config)
                await app.run()

            _run(run())
    except ConfigError as exc:
        print(f"ticketbot: config error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
