"""Full-text ticket search: SQLite FTS5 or PostgreSQL text search, plus filters.

The words are matched against the index schema step 2 built over every article's
subject and body (``article_fts`` on SQLite, the GIN index ``article_search`` on
PostgreSQL); the filters, the asker's queues, the order and the page are all left to
the database. Nothing is filtered in Python.

On a desk of a million tickets the cost is not finding matches but ordering and
counting them when there are many (docs/search-performance.md). So:

- **The count stops at** :data:`~bot.search.COUNT_CAP` + 1 (a ``LIMIT`` inside it);
  the listing then says "10,000+".
- **Pages are keyset pages**: the next page starts after the last hit's
  ``(updated_at, id)`` (:class:`~bot.repository.SearchKey`), so page 50 costs what
  page 1 does. A typed ``page:N`` still works with ``OFFSET`` for the first pages.
- **Three plans, picked per search** (:class:`Plan`). *Collect*: take the matches from the full-text
  index (or a filter's index), then sort them; right when few tickets match (a rare
  word). *Walk*: read tickets newest-first along ``ticket_updated_at_id`` (schema step
  5) and test each against the words and filters, stopping at the page's end; right
  when many match (a common word, ``state:closed``), wrong when few do (it would read
  the whole desk). Words are common when the index holds at least
  :data:`COMMON_ARTICLES` matching articles: on SQLite a ``LIMIT``-ed look at the
  FTS5 index says so in about a millisecond, on PostgreSQL the planner's estimate from
  the GIN index's statistics. Without words, the capped count says how many match.
  *Filter-first*: common words, but a filter that few tickets pass: those tickets by
  the filter's index, each tested for the words.

All words (and quoted phrases) must occur in one article of the ticket: that is
what one index lookup can answer, and it is the same on both databases.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from peewee import Database, PostgresqlDatabase

from bot.repository import SearchHit, SearchKey, SearchPage, SearchQuery
from bot.search import COUNT_CAP, states_for, text_terms
from storage import models as m

#: OFFSET and LIMIT are clamped to this, so no caller's number overflows a 64-bit integer.
_MAX_ROWS = 2**62

#: Articles matching the words from which walking the tickets newest-first beats
#: collecting every match: at 20,000 of 3 million articles about one ticket in 150
#: matches, so a page of 10 is found within the newest few thousand tickets, while
#: collecting means fetching and sorting 20,000 rows. Measured, docs/search-performance.md.
COMMON_ARTICLES = 20_000

#: Tickets passing the filters up to which common words are tested ticket by ticket
#: (Plan.FILTER_FIRST): a ticket's FTS5 or tsvector test measured up to 1 ms on 1M tickets.
FILTER_FIRST_MAX = 300

#: Matches (by the capped count) from which an early page is found by walking the
#: tickets newest-first: at 1,000 of a million, a page of 10 is within the newest
#: 11,000 tickets, a few milliseconds along the index; sorting 1,000 fetched rows is not.
WALK_FROM_TOTAL = 1_000

_SELECT = (
    'SELECT t."number", q."name", t."state", t."subject", t."requester_email", '
    't."owner", t."owner_name", t."priority", t."updated_at", t."id"'
)
_JOIN_QUEUE = 'JOIN "queue" AS q ON q."id" = t."queue_id"'
_FROM = f'FROM "ticket" AS t {_JOIN_QUEUE}'
_ORDER = 'ORDER BY t."updated_at" DESC, t."id" DESC'
#: The PostgreSQL expression the GIN index ``article_search`` is built on: any other
#: spelling would make PostgreSQL compute it for every article instead of using the index.
_PG_VECTOR = "to_tsvector('simple', left(a.\"subject\" || ' ' || a.\"body\", 100000))"


class Plan(Enum):
    """How the matches are found and ordered; see the module docstring."""

    COLLECT = "collect"
    WALK = "walk"
    #: Common words, but a filter (state:open, tag:) leaves few tickets: take those by
    #: the filter's index, test each for the words as the walk does, sort them.
    FILTER_FIRST = "filter-first"


def fts5_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression requiring every term, each as a quoted string.

    Inside an FTS5 string only ``""`` means anything (a literal quote): ``NEAR(``,
    ``OR``, ``*``, ``-``, ``col:`` and ``^`` are plain text there, which the tokenizer
    splits into words like any other. A term of several words becomes a phrase.
    """
    return " AND ".join('"' + term.replace('"', '""') + '"' for term in terms)


def _plain(text: str) -> str:
    """A value as the store saved it: PostgreSQL refuses NUL, so ``_text`` replaced it."""
    return text.replace("\x00", "\ufffd").strip()


