"""What volunteers type after ``search``, and the listing they get back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain import TicketError, TicketState
from bot.repository import SearchHit, SearchKey, SearchPage, SearchQuery
from bot.search import (
    COUNT_CAP,
    MAX_PAGE,
    PAGE_SIZE,
    format_results,
    key_token,
    parse_search,
    states_for,
    text_terms,
)

ME = "@alice:example.org"


def test_every_filter_and_the_words() -> None:
    query, page = parse_search(
        "queue:info state:open from:example.org owner:me tag:press priority:5 page:2 "
        'licence "photo credit"',
        ME,
    )
    assert query == SearchQuery(
        text='licence "photo credit"',
        queue="info",
        state="open",
        sender="example.org",
        owner=ME,
        tag="press",
        priority=5,
    )
    assert page == 2


def test_defaults_and_empty_text() -> None:
    assert parse_search("", ME) == (SearchQuery(), 1)
    assert parse_search("   ", ME) == (SearchQuery(), 1)
    assert parse_search("photo", ME) == (SearchQuery(text="photo"), 1)


def test_owner_none_and_names() -> None:
    assert parse_search("owner:none", ME)[0].owner == "none"
    assert parse_search("owner:NONE", ME)[0].owner == "none"
    assert parse_search("owner:ME", ME)[0].owner == ME
    assert parse_search("owner:@bob:example.org", ME)[0].owner == "@bob:example.org"
    assert parse_search('owner:"Anna Maria" visa', ME)[0] == SearchQuery(
        text="visa", owner="Anna Maria"
    )


def test_keys_ignore_case_and_have_aliases() -> None:
    query, page = parse_search("QUEUE:press From:jon@x.org Prio:1 sender:y PAGE:3", ME)
    assert (query.queue, query.sender, query.priority, page) == ("press", "y", 1, 3)


def test_unknown_keys_and_empty_values_stay_words() -> None:
    query, _ = parse_search("re:licence https://example.org/a state: visa", ME)
    assert query.text == "re:licence https://example.org/a state: visa"
    assert query.state is None


def test_later_filters_win() -> None:
    assert parse_search("state:open state:closed", ME)[0].state == "closed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("priority:9", "priority must be a number from 1 to 5"),
        ("priority:0", "priority must be a number from 1 to 5"),
        ("priority:high", "priority must be a number from 1 to 5"),
        ("page:0", "page must be a number from 1"),
        ("page:-1", "page must be a number from 1"),
        ("page:two", "page must be a number from 1"),
        ("page:" + "9" * 40, "page must be a number from 1"),
        ("state:opn", "There is no state 'opn'"),
    ],
)
def test_bad_values_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(TicketError, match=message):
        parse_search(text, ME)


def test_state_names_and_groups() -> None:
    assert parse_search("state:Closed-Successful", ME)[0].state == "closed_successful"
    assert states_for("pending") == (TicketState.PENDING_REMINDER, TicketState.PENDING_AUTOCLOSE)
    assert set(states_for("closed") or ()) == {
        TicketState.CLOSED_SUCCESSFUL,
        TicketState.CLOSED_UNSUCCESSFUL,
        TicketState.MERGED,
        TicketState.SPAM,
    }
    assert set(states_for("active") or ()) == {
        TicketState.NEW,
        TicketState.OPEN,
        TicketState.PENDING_REMINDER,
        TicketState.PENDING_AUTOCLOSE,
    }
    assert states_for("merged") == (TicketState.MERGED,)
    assert states_for("nonsense") is None


def test_text_terms_keep_phrases_and_drop_punctuation() -> None:
    assert text_terms('licence "photo  credit" -  * "unclosed phrase') == [
        "licence",
        "photo credit",
        "unclosed phrase",
    ]
    # a quote inside a word starts a phrase; NUL is a space
    assert text_terms('a"b NEAR( "" \x00 x\x00y') == ["a", "b NEAR(", "x y"]
    assert text_terms("x\x00y") == ["x", "y"]
    assert text_terms("") == []


def test_hostile_text_parses() -> None:
    for text in ['"', 'owner:"', "page:", "x" * 5000, "\x00", 'a:"b" c:"', "::::"]:
        query, page = parse_search(text, ME)
        assert page == 1
        assert "\x00" not in query.text


# --- the listing ----------------------------------------------------------------------------


def hit(number: str = "2026112310000012", **fields: object) -> SearchHit:
    values: dict[str, object] = {
        "number": number,
        "queue": "info",
        "state": "open",
        "subject": "Photo licence",
        "requester_email": "maria@example.net",
        "owner": "alice",
        "priority": 3,
        "updated_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    }
    values.update(fields)
    return SearchHit(**values)  # type: ignore[arg-type]


def test_no_match() -> None:
    assert format_results(SearchPage(0, []), 1, PAGE_SIZE, "zeppelin") == "No ticket matches."


def test_one_page() -> None:
    page = SearchPage(3, [hit(), hit("2026112310000011", owner=""), hit("2026112310000010")])
    text = format_results(page, 1, PAGE_SIZE, "photo")
    lines = text.splitlines()
    assert lines[0] == "3 tickets match (page 1 of 1)"
    assert lines[1] == (
        "2026112310000012 · open · info · priority 3 · owner alice · "
        "maria@example.net · Photo licence"
    )
    assert "unclaimed" in lines[2]
    assert len(lines) == 4 and "next:" not in text


def test_one_ticket_reads_singular() -> None:
    assert format_results(SearchPage(1, [hit()]), 1, 10, "").startswith(
        "1 ticket matches (page 1 of 1)"
    )


KEY = SearchKey(datetime(2026, 11, 23, 10, 15, 30, 123456, tzinfo=UTC), 4711)


def test_next_page_line_carries_the_keyset_and_replaces_page_and_after() -> None:
    page = SearchPage(25, [hit() for _ in range(10)], next_key=KEY)
    typed = f'state:open page:2 after:{key_token(KEY)} "photo credit"'
    text = format_results(page, 2, 10, typed)
    assert text.splitlines()[0] == "25 tickets match (page 2 of 3)"
    expected = f'next: search state:open "photo credit" page:3 after:{key_token(KEY)}'
    assert text.splitlines()[-1] == expected
    last = format_results(SearchPage(25, [hit()] * 5), 3, 10, "photo page:3")
    assert "next:" not in last
    first = format_results(page, 1, 10, "")
    assert first.splitlines()[-1] == f"next: search page:2 after:{key_token(KEY)}"


def test_the_next_line_parses_back_to_the_key() -> None:
    line = format_results(SearchPage(25, [hit()] * 10, next_key=KEY), 1, 10, "photo")
    query, page = parse_search(line.splitlines()[-1].removeprefix("next: search "), ME)
    assert (query.text, query.after, page) == ("photo", KEY, 2)
    assert len(key_token(KEY)) <= 20


@pytest.mark.parametrize("token", ["xyz", "12-", "-5", "a_b-c", "zzzzzzzzzzzzzz-1", "1-2-3"])
def test_a_broken_after_token_is_named(token: str) -> None:
    with pytest.raises(TicketError, match=f"after:{token} is not a place in a listing"):
        parse_search(f"photo after:{token}", ME)


def test_more_than_the_cap_says_so_without_a_page_count() -> None:
    page = SearchPage(COUNT_CAP, [hit()] * 10, capped=True, next_key=KEY)
    text = format_results(page, 3, 10, "photo")
    assert text.splitlines()[0] == "10,000+ tickets match (page 3)"
    uncounted = SearchPage(10, [hit()] * 10, capped=True, next_key=KEY)
    assert format_results(uncounted, 2, 10, "photo").startswith("20+ tickets match (page 2)")


def test_typed_pages_stop_at_the_limit_but_keyset_pages_do_not() -> None:
    assert parse_search(f"photo page:{MAX_PAGE}", ME)[1] == MAX_PAGE
    with pytest.raises(TicketError, match="follow the listing's next: line"):
        parse_search(f"photo page:{MAX_PAGE + 1}", ME)
    assert parse_search(f"photo page:5000 after:{key_token(KEY)}", ME)[1] == 5000


def test_a_page_past_the_end() -> None:
    text = format_results(SearchPage(25, []), 9, 10, "photo page:9")
    assert text == "25 tickets match, but there is no page 9: the last is page 3."


def test_long_and_hostile_subjects_stay_on_one_line() -> None:
    subject = "Line one\nline two\r\n\x00" + "x" * 200
    text = format_results(SearchPage(1, [hit(subject=subject)]), 1, 10, "")
    line = text.splitlines()[1]
    assert len(text.splitlines()) == 2
    shown = line.rsplit(" · ", 1)[1]
    assert shown.startswith("Line one line two x") and shown.endswith("…")
    assert len(shown) <= 80
    assert format_results(SearchPage(1, [hit(subject="")]), 1, 10, "").endswith("(no subject)")
