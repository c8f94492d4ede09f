"""What ``stats`` and ``activity`` were asked for: which queues, which days.

Periods are whole UTC days, today included, because volunteers read "the last 7 days" as
a week of days on a calendar, and because a day's backlog is counted at its end. A period
is ``[start, end)``: ``end`` is the midnight after its last day.

``--month`` alone is the last 30 days, not the calendar month: on the 3rd a calendar
month would be three days long and nothing like the month before it. A calendar month
is asked for by name, ``--month 2026-10``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

DEFAULT_DAYS = 7
MONTH_DAYS = 30
MAX_DAYS = 366

_MONTH = re.compile(r"^\d{4}-\d{1,2}$")
#: Phones turn "--" into a dash; read "—week" as "--week".
_DASHES = ("—", "–", "−")

STATS_USAGE = "stats [QUEUE ...] [--week | --month [YYYY-MM] | --from YYYY-MM-DD [--to YYYY-MM-DD]]"
ACTIVITY_USAGE = "activity [--month YYYY-MM]"


@dataclass(frozen=True)
class StatsRequest:
    """``queues`` None means every queue; ``label`` names the period for titles."""

    queues: tuple[str, ...] | None
    start: datetime
    end: datetime
    label: str


@dataclass(frozen=True)
class ActivityRequest:
    start: datetime
    end: datetime
    label: str


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _today(now: datetime) -> date:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).date()


def _option(word: str) -> str:
    for dash in _DASHES:
        if word.startswith(dash):
            return "--" + word[len(dash) :]
    return word


def _words(args: str | Sequence[str]) -> list[str]:
    """Options split at ``=`` too (``--from=2026-11-01``), dashes made ASCII."""
    raw = args.split() if isinstance(args, str) else list(args)
    words: list[str] = []
    for word in raw:
        word = _option(word)
        if word.startswith("--") and "=" in word:
            name, _, value = word.partition("=")
            words += [name, value]
        else:
            words.append(word)
    return words


def _date(option: str, value: str | None) -> date:
    if value is None or value.startswith("--"):
        raise ValueError(f"{option} needs a date (YYYY-MM-DD)")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{option} {value} is not a date (YYYY-MM-DD)") from None


def _month(value: str) -> date:
    """The first day of ``YYYY-MM``."""
    try:
        if not _MONTH.match(value):
            raise ValueError
        year, month = (int(part) for part in value.split("-"))
        return date(year, month, 1)
    except ValueError:
        raise ValueError(f"--month {value} is not a month (YYYY-MM)") from None


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _span(first: date, last: date) -> str:
    days = (last - first).days + 1
    return f"{first:%Y-%m-%d} – {last:%Y-%m-%d} ({days} day{'s' if days != 1 else ''})"


def _month_label(first: date, last: date, month_end: date) -> str:
    name = f"{first:%B %Y}"
    return name if last >= month_end else f"{name}, {first.day}–{last.day} {last:%b}"


def parse_stats_args(args: str, now: datetime, known_queues: Sequence[str]) -> StatsRequest:
    """``stats`` arguments; raises ValueError naming the bad word and what would do.

    Queue names are matched ignoring case and come back as the configuration spells
    them; a queue brings its sub-queues (the report does that).
    """
    return parse_stats_words(_words(args), now, known_queues)


def parse_stats_words(
    words: Sequence[str], now: datetime, known_queues: Sequence[str]
) -> StatsRequest:
    """:func:`parse_stats_args` for words already split (the command line's, or a name
    with a space in it)."""
    words = _words(words)
    today = _today(now)
    by_lower = {q.lower(): q for q in known_queues}
    queues: list[str] = []
    chosen: list[str] = []
    month: str | None = None
    start_day: date | None = None
    end_day: date | None = None
    i = 0
    while i < len(words):
        word = words[i]
        following = words[i + 1] if i + 1 < len(words) else None
        if word == "--week":
            chosen.append(word)
        elif word == "--month":
            chosen.append(word)
            if following is not None and _MONTH.match(following):
                month = following
                i += 1
        elif word in ("--from", "--to"):
            if (word == "--from" and start_day) or (word == "--to" and end_day):
                raise ValueError(f"{word} is given twice")
            day = _date(word, following)
            i += 1
            if word == "--from":
                start_day = day
                chosen.append(word)
            else:
                end_day = day
        elif word.startswith("-"):
            raise ValueError(
                f"unknown option '{word}'; use --week, --month [YYYY-MM], "
                "or --from YYYY-MM-DD [--to YYYY-MM-DD]"
            )
        else:
            name = by_lower.get(word.lower())
            if name is None:
                known = ", ".join(sorted(known_queues)) or "none configured"
                raise ValueError(f"unknown queue '{word}'; known: {known}")
            if name not in queues:
                queues.append(name)
        i += 1
    if len(set(chosen)) > 1:
        raise ValueError("give only one of --week, --month and --from/--to")
    if end_day is not None and start_day is None:
        raise ValueError("--to needs --from YYYY-MM-DD too")

    selected = tuple(queues) or None
    if month is not None:
        first = _month(month)
        if first > today:
            raise ValueError(f"--month {month} has not begun yet")
        month_end = _next_month(first) - timedelta(days=1)
        last = min(month_end, today)
        label = _month_label(first, last, month_end)
        return StatsRequest(selected, _midnight(first), _midnight(last + timedelta(1)), label)
    if start_day is not None:
        if start_day > today:
            raise ValueError(f"--from {start_day} is in the future")
        last = min(end_day or today, today)
        if end_day is not None and end_day < start_day:
            raise ValueError(f"--from must be before --to (--from {start_day}, --to {end_day})")
        if (last - start_day).days + 1 > MAX_DAYS:
            raise ValueError(
                f"--from {start_day} --to {last} is {(last - start_day).days + 1} days; "
                f"a report covers at most {MAX_DAYS}"
            )
        label = _span(start_day, last)
        return StatsRequest(selected, _midnight(start_day), _midnight(last + timedelta(1)), label)
    days = MONTH_DAYS if "--month" in chosen else DEFAULT_DAYS
    first = today - timedelta(days=days - 1)
    return StatsRequest(
        selected,
        _midnight(first),
        _midnight(today + timedelta(days=1)),
        f"last {days} days, {_span(first, today)}",
    )


def parse_activity_args(args: str, now: datetime) -> ActivityRequest:
    """``activity [--month YYYY-MM]``: that calendar month, or this month so far."""
    words = _words(args)
    today = _today(now)
    first = date(today.year, today.month, 1)
    if words:
        if words[0] != "--month":
            raise ValueError(f"unexpected '{words[0]}'; use: {ACTIVITY_USAGE}")
        if len(words) < 2 or words[1].startswith("-"):
            raise ValueError("--month needs a month (YYYY-MM)")
        if len(words) > 2:
            raise ValueError(f"unexpected '{words[2]}'; use: {ACTIVITY_USAGE}")
        first = _month(words[1])
        if first > today:
            raise ValueError(f"--month {words[1]} has not begun yet")
    month_end = _next_month(first)
    if month_end > today:  # this month: up to now
        end = now.astimezone(UTC)
        return ActivityRequest(
            _midnight(first), end, f"{first:%B %Y} so far (to {today.day} {today:%b})"
        )
    return ActivityRequest(_midnight(first), _midnight(month_end), f"{first:%B %Y}")
