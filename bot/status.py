"""What the desk tells the outside world over HTTP: backlog badges and whether it is healthy.

The HTTP adapter (``adapters/http``) turns requests into these calls. Badges hold queue
names, counts and an age only, so they may be shown on a public status page; they are
computed for all queues at once and reused for ``badge_cache_seconds``, so a busy wiki
banner cannot keep the database busy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.admin.live import LiveConfig
from bot.metrics import Metrics
from bot.ports import Clock
from bot.reports.badge import badge_json, badge_svg, file_stems
from bot.reports.data import BadgeData
from bot.repository import Store


@dataclass(frozen=True)
class Health:
    ok: bool
    details: Mapping[str, object]


#: A mail source with no good check for this long makes /healthz fail.
MAIL_STALE = timedelta(minutes=15)


@dataclass(frozen=True)
class Snapshot:
    """Everything /metrics shows, read at one moment."""

    metrics: Metrics
    tickets: list[tuple[str, str, int]]
    outbox: dict[str, int]


class StatusService:
    def __init__(
        self,
        live: LiveConfig,
        store: Store,
        clock: Clock,
        metrics: Metrics | None = None,
        mail_sources: Sequence[str] = (),
    ) -> None:
        self._live = live
        self._store = store
        self._clock = clock
        self.metrics = metrics or Metrics()
        self._mail_sources = tuple(mail_sources)
        self._started = clock.now()
        self._badges: dict[str, BadgeData] = {}
        self._badges_at = float("-inf")
        self._lock = asyncio.Lock()

    async def badges(self) -> dict[str, BadgeData]:
        """Badge data by file stem (``info--de`` for ``info::de``), from the cache if fresh."""
        config = self._live.current
        max_age = config.http.badge_cache_seconds if config.http is not None else 60.0
        async with self._lock:
            if time.monotonic() - self._badges_at > max_age:
                names = [q.name for q in config.queues]
                now = self._clock.now()
                found = await self._store.run(lambda repo: repo.report_backlog(names, now))
                by_queue = {b.queue: b for b in found}
                stems = file_stems(names)
                self._badges = {
                    stem: by_queue.get(name) or BadgeData(name, 0, None, now)
                    for stem, name in zip(stems, names, strict=True)
                }
                self._badges_at = time.monotonic()
            return self._badges

    async def badge(self, stem: str, kind: str) -> tuple[str, str] | None:
        """(content type, body) of ``stem``'s badge as ``svg`` or ``json``; None if no queue."""
        badge = (await self.badges()).get(stem)
        if badge is None:
            return None
        if kind == "svg":
            return "image/svg+xml", badge_svg(badge)
        return "application/json", badge_json(badge)

    async def health(self) -> Health:
        """The database answers and every mailbox was checked lately; the outbox backlog.

        Failing (HTTP 503) when the database does not answer within 10 s, or a mail
        source has had no good check for :data:`MAIL_STALE` (counted from the start for
        one that never had one).
        """
        now = self._clock.now()
        details: dict[str, object] = {}
        ok = True
        try:
            depths = await asyncio.wait_for(
                self._store.run(lambda repo: repo.outbox_depths()), timeout=10
            )
            details["database"] = "ok"
            details["outbox_pending"] = sum(depths.values())
            details["outbox_by_channel"] = depths
        except Exception as exc:
            ok = False
            details["database"] = f"unavailable: {exc}"
        mail: dict[str, object] = {}
        standby = self.metrics.roles.get("intake") is False
        for source in self._mail_sources:
            if standby:  # another instance takes the mail in: nothing to be stale here
                mail[source] = {"last_check": None, "state": "standby"}
                continue
            checked = self.metrics.mail_checked_at.get(source)
            # counted from the last good check (or the start), but not from before this
            # process took the mail in: a standby that just took over has had no chance
            last = checked or self._started
            taken = self.metrics.roles_since.get("intake")
            since = now - (max(last, taken) if taken is not None else last)
            stale = since > MAIL_STALE
            ok = ok and not stale
            mail[source] = {
                "last_check": checked.isoformat() if checked else None,
                "state": "stale" if stale else "ok",
            }
        if mail:
            details["mail"] = mail
        if self.metrics.connections:
            # informational: a chat platform that is away delays posts, it loses nothing,
            # and the adapter keeps retrying; the mailbox and database decide the status
            details["chat"] = dict(sorted(self.metrics.connections.items()))
        if self.metrics.instance:
            # a standby is healthy: it holds nothing because another instance does
            details["instance"] = self.metrics.instance
            details["roles_held"] = sorted(r for r, held in self.metrics.roles.items() if held)
            details["standing_by_for"] = sorted(
                r for r, held in self.metrics.roles.items() if not held
            )
        return Health(ok, details)

    async def snapshot(self) -> Snapshot:
        tickets, outbox = await self._store.run(
            lambda repo: (repo.ticket_counts(), repo.outbox_depths())
        )
        return Snapshot(self.metrics, tickets, outbox)
