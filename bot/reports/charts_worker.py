"""Draw the ``stats`` charts in a child process that stays up, so the bot never loads matplotlib.

matplotlib costs the process that imports it about 55 MB of resident memory, for good
(a module is never unloaded), to draw two charts a few times a week. Drawing them in a
child keeps the bot near 100 MB on a large desk (docs/search-performance.md).

The child, ``python -m bot.reports.chart_child``, is started by the first report
(before its database query, so importing matplotlib overlaps the query) and then stays
up: each later report only pays the drawing, not the interpreter's start and the import
(about 0.6 s of CPU on this project's two-core machine). It exits by itself after
:data:`IDLE_SECONDS` without a request, and when the bot goes (its stdin closes), so an
idle desk gives the memory back within the hour.

Requests and answers are pickles framed by an 8-byte length on the child's stdin and
stdout: ``(TrafficData, label)`` in, ``("ok", (traffic_png, times_png))`` or
``("error", text)`` out. A plain subprocess rather than ``multiprocessing``: a spawned
multiprocessing child re-imports the parent's ``__main__`` (the whole bot), this one
imports only :mod:`bot.reports.charts`. The pickles only ever cross between this module
and its own child, never from a file or the network.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from bot.reports.data import TrafficData

#: Drawing takes well under a second; a child still at work after this is stuck.
TIMEOUT_SECONDS = 120.0
#: A child with no request for this long exits; the next report starts a new one.
IDLE_SECONDS = 3600.0

#: The charts the child draws, in this order.
CHARTS = ("traffic", "times")

FRAME = struct.Struct(">Q")


class ChartError(RuntimeError):
    """The chart child failed; the message says how (its error, or that it died)."""


class _ChildGone(Exception):
    """The child's pipe closed: it exited (idle, killed) before or while answering."""


class ChartWorker:
    """One long-lived chart child, started on demand and restarted when it has gone.

    Thread-safe: reports are drawn on worker threads, one at a time per worker (a
    second report waits for the first's half second of drawing).
    """

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def start(self) -> None:
        """Start the child unless one runs; returns at once (it imports in the background).

        Called on the event loop, so it never waits for the lock: while another report
        is being drawn the child is up anyway, and :meth:`draw` starts one if not.
        """
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._running()
        finally:
            self._lock.release()

    def draw(self, data: TrafficData, label: str) -> tuple[bytes, bytes]:
        """Both charts as PNG bytes; blocking, so call it off the event loop.

        A child that has gone since the last report (idle, killed) is replaced and the
        request sent again: drawing has no side effects, so a retry is always safe.
        """
        payload = pickle.dumps((data, label), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            for attempt in (1, 2):
                child = self._running()
                try:
                    answer = _exchange(child, payload)
                except _ChildGone:
                    code = _reap(child)
                    self._child = None
                    if attempt == 2:
                        raise ChartError(f"the chart process ended ({code})") from None
                    continue
                except TimeoutError:
                    self._stop_locked()
                    raise ChartError(
                        f"drawing the charts took over {TIMEOUT_SECONDS:.0f} s"
                    ) from None
                except BaseException as exc:
                    # the answer may still be on its way: a child left running would hand
                    # it to the next report as that one's charts. End it, whatever failed.
                    self._stop_locked()
                    if not isinstance(exc, Exception):
                        raise
                    raise ChartError(f"talking to the chart process failed: {exc!r}") from exc
                return _charts(answer)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """End the child, if one runs (the bot stopping; tests)."""
        with self._lock:
            self._stop_locked()

    def _running(self) -> subprocess.Popen[bytes]:
        child = self._child
        if child is None or child.poll() is not None:
            if child is not None:
                _reap(child)  # gone idle: close its pipes now, not at the next restart
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bot.reports.chart_child",
                    f"--idle={self.idle_seconds}",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # the child's own complaints (a crash's traceback) go to the bot's log stream
                stderr=None,
            )
            self._child = child
        return child

    def _stop_locked(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            if child.poll() is None:
                child.kill()
            _reap(child)


def _exchange(child: subprocess.Popen[bytes], payload: bytes) -> Any:
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(FRAME.pack(len(payload)) + payload)
        child.stdin.flush()
    except (BrokenPipeError, OSError):
        raise _ChildGone from None
    deadline = time.monotonic() + TIMEOUT_SECONDS
    (size,) = FRAME.unpack(_read_exactly(child.stdout, FRAME.size, deadline))
    return pickle.loads(_read_exactly(child.stdout, size, deadline))


def _read_exactly(stream: IO[bytes], size: int, deadline: float) -> bytes:
    """``size`` bytes from the child's stdout, waiting at most until ``deadline``."""
    fd = stream.fileno()
    poller = select.poll()  # not select(): that fails on descriptors from 1024 up
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    missing = size
    while missing:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if not poller.poll(left * 1000):
            raise TimeoutError
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise _ChildGone
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _reap(child: subprocess.Popen[bytes]) -> int | None:
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            # a broken pipe's buffered bytes cannot be flushed
            with contextlib.suppress(OSError):
                stream.close()
    try:
        return child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def _charts(answer: Any) -> tuple[bytes, bytes]:
    if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == "error":
        raise ChartError(f"drawing the charts failed: {answer[1]}")
    if not (isinstance(answer, tuple) and len(answer) == 2 and answer[0] == "ok"):
        raise ChartError("the chart process answered something other than charts")
    charts = answer[1]
    if not (
        isinstance(charts, tuple)
        and len(charts) == len(CHARTS)
        and all(isinstance(chart, bytes) for chart in charts)
    ):
        raise ChartError(f"the chart process answered something other than {len(CHARTS)} PNGs")
    return charts[0], charts[1]


_shared: ChartWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> ChartWorker:
    """This process's chart worker (made on first use, its child ended at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ChartWorker()
            atexit.register(_shared.stop)
        return _shared


class ChartDrawer:
    """The charts of one report: starts the shared child (if it is not up) at once, so
    its start-up overlaps the report's database query; :meth:`draw` then asks it."""

    def __init__(self, worker: ChartWorker | None = None) -> None:
        self._worker = worker or shared_worker()
        self._worker.start()

    def draw(self, data: TrafficData, label: str) -> tuple[bytes, bytes]:
        """Both charts as PNG bytes; blocking, so call it off the event loop."""
        return self._worker.draw(data, label)


def draw_stats_charts(data: TrafficData, label: str) -> tuple[bytes, bytes]:
    """The traffic and the response-time chart of ``data`` as PNG bytes, drawn in the
    shared chart child. Blocking (about half a second): call it off the event loop."""
    return shared_worker().draw(data, label)
