"""The ``stats`` charts are drawn in a child process: the bot never loads matplotlib.

That is checked in a fresh interpreter, since other tests in this one draw charts
directly. The child stays up between reports, exits when idle, and is replaced when it
has gone: checked on workers of the tests' own, not the process's shared one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bot.reports import charts_worker
from bot.reports.charts_worker import ChartDrawer, ChartError, ChartWorker, draw_stats_charts
from bot.reports.data import DurationStats, QueueTraffic, TrafficData

PNG = bytes([0x89]) + b"PNG"

CHILD = textwrap.dedent(
    """
    import sys
    from bot.reports import stats_report
    from tests.reports.test_charts_process import PNG, month

    report = stats_report(month(), "November 2026")
    pngs = [f.data for f in report.files if f.name.endswith(".png")]
    assert len(pngs) == 2 and all(p.startswith(PNG) for p in pngs), pngs
    loaded = sorted(name for name in sys.modules if name.split(".")[0] == "matplotlib")
    print("matplotlib modules:", len(loaded))
    sys.exit(1 if loaded else 0)
    """
)


def test_stats_leaves_matplotlib_out_of_the_bot_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],  # the child imports this module
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "matplotlib modules: 0" in done.stdout


def test_a_failing_child_is_reported_with_its_error() -> None:
    # a label that is not a str makes the child refuse its input
    data = TrafficData(
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 11, 2, tzinfo=UTC),
        days=(),
        queues=(),
        all_first_response=DurationStats.empty(),
        all_time_to_close=DurationStats.empty(),
    )
    with pytest.raises(ChartError, match=r"failed: TypeError: expected \(TrafficData, str\)"):
        draw_stats_charts(data, 42)  # type: ignore[arg-type]


def month() -> TrafficData:
    days = tuple(date(2026, 11, d) for d in range(1, 31))
    queue = QueueTraffic(
        queue="info",
        received=tuple(range(30)),
        backlog=tuple(range(30)),
        backlog_before=0,
        first_response=DurationStats.empty(),
        time_to_close=DurationStats.empty(),
    )
    return TrafficData(
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 12, 1, tzinfo=UTC),
        days=days,
        queues=(queue,),
        all_first_response=DurationStats.empty(),
        all_time_to_close=DurationStats.empty(),
    )


@pytest.fixture
def worker() -> Iterator[ChartWorker]:
    made = ChartWorker(idle_seconds=600)
    yield made
    made.stop()


def test_the_child_stays_up_between_reports_and_the_second_is_quicker(
    worker: ChartWorker,
) -> None:
    started = time.perf_counter()
    first = ChartDrawer(worker).draw(month(), "November 2026")
    cold = time.perf_counter() - started
    pid = worker.pid
    started = time.perf_counter()
    second = ChartDrawer(worker).draw(month(), "November 2026")
    warm = time.perf_counter() - started
    assert pid is not None and worker.pid == pid, "the second report used the same child"
    assert first == second and all(png.startswith(PNG) for png in first)
    # the second pays no interpreter start and no matplotlib import
    assert warm < cold, (cold, warm)


def test_a_failed_report_leaves_the_child_serving(worker: ChartWorker) -> None:
    worker.draw(month(), "November 2026")
    pid = worker.pid
    with pytest.raises(ChartError, match=r"expected \(TrafficData, str\)"):
        worker.draw(month(), 42)  # type: ignore[arg-type]
    assert worker.pid == pid
    assert worker.draw(month(), "again")[0].startswith(PNG)


def test_a_killed_child_is_replaced_and_the_report_still_drawn(worker: ChartWorker) -> None:
    worker.draw(month(), "November 2026")
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    traffic, times = worker.draw(month(), "November 2026")
    assert traffic.startswith(PNG) and times.startswith(PNG)
    assert worker.pid not in (None, pid)


def test_an_idle_child_exits_by_itself_and_the_next_report_starts_one() -> None:
    worker = ChartWorker(idle_seconds=1.0)
    try:
        worker.draw(month(), "November 2026")
        pid = worker.pid
        deadline = time.monotonic() + 30
        while worker.pid is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.pid is None, "the idle child is still running"
        assert worker.draw(month(), "November 2026")[0].startswith(PNG)
        assert worker.pid not in (None, pid)
    finally:
        worker.stop()


def test_the_child_ends_when_the_bot_does() -> None:
    """A parent killed outright leaves no chart child behind: its stdin closes."""
    script = textwrap.dedent(
        """
        import os, sys
        from bot.reports.charts_worker import ChartWorker
        worker = ChartWorker(idle_seconds=600)
        worker.start()
        print(worker.pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    child = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.2)
    assert not _alive(child), f"chart child {child} outlived its parent"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_broken_exchange_ends_the_child_so_no_report_gets_another_ones_charts(
    worker: ChartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer left unread in the pipe would be the next report's answer: after any
    failure mid-exchange the child is ended and the next report gets a fresh one."""
    worker.draw(month(), "first")
    real = charts_worker._read_exactly
    failures = iter([ValueError("filedescriptor out of range in select()")])

    def failing_once(*args: object) -> bytes:
        for failure in failures:
            raise failure
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(charts_worker, "_read_exactly", failing_once)
    with pytest.raises(ChartError, match="talking to the chart process failed"):
        worker.draw(month(), "second")
    assert worker.pid is None
    third = worker.draw(month(), "third")
    assert third == worker.draw(month(), "third")
    assert third != worker.draw(month(), "second"), "the third report got the second's charts"


def test_starting_never_waits_for_a_report_being_drawn(worker: ChartWorker) -> None:
    """ChartDrawer() runs on the event loop: it must not wait while another thread draws."""
    with worker._lock:  # another report is being drawn
        started = time.perf_counter()
        ChartDrawer(worker)
        assert time.perf_counter() - started < 0.5
