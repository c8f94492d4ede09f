"""The one command vocabulary every adapter shares: claim, reply, note, close, and the rest.

Adapters turn a chat message, a reaction or a slash command into a
:class:`CommandRequest`; this module finds the ticket, checks that the actor is a
volunteer of its queue, carries out the change in one transaction together with the
chat posts and emails it causes, and answers with a :class:`CommandResult` the
adapter shows back.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.config import Config, QueueConfig
from bot.domain import Actor, Article, ArticleKind, SendState, Ticket, TicketError
from bot.ports import Clock
from bot.repository import Repository, Store
from bot.routing import reply_subject

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"^\d{10,20}$")


@dataclass(frozen=True)
class ChatContext:
    """Where a command was given: the platform, the room, and the thread's root if any.

    ``ticket_number`` lets an adapter without threads (the console) say which ticket
    the volunteer is looking at.
    """

    platform: str
    room: str | None = None
    thread_ref: str | None = None
    ticket_number: str | None = None


@dataclass(frozen=True)
class CommandRequest:
    actor: Actor
    name: str
    args: str
    context: ChatContext


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    message: str
    ticket_number: str | None = None
    #: True when the thread already shows what happened (a notice or the article
    #: itself), so chat adapters need not echo ``message``.
    shown_in_thread: bool = False


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    needs_text: bool  # a free text the volunteer writes (a modal on Discord)
    needs_ticket: bool = True
    #: Takes short arguments after the number (``pending 3d``, ``move info::de``): an
    #: ``args`` option on Discord.
    takes_args: bool = False
    example: str = ""


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("claim", "claim [NUMBER]", "take the ticket: you are its owner", False),
        CommandSpec("unclaim", "unclaim [NUMBER]", "give the ticket back to the queue", False),
        CommandSpec(
            "assign",
            "assign [NUMBER] USER",
            "give the ticket to another volunteer of its queue",
            False,
            takes_args=True,
            example="assign @alice:example.org",
        ),
        CommandSpec(
            "reply",
            "reply [NUMBER] [--force] [--template NAME] TEXT",
            "email TEXT to the requester (after an undo window)",
            True,
            example="reply --template thanks",
        ),
        CommandSpec("note", "note [NUMBER] TEXT", "add an internal note (never emailed)", True),
        CommandSpec(
            "undo", "undo [NUMBER]", "stop your reply that is still waiting to go out", False
        ),
        CommandSpec(
            "close",
            "close [NUMBER] [successful|unsuccessful]",
            "close the ticket (successful unless you say otherwise)",
            False,
            takes_args=True,
        ),
        CommandSpec(
            "pending",
            "pending [NUMBER] DURATION|DATE [reminder|autoclose]",
            "wait until then: a reminder brings it back, autoclose closes it unless answered",
            False,
            takes_args=True,
            example="pending 3d autoclose",
        ),
        CommandSpec("spam", "spam [NUMBER]", "close as spam: no mail to the sender", False),
        CommandSpec("reopen", "reopen [NUMBER]", "reopen a closed or pending ticket", False),
        CommandSpec(
            "move",
            "move [NUMBER] QUEUE",
            "move the ticket to another queue (and its room)",
            False,
            takes_args=True,
            example="move info::de",
        ),
        CommandSpec(
            "merge",
            "merge [NUMBER] OTHER",
            "fold this ticket into ticket OTHER, with its history",
            False,
            takes_args=True,
        ),
        CommandSpec(
            "priority",
            "priority [NUMBER] 1-5",
            "set the priority (5 is most urgent)",
            False,
            takes_args=True,
        ),
        CommandSpec(
            "tag",
            "tag [NUMBER] add|remove NAME",
            "add or remove a tag",
            False,
            takes_args=True,
            example="tag add press",
        ),
        CommandSpec(
            "attach",
            "attach [NUMBER] ID",
            "accept held mail ID from an unknown sender into this ticket",
            False,
            takes_args=True,
        ),
        CommandSpec(
            "newticket",
            "newticket [NUMBER] ID",
            "open held mail ID from an unknown sender as a new ticket",
            False,
            takes_args=True,
        ),
        CommandSpec("show", "show [NUMBER]", "show the ticket and its history", False),
        CommandSpec(
            "search",
            "search [queue:Q] [state:S] [from:ADDR] [owner:me] [tag:T] [page:N] WORDS",
            "find tickets in the queues you work in",
            False,
            needs_ticket=False,
            takes_args=True,
            example="search state:open from:example.org licence",
        ),
        CommandSpec(
            "history",
            "history EMAIL",
            "a requester's earlier tickets",
            False,
            needs_ticket=False,
            takes_args=True,
        ),
        CommandSpec(
            "templates", "templates", "list the reply templates", False, needs_ticket=False
        ),
        CommandSpec(
            "languages",
            "languages [CODE ...]",
            "say which languages you answer in (reminders ask you first)",
            False,
            needs_ticket=False,
            takes_args=True,
            example="languages de en",
        ),
        CommandSpec("help", "help", "list these commands", False, needs_ticket=False),
    )
}

#: Reactions on a ticket's root message, and the command each one stands for.
REACTIONS: dict[str, str] = {"✋": "claim", "✅": "close", "✔️": "close", "↩️": "undo"}


def parse_command(text: str, prefix: str = "!") -> tuple[str, str] | None:
    """Split ``!name rest`` into (name, rest); None when the text is not a command."""
    text = text.strip()
    if not text.startswith(prefix):
        return None
    name, _, rest = text[len(prefix) :].partition(" ")
    name = name.strip().lower()
    if not name:
        return None
    return name, rest.strip()


def help_text(prefix: str = "!") -> str:
    lines = [f"{prefix}{spec.usage} — {spec.summary}" for spec in COMMANDS.values()]
    lines.append(
        "Inside a ticket's thread the number may be left out. Reactions: ✋ claim, ✅ close."
    )
    return "\n".join(lines)


class CommandService:
    """Carries out volunteers' commands."""

    def __init__(
        self, config: Config, store: Store, clock: Clock, wake: Callable[[], None]
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._wake = wake
        self._handlers: dict[str, Callable[[Repository, Ticket, CommandRequest, str], str]] = {
            "claim": self._claim,
            "unclaim": self._unclaim,
            "reply": self._reply,
            "note": self._note,
            "close": self._close,
            "reopen": self._reopen,
        }

    async def execute(self, request: CommandRequest) -> CommandResult:
        spec = COMMANDS.get(request.name)
        if spec is None:
            return CommandResult(False, f"Unknown command {request.name!r}. Try help.")
        if request.name == "help":
            return CommandResult(
                True, help_text("/" if request.context.platform == "discord" else "!")
            )
        try:
            result = await self._store.run(lambda repo: self._execute(repo, spec, request))
        except TicketError as exc:
            return CommandResult(False, str(exc))
        if result.ok:
            self._wake()
            log.info("%s by %s on %s", request.name, request.actor.user_id, result.ticket_number)
        return result

    def _execute(
        self, repo: Repository, spec: CommandSpec, request: CommandRequest
    ) -> CommandResult:
        number, text = self._split_number(request.args)
        ticket = self._find_ticket(repo, number, request.context)
        queue = self._config.queue(ticket.queue)
        self._check_room(queue, ticket, request.context)
        if not queue.may_act(request.actor):
            return CommandResult(
                False,
                f"Sorry, only volunteers of queue {queue.name} may act on its tickets.",
                ticket.number,
            )
        if spec.needs_text and not text:
            raise TicketError(f"Usage: {spec.usage}")
        if request.name == "show":
            return CommandResult(True, self._show(repo, ticket), ticket.number)
        message = self._handlers[request.name](repo, ticket, request, text)
        return CommandResult(True, message, ticket.number, shown_in_thread=True)

    @staticmethod
    def _split_number(args: str) -> tuple[str | None, str]:
        first, _, rest = args.partition(" ")
        if _NUMBER.match(first.strip()):
            return first.strip(), rest.strip()
        return None, args.strip()

    def _find_ticket(self, repo: Repository, number: str | None, context: ChatContext) -> Ticket:
        if number is not None:
            ticket = repo.ticket_by_number(number)
            if ticket is None:
                raise TicketError(f"There is no ticket {number}.")
            return ticket
        if context.thread_ref is not None:
            ticket = repo.ticket_by_chat_ref(context.platform, context.thread_ref)
            if ticket is not None:
                return ticket
        if context.ticket_number is not None:
            ticket = repo.ticket_by_number(context.ticket_number)
            if ticket is not None:
                return ticket
        raise TicketError(
            "Which ticket? Give its number (claim 2026112310000012) or use the ticket's thread."
        )

    def _check_room(self, queue: QueueConfig, ticket: Ticket, context: ChatContext) -> None:
        """A ticket is only acted on in its own queue's room, so its text never leaks elsewhere."""
        if context.room is None:
            return
        room = queue.bindings(self._config).get(context.platform)
        if room != context.room:
            raise TicketError(
                f"Ticket {ticket.number} belongs to queue {queue.name}; use that queue's room."
            )

    # --- handlers: each runs inside the command's transaction --------------------------------

    def _announce(self, repo: Repository, ticket: Ticket, now: datetime, notice: str) -> None:
        for channel in self._config.queue(ticket.queue).bindings(self._config):
            repo.enqueue(channel, "notice", _id(ticket), now, payload={"text": notice})
            repo.enqueue(channel, "update_ticket", _id(ticket), now)

    def _state_change(
        self,
        repo: Repository,
        ticket: Ticket,
        request: CommandRequest,
        change: Callable[[datetime], None],
        notice: str,
    ) -> str:
        now = self._clock.now()
        before = f"{ticket.state.value}/{ticket.owner or '-'}"
        change(now)
        repo.save_ticket(ticket)
        after = f"{ticket.state.value}/{ticket.owner or '-'}"
        repo.audit(now, request.actor, f"ticket.{request.name}", ticket.id, f"{before} -> {after}")
        self._announce(repo, ticket, now, notice)
        return notice

    def _claim(self, repo: Repository, ticket: Ticket, request: CommandRequest, _: str) -> str:
        return self._state_change(
            repo,
            ticket,
            request,
            lambda now: ticket.claim(request.actor, now),
            f"✋ Claimed by {request.actor.label}",
        )

    def _unclaim(self, repo: Repository, ticket: Ticket, request: CommandRequest, _: str) -> str:
        return self._state_change(
            repo,
            ticket,
            request,
            lambda now: ticket.unclaim(request.actor, now),
            f"↩ Unclaimed by {request.actor.label}",
        )

    def _close(self, repo: Repository, ticket: Ticket, request: CommandRequest, _: str) -> str:
        return self._state_change(
            repo, ticket, request, ticket.close, f"✅ Closed by {request.actor.label}"
        )

    def _reopen(self, repo: Repository, ticket: Ticket, request: CommandRequest, _: str) -> str:
        return self._state_change(
            repo, ticket, request, ticket.reopen, f"↺ Reopened by {request.actor.label}"
        )

    def _note(self, repo: Repository, ticket: Ticket, request: CommandRequest, text: str) -> str:
        now = self._clock.now()
        article = repo.add_article(
            Article(
                id=None,
                ticket_id=_id(ticket),
                kind=ArticleKind.NOTE,
                author=request.actor.user_id,
                author_name=request.actor.label,
                subject="",
                body=text,
                created_at=now,
            )
        )
        repo.audit(now, request.actor, "ticket.note", ticket.id, f"article {article.id}")
        for channel in self._config.queue(ticket.queue).bindings(self._config):
            repo.enqueue(channel, "post_article", _id(ticket), now, article_id=article.id)
        return "Note added."

    def _reply(self, repo: Repository, ticket: Ticket, request: CommandRequest, text: str) -> str:
        """Store the reply first, then queue it: the email outbox sends it exactly once."""
        now = self._clock.now()
        queue = self._config.queue(ticket.queue)
        history = repo.articles(_id(ticket))
        last_mail = next(
            (a for a in reversed(history) if a.kind is ArticleKind.INBOUND and a.message_id), None
        )
        references: tuple[str, ...] = ()
        in_reply_to = ""
        if last_mail is not None and last_mail.message_id:
            in_reply_to = last_mail.message_id
            references = (*last_mail.references[-20:], last_mail.message_id)
        domain = queue.reply_address.rpartition("@")[2]
        article = repo.add_article(
            Article(
                id=None,
                ticket_id=_id(ticket),
                kind=ArticleKind.REPLY,
                author=request.actor.user_id,
                author_name=request.actor.label,
                subject=reply_subject(ticket.number, ticket.subject),
                body=text,
                created_at=now,
                message_id=f"<ticketbot.{ticket.number}.{uuid.uuid4().hex[:16]}@{domain}>",
                in_reply_to=in_reply_to,
                references=references,
                to=(ticket.requester_email,),
                send_state=SendState.QUEUED,
            )
        )
        ticket.mark_answered(now)
        repo.save_ticket(ticket)
        repo.audit(now, request.actor, "ticket.reply", ticket.id, f"article {article.id}")
        repo.enqueue("email", "send_reply", _id(ticket), now, article_id=article.id)
        for channel in queue.bindings(self._config):
            repo.enqueue(channel, "post_article", _id(ticket), now, article_id=article.id)
            repo.enqueue(channel, "update_ticket", _id(ticket), now)
        return f"Reply queued for {ticket.requester_email}."

    def _show(self, repo: Repository, ticket: Ticket) -> str:
        articles = repo.articles(_id(ticket))
        owner = ticket.owner_name or ticket.owner or "nobody"
        lines = [
            f"[Ticket#{ticket.number}] {ticket.subject}",
            f"Queue {ticket.queue} · {ticket.state.value} · owner: {owner}",
            f"Requester: {ticket.requester_email}",
            f"{len(articles)} article(s):",
        ]
        for article in articles:
            sent = f" [{article.send_state.value}]" if article.send_state else ""
            first_line = next((ln for ln in article.body.splitlines() if ln.strip()), "")
            lines.append(
                f"- {article.created_at:%Y-%m-%d %H:%M} {article.kind.value}{sent} "
                f"{article.author_name or article.author}: {first_line[:120]}"
            )
        return "\n".join(lines)


def _id(ticket: Ticket) -> int:
    assert ticket.id is not None
    return ticket.id
