"""Turning the core's ticket and article views into Matrix ``m.room.message`` contents.

Pure functions, so the safety rules can be tested without a homeserver:

* every content carries ``"m.mentions": {}``: email text must never ping anyone;
* the plain ``body`` is defanged (:func:`adapters.matrix.text.defang`) for clients
  that still apply the legacy body-matching push rules;
* ``formatted_body`` only contains tags we write ourselves (``p``, ``b``, ``i``,
  ``br``, ``blockquote``), and every piece of email text inside it is escaped;
* the one exception is a ping (:func:`ping_contents`): the bot's own reminder names
  the volunteers it is for in ``m.mentions`` and as pills, and nobody else;
* a long article or notice becomes several messages, each within the event limit.
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.matrix.split import (
    MAX_BODY_BYTES,
    MAX_CONTENT_BYTES,
    Budget,
    Line,
    join_html,
    join_plain,
    line_cost,
    pack,
)
from adapters.matrix.text import content_len, escape, json_len, safe, shorten, utf8_len
from bot.chat import ArticleView, TicketView

Content = dict[str, Any]

HTML_FORMAT = "org.matrix.custom.html"
#: Longest subject, sender or status field shown; a header cannot fill a message.
FIELD_LIMIT = 300
#: The root message is one event that is edited in place, so its preview stays short.
PREVIEW_LINES = 12
PREVIEW_CHARS = 200
ATTACHMENTS_SHOWN = 50
_NOTHING = Budget(0, 0)
#: Widest label a part can carry, used when reserving room for it.
_WIDEST_LABEL = "(part 99999/99999)"


# --- relations ---------------------------------------------------------------------------------


def thread_relation(root: str, reply_to: str | None = None) -> Content:
    """In the thread of ``root``; a reply to ``reply_to`` inside it when given.

    Without ``reply_to`` the reply fallback points at the root (``is_falling_back``),
    so clients without thread support still show the message under the ticket.
    """
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": reply_to is None,
        "m.in_reply_to": {"event_id": reply_to or root},
    }


def reply_relation(event_id: str) -> Content:
    """A plain reply, for answers to commands given outside a thread."""
    return {"m.in_reply_to": {"event_id": event_id}}


# --- the ticket's root message ---------------------------------------------------------------


def ticket_content(ticket: TicketView) -> Content:
    """The root message: headline, state · owner · queue, requester, and a short preview."""
    headline = f"🎫 {ticket.headline}"
    status = shorten(ticket.status_line, FIELD_LIMIT)
    requester = f"From: {shorten(ticket.requester, FIELD_LIMIT)}"
    preview = _preview(ticket.preview)
    plain = [safe(shorten(headline, FIELD_LIMIT)), safe(status), safe(requester)]
    plain += [f"> {safe(line)}" for line in preview]
    formatted = (
        f"<p><b>{escape(shorten(headline, FIELD_LIMIT))}</b><br>"
        f"{escape(status)}<br>{escape(requester)}</p>"
    )
    if preview:
        quoted = "<br>".join(escape(line) for line in preview)
        formatted += f"<blockquote>{quoted}</blockquote>"
    return _message("m.text", "\n".join(plain), formatted)


def ticket_edit_content(root: str, ticket: TicketView) -> Content:
    """An edit (``m.replace``) of the root message, with the ``* `` fallback the spec asks for."""
    new = ticket_content(ticket)
    edit = _message("m.text", f"* {new['body']}", f"* {new['formatted_body']}")
    edit["m.new_content"] = new
    edit["m.relates_to"] = {"rel_type": "m.replace", "event_id": root}
    return edit


def _preview(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [shorten(line, PREVIEW_CHARS) for line in lines[:PREVIEW_LINES]]


# --- articles and notices ----------------------------------------------------------------------


def article_contents(article: ArticleView, relates_to: Content | None) -> list[Content]:
    """One article as one or more messages: heading, time, subject, body, attachments."""
    meta = [Line(_timestamp(article.created_at), "i")]
    if article.send_state:
        meta[0] = Line(f"{meta[0].text} · email {article.send_state}", "i")
    if article.subject:
        meta.append(Line(safe(f"Subject: {shorten(article.subject, FIELD_LIMIT)}")))
    body = safe(article.body).strip("\n")
    lines = [*meta, Line("")]
    lines += [Line(text) for text in body.split("\n")] if body else [Line("(no text)", "i")]
    if article.attachments:
        lines += [Line(""), Line("📎 Attachments:", "b")]
        shown = article.attachments[:ATTACHMENTS_SHOWN]
        lines += [Line(safe(f"• {shorten(name, FIELD_LIMIT)}")) for name in shown]
        if len(article.attachments) > len(shown):
            more = len(article.attachments) - len(shown)
            lines.append(Line(f"… and {more} more", "i"))
    heading = safe(shorten(article.heading, FIELD_LIMIT))
    return _parts("m.text", heading, lines, relates_to)


def notice_contents(
    text: str, relates_to: Content | None, actions: Sequence[str] = ()
) -> list[Content]:
    """A line (or, for ``show``, a page) from the bot, as ``m.notice`` messages.

    ``actions`` (commands offered right there, such as ``undo``) add a line saying how
    to give them: Matrix has no buttons.
    """
    lines = _lines(text)
    hint = action_hint(actions)
    if hint:
        lines.append(Line(hint, "i"))
    contents = _parts("m.notice", None, lines, relates_to)
    offered = [name for name in dict.fromkeys(actions) if _ACTION_NAME.match(name)]
    if offered:
        for content in contents:
            content[ACTIONS_KEY] = offered
    return contents


#: Content key naming the actions a notice offers (``["approve"]``). A reaction on the
#: notice is read against it, so ✅ under a draft approves it, even after a restart of
#: the bot, while ✅ anywhere else in the ticket's thread still closes the ticket. (A few
#: bytes, well within what ``MAX_CONTENT_BYTES`` leaves below the event limit.)
ACTIONS_KEY = "org.ticketbot.actions"
_ACTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: How an action offered under a notice is given in Matrix, by command name.
_ACTION_HINTS = {
    "undo": "send !undo in this thread, or react ↩️ to this message, to stop it",
    "approve": "send !approve in this thread, or react ✅ to this message, to send it",
}


def action_hint(actions: Sequence[str]) -> str:
    """``(send !undo in this thread, or react ↩️ to this message, to stop it)``; "" without
    actions."""
    hints = [
        _ACTION_HINTS.get(name, f"send !{name} in this thread")
        for name in dict.fromkeys(actions)
        if _ACTION_NAME.match(name)
    ]
    return f"({'; '.join(hints)})" if hints else ""


# --- pings ----------------------------------------------------------------------------------

#: A Matrix user id: ``@localpart:server`` (historical localparts allow most printable ASCII).
_USER_ID = re.compile(
    r"^@[\x21-\x39\x3b-\x7e]+:(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
#: Most users one ping names; a reminder is for a few volunteers, not a crowd.
MAX_PINGED = 50
PING_MARK = "🔔"


def matrix_user_ids(users: Sequence[str]) -> list[str]:
    """The Matrix ids among the core's user ids, once each, in order (``discord:1`` is not)."""
    ids = [user for user in dict.fromkeys(users) if len(user) <= 255 and _USER_ID.match(user)]
    return ids[:MAX_PINGED]


