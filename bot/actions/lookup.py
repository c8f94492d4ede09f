"""Reading, not changing: show, search, history, templates, languages.

Results only ever list tickets of queues the asker works in; what they cannot act
on they cannot read either.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

from bot.actions import Action
from bot.config import Config
from bot.domain import Actor, ArticleKind, Ticket, TicketError
from bot.privacy import hide_requester, mask, pseudonym, pseudonym_key
from bot.replies import describe_templates
from bot.repository import Repository
from bot.search import PAGE_SIZE, format_results, parse_search
from bot.timeparse import format_duration

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")


def visible_queues(config: Config, actor: Actor) -> list[str]:
    """The queues whose tickets the actor may see: volunteers, trainees and readers."""
    return [q.name for q in config.queues if q.may_read(actor)]


def show(repo: Repository, ticket: Ticket, key: bytes | None = None) -> str:
    """The ticket with its history; with a pseudonym ``key``, the requester stays hidden."""
    text = _show(repo, ticket)
    if key is None:
        return text
    alias = pseudonym(ticket.requester_email, key)
    return hide_requester(text, ticket.requester_email, ticket.requester_name, alias)


def _show(repo: Repository, ticket: Ticket) -> str:
    articles = repo.articles(ticket.id or 0)
    owner = ticket.owner_label or "nobody"
    state = ticket.state.label
    if ticket.pending_until is not None:
        state += f" until {ticket.pending_until:%Y-%m-%d %H:%M} UTC"
    lines = [
        f"[Ticket#{ticket.number}] {ticket.subject}",
        f"Queue {ticket.queue} · {state} · owner: {owner} · priority {ticket.priority}",
        f"Requester: {ticket.requester_email}"
        + (f" · language {ticket.language}" if ticket.language else ""),
    ]
    if ticket.tags:
        lines.append("Tags: " + ", ".join(ticket.tags))
    if ticket.merged_into is not None:
        lines.append(f"Merged into: {repo.ticket_by_id(ticket.merged_into).number}")
    if ticket.linked_to is not None:
        lines.append(f"Continues: {repo.ticket_by_id(ticket.linked_to).number}")
    lines.append(f"{len(articles)} message(s):")
    for article in articles:
        sent = f" [{article.send_state.value}]" if article.send_state else ""
        held = f" [held, id {article.id}]" if article.held else ""
        first_line = next((ln for ln in article.body.splitlines() if ln.strip()), "")
        kind = "auto-reply" if article.kind is ArticleKind.AUTO_REPLY else article.kind.value
        lines.append(
            f"- {article.created_at:%Y-%m-%d %H:%M} {kind}{sent}{held} "
            f"{article.author_name or article.author}: {first_line[:120]}"
        )
    history = repo.history(ticket.id or 0)
    if history:
        lines.append("History:")
        for entry in history[-40:]:
            who = entry.actor_name or entry.actor_id
            detail = f": {entry.detail}" if entry.detail else ""
            lines.append(f"- {entry.at:%Y-%m-%d %H:%M} {entry.action} by {who}{detail[:200]}")
    return "\n".join(lines)


def search(
    repo: Repository, actor: Actor, args: str, queues: list[str], config: Config | None = None
) -> str:
    """``queues``: those the asker works in, and, for an answer all of a room reads, that
    room shows."""
    query, page = parse_search(args, actor.user_id)
    if not queues:
        raise TicketError(
            "You are not a volunteer of any queue shown here, so there is nothing to search."
        )
    result = repo.search(query, queues, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    hidden = {q.name for q in config.queues if q.pseudonymize} if config is not None else set()
    if hidden & {hit.queue for hit in result.hits}:
        key = pseudonym_key(repo)
        result = replace(
            result,
            hits=[
                replace(
                    hit,
                    requester_email=pseudonym(hit.requester_email, key),
                    subject=mask(hit.subject),
                )
                if hit.queue in hidden
                else hit
                for hit in result.hits
            ],
        )
    return format_results(result, page, PAGE_SIZE, args)


def requester_history(repo: Repository, args: str, queues: list[str]) -> str:
    address = args.strip().strip("<>").lower()
    if "@" not in address or " " in address:
        raise TicketError("Usage: history EMAIL, e.g. history maria@example.net")
    visible = set(queues)
    tickets = [t for t in repo.tickets_of_requester(address, 200) if t.queue in visible]
    if not tickets:
        return f"No tickets from {address} in your queues."
    lines = [f"{len(tickets)} ticket(s) from {address} (newest first):"]
    for t in tickets[:30]:
        lines.append(
            f"{t.number} · {t.state.label} · {t.queue} · {t.created_at:%Y-%m-%d} · {t.subject[:80]}"
        )
    if len(tickets) > 30:
        lines.append(f"… and {len(tickets) - 30} older.")
    return "\n".join(lines)


def templates(config: Config, actor: Actor) -> str:
    language = next((q.language for q in config.queues if q.may_act(actor)), "en")
    if not config.templates:
        return "No templates yet; an admin adds them under [templates] in bot.toml."
    return describe_templates(config.templates, language)


def languages(repo: Repository, actor: Actor, args: str, now: datetime) -> str:
    codes = [c.lower().strip(",") for c in args.split() if c.strip(",")]
    if not codes:
        have = repo.volunteer_languages(actor.user_id)
        if not have:
            return "You have not listed languages yet: languages de en"
        return "You answer in: " + ", ".join(have)
    bad = [c for c in codes if not _LANGUAGE.match(c)]
    if bad:
        raise TicketError(f"{bad[0][:20]!r} is not a language code (de, en, pt-br, ...).")
    codes = list(dict.fromkeys(codes))[:20]
    repo.set_volunteer_languages(actor.user_id, codes, now)
    repo.audit(now, actor, "volunteer.languages", None, " ".join(codes))
    return "Noted: you answer in " + ", ".join(codes) + ". Reminders ask you first for these."


def reveal(action: Action) -> str:
    """The requester's real address, for the asker alone; the audit log says who looked."""
    ticket = action.ticket
    action.audit("requester address shown", action="ticket.reveal")
    name = f"{ticket.requester_name} " if ticket.requester_name else ""
    return f"Ticket {ticket.number}: the requester is {name}<{ticket.requester_email}>."


