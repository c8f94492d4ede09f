"""APScheduler behind the core's small :class:`bot.ports.Scheduler` interface."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)


class ApScheduler:
    """Periodic jobs keyed by name, so a job can be replaced or cancelled by its key."""

    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")

    def start(self) -> None:
        if not self._scheduler.running:
            self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def every(self, key: str, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        async def run_job() -> None:
            try:
                await job()
            except Exception:
                log.exception("scheduled job %s failed; it runs again at its next time", key)

        self._scheduler.add_job(
            run_job,
            "interval",
            seconds=seconds,
            id=key,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
        )

    def cancel(self, key: str) -> None:
        if self._scheduler.get_job(key) is not None:
            self._scheduler.remove_job(key)
