"""Shared test configuration: the real-server fixtures live in tests/servers/."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.servers.dovecot",
    "tests.servers.smtp",
    "tests.servers.synapse",
    "tests.servers.postgres",
    "tests.servers.discord_double",
]


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Undo what a test's in-process ``ticketbot`` command did to the root logger.

    ``setup_logging`` installs a handler writing to the current standard error; left in
    place, every later test's log lines (the SMTP capture's, the servers') land in the CI
    output between test names. Only the root logger and the loggers it quiets are reset.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quieted = {
        name: logging.getLogger(name).level for name in ("apscheduler", "nio", "peewee", "aiohttp")
    }
    yield
    for handler in list(root.handlers):
        # pytest's own capture handlers come and go per test phase: leave those
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in quieted.items():
        logging.getLogger(name).setLevel(old)