def mine(repo: Repository, actor: Actor, queues: list[str], config: Config) -> str:
    """My open tickets, in the queues I still see (and, in a room, that room's)."""
    visible = set(queues)
    tickets = [t for t in repo.tickets_owned(actor.user_id, 200) if t.queue in visible][:51]
    hidden = {q.name for q in config.queues if q.pseudonymize}
    for ticket in tickets:
        if ticket.queue in hidden:
            ticket.subject = mask(ticket.subject)
    if not tickets:
        return "You hold no open tickets. search owner:none finds unclaimed ones."
    lines = [f"Your open tickets ({len(tickets) if len(tickets) <= 50 else '50+'}):"]
    for t in tickets[:50]:
        lines.append(
            f"{t.number} · {t.state.label} · {t.queue} · updated {t.updated_at:%Y-%m-%d} "
            f"· {t.subject[:70]}"
        )
    return "\n".join(lines)


def queue_status(config: Config, repo: Repository, queues: list[str], now: datetime) -> str:
    """Per queue the asker sees: new, open, pending, and how long the oldest has waited."""
    if not queues:
        raise TicketError("You are not a volunteer of any queue shown here.")
    overview = repo.queue_overview(queues)
    lines = ["Queue status (oldest waiting: new or open, by arrival):"]
    for name in queues:
        states = overview[name]["states"]
        pending = sum(v for k, v in states.items() if k.startswith("pending"))
        oldest = overview[name]["oldest_waiting"]
        waited = format_duration(now - oldest) if oldest is not None else "-"
        closed = " (closed to new mail)" if config.queue(name).closed_to else ""
        lines.append(
            f"{name}{closed}: {states.get('new', 0)} new · {states.get('open', 0)} open · "
            f"{pending} pending · oldest waiting {waited}"
        )
    return "\n".join(lines)