def _like_pattern(text: str) -> str:
    """``%text%`` for ``LIKE ... ESCAPE '\\'``, with the user's ``%`` and ``_`` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _queues_wanted(queue: str | None, visible: Sequence[str]) -> list[str]:
    """The visible queues the ``queue:`` filter keeps: that queue and its sub-queues.

    The queue list is the asker's (a few names), not the tickets, so narrowing it
    here costs nothing and lets one ``IN`` carry both access and the filter.
    Case is ignored, as ``move INFO::DE`` ignores it.
    """
    names = sorted(set(visible))
    if queue is None:
        return names
    wanted = queue.strip().lower()
    return [n for n in names if n.lower() == wanted or n.lower().startswith(wanted + "::")]


def _param(db: Database) -> str:
    return "%s" if isinstance(db, PostgresqlDatabase) else "?"


@dataclass(frozen=True)
class Statement:
    """One SQL statement in the database's parameter style, with its parameters."""

    sql: str
    params: list[Any]


@dataclass(frozen=True)
class _Parts:
    """The pieces both statements share: an optional ``WITH``, the joins, the ``WHERE``."""

    prefix: str
    prefix_params: list[Any]
    source: str
    where: str
    where_params: list[Any]

    def statement(self, select: str, tail: str = "", tail_params: Sequence[Any] = ()) -> Statement:
        sql = " ".join(p for p in (self.prefix, select, self.source, self.where, tail) if p)
        return Statement(sql, [*self.prefix_params, *self.where_params, *tail_params])

    def count(self, param: str) -> Statement:
        """``SELECT COUNT(*)`` over the matches, at most :data:`~bot.search.COUNT_CAP` + 1."""
        inner = " ".join(p for p in ("SELECT 1", self.source, self.where) if p)
        sql = " ".join(
            p for p in (self.prefix, f"SELECT COUNT(*) FROM ({inner} LIMIT {param}) AS c") if p
        )
        return Statement(sql, [*self.prefix_params, *self.where_params, COUNT_CAP + 1])

    def narrowed(self, condition: str, params: Sequence[Any]) -> _Parts:
        """The same with one more condition (the keyset), its parameters after the others."""
        return _Parts(
            self.prefix,
            self.prefix_params,
            self.source,
            f"{self.where} AND {condition}",
            [*self.where_params, *params],
        )


def _sqlite_collect(terms: list[str], param: str) -> tuple[str, list[Any]]:
    """Ticket ids with an article matching every term, as an ``IN`` list.

    SQLite runs the subquery once (its plan says ``LIST SUBQUERY``) and then fetches
    each matching ticket by its rowid, so the FTS5 index does all the searching.
    """
    sql = (
        't."id" IN (SELECT a."ticket_id" FROM "article_fts" '
        'JOIN "article" AS a ON a."id" = "article_fts"."rowid" '
        f'WHERE "article_fts" MATCH {param})'
    )
    return sql, [fts5_query(terms)]


def _sqlite_walk(terms: list[str], param: str) -> tuple[str, list[Any]]:
    """Whether one ticket has an article matching every term: a test per ticket walked.

    FTS5 answers ``MATCH`` with ``rowid =`` by seeking in the term's list, so each test
    reads a few index pages, not the whole list.
    """
    sql = (
        'EXISTS (SELECT 1 FROM "article" AS a JOIN "article_fts" '
        'ON "article_fts"."rowid" = a."id" '
        f'WHERE a."ticket_id" = t."id" AND "article_fts" MATCH {param})'
    )
    return sql, [fts5_query(terms)]


def _pg_tsquery(terms: list[str], param: str) -> tuple[str, list[Any]]:
    """The ``tsquery`` of the terms: bare words to ``plainto_tsquery``, phrases to
    ``phraseto_tsquery``; both parse plain text, so nothing typed is tsquery syntax."""
    words = [t for t in terms if " " not in t]
    phrases = [t for t in terms if " " in t]
    queries: list[str] = []
    params: list[Any] = []
    if words:
        queries.append(f"plainto_tsquery('simple', {param})")
        params.append(" ".join(words))
    for phrase in phrases:
        queries.append(f"phraseto_tsquery('simple', {param})")
        params.append(phrase)
    return f"({' && '.join(queries)})", params


