"""A local Maildir as a mail source: for a bot running on the mail host, and for the demo.

Maildir semantics give the same promise as IMAP flags: a message stays in ``new/``
until its ticket is committed, then moves to ``cur/`` marked seen. A crash in
between leaves it in ``new/``; the next pass finds its Message-ID already stored
and only finishes the move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from bot.mail import InboundEmail
from bot.ports import MailIntake, MailKey

log = logging.getLogger(__name__)


class MaildirSource:
    def __init__(
        self,
        path: Path,
        intake: MailIntake,
        parse: Callable[[bytes], InboundEmail],
        poll_seconds: float = 10.0,
    ) -> None:
        self.path = path
        self.source = f"maildir:{path}"
        self._intake = intake
        self._parse = parse
        self._poll_seconds = poll_seconds

    def ensure_folders(self) -> None:
        for sub in ("new", "cur", "tmp"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    async def run(self) -> None:
        """Check now and then every ``poll_seconds`` until cancelled."""
        self.ensure_folders()
        while True:
            try:
                await self.check_once()
            except Exception:
                log.exception("maildir %s: check failed; trying again later", self.path)
            await asyncio.sleep(self._poll_seconds)

    async def check_once(self) -> int:
        """Take in every message in ``new/``; returns how many were ingested."""
        self.ensure_folders()
        for key in await self._intake.pending_done(self.source):
            self._finish(key)
            await self._intake.mark_done(key)
        count = 0
        for name in sorted(os.listdir(self.path / "new")):
            if name.startswith("."):
                continue
            file = self.path / "new" / name
            try:
                raw = file.read_bytes()
            except FileNotFoundError:
                continue  # moved by someone else meanwhile
            key = MailKey(self.source, 0, name)
            await self._intake.ingest(self._parse(raw), key)
            self._finish(key)
            await self._intake.mark_done(key)
            count += 1
        return count

    def _finish(self, key: MailKey) -> None:
        """Move a taken-in message from new/ to cur/ with the seen flag."""
        source = self.path / "new" / key.item
        base = key.item.split(":2,", 1)[0]
        target = self.path / "cur" / f"{base}:2,S"
        with contextlib.suppress(FileNotFoundError):  # already moved
            os.replace(source, target)
