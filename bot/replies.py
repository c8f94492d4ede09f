"""The words of the mail the desk sends: salutations, signatures, templates, quotes.

Everything here is a pure function of configuration and ticket data, so the reply
command, the intake's acknowledgements and the chat views all produce the same text
and tests need no store, clock or network.

Texts are configured per language (``{en = "...", de = "..."}``, ``"*"`` for any
language) and may use the ``{variables}`` of :data:`bot.config.TEMPLATE_VARIABLES`.
The config loader already refused unknown variables and broken braces; :func:`render`
still never raises, because a reply must not fail over a format spec nobody tests.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from bot.config import QueueConfig
from bot.domain import Article, ArticleKind, Ticket, TicketError

#: How much of the previous message a reply quotes; the requester has the rest.
QUOTE_MAX_LINES = 60
#: How much of a template's first line the ``templates`` listing shows.
PREVIEW_CHARS = 60
#: The standard signature separator (RFC 3676 4.3): dash, dash, space.
SIG_SEPARATOR = "-- "

_FORMATTER = string.Formatter()

# --- languages -------------------------------------------------------------------------------


def _language_code(code: str) -> str:
    """``pt_BR`` and `` PT-br`` are the same language as ``pt-br``."""
    return code.strip().lower().replace("_", "-")


def _primary(code: str) -> str:
    return code.partition("-")[0]


def _match_language(by_code: Mapping[str, str], code: str) -> str | None:
    """Exact code first, then the base language (``pt`` for ``pt-br``), then a sibling.

    A sibling (``pt-br`` text for a ``pt`` or ``pt-pt`` requester) is still better
    than falling back to another language altogether.
    """
    if not code or code == "*":
        return None
    if code in by_code:
        return by_code[code]
    primary = _primary(code)
    if primary in by_code:
        return by_code[primary]
    for key, text in by_code.items():
        if key != "*" and _primary(key) == primary:
            return text
    return None


def pick_text(texts: Mapping[str, str], language: str, fallback: str) -> str | None:
    """The text for ``language``, else for the queue's ``fallback`` language, else ``"*"``.

    Codes match case-insensitively and by base language (``pt`` serves ``pt-br``).
    None when nothing fits, so callers can leave the piece out. An empty configured
    text is returned as ``""``: an admin may switch a salutation off for one language.
    """
    by_code: dict[str, str] = {}
    for key, text in texts.items():
        by_code.setdefault(_language_code(key), text)
    for wanted in (language, fallback):
        found = _match_language(by_code, _language_code(wanted))
        if found is not None:
            return found
    return by_code.get("*")


# --- variables and rendering -----------------------------------------------------------------


@dataclass(frozen=True)
class Variables:
    """The values a configured text may use; names match ``TEMPLATE_VARIABLES``.

    ``requester_name`` may be empty (mail often has no display name). It then stays
    empty rather than becoming the address's local part: ``Hello m.schmidt1987,`` reads
    worse than ``Hello,``, and :func:`render` tidies the space an empty value leaves.
    """

    requester_name: str = ""
    requester_email: str = ""
    ticket_number: str = ""
    volunteer_name: str = ""
    queue: str = ""
    subject: str = ""

    @classmethod
    def for_ticket(cls, ticket: Ticket, *, volunteer_name: str = "") -> Variables:
        return cls(
            requester_name=ticket.requester_name,
            requester_email=ticket.requester_email,
            ticket_number=ticket.number,
            volunteer_name=volunteer_name,
            queue=ticket.queue,
            subject=ticket.subject,
        )

    def as_dict(self) -> dict[str, str]:
        return dict(asdict(self))


def team_name(queue: QueueConfig) -> str:
    """The name the desk signs with when a volunteer's name is not given."""
    return queue.sender_name or queue.name


def _one_line(value: str) -> str:
    """Values come from mail headers: a name with a line break must not break the layout."""
    return " ".join(value.split())


_HUGE_WIDTH = re.compile(r"\d{5}")
_CLOSES_AFTER_EMPTY = frozenset(",.;:!?)…、。，")


