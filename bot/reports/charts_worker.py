"""Draw the ``stats`` charts in a short-lived child process, so the bot never loads matplotlib.

matplotlib costs the process that imports it about 55 MB of resident memory, for good
(a module is never unloaded), to draw two charts a few times a week. Drawing them in a
child keeps the bot near 100 MB on a large desk (docs/search-performance.md). The child,
``python -m bot.reports.charts_worker traffic times``, is started before the report's
query so its start-up overlaps it: it reads the pickled
:class:`~bot.reports.data.TrafficData` and label on stdin, writes the PNGs pickled on
stdout, and exits. A plain subprocess rather than
``multiprocessing``: a spawned multiprocessing child re-imports the parent's
``__main__`` (the whole bot), this one imports only :mod:`bot.reports.charts`.

The pickle only ever crosses between this module and its own child, never from a file
or the network.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

from bot.reports.data import TrafficData

#: Drawing takes about a second; a child still at work after this is stuck.
TIMEOUT_SECONDS = 120.0


class ChartError(RuntimeError):
    """The chart child failed; the message carries the end of what it wrote to stderr."""


#: The charts the child draws, in this order. One child draws both: on two cores a
#: second child's start-up (0.8 s of CPU importing matplotlib) slowed the report's query
#: more than drawing the charts side by side saved (measured, docs/search-performance.md).
CHARTS = ("traffic", "times")


class ChartDrawer:
    """The two chart children, started before the figures are ready.

    Starting them first lets their start-up (mostly importing matplotlib, about half a
    second) overlap the report's database query: the ``stats`` command makes one, reads
    the figures, then calls :meth:`draw`. :meth:`close` ends children never used.
    """

    def __init__(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "bot.reports.charts_worker", *CHARTS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def draw(self, data: TrafficData, label: str) -> tuple[bytes, bytes]:
        """Both charts as PNG bytes; blocking, so call it off the event loop."""
        payload = pickle.dumps((data, label), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            traffic, times = _collect(self._child, payload)
            return traffic, times
        finally:
            self.close()

    def close(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
            self._child.wait()


def draw_stats_charts(data: TrafficData, label: str) -> tuple[bytes, bytes]:
    """The traffic and the response-time chart of ``data`` as PNG bytes, drawn in children.

    Blocking (about a second): call it off the event loop, as :func:`stats_report` is.
    """
    return ChartDrawer().draw(data, label)


def _collect(child: subprocess.Popen[bytes], payload: bytes) -> tuple[bytes, ...]:
    """The child's PNGs; :class:`ChartError` with the end of its stderr if it failed."""
    try:
        out, err = child.communicate(payload, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise ChartError(f"drawing a chart took over {TIMEOUT_SECONDS:.0f} s") from None
    if child.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        raise ChartError(f"drawing the charts failed ({child.returncode}): " + " | ".join(tail))
    charts = pickle.loads(out)
    if not (isinstance(charts, tuple) and len(charts) == len(CHARTS)):
        raise ChartError(f"the chart child answered something other than {len(CHARTS)} PNGs")
    if not all(isinstance(chart, bytes) for chart in charts):
        raise ChartError("the chart child answered something other than PNGs")
    return charts


def main(argv: list[str]) -> int:
    """The child: the charts to draw (``traffic``, ``times``) as arguments, pickled
    ``(TrafficData, label)`` on stdin, a pickled tuple of their PNGs on stdout."""
    import matplotlib.backends.backend_agg  # noqa: F401  (now, while the parent queries)

    from bot.reports.charts import response_chart, traffic_chart

    known = {"traffic": traffic_chart, "times": response_chart}
    if not argv or any(name not in known for name in argv):
        print(f"charts_worker: give some of {', '.join(CHARTS)}, not {argv!r}", file=sys.stderr)
        return 2
    data, label = pickle.loads(sys.stdin.buffer.read())
    if not isinstance(data, TrafficData) or not isinstance(label, str):
        print("charts_worker: expected (TrafficData, str) on stdin", file=sys.stderr)
        return 2
    charts = tuple(known[name](data, label) for name in argv)
    sys.stdout.buffer.write(pickle.dumps(charts, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
