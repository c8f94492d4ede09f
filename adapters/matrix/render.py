"""Turning the core's ticket and article views into Matrix ``m.room.message`` contents.

Pure functions, so the safety rules can be tested without a homeserver:

* every content carries ``"m.mentions": {}``: email text must never ping anyone;
* the plain ``body`` is defanged (:func:`adapters.matrix.text.defang`) for clients
  that still apply the legacy body-matching push rules;
* ``formatted_body`` only contains tags we write ourselves (``p``, ``b``, ``i``,
  ``br``, ``blockquote``), and every piece of email text inside it is escaped;
* a long article or notice becomes several messages, each within the event limit.
"""

from __future__ import annotations

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


def notice_contents(text: str, relates_to: Content | None) -> list[Content]:
    """A line (or, for ``show``, a page) from the bot, as ``m.notice`` messages."""
    lines = [Line(line) for line in safe(text).strip("\n").split("\n")]
    return _parts("m.notice", None, lines, relates_to)


def _parts(
    msgtype: str, heading: str | None, lines: Sequence[Line], relates_to: Content | None
) -> list[Content]:
    """Render ``lines`` under ``heading`` as few messages as the size limits allow."""

    def build(header: tuple[str, str] | None, chunk: Sequence[Line]) -> Content:
        plain, formatted = join_plain(chunk), join_html(chunk)
        if header is not None:
            plain = f"{header[0]}\n{plain}" if chunk else header[0]
            formatted = f"{header[1]}<br>{formatted}" if chunk else header[1]
        content = _message(msgtype, plain, formatted)
        if relates_to is not None:
            content["m.relates_to"] = relates_to
        return content

    limit = Budget(MAX_BODY_BYTES, MAX_CONTENT_BYTES - content_len(build(None, [])))
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
