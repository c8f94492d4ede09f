"""Full-text ticket search: SQLite FTS5 or PostgreSQL text search, plus filters.

One parameterised statement pair per search (a page and a count), built here for
the database's dialect. The words are matched against the index schema step 2
built over every article's subject and body (``article_fts`` on SQLite, the GIN
index ``article_search`` on PostgreSQL), in a subquery run once that yields ticket
ids; the filters, the asker's queues, the order and the page are all left to the
database. Nothing is filtered in Python, so a desk of a million tickets answers as
fast as its indexes allow.

All words (and quoted phrases) must occur in one article of the ticket: that is
what one index lookup can answer, and it is the same on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peewee import Database, PostgresqlDatabase

from bot.repository import SearchHit, SearchPage, SearchQuery
from bot.search import states_for, text_terms
from storage import models as m

#: OFFSET and LIMIT are clamped to this, so no caller's number overflows a 64-bit integer.
_MAX_ROWS = 2**62

_SELECT = (
    'SELECT t."number", q."name", t."state", t."subject", t."requester_email", '
    't."owner", t."owner_name", t."priority", t."updated_at"'
)
_JOIN_QUEUE = 'JOIN "queue" AS q ON q."id" = t."queue_id"'
_FROM = f'FROM "ticket" AS t {_JOIN_QUEUE}'
_ORDER = 'ORDER BY t."updated_at" DESC, t."id" DESC'


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


def _sqlite_text(terms: list[str], param: str) -> tuple[str, list[Any]]:
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


def _postgres_text(terms: list[str], param: str) -> tuple[str, list[Any]]:
    """A ``WITH "matched"`` of the distinct ids of tickets with an article matching every term.

    The left side of ``@@`` is exactly the expression of the GIN index
    ``article_search`` (``to_tsvector('simple', left("subject" || ' ' || "body", 100000))``); any
    other spelling would make PostgreSQL compute it for every article. The CTE is
    ``MATERIALIZED`` (PostgreSQL 12+) so the planner cannot fold it into a join: left
    to itself, with stale statistics, it may walk the tickets and recompute the
    vector of each one's articles, seconds instead of milliseconds. Bare words go to
    ``plainto_tsquery`` and phrases to ``phraseto_tsquery``; both parse plain text,
    so nothing a volunteer types is tsquery syntax.
    """
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
    sql = (
        'WITH "matched" AS MATERIALIZED (SELECT DISTINCT a."ticket_id" AS "id" '
        'FROM "article" AS a '
        "WHERE to_tsvector('simple', left(a.\"subject\" || ' ' || a.\"body\", 100000)) "
        f"@@ ({' && '.join(queries)}))"
    )
    return sql, params


def _parts(db: Database, query: SearchQuery, queues: Sequence[str]) -> _Parts | None:
    """The statements' shared pieces; None when nothing can match.

    Nothing can match when the asker sees no queue (or none the ``queue:`` filter
    keeps), or names a state that does not exist. Saying so here saves a query and
    keeps an empty ``IN ()``, which PostgreSQL refuses, out of the SQL.
    """
    postgres = isinstance(db, PostgresqlDatabase)
    param = "%s" if postgres else "?"
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
        conditions.append(f"LOWER(t.\"requester_email\") LIKE {param} ESCAPE '\\'")
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
    prefix_params: list[Any] = []
    terms = text_terms(query.text)
    if terms and postgres:
        prefix, prefix_params = _postgres_text(terms, param)
        # from the matches: the planner can fetch each one's ticket by its primary key
        source = f'FROM "matched" JOIN "ticket" AS t ON t."id" = "matched"."id" {_JOIN_QUEUE}'
    elif terms:
        sql, text_params = _sqlite_text(terms, param)
        conditions.append(sql)
        params.extend(text_params)
    return _Parts(prefix, prefix_params, source, "WHERE " + " AND ".join(conditions), params)


def search_statements(
    db: Database, query: SearchQuery, queues: Sequence[str], offset: int, limit: int
) -> tuple[Statement, Statement] | None:
    """The count and the page statement of a search; None when nothing can match.

    Public so a test can ask the database for the plan of exactly what runs.
    """
    parts = _parts(db, query, queues)
    if parts is None:
        return None
    param = "%s" if isinstance(db, PostgresqlDatabase) else "?"
    offset = min(max(0, offset), _MAX_ROWS)
    limit = min(max(0, limit), _MAX_ROWS)
    count = parts.statement("SELECT COUNT(*)")
    page = parts.statement(_SELECT, f"{_ORDER} LIMIT {param} OFFSET {param}", (limit, offset))
    return count, page


def _hit(row: Sequence[Any]) -> SearchHit:
    number, queue, state, subject, email, owner, owner_name, priority, updated = row
    # The raw value is SQLite's text or PostgreSQL's naive timestamp, both UTC; the
    # column's own field turns either into the aware datetime the core works with.
    updated_at = m.Ticket.updated_at.python_value(updated)
    if not isinstance(updated_at, datetime):
        raise TypeError(f"ticket {number}: updated_at {updated!r} is not a timestamp")
    return SearchHit(
        number=str(number),
        queue=str(queue),
        state=str(state),
        subject=str(subject),
        requester_email=str(email),
        owner=str(owner_name or owner or ""),
        priority=int(priority),
        updated_at=updated_at,
    )


def search_tickets(
    db: Database, query: SearchQuery, queues: Sequence[str], offset: int, limit: int
) -> SearchPage:
    """Tickets in ``queues`` matching ``query``, newest change first, and how many match.

    ``queues`` is what the asker may see: an empty list finds nothing, whatever the
    query says. The count and the page are two statements in the caller's transaction:
    on SQLite they see the same data; on PostgreSQL (read committed) a ticket changed
    in between can make them differ by one, which a listing can live with.
    """
    statements = search_statements(db, query, queues, offset, limit)
    if statements is None:
        return SearchPage(total=0, hits=[])
    count, page = statements
    total = int(_rows(db, count)[0][0])
    if total == 0 or limit <= 0 or offset >= total:
        return SearchPage(total=total, hits=[])
    return SearchPage(total=total, hits=[_hit(row) for row in _rows(db, page)])


def _rows(db: Database, statement: Statement) -> list[tuple[Any, ...]]:
    """All rows of a statement (peewee's ``execute_sql`` is untyped)."""
    cursor = db.execute_sql(statement.sql, statement.params)  # type: ignore[no-untyped-call]
    return [tuple(row) for row in cursor.fetchall()]
