"""Writing to the requester and to each other: reply (with templates and undo), note, undo."""

from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass
from datetime import timedelta

from bot.actions import Action
from bot.actions.state import touch_owner
from bot.domain import Article, ArticleKind, SendState, TicketError
from bot.replies import Variables, compose_reply, render, template_text
from bot.routing import reply_subject


@dataclass(frozen=True)
class ReplyArgs:
    text: str
    force: bool = False
    template: str | None = None


def parse_reply_args(args: str) -> ReplyArgs:
    """``--force`` and ``--template NAME`` before the text; the text itself is kept as typed."""
    rest = args.lstrip()
    force = False
    template = None
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if flag == "--force":
            force = True
        elif flag == "--template":
            name, _, rest = rest.partition(" ")
            if not name.strip():
                raise TicketError("Usage: reply --template NAME [TEXT]; templates lists them.")
            template = name.strip()
            rest = rest.lstrip()
        elif flag.startswith("--template="):
            template = flag.partition("=")[2]
        else:
            raise TicketError(
                f"Unknown option {shlex.quote(flag)[:40]}; use --force or --template."
            )
    return ReplyArgs(rest.strip(), force, template)


def variables_for(action: Action) -> Variables:
    ticket = action.ticket
    return Variables(
        requester_name=ticket.requester_name,
        requester_email=ticket.requester_email,
        ticket_number=ticket.number,
        volunteer_name=action.actor.label,
        queue=action.queue.name,
        subject=ticket.subject,
    )


def reply(action: Action) -> str:
    """Store the reply first, then queue it: the email outbox sends it exactly once.

    It waits ``undo_seconds`` before it may go out, with an undo offered in the thread.
    Replying to a ticket someone else holds needs ``--force`` (collision detection); an
    unclaimed ticket becomes the replier's.
    """
    parsed = parse_reply_args(action.args)
    ticket = action.ticket
    queue = action.queue
    if ticket.state.is_closed and ticket.state.value in ("spam", "merged"):
        raise TicketError(f"Ticket {ticket.number} is {ticket.state.label}; no mail goes out.")
    if ticket.owner is not None and ticket.owner != action.actor.user_id and not parsed.force:
        raise TicketError(
            f"Ticket {ticket.number} is held by {ticket.owner_label}. Talk to them first, or "
            "send anyway with reply --force TEXT."
        )
    if "undeliverable" in action.repo.sender_marks(ticket.requester_email):
        action.announce(f"⚠ {ticket.requester_email} bounced before; this reply may not arrive.")
    language = ticket.language or queue.language
    variables = variables_for(action)
    body = parsed.text
    if parsed.template is not None:
        text = render(
            template_text(action.config.templates, parsed.template, language, queue.language),
            variables,
        )
        body = f"{text}\n\n{body}".strip() if body else text
    if not body:
        raise TicketError("Usage: reply [NUMBER] [--force] [--template NAME] TEXT")
    previous = requesters_last_mail(action)
    full = compose_reply(
        body, queue=queue, variables=variables, language=language, previous=previous
    )
    references: tuple[str, ...] = ()
    in_reply_to = ""
    if previous is not None and previous.message_id:
        in_reply_to = previous.message_id
        references = (*previous.references[-20:], previous.message_id)
    trainee = queue.level(action.actor) == "trainee"
    domain = queue.reply_address.rpartition("@")[2]
    article = action.repo.add_article(
        Article(
            id=None,
            ticket_id=action.ticket_id,
            kind=ArticleKind.REPLY,
            author=action.actor.user_id,
            author_name=action.actor.label,
            subject=reply_subject(ticket.number, ticket.subject),
            body=full,
            created_at=action.now,
            message_id=f"<ticketbot.{ticket.number}.{uuid.uuid4().hex[:16]}@{domain}>",
            in_reply_to=in_reply_to,
            references=references,
            to=(ticket.requester_email,),
            send_state=SendState.AWAITING_APPROVAL if trainee else SendState.QUEUED,
        )
    )
    forced = ""
    if ticket.owner is None and not ticket.state.is_closed:
        ticket.claim(action.actor, action.now)
    elif ticket.owner != action.actor.user_id:
        forced = f" (forced over {ticket.owner_label}'s claim)"
    touch_owner(action)
    ticket.mark_answered(action.now)
    action.repo.save_ticket(ticket)
    action.audit(
        f"article {article.id}{forced}"
        + (f" template {parsed.template}" if parsed.template else "")
    )
    if trainee:
        action.post("post_article", article_id=article.id)
        action.announce(
            f"📝 Draft reply by {action.actor.label} (trainee) waits for a volunteer of "
            f"{queue.name}: approve sends it, undo withdraws it.",
            actions=("approve",),
        )
        return "Draft stored; it is sent when a volunteer of the queue approves it."
    delay = action.config.tickets.undo_seconds
    action.repo.enqueue(
        "email",
        "send_reply",
        action.ticket_id,
        action.now,
        article_id=article.id,
        due_at=action.now + timedelta(seconds=delay),
    )
    action.post("post_article", article_id=article.id)
    if delay > 0:
        action.announce(
            f"✉ Reply by {action.actor.label}{forced} goes out in {delay:.0f} s.",
            actions=("undo",),
        )
    else:
        action.post("update_ticket")
    return f"Reply queued for {ticket.requester_email}."


