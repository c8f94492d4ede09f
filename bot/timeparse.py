"""Durations and dates as volunteers and admins type them: ``3d``, ``1h30m``, ``2026-12-01``.

One reader for ``bot.toml`` (reminder times) and for commands (``pending 3d``), so
the two accept the same words.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

_PART = re.compile(r"(\d+)\s*(w|d|h|m|min|s)", re.IGNORECASE)
_WHOLE = re.compile(r"^(\s*\d+\s*(w|d|h|m|min|s)\s*)+$", re.IGNORECASE)
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "min": 60, "s": 1}
_MAX_SECONDS = 10 * 366 * 86400  # ten years: anything longer is a typo


def parse_duration(text: str) -> timedelta | None:
    """``"2d"``, ``"1h30m"``, ``"90m"``, ``"1w"`` -> timedelta; None if it is not one."""
    if not _WHOLE.match(text or ""):
        return None
    seconds = sum(int(n) * _UNITS[unit.lower()] for n, unit in _PART.findall(text))
    if not 0 < seconds <= _MAX_SECONDS:
        return None
    return timedelta(seconds=seconds)


def parse_when(text: str, now: datetime) -> datetime | None:
    """A moment after ``now``: a duration from now, or a date (UTC; a bare date means 09:00)."""
    text = text.strip()
    duration = parse_duration(text)
    if duration is not None:
        try:
            return now + duration
        except OverflowError:
            return None
    for pattern in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text, pattern)
        except ValueError:
            continue
        if pattern == "%Y-%m-%d":
            parsed = parsed.replace(hour=9)
        return parsed.replace(tzinfo=UTC)
    return None


def parse_clock(text: str) -> time | None:
    """``"08:00"`` -> time(8, 0) (UTC), for daily jobs."""
    try:
        parsed = datetime.strptime(text.strip(), "%H:%M")
    except ValueError:
        return None
    return parsed.time()


def format_duration(delta: timedelta) -> str:
    """A short, readable length of time: ``2d 3h``, ``45m``, ``just now``."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return "just now" if seconds < 5 else f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"
