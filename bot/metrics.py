"""Figures the desk keeps in memory for monitoring (``/metrics``, ``/healthz``).

The core and the adapters count here; the HTTP adapter reads a snapshot and writes it
in the Prometheus text format. Counts held in the database (tickets by queue and state,
the outbox backlog) are read at scrape time instead, so every instance reports the same.
Nothing here imports a metrics library: the core stays free of it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

#: Upper bounds (seconds) of the command latency histogram's buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with +Inf."""
        running, out = 0, []
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass
class Metrics:
    mails_in: int = 0
    replies_sent: int = 0
    replies_failed: int = 0
    #: Connections made again after the first, per adapter ("imap", ...).
    reconnects: Counter[str] = field(default_factory=Counter)
    #: Command latency per command name.
    commands: dict[str, Histogram] = field(default_factory=dict)
    #: When each mail source last checked its mailbox successfully.
    mail_checked_at: dict[str, datetime] = field(default_factory=dict)
    #: This process's roles: held (True) or standing by for (False); see bot/roles.py.
    roles: dict[str, bool] = field(default_factory=dict)
    #: When this process took each role it holds.
    roles_since: dict[str, datetime] = field(default_factory=dict)
    #: Each chat connection's state ("ok", "failing: ...", "disconnected"), set by the
    #: adapters of the platforms this process holds.
    connections: dict[str, str] = field(default_factory=dict)
    #: This process's name and id in the instance register.
    instance: str = ""

    def observe_command(self, name: str, seconds: float) -> None:
        self.commands.setdefault(name, Histogram()).observe(seconds)
