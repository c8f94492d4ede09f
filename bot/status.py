"""What the desk tells the outside world over HTTP: backlog badges and whether it is healthy.

The HTTP adapter (``adapters/http``) turns requests into these calls. Badges hold queue
names, counts and an age only, so they may be shown on a public status page; they are
computed for all queues at once and reused for ``badge_cache_seconds``, so a busy wiki
banner cannot keep the database busy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bot.admin.live import LiveConfig
from bot.ports import Clock
from bot.reports.badge import badge_json, badge_svg, file_stems
from bot.reports.data import BadgeData
from bot.repository import Store


@dataclass(frozen=True)
class Health:
    ok: bool
    details: Mapping[str, object]


class StatusService:
    def __init__(self, live: LiveConfig, store: Store, clock: Clock) -> None:
        self._live = live
        self._store = store
        self._clock = clock
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
        """The database answers, and how much chat and mail work waits in the outbox."""
        try:
            pending = await asyncio.wait_for(
                self._store.run(lambda repo: repo.outbox_pending_count()), timeout=10
            )
        except Exception as exc:
            return Health(False, {"database": f"unavailable: {exc}"})
        return Health(True, {"database": "ok", "outbox_pending": pending})
