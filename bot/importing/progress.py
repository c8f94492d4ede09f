"""A progress bar on standard error: a redrawn bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

_WIDTH = 30


class ProgressBar:
    """``reading [#######.......] 1200/5000 mails  340/s``, redrawn at most 10 times a
    second on a terminal; when standard error is a file or a pipe, one line every
    ``every`` seconds and one at the end, so a log stays readable."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: int,
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "mails",
    ) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._every = 0.1 if self.tty else every
        self._clock = clock
        self._start = clock()
        self._shown = self._start

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self._clock()
        if now - self._shown >= self._every:
            self._shown = now
            self._show(final=False)

    def finish(self) -> None:
        self._show(final=True)

    def _text(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        if self.tty:
            filled = int(_WIDTH * min(share, 1.0))
            bar = "#" * filled + "." * (_WIDTH - filled)
            return f"{self.label} [{bar}] {self.done}/{self.total} {self.unit}  {rate:.0f}/s"
        return f"{self.label}: {self.done}/{self.total} {self.unit} ({share:.0%}, {rate:.0f}/s)"

    def _show(self, *, final: bool) -> None:
        if self.tty:
            end = "\n" if final else ""
            print(f"\r  {self._text()}", end=end, file=self.stream, flush=True)
        else:
            print(f"  {self._text()}", file=self.stream, flush=True)