def _postgres_collect(terms: list[str], param: str) -> tuple[str, list[Any]]:
    """A ``WITH "matched"`` of the distinct ids of tickets with an article matching every term.

    The CTE is ``MATERIALIZED`` (PostgreSQL 12+) so the planner cannot fold it into a
    join: left to itself, with stale statistics, it may walk the tickets and recompute
    the vector of each one's articles, seconds instead of milliseconds for a rare word.
    """
    tsquery, params = _pg_tsquery(terms, param)
    sql = (
        'WITH "matched" AS MATERIALIZED (SELECT DISTINCT a."ticket_id" AS "id" '
        f'FROM "article" AS a WHERE {_PG_VECTOR} @@ {tsquery})'
    )
    return sql, params


def _postgres_walk(terms: list[str], param: str) -> tuple[str, list[Any]]:
    """Whether one ticket has an article matching every term, computed from its articles.

    No index helps here: the test computes the vectors of the ticket's few articles.
    That is why it is only used when most tickets walked will pass it.
    """
    tsquery, params = _pg_tsquery(terms, param)
    sql = (
        'EXISTS (SELECT 1 FROM "article" AS a '
        f'WHERE a."ticket_id" = t."id" AND {_PG_VECTOR} @@ {tsquery})'
    )
    return sql, params


def _parts(db: Database, query: SearchQuery, queues: Sequence[str], plan: Plan) -> _Parts | None:
    """The statements' shared pieces for ``plan``; None when nothing can match.

    Nothing can match when the asker sees no queue (or none the ``queue:`` filter
    keeps), or names a state that does not exist. Saying so here saves a query and
    keeps an empty ``IN ()``, which PostgreSQL refuses, out of the SQL.
    """
    postgres = isinstance(db, PostgresqlDatabase)
    param = _param(db)
    names = _queues_wanted(query.queue, queues)
    if not names:
        return None
    conditions = [f'q."name" IN ({", ".join([param] * len(names))})']
    params: list[Any] = list(names)

    if query.state is not None:
        states = states_for(query.state)
        if states is None:
            return None
        conditions.append(f't."state" IN ({", ".join([param] * len(states))})')
        params.extend(s.value for s in states)
    if query.sender:
        # SQLite's LIKE ignores ASCII case itself, as its LOWER() only lowers ASCII: the
        # same answer, without calling a function on each of a million addresses (3x)
        column = 'LOWER(t."requester_email")' if postgres else 't."requester_email"'
        conditions.append(f"{column} LIKE {param} ESCAPE '\\'")
        params.append(_like_pattern(_plain(query.sender).lower()))
    if query.owner is not None:
        owner = _plain(query.owner)
        if owner.lower() == "none":
            conditions.append('t."owner" IS NULL')
        else:
            conditions.append(f'(t."owner" = {param} OR LOWER(t."owner_name") = {param})')
            params.extend([owner, owner.lower()])
    if query.tag is not None:
        conditions.append(
            f't."id" IN (SELECT "ticket_id" FROM "ticket_tag" WHERE "name" = {param})'
        )
        params.append(_plain(query.tag))
    if query.priority is not None:
        conditions.append(f't."priority" = {param}')
        params.append(query.priority)

    prefix, source = "", _FROM
    if query.queue is None and not postgres:
        # Only the asker's access, which covers most of the desk: read the tickets (by
        # another filter's index, or in table order) and look their queue up, rather
        # than fetch every ticket of every queue through ticket_queue_id at random.
        source = f'FROM "ticket" AS t CROSS {_JOIN_QUEUE}'
    prefix_params: list[Any] = []
    terms = text_terms(query.text)
    if plan is Plan.WALK and not postgres:
        # the ticket table first, along the (updated_at, id) index; CROSS JOIN keeps
        # SQLite from starting at the queue table instead
        source = (
            'FROM "ticket" AS t INDEXED BY "ticket_updated_at_id" '
            'CROSS JOIN "queue" AS q ON q."id" = t."queue_id"'
        )
    if terms and plan in (Plan.WALK, Plan.FILTER_FIRST):
        sql, text_params = (_postgres_walk if postgres else _sqlite_walk)(terms, param)
        conditions.append(sql)
        params.extend(text_params)
    elif terms and postgres:
        prefix, prefix_params = _postgres_collect(terms, param)
        # from the matches: the planner can fetch each one's ticket by its primary key
        source = f'FROM "matched" JOIN "ticket" AS t ON t."id" = "matched"."id" {_JOIN_QUEUE}'
    elif terms:
        sql, text_params = _sqlite_collect(terms, param)
        conditions.append(sql)
        params.extend(text_params)
    return _Parts(prefix, prefix_params, source, "WHERE " + " AND ".join(conditions), params)