def render(text: str, variables: Variables) -> str:
    """``text`` with its ``{variables}`` filled in, in one pass, never raising.

    It behaves like ``str.format_map`` for every text the config accepts, but:
    values are inserted literally (a requester called ``{subject}`` stays so); an
    unknown ``{name}`` is kept as written; a format spec that does not fit a string
    (``{subject:d}``) is ignored instead of raising; text with broken braces is
    returned as is. An empty value takes the spaces before it along when punctuation,
    the line end or more spaces follow, so ``Hello {requester_name},`` becomes
    ``Hello,`` and ``Hi {requester_name} and`` has no double space.
    """
    values = {name: _one_line(value) for name, value in variables.as_dict().items()}
    try:
        parts = list(_FORMATTER.parse(text))
    except ValueError:
        return text
    out: list[str] = []
    for index, (literal, field, spec, conversion) in enumerate(parts):
        out.append(literal)
        if field is None:
            continue
        value = values.get(field)
        if value is None:
            out.append(_as_written(field, spec, conversion))
            continue
        rendered = _formatted(value, spec or "", conversion, values)
        if not rendered:
            following = parts[index + 1][0] if index + 1 < len(parts) else ""
            rest = following.lstrip(" \t")
            closes = not rest or rest[0] in "\r\n" or rest[0] in _CLOSES_AFTER_EMPTY
            if closes or (rest != following and out[-1].endswith((" ", "\t"))):
                out[-1] = out[-1].rstrip(" \t")
        out.append(rendered)
    return "".join(out)


