"""Ticket search on SQLite (FTS5) and on a real PostgreSQL (GIN text search).

Tickets are made the way the desk makes them, by taking in mail; filters are set
on them through the repository. Every search goes through ``Repository.search``,
as the ``search`` command will.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from peewee import PostgresqlDatabase

from bot.domain import TicketState
from bot.repository import SearchPage, SearchQuery
from storage import models
from storage.search import Plan, search_statements
from storage.store import PeeweeRepository
from tests.core.conftest import Desk, mail, make_desk

BOTH = ("info", "press")


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_desk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Desk]:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_db_url")
    desk = await make_desk(tmp_path, url)
    yield desk
    await desk.store.close()


def is_postgres(desk: Desk) -> bool:
    return isinstance(desk.store.db, PostgresqlDatabase)


async def search(
    desk: Desk,
    text: str = "",
    queues: Sequence[str] = BOTH,
    offset: int = 0,
    limit: int = 50,
    **filters: Any,
) -> SearchPage:
    query = SearchQuery(text=text, **filters)
    return await desk.store.run(lambda repo: repo.search(query, list(queues), offset, limit))


async def numbers(desk: Desk, text: str = "", **kwargs: Any) -> set[str]:
    return {hit.number for hit in (await search(desk, text, **kwargs)).hits}


async def receive(desk: Desk, subject: str, text: str = "Hello", **kwargs: Any) -> str:
    """A new ticket from one mail; the clock moves on, so each is newer than the last."""
    desk.clock.advance(60)
    outcome = await desk.receive(mail(subject, text=text, **kwargs))
    assert outcome.created
    return outcome.ticket_number


async def change(desk: Desk, number: str, **fields: Any) -> None:
    """Set ticket fields (state, owner, tags, priority, queue...) as a command would."""

    def work(repo: PeeweeRepository) -> None:
        ticket = repo.ticket_by_number(number)
        assert ticket is not None
        for name, value in fields.items():
            setattr(ticket, name, value)
        repo.save_ticket(ticket)

    await desk.store.run(work)


# --- words -----------------------------------------------------------------------------------


async def test_every_word_must_occur_in_any_case(any_desk: Desk) -> None:
    licence = await receive(any_desk, "Photo licence question", "May I print it?")
    week = await receive(any_desk, "Photo of the week", "A lovely licence-free picture")
    await receive(any_desk, "Invoice", "Please pay")

    assert await numbers(any_desk, "photo") == {licence, week}
    assert await numbers(any_desk, "PHOTO Licence") == {licence, week}
    assert await numbers(any_desk, "photo print") == {licence}
    assert await numbers(any_desk, "photo invoice") == set()
    assert await numbers(any_desk, "nothing-like-this") == set()


async def test_subject_and_body_are_both_searched(any_desk: Desk) -> None:
    number = await receive(any_desk, "Accreditation", "Body talks about a camera")
    assert await numbers(any_desk, "accreditation") == {number}
    assert await numbers(any_desk, "camera") == {number}


async def test_a_quoted_phrase_needs_its_words_in_order(any_desk: Desk) -> None:
    credit = await receive(any_desk, "Question", "Where is the photo credit line?")
    other = await receive(any_desk, "Question", "Credit for the photo, please")

    assert await numbers(any_desk, "photo credit") == {credit, other}
    assert await numbers(any_desk, '"photo credit"') == {credit}
    assert await numbers(any_desk, '"credit line" where') == {credit}
    assert await numbers(any_desk, '"photo credit" please') == set()


async def test_diacritics(any_desk: Desk) -> None:
    number = await receive(any_desk, "Konferenz in München", "Grüße aus Köln")
    assert await numbers(any_desk, "München") == {number}
    assert await numbers(any_desk, "münchen grüße") == {number}
    if not is_postgres(any_desk):  # the FTS5 tokenizer folds accents; 'simple' does not
        assert await numbers(any_desk, "Munchen") == {number}
        assert await numbers(any_desk, "Koln Grusse") == set()  # folding, not transliteration
        assert await numbers(any_desk, "koln") == {number}


async def test_a_follow_up_article_is_found(any_desk: Desk) -> None:
    number = await receive(any_desk, "Photo", "First mail", message_id="<first@example.net>")
    await receive(any_desk, "Other", "Unrelated")
    any_desk.clock.advance(60)
    follow = await any_desk.receive(
        mail("Re: Photo", text="I forgot the zeppelin picture", in_reply_to="<first@example.net>")
    )
    assert follow.ticket_number == number and not follow.created

    assert await numbers(any_desk, "zeppelin") == {number}
    page = await search(any_desk, "photo")
    assert [hit.number for hit in page.hits] == [number]  # one hit per ticket, not per article


async def test_an_edited_article_is_found_by_its_new_text(any_desk: Desk) -> None:
    number = await receive(any_desk, "Original subject", "original body")

    def edit(repo: PeeweeRepository) -> None:
        ticket = repo.ticket_by_number(number)
        assert ticket is not None and ticket.id is not None
        models.Article.update(subject="Edited heading", body="revised wording").where(
            models.Article.ticket == ticket.id
        ).execute()

    await any_desk.store.run(edit)
    assert await numbers(any_desk, "original") == set()
    assert await numbers(any_desk, "edited") == {number}
    assert await numbers(any_desk, "revised wording") == {number}


# --- filters ---------------------------------------------------------------------------------


async def test_state_exact_and_groups(any_desk: Desk) -> None:
    new = await receive(any_desk, "A")
    opened = await receive(any_desk, "B")
    reminder = await receive(any_desk, "C")
    autoclose = await receive(any_desk, "D")
    solved = await receive(any_desk, "E")
    spam = await receive(any_desk, "F")
    await change(any_desk, opened, state=TicketState.OPEN)
    await change(any_desk, reminder, state=TicketState.PENDING_REMINDER)
    await change(any_desk, autoclose, state=TicketState.PENDING_AUTOCLOSE)
    await change(any_desk, solved, state=TicketState.CLOSED_SUCCESSFUL)
    await change(any_desk, spam, state=TicketState.SPAM)

    assert await numbers(any_desk, state="new") == {new}
    assert await numbers(any_desk, state="open") == {opened}
    assert await numbers(any_desk, state="pending_reminder") == {reminder}
    assert await numbers(any_desk, state="pending") == {reminder, autoclose}
    assert await numbers(any_desk, state="closed") == {solved, spam}
    assert await numbers(any_desk, state="spam") == {spam}
    assert await numbers(any_desk, state="active") == {new, opened, reminder, autoclose}
    assert await numbers(any_desk, state="no-such-state") == set()


async def test_sender_is_a_case_insensitive_part_of_the_address(any_desk: Desk) -> None:
    maria = await receive(any_desk, "A", sender="Maria@Example.NET")
    jon = await receive(any_desk, "B", sender="jon@press.example.org")
    odd = await receive(any_desk, "C", sender="a_b%c@example.com")

    assert await numbers(any_desk, sender="example.net") == {maria}
    assert await numbers(any_desk, sender="MARIA@example.net") == {maria}
    assert await numbers(any_desk, sender="example") == {maria, jon, odd}
    # LIKE wildcards typed by a volunteer are plain characters
    assert await numbers(any_desk, sender="_") == {odd}
    assert await numbers(any_desk, sender="%") == {odd}
    assert await numbers(any_desk, sender="b%c") == {odd}


async def test_owner_by_id_name_or_none(any_desk: Desk) -> None:
    alices = await receive(any_desk, "A")
    bobs = await receive(any_desk, "B")
    free = await receive(any_desk, "C")
    await change(any_desk, alices, owner="@alice:example.org", owner_name="Alice")
    await change(any_desk, bobs, owner="@bob:example.org", owner_name="Bob Builder")

    assert await numbers(any_desk, owner="@alice:example.org") == {alices}
    assert await numbers(any_desk, owner="alice") == {alices}
    assert await numbers(any_desk, owner="bob builder") == {bobs}
    assert await numbers(any_desk, owner="none") == {free}
    assert await numbers(any_desk, owner="bob") == set()  # a name is matched whole


async def test_tag_and_priority(any_desk: Desk) -> None:
    press = await receive(any_desk, "A")
    both = await receive(any_desk, "B")
    plain = await receive(any_desk, "C")
    await change(any_desk, press, tags=("press",), priority=5)
    await change(any_desk, both, tags=("press", "legal"), priority=1)

    assert await numbers(any_desk, tag="press") == {press, both}
    assert await numbers(any_desk, tag="legal") == {both}
    assert await numbers(any_desk, tag="nope") == set()
    assert await numbers(any_desk, priority=5) == {press}
    assert await numbers(any_desk, priority=3) == {plain}
    assert await numbers(any_desk, tag="press", priority=1) == {both}


async def test_queue_filter_includes_sub_queues_only(any_desk: Desk) -> None:
    info = await receive(any_desk, "A")
    german = await receive(any_desk, "B")
    lookalike = await receive(any_desk, "C")
    press = await receive(any_desk, "D", to="press@example.org")
    await change(any_desk, german, queue="info::de")
    await change(any_desk, lookalike, queue="information")
    visible = ("info", "info::de", "information", "press")

    assert await numbers(any_desk, queues=visible, queue="info") == {info, german}
    assert await numbers(any_desk, queues=visible, queue="INFO") == {info, german}
    assert await numbers(any_desk, queues=visible, queue="info::de") == {german}
    assert await numbers(any_desk, queues=visible, queue="information") == {lookalike}
    assert await numbers(any_desk, queues=visible, queue="press") == {press}
    assert await numbers(any_desk, queues=visible, queue="inf") == set()
    assert await numbers(any_desk, queues=visible, queue="info%") == set()


async def test_filters_combine_with_words(any_desk: Desk) -> None:
    wanted = await receive(any_desk, "Licence", "photo", sender="jon@press.example.org")
    await receive(any_desk, "Licence", "photo", sender="maria@example.net")
    await receive(any_desk, "Licence", "video", sender="jon@press.example.org")
    await change(any_desk, wanted, state=TicketState.OPEN)

    assert await numbers(any_desk, "photo", sender="press", state="active") == {wanted}
    assert await numbers(any_desk, "photo", sender="press", state="closed") == set()


# --- access ----------------------------------------------------------------------------------


async def test_only_the_askers_queues_are_searched(any_desk: Desk) -> None:
    info = await receive(any_desk, "Secret plan", "zeppelin")
    press = await receive(any_desk, "Secret plan", "zeppelin", to="press@example.org")
    german = await receive(any_desk, "Secret plan", "zeppelin")
    await change(any_desk, german, queue="info::de")

    assert await numbers(any_desk, "zeppelin", queues=("info", "press", "info::de")) == {
        info,
        press,
        german,
    }
    # a sub-queue is its own queue: seeing "info" does not show "info::de"
    assert await numbers(any_desk, "zeppelin", queues=("info",)) == {info}
    assert await numbers(any_desk, "zeppelin", queues=("press",)) == {press}
    assert await numbers(any_desk, "zeppelin", queues=("info",), queue="press") == set()
    assert await numbers(any_desk, queues=("info",), queue="info") == {info}
    page = await search(any_desk, "zeppelin", queues=())
    assert page.total == 0 and page.hits == []
    assert (await search(any_desk, queues=())).total == 0


# --- paging ----------------------------------------------------------------------------------


async def test_pages_newest_first_with_the_total(any_desk: Desk) -> None:
    made = [await receive(any_desk, f"Photo {i}", "camera") for i in range(12)]
    await receive(any_desk, "Other", "nothing")
    newest_first = list(reversed(made))

    first = await search(any_desk, "camera", limit=5)
    second = await search(any_desk, "camera", offset=5, limit=5)
    third = await search(any_desk, "camera", offset=10, limit=5)
    beyond = await search(any_desk, "camera", offset=40, limit=5)
    assert [first.total, second.total, third.total, beyond.total] == [12, 12, 12, 12]
    assert [h.number for h in first.hits + second.hits + third.hits] == newest_first
    assert beyond.hits == []
    assert (await search(any_desk)).total == 13  # no words: every ticket

    # a changed ticket comes first; equal times fall back to the newest id
    any_desk.clock.advance(60)
    await change(any_desk, made[0], updated_at=any_desk.clock.now())
    await change(any_desk, made[1], updated_at=any_desk.clock.now())
    page = await search(any_desk, "camera", limit=3)
    assert [h.number for h in page.hits] == [made[1], made[0], made[11]]


async def test_a_hit_carries_what_the_listing_shows(any_desk: Desk) -> None:
    number = await receive(any_desk, "Photo licence", "camera", sender="maria@example.net")
    when = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
    await change(
        any_desk,
        number,
        owner="@alice:example.org",
        owner_name="Alice",
        priority=4,
        state=TicketState.OPEN,
        updated_at=when,
    )
    (hit,) = (await search(any_desk, "camera")).hits
    assert hit.number == number
    assert (hit.queue, hit.state, hit.subject) == ("info", "open", "Photo licence")
    assert (hit.requester_email, hit.owner, hit.priority) == ("maria@example.net", "Alice", 4)
    assert hit.updated_at == when and hit.updated_at.tzinfo is not None

    await change(any_desk, number, owner="@bob:example.org", owner_name=None)
    (hit,) = (await search(any_desk, "camera")).hits
    assert hit.owner == "@bob:example.org"


# --- hostile input ---------------------------------------------------------------------------

HOSTILE = [
    "NEAR(photo camera, 2)",
    "NEAR(",
    '"',
    '"""',
    '"photo',
    "photo*",
    "*",
    "-photo",
    "photo -",
    "photo OR camera",
    "OR",
    "AND NOT",
    "subject:photo",
    "{subject body}:photo",
    "^photo",
    "photo\x00camera",
    "\x00",
    "' OR 1=1 --",
    "'); DROP TABLE ticket; --",
    "%s %(x)s ?",
    "photo & camera | !x <-> y:*",
    "🙂 ☃ 中文 עברית",
    "\\",
    "x" * 5000,
    "photo " * 900,
    " ".join(f"w{i}" for i in range(1200)),
    "a" * 3000 + " photo",
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:24]))
async def test_hostile_text_never_raises(any_desk: Desk, text: str) -> None:
    number = await receive(any_desk, "Photo camera", "photo camera body")
    some = text[:200]
    filter_sets: list[dict[str, Any]] = [{}, {"sender": some}, {"owner": some, "tag": some}]
    for filters in filter_sets:
        page = await search(any_desk, text, **filters)
        assert page.total == len(page.hits)
        assert all(hit.number == number for hit in page.hits)