def user_pill(user_id: str) -> str:
    """A mention pill: ``<a href="https://matrix.to/#/@u:s">@u:s</a>``."""
    href = "https://matrix.to/#/" + urllib.parse.quote(user_id, safe="@:[]")
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(user_id, quote=True)}</a>'


def ping_contents(text: str, users: Sequence[str], relates_to: Content | None) -> list[Content]:
    """A reminder from the bot that notifies exactly the Matrix users among ``users``.

    ``m.text``, not ``m.notice``: the default push rules never notify for notices. The
    first message names the users in ``m.mentions`` and as pills on its first line;
    the text itself is escaped and defanged like every other text, so it can ping
    nobody, and ``@room`` is never used. A text too long for one message continues in
    parts that mention nobody.
    """
    ids = matrix_user_ids(users)
    if not ids:
        return _parts("m.text", None, [Line(PING_MARK), *_lines(text)], relates_to)
    plain = f"{PING_MARK} " + ", ".join(ids)
    formatted = f"{PING_MARK} " + ", ".join(user_pill(user) for user in ids)
    reserve = Budget(
        utf8_len(plain) + 1,
        json_len(plain)
        + 2
        + json_len(formatted)
        + len("<br>")
        + utf8_len(json.dumps({"user_ids": ids}, ensure_ascii=False)),
    )
    contents = _parts("m.text", None, _lines(text), relates_to, reserve)
    first = contents[0]
    first["body"] = f"{plain}\n{first['body']}"
    first["formatted_body"] = f"{formatted}<br>{first['formatted_body']}"
    first["m.mentions"] = {"user_ids": ids}
    return contents


