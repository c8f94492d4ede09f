"""Plain-text rendering for the terminal.

Email text is untrusted: control characters (terminal escape sequences could
rewrite the screen or the title) are replaced before anything is printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
        f"   {safe(ticket.status_line)}",
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
    return f"  ✎ [Ticket#{ticket.number}] now {safe(ticket.status_line)}"


#: How an action offered under a notice is typed on the console, by command name.
_ACTION_HINTS = {"undo": "type !undo to stop it"}


def action_hint(actions: Sequence[str]) -> str:
    """``(type !undo to stop it)``; "" without actions."""
    hints = [_ACTION_HINTS.get(name, f"type !{name}") for name in dict.fromkeys(actions)]
    return f"({'; '.join(safe(hint) for hint in hints)})" if hints else ""


def notice_line(ticket_number: str, text: str, actions: Sequence[str] = ()) -> str:
    hint = action_hint(actions)
    return f"  • [{ticket_number}] {safe(text)}" + (f" {hint}" if hint else "")


def ping_line(room: str, root_ref: str | None, text: str, users: Sequence[str]) -> str:
    """``  🔔 [Ticket#N] text → @a, @b`` (``[queue Q]`` for a reminder about no one ticket)."""
    where = f"Ticket#{root_ref}" if root_ref else f"queue {room}"
    who = ", ".join(safe(user) for user in dict.fromkeys(users)) or "nobody"
    return f"  🔔 [{safe(where)}] {safe(text)} → {who}"


def pointer(room: str, root_ref: str) -> str:
    """``queue support · Ticket#2026…``: the console's stand-in for a link."""
    return safe(f"queue {room} · Ticket#{root_ref}")