async def test_query_syntax_is_searched_as_words(any_desk: Desk) -> None:
    near = await receive(any_desk, "Near the station", "meet me near the photo booth")
    plain = await receive(any_desk, "Photo", "just a photo")

    # NEAR( is not a query operator here: "near" is a word like any other
    assert await numbers(any_desk, "NEAR( photo booth, 2 )") == set()  # no "2" anywhere
    assert await numbers(any_desk, "NEAR( photo booth )") == {near}
    # "OR" is a word too, so "photo OR station" needs an article with "or" in it
    assert await numbers(any_desk, "photo OR station") == set()
    assert await numbers(any_desk, "photo station") == {near}
    # "-" excludes nothing, "*" is not a prefix: punctuation-only terms are dropped
    assert await numbers(any_desk, "photo -") == {near, plain}
    assert await numbers(any_desk, "phot*") == set()


# --- the plan --------------------------------------------------------------------------------


async def test_the_text_match_uses_the_index(any_desk: Desk) -> None:
    await receive(any_desk, "Photo", "camera")
    db = any_desk.store.db
    query = SearchQuery(text='photo "camera lens"', state="active", sender="example")
    statements = search_statements(db, query, BOTH, 0, 10)
    assert statements is not None

    def plan(_: PeeweeRepository) -> str:
        lines: list[str] = []
        for statement in statements:
            if is_postgres(any_desk):
                # a tiny table is cheapest to scan: forbid that to see the index is usable
                db.execute_sql("SET LOCAL enable_seqscan = off")
                rows = db.execute_sql(f"EXPLAIN {statement.sql}", statement.params).fetchall()
            else:
                sql = f"EXPLAIN QUERY PLAN {statement.sql}"
                rows = db.execute_sql(sql, statement.params).fetchall()
            lines.extend(str(row[-1]) for row in rows)
        return "\n".join(lines)

    text = await any_desk.store.run(plan)
    if is_postgres(any_desk):
        assert text.count("Bitmap Index Scan on article_search") == 2, text
    else:
        assert text.count("SCAN article_fts VIRTUAL TABLE INDEX") == 2, text


