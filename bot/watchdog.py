"""End the process when its event loop stops turning, so its roles pass to a standby.

A process's roles are held by its database connection (PostgreSQL advisory locks, or
SQLite file locks), not by the work it does: a process whose event loop is stuck (a
blocking call that never returns, a deadlock) keeps its connection, its locks and so
its roles, and no standby ever takes over. Mail would wait in the mailbox until someone
noticed.

:class:`LoopWatchdog` is a coroutine that notes the time every second on the event loop,
and a thread that checks the note. When the loop has not turned for ``limit_seconds``
the thread writes what every thread was doing to standard error (Python's
:mod:`faulthandler`, which needs no lock and no event loop) and ends the process at once
with :data:`EXIT_STUCK`. The connection closes with it, the locks are released, and a
standby (or the supervisor's restart) takes the roles. Ending the process is safe by
the same rules as a SIGKILL: every stage of intake and posting is tested for one.

The thread writes with ``os.write`` rather than through :mod:`logging`: the stuck thread
may hold the logging lock.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable

#: The exit status of a process ended by the watchdog (``EX_SOFTWARE``).
EXIT_STUCK = 70
#: How often the loop notes that it turns.
BEAT_SECONDS = 1.0
#: The watching thread waking this much later than it meant to means the whole process
#: was stopped, not only its loop: that pause is not held against the loop.
PAUSE_SECONDS = 2.0


def _end_process(stuck_for: float) -> None:
    message = (
        f"ticketbot: CRITICAL the event loop has not turned for {stuck_for:.0f} s; ending the "
        f"process (exit status {EXIT_STUCK}) so its roles pass to a standby. What each "
        "thread was doing:\n"
    )
    try:
        os.write(sys.stderr.fileno(), message.encode())
        faulthandler.dump_traceback(file=sys.stderr.fileno(), all_threads=True)
    except (OSError, ValueError):  # no usable stderr: end anyway
        pass
    os._exit(EXIT_STUCK)


class LoopWatchdog:
    """Watches one event loop from a thread of its own; see the module docstring.

    ``limit_seconds`` 0 turns it off. ``on_stuck`` (tests) replaces ending the process.
    """

    def __init__(
        self,
        limit_seconds: float,
        *,
        on_stuck: Callable[[float], None] = _end_process,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_seconds = limit_seconds
        self._on_stuck = on_stuck
        self._clock = clock
        self._last_beat = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.limit_seconds > 0

    async def run(self) -> None:
        """Note the time every second, and watch from the thread, until cancelled."""
        if not self.enabled:
            return
        self._last_beat = self._clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="ticketbot-watchdog", daemon=True)
        self._thread.start()
        try:
            while True:
                self._last_beat = self._clock()
                await asyncio.sleep(BEAT_SECONDS)
        finally:
            self._stop.set()

    def _watch(self) -> None:
        period = min(BEAT_SECONDS, self.limit_seconds / 4)
        checked = self._clock()
        while not self._stop.wait(period):
            now = self._clock()
            if now - checked > period + PAUSE_SECONDS:
                # this thread overslept too: the whole process was stopped (SIGSTOP,
                # Ctrl-Z, docker pause, a stalled VM), not its loop. Count from now.
                self._last_beat = now
            checked = now
            stuck_for = now - self._last_beat
            if stuck_for >= self.limit_seconds:
                self._on_stuck(stuck_for)
                return
