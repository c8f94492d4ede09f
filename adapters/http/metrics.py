"""``/metrics`` in the Prometheus text format, from one :class:`bot.status.Snapshot`."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bot.status import Snapshot


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        metrics = self._snapshot.metrics
        yield CounterMetricFamily(
            "ticketbot_mails_taken_in", "Mails stored as tickets or follow-ups", metrics.mails_in
        )
        yield CounterMetricFamily(
            "ticketbot_replies_sent", "Replies accepted by the mail server", metrics.replies_sent
        )
        yield CounterMetricFamily(
            "ticketbot_replies_failed",
            "Replies given up after permanent errors or too many attempts",
            metrics.replies_failed,
        )
        tickets = GaugeMetricFamily(
            "ticketbot_tickets", "Tickets by queue and state", labels=["queue", "state"]
        )
        for queue, state, count in self._snapshot.tickets:
            tickets.add_metric([queue, state], count)
        yield tickets
        outbox = GaugeMetricFamily(
            "ticketbot_outbox_depth", "Chat posts and mails waiting", labels=["channel"]
        )
        for channel, count in sorted(self._snapshot.outbox.items()):
            outbox.add_metric([channel], count)
        yield outbox
        reconnects = CounterMetricFamily(
            "ticketbot_reconnects", "Connections made again, per adapter", labels=["adapter"]
        )
        for adapter, count in sorted(metrics.reconnects.items()):
            reconnects.add_metric([adapter], count)
        yield reconnects
        roles = GaugeMetricFamily(
            "ticketbot_role_held",
            "1 when this process holds the role, 0 when it stands by for it",
            labels=["role"],
        )
        for role, held in sorted(metrics.roles.items()):
            roles.add_metric([role], 1.0 if held else 0.0)
        yield roles
        latency = HistogramMetricFamily(
            "ticketbot_command_seconds", "Time to carry out a command", labels=["command"]
        )
        for name, histogram in sorted(metrics.commands.items()):
            buckets = [
                ("+Inf" if bound == float("inf") else repr(bound), count)
                for bound, count in histogram.cumulative()
            ]
            latency.add_metric([name], buckets, histogram.total)
        yield latency


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
