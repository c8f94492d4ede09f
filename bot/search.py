"""The ``search`` command's language: what a volunteer types, and the listing shown back.

Volunteers type ``search queue:info state:open from:example.org owner:me tag:press
priority:5 page:2 licence "photo credit"``; a listing's ``next:`` line adds
``after:TOKEN``, the place where the next page starts (keyset paging).
:func:`parse_search` turns that into a :class:`~bot.repository.SearchQuery` and a
page number; :func:`format_results` renders a :class:`~bot.repository.SearchPage` as
plain text that reads the same on every chat platform. :func:`text_terms` and
:func:`states_for` are shared with the store, so the words and state groups a
volunteer means are decided in one place, not once per database dialect.

Pure core code: no storage, no I/O.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime, timedelta

from bot.domain import MAX_PRIORITY, MIN_PRIORITY, TicketError, TicketState
from bot.repository import SearchKey, SearchPage, SearchQuery

#: Hits per page in chat: enough to scan, few enough not to flood a room.
PAGE_SIZE = 10

#: A typed ``page:N`` is read with OFFSET, which walks past every earlier hit; beyond
#: this the volunteer follows the listing's ``next:`` line (keyset, as cheap as page 1)
#: or narrows the search. OFFSET pages of a common word cost up to 1 ms per ticket
#: passed on a million tickets (docs/search-performance.md): page 10 is still quick.
MAX_PAGE = 10

#: A page label that comes with ``after:`` costs nothing, so it is only kept sane.
MAX_PAGE_LABEL = 1_000_000

#: Matches are counted up to this (and one more, to know there are more): "10,000+".
COUNT_CAP = 10_000

#: Subjects are cut here so one hit stays one line in chat.
SUBJECT_WIDTH = 80

#: State groups volunteers think in; a single state is also accepted by its own name.
STATE_GROUPS: dict[str, tuple[TicketState, ...]] = {
    "pending": tuple(s for s in TicketState if s.is_pending),
    "closed": tuple(s for s in TicketState if s.is_closed),
    "active": tuple(s for s in TicketState if not s.is_closed),
}

# key:"quoted value" | "quoted phrase" (the closing quote may be missing) | a bare word
_TOKEN = re.compile(
    r'(?P<key>[A-Za-z]+):"(?P<qvalue>[^"]*)"?|"(?P<phrase>[^"]*)"?|(?P<word>[^\s"]+)'
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FILTER_WORD = re.compile(r"(?P<key>[A-Za-z]+):(?P<value>.+)", re.DOTALL)
_KEYS = {
    "queue": "queue",
    "state": "state",
    "from": "sender",
    "sender": "sender",
    "owner": "owner",
    "tag": "tag",
    "priority": "priority",
    "prio": "priority",
    "page": "page",
    "after": "after",
}
_PAGE_TOKEN = re.compile(r'(?<!\S)(?:page|after):("[^"]*"?|\S*)', re.IGNORECASE)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_KEY_TOKEN = re.compile(r"([0-9a-z]{1,14})-([0-9a-z]{1,14})")


def states_for(name: str) -> tuple[TicketState, ...] | None:
    """The states ``state:NAME`` means: a group, or one state; None when it means nothing.

    Accepts ``closed-successful`` and ``Closed_Successful`` as well, since volunteers
    copy state names from the listing or type them from memory.
    """
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in STATE_GROUPS:
        return STATE_GROUPS[key]
    try:
        return (TicketState(key),)
    except ValueError:
        return None


def _clean(text: str) -> str:
    """Control characters (NUL above all) become spaces: no database should see them."""
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)


def _searchable(term: str) -> bool:
    """Whether a term has anything a full-text index keeps (a letter or a digit).

    A term of punctuation only ("*", "-", "—") would be an empty phrase, which matches
    no article at all; dropping it instead keeps "photo -" meaning "photo".
    """
    return any(ch.isalnum() for ch in term)


def text_terms(text: str) -> list[str]:
    """The search words of ``text``: bare words, and ``"quoted phrases"`` kept whole.

    Every term must occur in an article; a phrase's words must occur in that order,
    next to each other. Whitespace inside a phrase is collapsed to single spaces.
    The terms are plain text: the store quotes them for its index, so nothing a
    volunteer types is ever read as query syntax.
    """
    terms: list[str] = []
    for match in _TOKEN.finditer(_clean(text)):
        if match["key"] is not None:
            term = f"{match['key']}:{match['qvalue']}"
        elif match["phrase"] is not None:
            term = match["phrase"]
        else:
            term = match["word"]
        term = " ".join(term.split())
        if _searchable(term):
            terms.append(term)
    return terms


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _DIGITS[digit] + digits
        if number == 0:
            return digits


def key_token(key: SearchKey) -> str:
    """``after:`` text for a place in the listing: microseconds since 1970 (UTC) and the
    ticket id, base 36 (``lfx3k2a9s-1xd2``): short enough to sit in a chat line."""
    stamp = key.updated_at.astimezone(UTC) - _EPOCH
    micros = (stamp.days * 86_400 + stamp.seconds) * 1_000_000 + stamp.microseconds
    return f"{_base36(max(0, micros))}-{_base36(key.ticket_id)}"


def parse_key_token(text: str) -> SearchKey:
    """The place an ``after:`` token names; :class:`TicketError` naming it if it is not one."""
    found = _KEY_TOKEN.fullmatch(text.strip().lower())
    problem = f"after:{text} is not a place in a listing: copy the next: line as it was shown."
    if found is None:
        raise TicketError(problem)
    micros, ticket_id = int(found[1], 36), int(found[2], 36)
    try:
        updated_at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise TicketError(problem) from None
    if ticket_id > 2**62:
        raise TicketError(problem)
    return SearchKey(updated_at=updated_at, ticket_id=ticket_id)


def _number(value: str, what: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise TicketError(f"{what} must be a number from {low} to {high}, not {value!r}.")
    return number


def parse_search(text: str, actor_id: str) -> tuple[SearchQuery, int]:
    """The query and page number in what a volunteer typed after ``search``.

    ``owner:me`` becomes ``actor_id``; ``owner:none`` asks for unclaimed tickets. A
    ``key:`` the desk does not know (``re:licence``, ``http://…``) is kept as search
    words, so pasted text still finds something. Values with spaces can be quoted:
    ``owner:"Anna Maria"``. Raises :class:`TicketError` for a filter value that cannot
    mean anything (priority 9, page 0, state "opn"), so the volunteer learns why,
    instead of getting an empty listing.
    """
    filters: dict[str, str] = {}
    words: list[str] = []
    for match in _TOKEN.finditer(_clean(text)):
        if match["phrase"] is not None:
            phrase = " ".join(match["phrase"].split())
            if phrase:
                words.append(f'"{phrase}"')
            continue
        if match["key"] is not None:
            key, value, raw = match["key"], match["qvalue"], match.group(0)
        else:
            raw = match["word"]
            found = _FILTER_WORD.fullmatch(raw)
            key, value = (found["key"], found["value"]) if found else ("", "")
        field = _KEYS.get(key.lower())
        value = " ".join(value.split())
        if field is None or not value:
            words.append(raw)
        else:
            filters[field] = value

    after = parse_key_token(filters["after"]) if "after" in filters else None
    if "page" not in filters:
        page = 1
    elif after is None:
        try:
            page = _number(filters["page"], "The page", 1, MAX_PAGE)
        except TicketError:
            raise TicketError(
                f"The page must be a number from 1 to {MAX_PAGE}, not {filters['page']!r}: "
                "for later pages follow the listing's next: line, or narrow the search."
            ) from None
    else:
        page = _number(filters["page"], "The page", 1, MAX_PAGE_LABEL)
    priority = None
    if "priority" in filters:
        priority = _number(filters["priority"], "The priority", MIN_PRIORITY, MAX_PRIORITY)
    state = filters.get("state")
    if state is not None:
        if states_for(state) is None:
            names = ", ".join(s.value for s in TicketState)
            groups = ", ".join(STATE_GROUPS)
            raise TicketError(
                f"There is no state {state!r}. Use one of {names}, or a group: {groups}."
            )
        state = state.lower().replace("-", "_").replace(" ", "_")
    owner = filters.get("owner")
    if owner is not None and owner.lower() == "me":
        owner = actor_id
    elif owner is not None and owner.lower() == "none":
        owner = "none"
    query = SearchQuery(
        text=" ".join(words),
        queue=filters.get("queue"),
        state=state,
        sender=filters.get("sender"),
        owner=owner,
        tag=filters.get("tag"),
        priority=priority,
        after=after,
    )
    return query, page


def _one_line(text: str, width: int) -> str:
    """A subject on one line, cut to ``width``: a hostile subject cannot break the list."""
    flat = " ".join("".join(" " if unicodedata.category(c)[0] == "C" else c for c in text).split())
    if len(flat) <= width:
        return flat
    return flat[: width - 1].rstrip() + "…"


def format_results(page: SearchPage, page_number: int, page_size: int, query_text: str) -> str:
    """The listing shown in chat: a header, one line per ticket, and how to see more.

    ``query_text`` is what the volunteer typed, so the line for the next page is a
    command they can copy as it stands (its ``page:`` and ``after:`` replaced by the
    next page's). Beyond :data:`COUNT_CAP` matches the header says "10,000+", and
    when the store did not count (common words on PostgreSQL) "at least N".
    """
    shown_before = (page_number - 1) * max(1, page_size)
    if page.total == 0 and not page.hits:
        return "No ticket matches."
    if page.capped:
        least = max(page.total, shown_before + len(page.hits))
        matches = f"{least:,}+ tickets match"
        where = f"page {page_number}"
    else:
        pages = max(1, math.ceil(page.total / max(1, page_size)))
        matches = "1 ticket matches" if page.total == 1 else f"{page.total:,} tickets match"
        where = f"page {page_number} of {pages}"
        if not page.hits:
            return f"{matches}, but there is no page {page_number}: the last is page {pages}."
    if not page.hits:
        return f"{matches}, but page {page_number} is empty: the listing changed meanwhile."
    lines = [f"{matches} ({where})"]
    for hit in page.hits:
        owner = f"owner {_one_line(hit.owner, 40)}" if hit.owner else "unclaimed"
        parts = [
            hit.number,
            hit.state,
            hit.queue,
            f"priority {hit.priority}",
            owner,
            _one_line(hit.requester_email, 60),
            _one_line(hit.subject, SUBJECT_WIDTH) or "(no subject)",
        ]
        lines.append(" · ".join(parts))
    if page.next_key is not None:
        rest = " ".join(_PAGE_TOKEN.sub(" ", _clean(query_text)).split())
        where_next = f"page:{page_number + 1} after:{key_token(page.next_key)}"
        lines.append(f"next: search {rest} {where_next}" if rest else f"next: search {where_next}")
    return "\n".join(lines)