def _sqlite_stream_count(db: Database, query: SearchQuery, queues: Sequence[str]) -> Statement:
    """The capped count for common words on SQLite: stream the FTS5 matches, each
    ticket once, and stop at the cap, never building the whole set of matches."""
    parts = _parts(db, replace(query, text=""), queues, Plan.COLLECT)
    assert parts is not None
    match = '"article_fts" MATCH ?'
    sql = (
        'SELECT COUNT(*) FROM (SELECT DISTINCT a."ticket_id" FROM "article_fts" '
        'JOIN "article" AS a ON a."id" = "article_fts"."rowid" '
        'CROSS JOIN "ticket" AS t ON t."id" = a."ticket_id" '
        f"{_JOIN_QUEUE} {parts.where} AND {match} LIMIT ?) AS c"
    )
    terms = text_terms(query.text)
    return Statement(sql, [*parts.where_params, fts5_query(terms), COUNT_CAP + 1])


def search_statements(
    db: Database,
    query: SearchQuery,
    queues: Sequence[str],
    offset: int,
    limit: int,
    plan: Plan = Plan.COLLECT,
) -> tuple[Statement, Statement] | None:
    """The capped count and the page statement of a search; None when nothing can match.

    The count is counted up to :data:`~bot.search.COUNT_CAP` + 1 (a ``LIMIT`` inside
    it). The page asks for one row more than ``limit``, to know whether there is a
    next page; with ``query.after`` it starts after that key and ``offset`` is ignored.
    ``plan`` is what :func:`search_tickets` picks.

    Public so a test (and the benchmark) can ask the database for the plan of exactly
    what runs.
    """
    parts = _parts(db, query, queues, plan)
    if parts is None:
        return None
    param = _param(db)
    if plan is Plan.WALK and text_terms(query.text) and not isinstance(db, PostgresqlDatabase):
        count = _sqlite_stream_count(db, query, queues)
    else:
        count = parts.count(param)
    if query.after is not None:
        key = query.after
        parts = parts.narrowed(
            f'(t."updated_at", t."id") < ({param}, {param})',
            [m.Ticket.updated_at.db_value(key.updated_at), key.ticket_id],
        )
        offset = 0
    offset = min(max(0, offset), _MAX_ROWS)
    limit = min(max(0, limit), _MAX_ROWS - 1) + 1
    page = parts.statement(_SELECT, f"{_ORDER} LIMIT {param} OFFSET {param}", (limit, offset))
    return count, page


def words_are_common(db: Database, query: SearchQuery) -> bool:
    """Whether at least :data:`COMMON_ARTICLES` articles match the words (cheaply judged).

    SQLite: the FTS5 index is read with a ``LIMIT`` (about a millisecond, it stops at
    the threshold). PostgreSQL: a GIN index cannot stop early, so the planner's row
    estimate is asked instead (``EXPLAIN``, no execution); its statistics on the index
    expression know the frequent words, which are the ones that matter here.
    """
    terms = text_terms(query.text)
    if not terms:
        return False
    if isinstance(db, PostgresqlDatabase):
        # a phrase is estimated as its words (an upper bound): the planner's estimate of
        # a phrase was far too low ("fiesta de": 1 row, 69,000 found). Phrases remain
        # the weak spot on PostgreSQL: docs/search-performance.md.
        tsquery, params = "plainto_tsquery('simple', %s)", [" ".join(terms)]
        sql = f'EXPLAIN (FORMAT JSON) SELECT 1 FROM "article" AS a WHERE {_PG_VECTOR} @@ {tsquery}'
        raw = _rows(db, Statement(sql, params))[0][0]
        plan = json.loads(raw) if isinstance(raw, str) else raw
        return float(plan[0]["Plan"]["Plan Rows"]) >= COMMON_ARTICLES
    sql = (
        'SELECT COUNT(*) FROM (SELECT 1 FROM "article_fts" WHERE "article_fts" MATCH ? '
        "LIMIT ?) AS c"
    )
    found = _rows(db, Statement(sql, [fts5_query(terms), COMMON_ARTICLES]))[0][0]
    return int(found) >= COMMON_ARTICLES


def _filtered(query: SearchQuery) -> bool:
    """Whether a filter besides the asker's access narrows the tickets.

    Common words with a filter are not counted on SQLite either: the streamed count
    would join every one of the word's articles (a million for "licence") to its ticket
    to test the filter, seconds, to find a few hundred.
    """
    fields = (query.queue, query.state, query.sender, query.owner, query.tag, query.priority)
    return any(value is not None for value in fields)


def _indexed_filter(query: SearchQuery) -> bool:
    """Whether a filter has an index to find its tickets by (so counting them is cheap)."""
    owner = query.owner is not None and query.owner.lower() != "none"
    return owner or any(v is not None for v in (query.queue, query.state, query.tag))