# --- a large desk's plans: keyset pages, the capped count, walking -------------------------


async def test_keyset_pages_follow_each_other_to_the_end(any_desk: Desk) -> None:
    made = [await receive(any_desk, f"Photo {i}", "camera") for i in range(12)]
    seen: list[str] = []
    after = None
    for _ in range(4):
        page = await search(any_desk, "camera", limit=5, after=after)
        assert page.total == 12 and not page.capped
        seen.extend(h.number for h in page.hits)
        after = page.next_key
        if after is None:
            break
    assert seen == list(reversed(made)), "each ticket once, newest first"
    # a ticket changed between pages moves to the top: the later pages do not repeat it
    first = await search(any_desk, "camera", limit=5)
    any_desk.clock.advance(60)
    await change(any_desk, made[0], updated_at=any_desk.clock.now())
    second = await search(any_desk, "camera", limit=5, after=first.next_key)
    assert [h.number for h in second.hits] == list(reversed(made))[5:10]


async def test_the_count_stops_at_the_cap(any_desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.search

    monkeypatch.setattr(storage.search, "COUNT_CAP", 5)
    for i in range(8):
        await receive(any_desk, f"Photo {i}", "camera")
    page = await search(any_desk, "camera", limit=3)
    assert (page.total, page.capped, len(page.hits)) == (5, True, 3)
    assert page.next_key is not None
    exact = await search(any_desk, "camera", limit=3, state="closed")
    assert (exact.total, exact.capped) == (0, False)


@pytest.mark.parametrize("filter_first", [False, True])
async def test_common_words_walk_to_the_same_hits(
    any_desk: Desk, monkeypatch: pytest.MonkeyPatch, filter_first: bool
) -> None:
    """With every word "common" the walk (or filter-first) plan runs: same hits, same order."""
    import storage.search

    made = [
        await receive(any_desk, f"Photo {i}", "camera lens" if i % 2 else "camera")
        for i in range(9)
    ]
    await change(any_desk, made[3], state=TicketState.CLOSED_SUCCESSFUL)
    collected = await search(any_desk, "lens", limit=3)
    collected_open = await search(any_desk, "camera", limit=50, state="active")

    monkeypatch.setattr(storage.search, "COMMON_ARTICLES", 1)
    monkeypatch.setattr(storage.search, "FILTER_FIRST_MAX", 1000 if filter_first else 0)
    walked = await search(any_desk, "lens", limit=3)
    assert [h.number for h in walked.hits] == [h.number for h in collected.hits]
    assert walked.next_key is not None
    rest = await search(any_desk, "lens", limit=3, after=walked.next_key)
    assert [h.number for h in walked.hits + rest.hits] == [made[7], made[5], made[3], made[1]]

    walked_open = await search(any_desk, "camera", limit=50, state="active")
    assert [h.number for h in walked_open.hits] == [h.number for h in collected_open.hits]
    assert made[3] not in {h.number for h in walked_open.hits}
    # common words with a filter are not counted: the total is what was shown, and
    # "capped" says whether more follow
    assert (walked_open.total, walked_open.capped) == (8, False)
    short = await search(any_desk, "camera", limit=2, state="active")
    assert (short.total, short.capped) == (2, True)


async def test_many_matches_without_words_walk_the_updated_at_index(
    any_desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.search

    made = [await receive(any_desk, f"Photo {i}") for i in range(6)]
    sorted_page = await search(any_desk, limit=4)
    monkeypatch.setattr(storage.search, "WALK_FROM_TOTAL", 1)
    walked = await search(any_desk, limit=4)
    assert [h.number for h in walked.hits] == [h.number for h in sorted_page.hits]
    assert [h.number for h in walked.hits] == list(reversed(made))[:4]


async def test_the_walk_reads_tickets_along_the_updated_at_index(tmp_path: Path) -> None:
    """SQLite only: its walk is forced (INDEXED BY); PostgreSQL's planner chooses."""
    desk = await make_desk(tmp_path)
    await receive(desk, "Photo", "camera")
    db = desk.store.db
    statements = search_statements(
        db, SearchQuery(text="camera", state="active"), BOTH, 0, 10, Plan.WALK
    )
    assert statements is not None
    page = statements[1]

    def plan(_: PeeweeRepository) -> str:
        rows = db.execute_sql(f"EXPLAIN QUERY PLAN {page.sql}", page.params).fetchall()
        return "\n".join(str(row[-1]) for row in rows)

    text = await desk.store.run(plan)
    await desk.store.close()
    assert "SCAN t USING INDEX ticket_updated_at_id" in text, text
    assert "TEMP B-TREE FOR ORDER BY" not in text, text