def requesters_last_mail(action: Action) -> Article | None:
    """The mail a reply answers and quotes: the requester's own latest, written by a person.

    Never an out-of-office or bounce, never mail held from a stranger, and never mail of
    another sender (after a merge a ticket can hold several people's mail): quoting it
    would send one person's words to another.
    """
    requester = action.ticket.requester_email.lower()
    for article in reversed(action.repo.articles(action.ticket_id)):
        if (
            article.kind is ArticleKind.INBOUND
            and not article.held
            and not article.auto_kind
            and article.author.lower() == requester
        ):
            return article
    return None


def note(action: Action) -> str:
    text = action.args.strip()
    if not text:
        raise TicketError("Usage: note [NUMBER] TEXT")
    article = action.repo.add_article(
        Article(
            id=None,
            ticket_id=action.ticket_id,
            kind=ArticleKind.NOTE,
            author=action.actor.user_id,
            author_name=action.actor.label,
            subject="",
            body=text,
            created_at=action.now,
        )
    )
    if action.ticket.owner == action.actor.user_id:
        touch_owner(action)
        action.repo.save_ticket(action.ticket)
    action.audit(f"article {article.id}")
    action.post("post_article", article_id=article.id)
    return "Note added."


def undo(action: Action) -> str:
    """Withdraw the actor's latest reply on this ticket while it still waits to go out."""
    waiting = [
        a
        for a in action.repo.articles(action.ticket_id)
        if a.kind is ArticleKind.REPLY
        and a.send_state in (SendState.QUEUED, SendState.AWAITING_APPROVAL)
        and a.author == action.actor.user_id
    ]
    if not waiting:
        raise TicketError("You have no reply waiting to go out on this ticket.")
    article = waiting[-1]
    assert article.id is not None
    draft = article.send_state is SendState.AWAITING_APPROVAL
    if not draft and not action.repo.cancel_send(article.id, action.now):
        raise TicketError("Too late: the reply is already being sent.")
    article.send_state = SendState.CANCELLED
    action.repo.save_article_sending(article)
    action.audit(f"article {article.id} withdrawn")
    action.announce(f"↩ Reply withdrawn by {action.actor.label}; it was not sent.")
    return "Reply withdrawn; it was not sent."


def approve(action: Action) -> str:
    """A volunteer approves a trainee's draft: it goes out now, exactly once.

    The draft turns into a queued reply and its send is queued in this same
    transaction, so a second approval (or a click on two platforms) finds nothing
    left to approve.
    """
    ticket = action.ticket
    if ticket.state.value in ("spam", "merged"):
        raise TicketError(
            f"Ticket {ticket.number} is {ticket.state.label}; its draft is not sent. "
            "The trainee can withdraw it with undo."
        )
    drafts = [
        a
        for a in action.repo.articles(action.ticket_id)
        if a.kind is ArticleKind.REPLY and a.send_state is SendState.AWAITING_APPROVAL
    ]
    if not drafts:
        raise TicketError(f"Ticket {action.ticket.number} has no draft reply waiting for approval.")
    article = drafts[0]
    assert article.id is not None
    if article.author == action.actor.user_id:
        raise TicketError("A trainee's draft needs another volunteer's approval.")
    # the draft turns into a queued reply only if it still is a draft: a second approval
    # at the same moment (another instance) finds it taken and sends nothing
    if not action.repo.take_draft(article.id):
        raise TicketError("Someone approved or withdrew that draft just now.")
    action.repo.enqueue("email", "send_reply", action.ticket_id, action.now, article_id=article.id)
    action.audit(f"article {article.id} by {article.author_name or article.author}")
    left = len(drafts) - 1
    more = f" {left} more draft(s) wait." if left else ""
    action.announce(
        f"✅ Reply by {article.author_name or article.author} approved by "
        f"{action.actor.label}; it goes out now.{more}"
    )
    return "Approved; the reply goes out now." + more