def _as_written(field: str, spec: str | None, conversion: str | None) -> str:
    return (
        "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    )


def _formatted(value: str, spec: str, conversion: str | None, values: Mapping[str, str]) -> str:
    if conversion == "r":
        value = repr(value)
    elif conversion == "a":
        value = ascii(value)
    if not spec:
        return value
    if "{" in spec:  # a nested field ({subject:>{ticket_number}}): one level, no recursion
        try:
            spec = "".join(
                literal + (values.get(name, "") if name is not None else "")
                for literal, name, _, _ in _FORMATTER.parse(spec)
            )
        except ValueError:
            return value
    if _HUGE_WIDTH.search(spec):  # {subject:>{subject}} must not build a gigabyte
        return value
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return value


def _render_piece(texts: Mapping[str, str], language: str, fallback: str, v: Variables) -> str:
    """A configured salutation or signature, rendered; ``""`` when there is none."""
    text = pick_text(texts, language, fallback)
    if text is None:
        return ""
    return _trim_blank_lines(render(text, v))


# --- templates -------------------------------------------------------------------------------


def template_names(templates: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The names volunteers can pass to ``reply --template``, sorted for the listing."""
    return sorted(templates, key=str.casefold)


def _language_label(code: str) -> str:
    return "any" if code == "*" else code


def _preview(text: str) -> str:
    """The first non-blank line, cut at a word near :data:`PREVIEW_CHARS`."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if len(line) <= PREVIEW_CHARS:
        return line
    cut = line[:PREVIEW_CHARS]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + " …"


def describe_templates(templates: Mapping[str, Mapping[str, str]], queue_language: str) -> str:
    """The ``templates`` listing: one line per template with its languages and a preview.

    The preview is in the queue's language where there is one, since that is the
    language volunteers of the queue work in; else the template's first text.
    """
    if not templates:
        return "No templates are configured."
    lines = []
    for name in template_names(templates):
        texts = templates[name]
        text = pick_text(texts, queue_language, queue_language)
        if text is None:
            text = next(iter(texts.values()), "")
        languages = ", ".join(_language_label(code) for code in texts)
        preview = _preview(text)
        lines.append(f"{name} ({languages})" + (f" — {preview}" if preview else ""))
    return "\n".join(lines)


def _find_template(templates: Mapping[str, Mapping[str, str]], name: str) -> str | None:
    wanted = name.strip()
    if wanted in templates:
        return wanted
    return next((key for key in templates if key.casefold() == wanted.casefold()), None)


def template_text(
    templates: Mapping[str, Mapping[str, str]], name: str, language: str, fallback: str
) -> str:
    """The raw text of template ``name`` for ``language``; render it with :func:`render`.

    Raises :class:`TicketError` with a message for the volunteer: the names there are
    (and a close match) for a typo, the languages there are when none fits.
    """
    key = _find_template(templates, name)
    if key is None:
        if not templates:
            raise TicketError("There are no templates; an admin adds them under [templates].")
        names = template_names(templates)
        close = difflib.get_close_matches(name.strip(), names, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise TicketError(
            f"There is no template {name.strip()!r}.{hint} Templates: {', '.join(names)}."
        )
    texts = templates[key]
    text = pick_text(texts, language, fallback)
    if text is None or not text.strip():
        wanted = " or ".join(dict.fromkeys(c for c in (language, fallback) if c)) or "any language"
        have = ", ".join(_language_label(c) for c, t in texts.items() if t.strip()) or "none"
        raise TicketError(f"Template {key} has no text in {wanted}; it has: {have}.")
    return text


# --- composing a reply -----------------------------------------------------------------------


def _trim_blank_lines(text: str) -> str:
    """Leading and trailing blank lines go; indentation and a ``-- `` separator stay."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = len(lines)
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])


def _greeting_key(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip(",.;:!?… ")


def _already_greets(body: str, salutation: str) -> bool:
    """The volunteer typed the salutation themselves (``Hello Maria,``): do not say it twice.

    Compared without case, spacing and closing punctuation, over as many lines as the
    salutation has; a greeting that continues on its line (``Hello Maria, thanks…``)
    counts too, a longer name (``Hello Mariana``) does not.
    """
    wanted = _greeting_key(salutation)
    if not wanted:
        return False
    count = len(salutation.splitlines())
    lines = [ln for ln in body.splitlines() if ln.strip()][:count]
    have = " ".join(" ".join(ln.split()) for ln in lines).casefold()
    if not have.startswith(wanted):
        return False
    rest = have[len(wanted) :]
    return not rest or not rest[0].isalnum()


#: Attribution lines for the quoted previous message, in the requester's language.
#: Each is one :func:`strip_quoted` recognises, so a requester's answer quoting our
#: reply is stripped again when it comes back.
_ATTRIBUTIONS = {
    "en": "On {when}, {who} wrote:",
    "de": "Am {when} schrieb {who}:",
    "fr": "Le {when}, {who} a écrit :",
    "es": "El {when}, {who} escribió:",
    "nl": "Op {when} schreef {who}:",
    "it": "Il {when}, {who} ha scritto:",
    "pt": "Em {when}, {who} escreveu:",
}


def _utc_label(when: datetime) -> str:
    """Stored times are UTC; a naive one is taken as UTC too."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return f"{when:%Y-%m-%d %H:%M} UTC"


def _quote(previous: Article | None, language: str) -> str:
    """The requester's last mail, quoted below the reply so they see what is answered.

    Only an inbound, non-held article is quoted: a note never leaves the chat, and a
    held mail came from someone who is not (yet) part of the ticket.
    """
    if previous is None or previous.kind is not ArticleKind.INBOUND or previous.held:
        return ""
    text = _trim_blank_lines(strip_quoted(previous.body))
    if not text:
        return ""
    lines = text.split("\n")
    if len(lines) > QUOTE_MAX_LINES:
        lines = [*lines[:QUOTE_MAX_LINES], "[...]"]
    who = _one_line(previous.author)
    name = _one_line(previous.author_name)
    who = f"{name} <{who}>" if name and who else name or who
    form = _ATTRIBUTIONS.get(_primary(_language_code(language)), _ATTRIBUTIONS["en"])
    header = form.format(when=_utc_label(previous.created_at), who=who)
    # an empty quoted line is a bare ">": trailing spaces would read as format=flowed
    quoted = ["> " + line.rstrip() if line.strip() else ">" for line in lines]
    return "\n".join([header, *quoted])


def compose_reply(
    body: str,
    *,
    queue: QueueConfig,
    variables: Variables,
    language: str,
    previous: Article | None,
) -> str:
    """The text of the email a reply sends, from what the volunteer typed.

    Salutation, body, signature and the quoted previous mail, separated by blank
    lines; a piece that is not configured is left out. The body is taken literally
    (volunteers may type braces). An anonymous queue signs with the team's name: it
    replaces ``volunteer_name`` before rendering, so no configured text can leak the
    volunteer. Without a configured signature a named queue ends with the standard
    ``-- `` separator, the volunteer's and the team's name; an anonymous queue adds
    nothing (its From name already is the team).
    """
    team = team_name(queue)
    if queue.anonymous:
        variables = replace(variables, volunteer_name=team)
    fallback = queue.language
    text = _trim_blank_lines(body)
    parts: list[str] = []
    salutation = _render_piece(queue.salutation, language, fallback, variables)
    if salutation and not _already_greets(text, salutation):
        parts.append(salutation)
    if text:
        parts.append(text)
    signature = _render_piece(queue.signature, language, fallback, variables)
    if signature:
        parts.append(signature)
    elif not queue.anonymous:
        names = dict.fromkeys(n for n in (_one_line(variables.volunteer_name), team) if n)
        parts.append("\n".join([SIG_SEPARATOR, *names]))
    quote = _quote(previous, language or fallback)
    if quote:
        parts.append(quote)
    return "\n\n".join(parts)


def acknowledgement(
    queue: QueueConfig, kind: Literal["new", "reopen"], language: str, variables: Variables
) -> str | None:
    """The automatic answer to a new (or reopened) ticket; None when the queue sends none.

    No volunteer has touched the ticket yet, so ``volunteer_name`` is the team's name
    unless the caller gave one (and always the team's in an anonymous queue). The
    queue's signature follows where one is configured; an empty rendered text means
    the admin switched the acknowledgement off for that language.
    """
    texts = queue.autoresponse_new if kind == "new" else queue.autoresponse_reopen
    text = pick_text(texts, language, queue.language)
    if text is None:
        return None
    if queue.anonymous or not variables.volunteer_name.strip():
        variables = replace(variables, volunteer_name=team_name(queue))
    message = _trim_blank_lines(render(text, variables))
    if not message:
        return None
    signature = _render_piece(queue.signature, language, queue.language, variables)
    return f"{message}\n\n{signature}" if signature else message


# --- quoted history --------------------------------------------------------------------------

#: (start, must contain, end) of "On <date>, <name> wrote:" in the languages we meet,
#: compared case-folded with whitespace collapsed and " :" read as ":".
_ATTRIBUTION_SHAPES: tuple[tuple[str, str, str], ...] = (
    ("on ", "", " wrote:"),
    ("am ", " schrieb ", ":"),
    ("le ", "", " a écrit:"),
    ("el ", "", " escribió:"),
    ("op ", " schreef ", ":"),
    ("il ", "", " ha scritto:"),
    ("em ", "", " escreveu:"),
)
_SHAPE_BY_START = {start: (middle, end) for start, middle, end in _ATTRIBUTION_SHAPES}
#: An attribution is a line or two; anything longer is prose, and skipping it early
#: keeps the scan linear on hostile single-line mail.
_ATTRIBUTION_MAX_CHARS = 400

_ORIGINAL_MESSAGE = frozenset(
    {
        "original message",
        "ursprüngliche nachricht",
        "originalnachricht",
        "message d'origine",
        "mensaje original",
        "oorspronkelijk bericht",
        "messaggio originale",
        "mensagem original",
    }
)
_FROM_KEYS = ("from:", "von:", "de:", "van:", "da:")
_SENT_KEYS = (
    "sent:",
    "date:",
    "gesendet:",
    "datum:",
    "envoyé:",
    "enviado:",
    "enviado el:",
    "fecha:",
    "verzonden:",
    "verstuurd:",
    "inviato:",
    "data:",
)
_SUBJECT_KEYS = (
    "subject:",
    "betreff:",
    "objet:",
    "asunto:",
    "onderwerp:",
    "oggetto:",
    "assunto:",
)
#: A "From:/Date:" block under one of these is a forwarded mail: content, not history.
_FORWARD_MARKERS = (
    "forwarded message",
    "begin forwarded message",
    "weitergeleitete nachricht",
    "message transféré",
    "mensaje reenviado",
    "doorgestuurd bericht",
    "messaggio inoltrato",
    "mensagem encaminhada",
)


#: Lines that may start a history: an attribution, a ``---``/``___`` rule, a From: header.
#: Anchored and without nested repeats, so one cheap match per line rules most lines out.
_CANDIDATE = re.compile(
    r"[ \t*]{0,20}(?:(?P<attribution>on|am|le|el|op|il|em)\s|(?P<dashes>-{3})"
    r"|(?P<rule>_{10})|(?P<header>from|von|de|van|da)[ \t*]{0,20}:)",
    re.IGNORECASE,
)
#: The first letters of those, found in one pass over the whole text: plain enough for
#: the regex engine's fast search, so lines that cannot matter cost no Python at all.
_MAYBE_CANDIDATE = re.compile(r"\n[ \t*]{0,20}[oOaAlLeEiIfFvVdD_-]")
#: Header names sit at the start of a line; looking further would only cost time.
_HEADER_CHARS = 80


def _key(line: str) -> str:
    """A line as the detectors compare it: no emphasis stars, case-folded, spaces collapsed."""
    return " ".join(line.replace("*", " ").split()).casefold().replace(" :", ":")


def _head_key(line: str) -> str:
    return _key(line[:_HEADER_CHARS])


def _is_quote(line: str) -> bool:
    return line.startswith(">")


def _is_blank(line: str) -> bool:
    return not line.strip()


def _is_attribution(text: str) -> bool:
    if len(text) > _ATTRIBUTION_MAX_CHARS:
        return False
    key = _key(text)
    shape = _SHAPE_BY_START.get(key[:3])
    if shape is None:
        return False
    middle, end = shape
    return key.endswith(end) and middle in key[2:]


def _attribution_at(lines: Sequence[str], i: int) -> int | None:
    """The last line of an attribution starting at ``i`` (Gmail wraps it over two lines)."""
    line = lines[i]
    if _is_quote(line) or len(line) > _ATTRIBUTION_MAX_CHARS:
        return None
    if line.rstrip().endswith(":"):
        return i if _is_attribution(line) else None
    if i + 1 == len(lines):
        return None
    second = lines[i + 1]
    wrapped = not _is_blank(second) and not _is_quote(second) and second.rstrip().endswith(":")
    if wrapped and _is_attribution(line + " " + second):
        return i + 1
    return None


def _next_content(lines: Sequence[str], i: int) -> int | None:
    """The index of the first non-blank line at or after ``i``, scanning at most a few."""
    for j in range(i, min(len(lines), i + 4)):
        if not _is_blank(lines[j]):
            return j
    return None


def _is_original_message(line: str) -> bool:
    stripped = line.strip()
    if len(stripped) > _HEADER_CHARS or not (
        stripped.startswith("---") and stripped.endswith("---")
    ):
        return False
    return _key(stripped.strip("-")) in _ORIGINAL_MESSAGE


def _is_header_block(lines: Sequence[str], i: int) -> bool:
    """Outlook's reply header: ``From: …`` then ``Sent:``/``Date:`` among header lines.

    The From line must name an address or the block must have a Subject, so a
    requester's own "From: 10:00 / Date: Monday" is not taken for history; a block
    under a "Forwarded message" line is the forwarded mail itself, which is content.
    """
    if not _head_key(lines[i]).startswith(_FROM_KEYS):
        return False
    sent = subject = False
    for j in range(i + 1, min(len(lines), i + 5)):
        key = _head_key(lines[j])
        if ":" not in key:
            break
        sent = sent or key.startswith(_SENT_KEYS)
        subject = subject or key.startswith(_SUBJECT_KEYS)
    if not sent or not (subject or "@" in lines[i]):
        return False
    for j in range(i - 1, max(-1, i - 3), -1):
        key = _head_key(lines[j])
        if any(marker in key for marker in _FORWARD_MARKERS):
            return False
    return True


def _is_underscore_rule(lines: Sequence[str], i: int) -> bool:
    """Outlook's ``_____`` rule, when a ``From:`` header follows it."""
    stripped = lines[i].strip()
    if len(stripped) < 10 or stripped.strip("_"):
        return False
    j = _next_content(lines, i + 1)
    return j is not None and _head_key(lines[j]).startswith(_FROM_KEYS)


def _history_start(lines: Sequence[str]) -> int | None:
    """Where the old message begins in a top-posted reply whose history is not ``>``-quoted.

    An "On … wrote:" counts only when it names an address and no ``>`` block follows
    it (a ``>`` block is handled by :func:`_strip_trailing_quotes`, which keeps
    interleaved answers); the Outlook markers always count.
    """
    joined = "\n" + "\n".join(lines)
    i, position = -1, 0
    for hit in _MAYBE_CANDIDATE.finditer(joined):
        i += joined.count("\n", position, hit.start() + 1)
        position = hit.start() + 1
        line = lines[i]
        found = _CANDIDATE.match(line, 0, _HEADER_CHARS)
        if found is None:
            continue
        kind = found.lastgroup
        if kind == "dashes" and _is_original_message(line):
            return i
        if kind == "rule" and _is_underscore_rule(lines, i):
            return i
        if kind == "header" and _is_header_block(lines, i):
            return i
        if kind == "attribution":
            last = _attribution_at(lines, i)
            if last is None:
                continue
            after = _next_content(lines, last + 1)
            named = "@" in lines[i] or "@" in lines[last]
            if named and (after is None or not _is_quote(lines[after])):
                return i
    return None


def _attribution_before(lines: Sequence[str], end: int) -> int | None:
    """The first line of an attribution that ends at ``end - 1``, if one does."""
    last = end - 1
    if last < 0:
        return None
    if _attribution_at(lines, last) == last:
        return last
    if last >= 1 and _attribution_at(lines, last - 1) == last:
        return last - 1
    return None


def _strip_trailing_quotes(lines: Sequence[str]) -> tuple[int, bool]:
    """How many leading ``lines`` remain once trailing ``>`` blocks (and their
    attributions) are gone, and whether any went.

    Only blocks at the end go: a quote followed by an answer is an interleaved reply
    and stays, since the answers make no sense without it.
    """
    end = len(lines)
    dropped = False
    while True:
        start, quoted = end, False
        while start > 0:  # the run of quote and blank lines at the end
            line = lines[start - 1]
            if line.startswith(">"):
                quoted = True
            elif line.strip():
                break
            start -= 1
        if not quoted:
            return start, dropped
        dropped = True
        end = start
        attribution = _attribution_before(lines, end)
        if attribution is not None:
            end = attribution


def _signature_start(lines: Sequence[str]) -> int | None:
    """The last ``-- `` separator with no quote below it: the requester's signature."""
    for i in range(len(lines) - 1, -1, -1):
        if _is_quote(lines[i]):
            return None
        if lines[i].rstrip() == "--":
            return i
    return None


def _has_content(lines: Sequence[str]) -> bool:
    return any(not _is_blank(line) and not _is_quote(line) for line in lines)


def strip_quoted(text: str) -> str:
    """The requester's mail without the history their mail client quoted below it.

    Chat shows only what is new; the stored article keeps everything. Cuts at an
    Outlook-style history (``-----Original Message-----``, a ``_____`` rule or a
    ``From:``/``Sent:`` block) or an unquoted "On … wrote:" naming an address, then
    drops ``>`` blocks (with their "On … wrote:" line, in English, German, French,
    Spanish, Dutch, Italian or Portuguese, Gmail's two-line wrap included) that only a
    blank line or a ``-- `` signature follows. Interleaved answers are kept. When
    nothing new would remain the input comes back unchanged, so a forward or a bare
    quote is never shown as empty. Line by line with bounded look-around: linear time.
    """
    lines = text.splitlines()
    cut = _history_start(lines)
    if cut is None and ">" not in text:
        return text
    head = lines if cut is None else lines[:cut]
    signature_at = _signature_start(head)
    body = head if signature_at is None else head[:signature_at]
    end, dropped = _strip_trailing_quotes(body)
    if dropped and _has_content(body[:end]):
        result = _trim_blank_lines("\n".join(body[:end]))
        if signature_at is not None:
            result += "\n\n" + _trim_blank_lines("\n".join(head[signature_at:]))
        return result
    if cut is not None and _has_content(head):
        return _trim_blank_lines("\n".join(head))
    return text
