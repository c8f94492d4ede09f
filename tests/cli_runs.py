"""Running ``ticketbot`` commands in a test as a person runs them, and the desk they run on.

Shared by the tests of the maintenance and import commands (backup, export/import,
import-mail, import-otrs), which each had a copy.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from storage.store import SqlStore

#: A small desk: the demo's Maildir and file sender, the console, one queue "info".
DESK_TOML = """
[storage]
url = "{url}"

[mail.maildir]
path = "mail"

[mail.files]
path = "out"

[console]
enabled = true
user = "@alice:example.org"

[[queue]]
name = "info"
addresses = ["info@example.org"]
volunteers = ["@alice:example.org"]
default = true
console = true
"""


def write_desk_config(folder: Path, url: str) -> Path:
    """``folder/bot.toml`` for :data:`DESK_TOML` on the database ``url``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bot.toml"
    path.write_text(DESK_TOML.format(url=url), encoding="utf-8")
    return path


@dataclass
class Run:
    """A finished command: its exit status and what it printed."""

    code: int
    out: str
    err: str

    def figure(self, label: str) -> int:
        """The number on the summary line ``label: N``."""
        found = re.search(rf"^{label}:\s+(\d+)", self.out, re.M)
        assert found, (label, self.out, self.err)
        return int(found.group(1))


async def run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """``ticketbot ARGV`` on a thread of its own, since the command runs its own loop."""
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


async def read_db(url: str, work: Any) -> Any:
    """One unit of work on the database at ``url``, through a store opened for it."""
    store = await SqlStore.open(url)
    try:
        return await store.run(work)
    finally:
        await store.close()
