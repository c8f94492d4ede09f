"""Tickets changing place: move to another queue, merge into another ticket, held mail.

A move or merge changes which room shows a ticket, so besides the state change it
queues chat work: the new room gets the ticket with its history, the old post is
marked as moved with a pointer to the new one.
"""

from __future__ import annotations

from bot.actions import Action, announce, ticket_id
from bot.domain import SYSTEM, Ticket, TicketError, TicketState


def move(action: Action) -> str:
    target_name = action.args.strip()
    if not target_name:
        raise TicketError("Usage: move [NUMBER] QUEUE")
    target = action.config.find_queue(target_name)
    if target is None:
        names = ", ".join(q.name for q in action.config.queues)
        raise TicketError(f"There is no queue {target_name[:60]!r}. Queues: {names}.")
    ticket = action.ticket
    old = action.queue
    if target.name == old.name:
        raise TicketError(f"Ticket {ticket.number} is already in queue {old.name}.")
    old_bindings = old.bindings(action.config)
    new_bindings = target.bindings(action.config)
    ticket.queue = target.name
    released = ""
    by_role = bool(ticket.owner and ticket.owner.startswith("discord:") and target.discord_roles)
    if ticket.owner is not None and ticket.owner not in target.volunteers and not by_role:
        # access follows the target queue: a claim by someone who cannot act there ends
        released = f"; {ticket.owner_label}'s claim ends (not a volunteer there)"
        ticket.release(action.now)
    ticket.updated_at = action.now
    action.repo.save_ticket(ticket)
    action.audit(f"{old.name} -> {target.name}{released}")
    tid = action.ticket_id
    for platform in sorted(set(old_bindings) | set(new_bindings)):
        old_room, new_room = old_bindings.get(platform), new_bindings.get(platform)
        post = action.repo.chat_post(tid, platform)
        if old_room == new_room:
            # same room for both queues: the post stays; say so and refresh it
            action.repo.enqueue(
                platform,
                "notice",
                tid,
                action.now,
                payload={"text": f"➡ Moved to queue {target.name} by {action.actor.label}"},
            )
            action.repo.enqueue(platform, "update_ticket", tid, action.now)
            continue
        if new_room is not None:
            # the ticket and its history appear in the new room (or, if it was never
            # posted on this platform, it is simply posted there)
            action.repo.enqueue(platform, "post_ticket", tid, action.now, payload={"history": True})
        if post is not None and old_room is not None:
            action.repo.enqueue(
                platform,
                "move_out",
                tid,
                action.now,
                payload={
                    "room": post.room,
                    "root_ref": post.root_ref,
                    "queue": target.name,
                    "from_queue": old.name,
                    "by": action.actor.label,
                },
            )
    return f"Ticket {ticket.number} moved to queue {target.name}{released}."


def merge(action: Action, other: str) -> str:
    """Fold this ticket into ``other``: its articles become the other's, it becomes merged."""
    target = action.repo.ticket_by_number(other)
    if target is None:
        raise TicketError(f"There is no ticket {other}.")
    target_queue = action.config.queue(target.queue)
    if not target_queue.may_act(action.actor):
        raise TicketError(
            f"Ticket {target.number} is in queue {target.queue}, where you are not a volunteer."
        )
    source = action.ticket
    if target.state is TicketState.SPAM:
        raise TicketError(f"Ticket {target.number} is spam; merge into a real ticket.")
    if target.state.is_closed and target.state is not TicketState.MERGED:
        target.reopen(action.now)
    source.merge_into(target, action.now)
    moved = action.repo.move_articles(ticket_id(source), ticket_id(target))
    target.updated_at = action.now
    action.repo.save_ticket(source)
    action.repo.save_ticket(target)
    action.audit(f"merged into {target.number} ({len(moved)} article(s))")
    action.audit(f"{source.number} merged in ({len(moved)} article(s))", ticket=target)
    announce(
        action.config,
        action.repo,
        source,
        action.now,
        f"⤵ Merged into ticket {target.number} by {action.actor.label}; "
        "its messages continue there.",
    )
    announce(
        action.config,
        action.repo,
        target,
        action.now,
        f"⤴ Ticket {source.number} ({source.subject[:80]}) merged into this one by "
        f"{action.actor.label}; its {len(moved)} message(s) follow.",
    )
    for channel in target_queue.bindings(action.config):
        for article_id in moved:
            action.repo.enqueue(
                channel, "post_article", ticket_id(target), action.now, article_id=article_id
            )
    return f"Ticket {source.number} merged into {target.number}."


def _held(action: Action) -> int:
    text = action.args.strip().lstrip("#")
    if not text.isdigit():
        raise TicketError(f"Usage: {action.name} [NUMBER] ID (the held mail's id in its notice)")
    article_id = int(text)
    held = [a for a in action.repo.articles(action.ticket_id) if a.id == article_id and a.held]
    if not held:
        raise TicketError(f"Ticket {action.ticket.number} has no held mail {article_id}.")
    return article_id


def attach(action: Action) -> str:
    """Accept held mail from an unknown sender: it joins the ticket, they a participant."""
    article_id = _held(action)
    action.repo.set_article_held(article_id, False)
    action.audit(f"held article {article_id} attached")
    action.announce(f"📎 Held mail {article_id} attached to this ticket by {action.actor.label}")
    return f"Mail {article_id} attached."


def open_as_new(action: Action) -> str:
    """Held mail becomes its own ticket, linked to this one, in the same queue."""
    article_id = _held(action)
    article = action.repo.article(article_id)
    number = action.repo.next_ticket_number(action.now.date(), action.config.tickets.system_id)
    new = action.repo.add_ticket(
        Ticket(
            id=None,
            number=number,
            queue=action.ticket.queue,
            subject=article.subject,
            requester_email=article.author,
            requester_name=article.author_name,
            created_at=action.now,
            updated_at=action.now,
            linked_to=action.ticket_id,
            language=action.ticket.language,
        )
    )
    action.repo.move_article(article_id, ticket_id(new))
    action.audit(f"held article {article_id} opened as ticket {new.number}")
    action.repo.audit(
        action.now,
        SYSTEM,
        "ticket.created",
        new.id,
        f"from held mail of {action.ticket.number}, by {action.actor.label}",
    )
    action.announce(
        f"🆕 Held mail {article_id} opened as new ticket {new.number} by {action.actor.label}"
    )
    for channel in action.queue.bindings(action.config):
        action.repo.enqueue(channel, "post_ticket", ticket_id(new), action.now)
    return f"Opened as ticket {new.number}."
