"""The chart child's side of :mod:`bot.reports.charts_worker`: draw on request, exit when idle.

Run as ``python -m bot.reports.chart_child [--idle=SECONDS]`` by
:class:`~bot.reports.charts_worker.ChartWorker`, never by hand. A module of its own
(rather than ``python -m bot.reports.charts_worker``) because the package imports that
one, and running an already imported module as ``__main__`` makes Python warn.
"""

from __future__ import annotations

import os
import pickle
import select
import sys
from typing import Any

from bot.reports.charts_worker import FRAME, IDLE_SECONDS
from bot.reports.data import TrafficData


def serve(idle_seconds: float) -> int:
    """The child's loop: a framed request on stdin, a framed answer on stdout, until
    stdin closes (the bot went) or nothing comes for ``idle_seconds``."""
    import matplotlib.backends.backend_agg  # noqa: F401  (now, while the parent queries)

    from bot.reports.charts import response_chart, traffic_chart

    stdout = sys.stdout.buffer
    fd = sys.stdin.buffer.fileno()  # read raw: poll() must see every byte not yet read
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if not poller.poll(idle_seconds * 1000):
            return 0  # idle: give the memory back
        header = _read_all(fd, FRAME.size)
        if header is None:
            return 0  # the bot closed our stdin
        (size,) = FRAME.unpack(header)
        payload = _read_all(fd, size)
        if payload is None:
            return 0
        answer: tuple[str, Any]
        try:
            data, label = pickle.loads(payload)
            if not isinstance(data, TrafficData) or not isinstance(label, str):
                raise TypeError("expected (TrafficData, str)")
            answer = ("ok", (traffic_chart(data, label), response_chart(data, label)))
        except Exception as exc:  # the report's failure, not the child's: keep serving
            answer = ("error", f"{type(exc).__name__}: {exc}")
        body = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            stdout.write(FRAME.pack(len(body)) + body)
            stdout.flush()
        except BrokenPipeError:
            # the bot went while we drew: nobody to answer; exit without the flush at
            # shutdown, which would print the same broken pipe onto the bot's stderr
            os._exit(0)


def _read_all(fd: int, size: int) -> bytes | None:
    """Exactly ``size`` bytes from ``fd``, or None at end of file."""
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def main(argv: list[str]) -> int:
    """``[--idle=SECONDS]``: serve until idle that long, or until stdin closes."""
    idle = IDLE_SECONDS
    for arg in argv:
        name, _, value = arg.partition("=")
        if name != "--idle":
            print(f"chart_child: unknown argument {arg!r}", file=sys.stderr)
            return 2
        idle = float(value)
    return serve(idle)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
