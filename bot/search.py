"""The ``search`` command's language: what a volunteer types, and the listing shown back.

Volunteers type ``search queue:info state:open from:example.org owner:me tag:press
priority:5 page:2 licence "photo credit"``. :func:`parse_search` turns that into a
:class:`~bot.repository.SearchQuery` and a page number; :func:`format_results` renders
a :class:`~bot.repository.SearchPage` as plain text that reads the same on every chat
platform. :func:`text_terms` and :func:`states_for` are shared with the store, so the
words and state groups a volunteer means are decided in one place, not once per
database dialect.

Pure core code: no storage, no I/O.
"""

from __future__ import annotations

import math
import re
import unicodedata

from bot.domain import MAX_PRIORITY, MIN_PRIORITY, TicketError, TicketState
from bot.repository import SearchPage, SearchQuery

#: Hits per page in chat: enough to scan, few enough not to flood a room.
PAGE_SIZE = 10

#: Pages beyond this are refused rather than sent to the database as a huge OFFSET
#: (an enormous number would not even fit SQLite's 64-bit integer).
MAX_PAGE = 10_000

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
}
_PAGE_TOKEN = re.compile(r'(?<!\S)page:("[^"]*"?|\S*)', re.IGNORECASE)


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

    page = _number(filters["page"], "The page", 1, MAX_PAGE) if "page" in filters else 1
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

    ``query_text`` is what the volunteer typed, so the hint for the next page is a
    command they can copy as it stands (its ``page:`` replaced).
    """
    if page.total == 0:
        return "No ticket matches."
    pages = max(1, math.ceil(page.total / max(1, page_size)))
    matches = "1 ticket matches" if page.total == 1 else f"{page.total} tickets match"
    if not page.hits:
        return f"{matches}, but there is no page {page_number}: the last is page {pages}."
    lines = [f"{matches} (page {page_number} of {pages})"]
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
    if page_number < pages:
        rest = " ".join(_PAGE_TOKEN.sub(" ", _clean(query_text)).split())
        command = (
            f"search {rest} page:{page_number + 1}" if rest else f"search page:{page_number + 1}"
        )
        lines.append(f"next: {command}")
    return "\n".join(lines)
