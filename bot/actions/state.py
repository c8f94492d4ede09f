"""Ownership and state: claim, unclaim, assign, close, pending, spam, reopen, priority, tag."""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.actions import Action
from bot.domain import SendState, TicketError
from bot.timeparse import parse_when

_TAG = re.compile(r"^[\w][\w.-]{0,39}$")
_DISCORD_MENTION = re.compile(r"^<@!?(\d{5,25})>$")


def _change(action: Action, change: Callable[[], None], notice: str) -> str:
    """Apply a state change, save it, audit before -> after, and show it in the thread."""
    ticket = action.ticket
    before = _summary(action)
    change()
    action.repo.save_ticket(ticket)
    action.audit(f"{before} -> {_summary(action)}")
    action.announce(notice)
    return notice


def _summary(action: Action) -> str:
    t = action.ticket
    pending = f" until {t.pending_until:%Y-%m-%d %H:%M}" if t.pending_until else ""
    return f"{t.state.value}{pending}/{t.owner or '-'}/p{t.priority}"


def claim(action: Action) -> str:
    return _change(
        action,
        lambda: action.ticket.claim(action.actor, action.now),
        f"✋ Claimed by {action.actor.label}",
    )


def unclaim(action: Action) -> str:
    return _change(
        action,
        lambda: action.ticket.unclaim(action.actor, action.now),
        f"↩ Unclaimed by {action.actor.label}",
    )


def normalise_user(text: str, platform: str) -> str:
    """``<@123>`` (a Discord mention) -> ``discord:123``; Matrix ids and others as typed."""
    text = text.strip()
    mention = _DISCORD_MENTION.match(text)
    if mention:
        return f"discord:{mention.group(1)}"
    if platform == "discord" and text.isdigit():
        return f"discord:{text}"
    return text


def assign(action: Action) -> str:
    if not action.args.strip():
        raise TicketError("Usage: assign [NUMBER] USER (a Matrix id, or a Discord @mention)")
    user = normalise_user(action.args.split()[0], action.actor.platform)
    queue = action.queue
    by_role = user.startswith("discord:") and bool(queue.discord_roles)
    if user not in queue.volunteers and not by_role:
        raise TicketError(
            f"{user} is not a volunteer of queue {queue.name}; tickets go to its volunteers only."
        )
    name = user.partition(":")[0].lstrip("@") if user.startswith("@") else user
    return _change(
        action,
        lambda: action.ticket.assign(user, name, action.now),
        f"👉 Assigned to {name} by {action.actor.label}",
    )


def close(action: Action) -> str:
    word = action.args.strip().lower()
    if word not in ("", "successful", "unsuccessful"):
        raise TicketError("Usage: close [NUMBER] [successful|unsuccessful]")
    successful = word != "unsuccessful"
    how = "" if successful else " (unsuccessful)"
    return _change(
        action,
        lambda: action.ticket.close(action.now, successful=successful),
        f"✅ Closed{how} by {action.actor.label}",
    )


def reopen(action: Action) -> str:
    return _change(
        action, lambda: action.ticket.reopen(action.now), f"↺ Reopened by {action.actor.label}"
    )


def pending(action: Action) -> str:
    words = action.args.split()
    kind = "reminder"
    if words and words[-1].lower() in ("reminder", "autoclose", "auto-close"):
        kind = words.pop().lower().replace("-", "")
    when = parse_when(" ".join(words), action.now) if words else None
    if when is None:
        raise TicketError(
            "Usage: pending [NUMBER] DURATION|DATE [reminder|autoclose], "
            "e.g. pending 3d, pending 2026-12-01 autoclose"
        )
    autoclose = kind == "autoclose"
    what = "closes itself" if autoclose else "comes back with a reminder"
    return _change(
        action,
        lambda: action.ticket.set_pending(when, autoclose=autoclose, now=action.now),
        f"⏸ Pending until {when:%Y-%m-%d %H:%M} UTC, then it {what} (set by {action.actor.label})",
    )


def spam(action: Action) -> str:
    """Close as spam: nothing more is sent to the sender, and the rules learn the address."""
    ticket = action.ticket
    for article in action.repo.articles(action.ticket_id):
        queued = article.send_state is SendState.QUEUED and article.id is not None
        if queued and action.repo.cancel_send(article.id or 0, action.now):
            article.send_state = SendState.CANCELLED
            action.repo.save_article_sending(article)
    action.repo.mark_sender(
        ticket.requester_email,
        "spam",
        action.now,
        f"ticket {ticket.number} by {action.actor.label}",
    )
    return _change(
        action,
        lambda: ticket.mark_spam(action.now),
        f"🚫 Marked as spam by {action.actor.label}; {ticket.requester_email} is marked for the "
        "rules and gets no mail",
    )


def priority(action: Action) -> str:
    text = action.args.strip()
    if not text.isdigit():
        raise TicketError("Usage: priority [NUMBER] 1-5 (5 is most urgent)")
    value = int(text)
    return _change(
        action,
        lambda: action.ticket.set_priority(value, action.now),
        f"Priority set to {value} by {action.actor.label}",
    )


def tag(action: Action) -> str:
    words = action.args.split()
    if len(words) < 2 or words[0].lower() not in ("add", "remove"):
        raise TicketError("Usage: tag [NUMBER] add|remove NAME")
    verb = words[0].lower()
    names = [w.lower() for w in words[1:]]
    for name in names:
        if not _TAG.match(name):
            raise TicketError(f"{name[:40]!r} is not a tag: letters, digits, - . and _, ≤ 40.")
    ticket = action.ticket
    current = set(ticket.tags)
    if verb == "add":
        if len(current | set(names)) > 20:
            raise TicketError("A ticket has at most 20 tags.")
        updated = current | set(names)
    else:
        missing = [n for n in names if n not in current]
        if missing:
            raise TicketError(f"Ticket {ticket.number} has no tag {', '.join(missing)}.")
        updated = current - set(names)

    def change() -> None:
        ticket.tags = tuple(sorted(updated))
        ticket.updated_at = action.now

    sign = "+" if verb == "add" else "−"
    return _change(action, change, f"🏷 {sign}{', '.join(names)} by {action.actor.label}")


def touch_owner(action: Action) -> None:
    """The owner worked on the ticket (a note, a reply): their claim stays fresh."""
    if action.ticket.owner == action.actor.user_id:
        action.ticket.touch_owner(action.actor, action.now)
