"""The ``stats`` charts are drawn in a child process: the bot never loads matplotlib.

Checked in a fresh interpreter, since other tests in this one draw charts directly.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest

from bot.reports.charts_worker import ChartError, draw_stats_charts
from bot.reports.data import DurationStats, TrafficData

CHILD = textwrap.dedent(
    """
    import sys
    from datetime import UTC, date, datetime
    from bot.reports import stats_report
    from bot.reports.data import DurationStats, QueueTraffic, TrafficData

    days = tuple(date(2026, 11, d) for d in range(1, 31))
    queue = QueueTraffic(
        queue="info",
        received=tuple(range(30)),
        backlog=tuple(range(30)),
        backlog_before=0,
        first_response=DurationStats.empty(),
        time_to_close=DurationStats.empty(),
    )
    data = TrafficData(
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 12, 1, tzinfo=UTC),
        days=days,
        queues=(queue,),
        all_first_response=DurationStats.empty(),
        all_time_to_close=DurationStats.empty(),
    )
    report = stats_report(data, "November 2026")
    pngs = [f.data for f in report.files if f.name.endswith(".png")]
    assert len(pngs) == 2 and all(p.startswith(bytes([0x89]) + b"PNG") for p in pngs), pngs
    loaded = sorted(name for name in sys.modules if name.split(".")[0] == "matplotlib")
    print("matplotlib modules:", len(loaded))
    sys.exit(1 if loaded else 0)
    """
)


def test_stats_leaves_matplotlib_out_of_the_bot_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=False
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
    with pytest.raises(ChartError, match=r"failed \(2\).*expected \(TrafficData, str\)"):
        draw_stats_charts(data, 42)  # type: ignore[arg-type]