def _few_pass_filters(db: Database, query: SearchQuery, queues: Sequence[str]) -> bool:
    """Whether at most :data:`FILTER_FIRST_MAX` tickets pass the filters (words aside)."""
    parts = _parts(db, replace(query, text=""), queues, Plan.COLLECT)
    if parts is None:
        return False
    inner = " ".join(p for p in ("SELECT 1", parts.source, parts.where) if p)
    sql = f"SELECT COUNT(*) FROM ({inner} LIMIT {_param(db)}) AS c"
    found = _rows(db, Statement(sql, [*parts.where_params, FILTER_FIRST_MAX + 1]))[0][0]
    return int(found) <= FILTER_FIRST_MAX


def _early(query: SearchQuery, offset: int) -> bool:
    """Whether the page is near the top (keyset pages are always: they start at a key)."""
    return query.after is not None or offset < WALK_FROM_TOTAL


def _hit(row: Sequence[Any]) -> SearchHit:
    number, queue, state, subject, email, owner, owner_name, priority, updated, _ = row
    return SearchHit(
        number=str(number),
        queue=str(queue),
        state=str(state),
        subject=str(subject),
        requester_email=str(email),
        owner=str(owner_name or owner or ""),
        priority=int(priority),
        updated_at=_timestamp(number, updated),
    )


def _timestamp(number: Any, raw: Any) -> datetime:
    # The raw value is SQLite's text or PostgreSQL's naive timestamp, both UTC; the
    # column's own field turns either into the aware datetime the core works with.
    value = m.Ticket.updated_at.python_value(raw)
    if not isinstance(value, datetime):
        raise TypeError(f"ticket {number}: updated_at {raw!r} is not a timestamp")
    return value


def search_tickets(
    db: Database, query: SearchQuery, queues: Sequence[str], offset: int, limit: int
) -> SearchPage:
    """Tickets in ``queues`` matching ``query``, newest change first, and how many match.

    ``queues`` is what the asker may see: an empty list finds nothing, whatever the
    query says. The total is exact up to :data:`~bot.search.COUNT_CAP`; beyond it the
    page is ``capped``. Common words are not counted on PostgreSQL (counting 10,000 of
    them recomputes 25,000 text vectors, seconds), nor with a filter on SQLite (see
    :func:`_filtered`): the total is then the hits up to this page, and ``capped`` says
    more follow. The statements run in the caller's transaction.
    """
    common = words_are_common(db, query)
    postgres = isinstance(db, PostgresqlDatabase)
    plan = Plan.WALK if common else Plan.COLLECT
    if common and _indexed_filter(query) and _few_pass_filters(db, query, queues):
        plan = Plan.FILTER_FIRST
    statements = search_statements(db, query, queues, offset, limit, plan)
    if statements is None:
        return SearchPage(total=0, hits=[])
    count, page = statements
    if common and (postgres or _filtered(query)):
        total = -1  # not counted: decided from the page below
    else:
        total = int(_rows(db, count)[0][0])
        if total == 0 or limit <= 0:
            return SearchPage(total=min(total, COUNT_CAP), hits=[], capped=total > COUNT_CAP)
        if query.after is None and offset >= total:
            return SearchPage(total=total, hits=[])
        walkable = plan is Plan.COLLECT and not text_terms(query.text)
        if walkable and total > WALK_FROM_TOTAL and _early(query, offset):
            # many match filters alone (state:closed, queue:info, priority:5): walk the
            # index, do not sort them all. Not with words: those were judged rare, and
            # the walk's test of a ticket for words costs up to a millisecond.
            statements = search_statements(db, query, queues, offset, limit, Plan.WALK)
            assert statements is not None
            page = statements[1]
    rows = _rows(db, page)
    hits = [_hit(row) for row in rows[: max(0, limit)]]
    next_key = None
    if len(rows) > limit and hits:
        last = rows[limit - 1]
        next_key = SearchKey(_timestamp(last[0], last[8]), int(last[9]))
    if total < 0:
        shown = (0 if query.after is not None else max(0, offset)) + len(hits)
        return SearchPage(total=shown, hits=hits, capped=next_key is not None, next_key=next_key)
    return SearchPage(
        total=min(total, COUNT_CAP), hits=hits, capped=total > COUNT_CAP, next_key=next_key
    )


def _rows(db: Database, statement: Statement) -> list[tuple[Any, ...]]:
    """All rows of a statement (peewee's ``execute_sql`` is untyped)."""
    cursor = db.execute_sql(statement.sql, statement.params)  # type: ignore[no-untyped-call]
    return [tuple(row) for row in cursor.fetchall()]