def _lines(text: str) -> list[Line]:
    return [Line(line) for line in safe(text).strip("\n").split("\n")]


def permalink(room: str, event_id: str, via: str = "") -> str:
    """``https://matrix.to/#/!room:server/$event`` (the ids URL-quoted, as the spec shows)."""
    link = (
        "https://matrix.to/#/"
        + urllib.parse.quote(room, safe="!")
        + "/"
        + urllib.parse.quote(event_id, safe="$")
    )
    return f"{link}?via={urllib.parse.quote(via, safe='')}" if via else link


def _parts(
    msgtype: str,
    heading: str | None,
    lines: Sequence[Line],
    relates_to: Content | None,
    reserve: Budget = _NOTHING,
) -> list[Content]:
    """Render ``lines`` under ``heading`` as few messages as the size limits allow.

    ``reserve`` is room kept free in every message for what the caller adds to one.
    """

    def build(header: tuple[str, str] | None, chunk: Sequence[Line]) -> Content:
        plain, formatted = join_plain(chunk), join_html(chunk)
        if header is not None:
            plain = f"{header[0]}\n{plain}" if chunk else header[0]
            formatted = f"{header[1]}<br>{formatted}" if chunk else header[1]
        content = _message(msgtype, plain, formatted)
        if relates_to is not None:
            content["m.relates_to"] = relates_to
        return content

    limit = Budget(MAX_BODY_BYTES, MAX_CONTENT_BYTES - content_len(build(None, []))).minus(reserve)
    whole = _header_cost(heading, None)
    for line in lines:
        cost = line_cost(line)
        whole = Budget(whole.body + cost.body, whole.json + cost.json)
    if limit.fits(whole):
        return [build(_header(heading, None), lines)]
    chunks = pack(lines, limit.minus(_header_cost(heading, _WIDEST_LABEL)))
    total = len(chunks)
    return [
        build(_header(heading, f"(part {index}/{total})"), chunk)
        for index, chunk in enumerate(chunks, start=1)
    ]


def _header(heading: str | None, label: str | None) -> tuple[str, str] | None:
    """The first line of a message (plain, HTML): the bold heading and the part label."""
    if heading is None and label is None:
        return None
    plain = " ".join(part for part in (heading, label) if part)
    pieces = []
    if heading:
        pieces.append(f"<b>{escape(heading)}</b>")
    if label:
        pieces.append(f"<i>{label}</i>")
    return plain, " ".join(pieces)


def _header_cost(heading: str | None, label: str | None) -> Budget:
    header = _header(heading, label)
    if header is None:
        return Budget(0, 0)
    plain, formatted = header
    # the separator after the header is counted by each line's own cost
    return Budget(utf8_len(plain), json_len(plain) + json_len(formatted))


def _message(msgtype: str, body: str, formatted: str) -> Content:
    return {
        "msgtype": msgtype,
        "body": body,
        "format": HTML_FORMAT,
        "formatted_body": formatted,
        "m.mentions": {},
    }


def _timestamp(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
