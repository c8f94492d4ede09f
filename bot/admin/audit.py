"""``audit``: read the log of who did what. Nothing in the bot changes or deletes it."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.admin.action import AdminAction, subject_of, take_option
from bot.domain import TicketError
from bot.timeparse import parse_duration

USAGE = "audit [--user USER] [--ticket NUMBER] [--since DATE|DURATION] [--page N]"
PAGE = 25


def run(act: AdminAction) -> str:
    user = take_option(act.words, "--user")
    number = take_option(act.words, "--ticket")
    since_text = take_option(act.words, "--since")
    page_text = take_option(act.words, "--page") or "1"
    if act.words:
        raise TicketError(f"Unknown words {' '.join(act.words)!r}. Usage: {USAGE}")
    if not page_text.isdigit() or int(page_text) < 1:
        raise TicketError(f"--page {page_text!r} is not a page number")
    page = int(page_text)
    ticket_id = None
    if number is not None:
        ticket = act.repo.ticket_by_number(number.lstrip("#"))
        if ticket is None:
            raise TicketError(f"There is no ticket {number}.")
        ticket_id = ticket.id
    since = _since(since_text, act.now) if since_text else None
    subject = subject_of(user, act.platform) if user else None
    entries = act.repo.audit_log(
        user=subject, ticket_id=ticket_id, since=since, limit=PAGE + 1, offset=(page - 1) * PAGE
    )
    more = len(entries) > PAGE
    entries = entries[:PAGE]
    if not entries:
        return "No audit entries match." if page == 1 else f"No entries on page {page}."
    numbers: dict[int, str] = {}
    lines = []
    for entry in entries:
        where = ""
        if entry.ticket_id is not None:
            if entry.ticket_id not in numbers:
                numbers[entry.ticket_id] = act.repo.ticket_by_id(entry.ticket_id).number
            where = f" #{numbers[entry.ticket_id]}"
        change = ""
        if entry.before or entry.after:
            change = f" ({_cut(entry.before) or '-'} → {_cut(entry.after) or '-'})"
        lines.append(
            f"{entry.at:%Y-%m-%d %H:%M} {entry.actor_id} {entry.action}{where}: "
            f"{_cut(entry.detail, 120)}{change}"
        )
    tail = f"\nMore: audit ... --page {page + 1}" if more else ""
    return f"Audit log, newest first (page {page}):\n" + "\n".join(lines) + tail


def _since(text: str, now: datetime) -> datetime:
    duration = parse_duration(text)
    if duration is not None:
        return now - duration
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise TicketError(
            f"--since {text!r} is not a date (YYYY-MM-DD) or a duration (7d)"
        ) from None


def _cut(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
