"""What ``stats`` and ``activity`` accept, and what they say about what they do not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.reports.period import parse_activity_args, parse_stats_args, parse_stats_words

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # a Monday
QUEUES = ["info", "info::de", "permissions", "press"]


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_default_is_the_last_seven_days_today_included() -> None:
    request = parse_stats_args("", NOW, QUEUES)
    assert request.queues is None
    assert (request.start, request.end) == (day("2026-11-17"), day("2026-11-24"))
    assert request.label == "last 7 days, 2026-11-17 – 2026-11-23 (7 days)"
    assert parse_stats_args("--week", NOW, QUEUES) == request


def test_month_is_the_last_30_days_and_a_named_month_the_calendar_month() -> None:
    rolling = parse_stats_args("--month", NOW, QUEUES)
    assert (rolling.start, rolling.end) == (day("2026-10-25"), day("2026-11-24"))
    october = parse_stats_args("--month 2026-10", NOW, QUEUES)
    assert (october.start, october.end) == (day("2026-10-01"), day("2026-11-01"))
    assert october.label == "October 2026"
    november = parse_stats_args("info --month=2026-11", NOW, QUEUES)
    assert (november.start, november.end) == (day("2026-11-01"), day("2026-11-24"))
    assert november.label == "November 2026, 1–23 Nov"
    assert november.queues == ("info",)
    december = parse_stats_args("--month 2025-12", NOW, QUEUES)
    assert december.end == day("2026-01-01")


def test_from_and_to_are_whole_days_inclusive() -> None:
    request = parse_stats_args("--from 2026-09-01 --to 2026-09-30", NOW, QUEUES)
    assert (request.start, request.end) == (day("2026-09-01"), day("2026-10-01"))
    assert request.label == "2026-09-01 – 2026-09-30 (30 days)"
    alone = parse_stats_args("--from=2026-11-20", NOW, QUEUES)
    assert (alone.start, alone.end) == (day("2026-11-20"), day("2026-11-24"))
    one_day = parse_stats_args("--from 2026-11-02 --to 2026-11-02", NOW, QUEUES)
    assert one_day.end - one_day.start == day("2026-11-03") - day("2026-11-02")
    later = parse_stats_args("--from 2026-11-20 --to 2027-01-01", NOW, QUEUES)
    assert later.end == day("2026-11-24"), "a future end stops at today"


def test_queues_are_matched_ignoring_case_and_given_once() -> None:
    request = parse_stats_args("INFO press info Info::DE", NOW, QUEUES)
    assert request.queues == ("info", "press", "info::de")


def test_a_phone_dash_is_read_as_two_hyphens() -> None:
    assert parse_stats_args("—month", NOW, QUEUES) == parse_stats_args("--month", NOW, QUEUES)


def test_words_already_split_may_hold_spaces() -> None:
    request = parse_stats_words(["press office", "--week"], NOW, ["press office"])
    assert request.queues == ("press office",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("foo", "unknown queue 'foo'; known: info, info::de, permissions, press"),
        ("--from 2026-13-01", "--from 2026-13-01 is not a date (YYYY-MM-DD)"),
        ("--from 1.11.2026", "--from 1.11.2026 is not a date (YYYY-MM-DD)"),
        ("--from 2026-11-01 --to 2026-02-30", "--to 2026-02-30 is not a date (YYYY-MM-DD)"),
        ("--from", "--from needs a date (YYYY-MM-DD)"),
        ("--from --week", "--from needs a date (YYYY-MM-DD)"),
        ("--from 2026-11-05 --to 2026-11-01", "--from must be before --to"),
        ("--to 2026-11-01", "--to needs --from"),
        ("--week --month", "give only one of --week, --month and --from/--to"),
        ("--month --from 2026-11-01", "give only one of"),
        ("--month 2026-13", "--month 2026-13 is not a month (YYYY-MM)"),
        ("--month 2027-01", "--month 2027-01 has not begun yet"),
        ("--from 2026-12-01", "--from 2026-12-01 is in the future"),
        ("--from 2024-01-01", "--from 2024-01-01 --to 2026-11-23 is 1058 days; a report"),
        ("--year", "unknown option '--year'; use --week, --month [YYYY-MM], or --from"),
        ("--from 2026-11-01 --from 2026-11-02", "--from is given twice"),
    ],
)
def test_bad_arguments_are_named(args: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_stats_args(args, NOW, QUEUES)
    assert str(raised.value).startswith(message)


def test_a_month_word_that_is_no_month_is_a_queue() -> None:
    """``stats --month info``: the last 30 days of info, not a bad month."""
    request = parse_stats_args("--month info", NOW, QUEUES)
    assert request.queues == ("info",)
    assert request.start == day("2026-10-25")


def test_activity_is_this_month_so_far_or_a_named_month() -> None:
    current = parse_activity_args("", NOW)
    assert (current.start, current.end) == (day("2026-11-01"), NOW)
    assert current.label == "November 2026 so far (to 23 Nov)"
    october = parse_activity_args("--month 2026-10", NOW)
    assert (october.start, october.end) == (day("2026-10-01"), day("2026-11-01"))
    assert october.label == "October 2026"
    assert parse_activity_args("—month=2026-11", NOW) == current


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--month", "--month needs a month (YYYY-MM)"),
        ("--month 2026/10", "--month 2026/10 is not a month (YYYY-MM)"),
        ("--month 2026-12", "--month 2026-12 has not begun yet"),
        ("--week", "unexpected '--week'; use: activity [--month YYYY-MM]"),
        ("--month 2026-10 info", "unexpected 'info'"),
    ],
)
def test_bad_activity_arguments_are_named(args: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_activity_args(args, NOW)
    assert str(raised.value).startswith(message)
