"""Plain-text rendering for the terminal.

Email text is untrusted: control characters (terminal escape sequences could
rewrite the screen or the title) are replaced before anything is printed.
"""

from __future__ import annotations

import re

from bot.chat import ArticleView, TicketView

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """Text with escape sequences, other control characters and bidi overrides made visible."""
    return _CONTROL.sub("\ufffd", text)


def indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in safe(text).splitlines() or [""])


def ticket_block(ticket: TicketView, *, preview: bool = True) -> str:
    lines = [
        f"━━ 🎫 [Ticket#{ticket.number}] {safe(ticket.subject) or '(no subject)'}",
        f"   {ticket.status_line}",
        f"   from {safe(ticket.requester)}",
    ]
    if preview and ticket.preview:
        lines.append(indent(ticket.preview, "   │ "))
    return "\n".join(lines)


def article_block(ticket_number: str, article: ArticleView) -> str:
    head = f"  ↳ [{ticket_number}] {safe(article.heading)} · {article.created_at:%Y-%m-%d %H:%M}"
    lines = [head]
    if article.subject:
        lines.append(f"    Subject: {safe(article.subject)}")
    lines.append(indent(article.body, "    │ "))
    for name in article.attachments:
        lines.append(f"    📎 {safe(name)}")
    return "\n".join(lines)


def update_line(ticket: TicketView) -> str:
    return f"  ✎ [Ticket#{ticket.number}] now {ticket.status_line}"


def notice_line(ticket_number: str, text: str) -> str:
    return f"  • [{ticket_number}] {safe(text)}"
