"""The weekly traffic report, posted to the admins' room on the day and hour ``bot.toml`` sets.

``[reports] weekly = "mon 08:00"`` (UTC) posts, once a week, the charts, table and CSV
of ``stats`` for the seven days before that day. The week last posted is kept in
``job_state``, so a restart neither repeats nor skips one; a report that would come
more than a day late (the bot was down) is skipped with a log line rather than posted
out of the blue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from bot.admin.live import LiveConfig
from bot.chat import ChatGateway
from bot.config import ReportsConfig
from bot.ports import Clock
from bot.reports import stats_report
from bot.repository import Store

log = logging.getLogger(__name__)

_KEY = "reports.weekly_last"
#: How often the job looks at the clock.
CHECK_SECONDS = 300.0
#: A report later than this after its time is skipped, not posted.
LATEST = timedelta(days=1)


def targets(config: ReportsConfig) -> dict[str, str]:
    """Platform -> room the weekly report goes to."""
    found: dict[str, str] = {}
    if config.matrix_room:
        found["matrix"] = config.matrix_room
    if config.discord_channel is not None:
        found["discord"] = str(config.discord_channel)
    if config.console:
        found["console"] = "admins"
    return found


def last_due(config: ReportsConfig, now: datetime) -> datetime | None:
    """The latest moment at or before ``now`` the report was due, or None when it is off."""
    if config.weekly_at is None:
        return None
    weekday, at = config.weekly_at
    day = now.date() - timedelta(days=(now.weekday() - weekday) % 7)
    moment = datetime.combine(day, at, tzinfo=UTC)
    return moment if moment <= now else moment - timedelta(days=7)


class WeeklyReport:
    """Posts the past week's traffic report to the admins' rooms, once a week."""

    def __init__(
        self,
        live: LiveConfig,
        store: Store,
        clock: Clock,
        gateways: Mapping[str, ChatGateway],
    ) -> None:
        self._live = live
        self._store = store
        self._clock = clock
        self._gateways = gateways

    @property
    def enabled(self) -> bool:
        return self._live.current.reports.weekly_at is not None

    async def tick(self) -> bool:
        """Post the report if one is due; True when it was posted."""
        config = self._live.current.reports
        now = self._clock.now()
        due = last_due(config, now)
        if due is None:
            return False
        week = due.date().isoformat()
        if await self._store.run(lambda repo: repo.job_state(_KEY)) == week:
            return False
        if now - due > LATEST:
            log.info("weekly report of %s skipped: due at %s, now too late", week, due)
            await self._store.run(lambda repo: repo.set_job_state(_KEY, week))
            return False
        end = datetime.combine(due.date(), datetime.min.time(), tzinfo=UTC)
        start = end - timedelta(days=7)
        label = f"week {start:%Y-%m-%d} – {end - timedelta(days=1):%Y-%m-%d}"
        data = await self._store.run(lambda repo: repo.report_traffic(None, start, end))
        # charts take a moment of CPU: off the event loop
        report = await asyncio.to_thread(stats_report, data, label)
        text = f"📊 Weekly traffic report, {label}\n{report.text}"
        for platform, room in targets(config).items():
            gateway = self._gateways.get(platform)
            if gateway is None:
                log.error("weekly report: no %s connection to post to %s", platform, room)
                continue
            await gateway.post_report(room, text, report.files, f"weekly-{week}-{platform}")
        await self._store.run(lambda repo: repo.set_job_state(_KEY, week))
        log.info("weekly report of %s posted", week)
        return True
