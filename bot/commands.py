"""The one command vocabulary every adapter shares: claim, reply, note, close, and the rest.

Adapters turn a chat message, a reaction or a slash command into a
:class:`CommandRequest`; this module finds the ticket, checks that the actor is a
volunteer of its queue, carries out the change in one transaction together with the
chat posts and emails it causes, and answers with a :class:`CommandResult` the
adapter shows back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.actions import Action, answer, lookup, moves, state
from bot.admin import access as admin_access
from bot.admin import audit as admin_audit
from bot.admin import privacy as admin_privacy
from bot.admin import queues as admin_queues
from bot.admin import rules as admin_rules
from bot.admin.action import AdminAction, fresh_config, split_words
from bot.admin.live import LiveConfig, as_live
from bot.config import Config, QueueConfig
from bot.domain import Actor, Ticket, TicketError
from bot.files import ResultFile
from bot.metrics import Metrics
from bot.ports import Clock, RoomCheck, RoomInspector, StoreUnavailable
from bot.privacy import pseudonym_key
from bot.reports import ChartDrawer, activity_report, stats_report
from bot.reports.period import parse_activity_args, parse_stats_args
from bot.repository import Repository, Store

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
    #: The answer is seen by the asker alone (Discord's ephemeral answers). Otherwise an
    #: answer given in a room is read by everyone there, so search lists only that
    #: room's queues.
    private: bool = False


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
    #: Files shown with the answer (a chart, a CSV): uploaded where the platform can.
    files: tuple[ResultFile, ...] = ()
    #: For the asker's eyes only (``reveal``): ephemeral on Discord, a direct message on
    #: Matrix, never posted in the room.
    private: bool = False


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
    #: For admins only (``help`` lists these to admins).
    admin: bool = False


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
        CommandSpec(
            "approve",
            "approve [NUMBER]",
            "send a trainee's draft reply (volunteers of the queue)",
            False,
        ),
        CommandSpec(
            "reveal",
            "reveal [NUMBER]",
            "show the requester's real address to you alone (logged)",
            False,
        ),
        CommandSpec("mine", "mine", "list your open tickets", False, needs_ticket=False),
        CommandSpec(
            "queue",
            "queue status | queue list|info|add|rename|address|bind|unbind|set|close|open|remove",
            "queue status: new, open, pending and oldest waiting per queue; the rest: admins",
            False,
            needs_ticket=False,
            takes_args=True,
            example="queue status",
        ),
        CommandSpec(
            "access",
            "access grant|revoke|list USER|ROLE QUEUE [act|trainee|read] [--only]",
            "who may work in which queue",
            False,
            needs_ticket=False,
            takes_args=True,
            example="access grant @alice:example.org permissions",
            admin=True,
        ),
        CommandSpec(
            "admin",
            "admin list|grant|revoke [USER]",
            "who runs the desk",
            False,
            needs_ticket=False,
            takes_args=True,
            admin=True,
        ),
        CommandSpec(
            "rule",
            "rule list|add|move|disable|enable|remove|test ...",
            "the routing rules (rule test N|all --ticket NUMBER is a dry run)",
            False,
            needs_ticket=False,
            takes_args=True,
            example="rule add subject=invoice => queue=finance",
            admin=True,
        ),
        CommandSpec(
            "audit",
            "audit [--user USER] [--ticket NUMBER] [--since DATE] [--page N]",
            "read the audit log",
            False,
            needs_ticket=False,
            takes_args=True,
            admin=True,
        ),
        CommandSpec(
            "privacy",
            "privacy check | privacy pseudonymize QUEUE on|off",
            "check no queue shows in a public room; pseudonyms for requesters",
            False,
            needs_ticket=False,
            takes_args=True,
            admin=True,
        ),
        CommandSpec(
            "stats",
            "stats [QUEUE ...] [--week|--month|--from DATE --to DATE]",
            "traffic charts: tickets per day, backlog, response times (PNG, table, CSV)",
            False,
            needs_ticket=False,
            takes_args=True,
            example="stats permissions --month",
        ),
        CommandSpec(
            "activity",
            "activity [--month YYYY-MM]",
            "per volunteer: actions by kind and last active day (table and CSV)",
            False,
            needs_ticket=False,
            takes_args=True,
            admin=True,
        ),
        CommandSpec("help", "help", "list these commands", False, needs_ticket=False),
    )
}

#: What a trainee may do on a ticket; the rest needs a full volunteer.
TRAINEE_COMMANDS = frozenset({"claim", "unclaim", "note", "reply", "undo", "show", "reveal"})

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


def help_text(prefix: str = "!", *, admin: bool = False) -> str:
    lines = [
        f"{prefix}{spec.usage} — {spec.summary}" for spec in COMMANDS.values() if not spec.admin
    ]
    lines.append(
        "Inside a ticket's thread the number may be left out. "
        "Reactions: ✋ claim, ✅ close, ↩️ undo; ✅ on a draft's notice approves it."
    )
    if admin:
        lines.append("For admins:")
        lines += [
            f"{prefix}{spec.usage} — {spec.summary}" for spec in COMMANDS.values() if spec.admin
        ]
    return "\n".join(lines)


TicketHandler = Callable[[Action], str]

_TICKET_HANDLERS: dict[str, TicketHandler] = {
    "claim": state.claim,
    "unclaim": state.unclaim,
    "assign": state.assign,
    "close": state.close,
    "reopen": state.reopen,
    "pending": state.pending,
    "spam": state.spam,
    "priority": state.priority,
    "tag": state.tag,
    "reply": answer.reply,
    "note": answer.note,
    "undo": answer.undo,
    "move": moves.move,
    "attach": moves.attach,
    "newticket": moves.open_as_new,
    "approve": answer.approve,
    "reveal": lookup.reveal,
}

#: Admin commands and the module that carries each out.
_ADMIN_HANDLERS: dict[str, Callable[[AdminAction], str]] = {
    "queue": admin_queues.run,
    "access": admin_access.run_access,
    "admin": admin_access.run_admin,
    "rule": admin_rules.run,
    "audit": admin_audit.run,
    "privacy": admin_privacy.run,
}


class CommandService:
    """Carries out volunteers' commands."""

    def __init__(
        self, config: Config | LiveConfig, store: Store, clock: Clock, wake: Callable[[], None]
    ) -> None:
        self._live = as_live(config)
        self._store = store
        self._clock = clock
        self._wake = wake
        self._inspectors: dict[str, RoomInspector] = {}
        self.metrics = Metrics()

    def set_room_inspector(self, platform: str, inspector: RoomInspector) -> None:
        """The privacy check for ``platform``'s rooms (adapters register theirs)."""
        self._inspectors[platform] = inspector

    @property
    def live(self) -> LiveConfig:
        return self._live

    @property
    def _config(self) -> Config:
        """The config in force now: admins' changes apply from the next use on."""
        return self._live.current

    async def execute(self, request: CommandRequest) -> CommandResult:
        started = time.perf_counter()
        try:
            return await self._execute_timed(request)
        finally:
            if request.name in COMMANDS:
                self.metrics.observe_command(request.name, time.perf_counter() - started)

    async def _execute_timed(self, request: CommandRequest) -> CommandResult:
        spec = COMMANDS.get(request.name)
        if spec is None:
            return CommandResult(False, f"Unknown command {request.name!r}. Try help.")
        if request.name == "help":
            return CommandResult(
                True,
                help_text(
                    "/" if request.context.platform == "discord" else "!",
                    admin=self._config.is_admin(request.actor),
                ),
            )
        try:
            if request.name in ("stats", "activity"):
                return await self._report(request)
            if spec.admin or (request.name == "queue" and not _is_queue_status(request.args)):
                return await self._admin(request)
            result = await self._store.run(lambda repo: self._execute(repo, spec, request))
        except TicketError as exc:
            return CommandResult(False, str(exc))
        except StoreUnavailable:
            log.warning(
                "%s by %s: the database is unavailable", request.name, request.actor.user_id
            )
            return CommandResult(False, "The database is busy or away; nothing changed. Try again.")
        except Exception:
            # a bug must not take the adapter down with it; nothing was committed
            log.exception("%s by %s failed", request.name, request.actor.user_id)
            return CommandResult(False, f"Sorry, {request.name} failed; nothing changed.")
        if result.ok:
            self._wake()
            log.info("%s by %s on %s", request.name, request.actor.user_id, result.ticket_number)
        return result

    def _execute(
        self, repo: Repository, spec: CommandSpec, request: CommandRequest
    ) -> CommandResult:
        actor, args = request.actor, request.args
        if not spec.needs_ticket:
            return CommandResult(True, self._global(repo, request))
        other: str | None = None
        if request.name == "merge":
            number, other = self._merge_numbers(args)
            text = ""
        else:
            number, text = self._split_number(args)
        ticket = self._find_ticket(repo, number, request.context)
        queue = self._config.queue(ticket.queue)
        self._check_room(queue, ticket, request.context)
        level = queue.level(actor)
        allowed = level == "act" or (level == "trainee" and request.name in TRAINEE_COMMANDS)
        if request.name == "show" and level == "read":
            allowed = True
        if not allowed:
            if level == "trainee":
                message = (
                    f"Sorry, trainees may not {request.name}; ask a volunteer of {queue.name}."
                )
            else:
                message = f"Sorry, only volunteers of queue {queue.name} may act on its tickets."
            return CommandResult(False, message, ticket.number)
        if spec.needs_text and not text and request.name != "reply":
            raise TicketError(f"Usage: {spec.usage}")
        if request.name == "show":
            key = pseudonym_key(repo) if queue.pseudonymize else None
            return CommandResult(True, lookup.show(repo, ticket, key), ticket.number)
        action = Action(self._config, repo, ticket, actor, request.name, text, self._clock.now())
        if request.name == "merge":
            assert other is not None
            message = moves.merge(action, other)
        else:
            message = _TICKET_HANDLERS[request.name](action)
        if request.name == "reveal":
            return CommandResult(True, message, ticket.number, private=True)
        return CommandResult(True, message, ticket.number, shown_in_thread=True)

    async def _admin(self, request: CommandRequest) -> CommandResult:
        """Admin commands: refused for non-admins before anything is read or changed.

        The change, its audit line and a check that the resulting settings still fit
        together are one transaction; the new settings are in force from the next
        command on.
        """
        config = self._config
        name = request.name
        if not config.is_admin(request.actor):
            log.warning("%s by %s refused: not an admin", name, request.actor.user_id)
            return CommandResult(
                False,
                f"Sorry, {name} is for admins. Admins are named in bot.toml (admins) "
                "or added with admin grant.",
            )
        words = split_words(request.args)
        context = request.context
        checks: dict[tuple[str, str], RoomCheck] = {}
        sub = words[0].lower() if words else ""
        if name == "queue" and sub == "bind" and context.room is not None:
            checks[(context.platform, context.room)] = await self.check_room_privacy(
                context.platform, context.room
            )
        if name == "privacy" and sub == "check":
            places = [
                (platform, room)
                for queue in self._live.unblocked_config().queues
                for platform, room in queue.bindings(config).items()
            ]
            for platform, room in places:
                if (platform, room) not in checks:
                    checks[(platform, room)] = await self.check_room_privacy(platform, room)
        now = self._clock.now()

        def work(repo: Repository) -> tuple[str, Config]:
            repo.lock_settings()
            fresh, preexisting = fresh_config(self._live.base, repo)
            if not fresh.is_admin(request.actor):  # revoked on another instance just now
                raise TicketError(f"Sorry, {name} is for admins.")
            act = AdminAction(
                config=fresh,
                preexisting=preexisting,
                base=self._live.base,
                repo=repo,
                actor=request.actor,
                now=now,
                platform=context.platform,
                room=context.room,
                words=list(words),
                room_checks=checks,
            )
            message = _ADMIN_HANDLERS[name](act)
            return message, act.check()

        message, new_config = await self._store.run(work)
        for place, check in checks.items():
            if not check.public:
                self._live.unblock(*place)  # made private since the start-up check
        self._live.set(new_config)
        self._wake()
        log.info("%s %s by %s", name, " ".join(words[:2]), request.actor.user_id)
        return CommandResult(True, message)

    async def _report(self, request: CommandRequest) -> CommandResult:
        """``stats`` (volunteers: their queues; admins: all) and ``activity`` (admins).

        The figures are read in one transaction; the charts are drawn off the event loop.
        """
        config = self._config
        actor = request.actor
        admin = config.is_admin(actor)
        now = self._clock.now()
        if request.name == "activity":
            if not admin:
                return CommandResult(False, "Sorry, activity is for admins.")
            try:
                wanted = parse_activity_args(request.args, now)
            except ValueError as exc:
                return CommandResult(False, f"{exc}")
            people = sorted({v for q in config.queues for v in q.volunteers})
            activity = await self._store.run(
                lambda repo: repo.report_activity(wanted.start, wanted.end, people)
            )
            report = await asyncio.to_thread(activity_report, activity, wanted.label)
            return CommandResult(True, report.text, files=report.files)
        allowed = [q.name for q in config.queues] if admin else self._room_queues(request)
        if not allowed:
            return CommandResult(False, "You are not a volunteer of any queue shown here.")
        try:
            stats = parse_stats_args(request.args, now, allowed)
        except ValueError as exc:
            return CommandResult(False, f"{exc}")
        queues = list(stats.queues) if stats.queues is not None else (None if admin else allowed)
        # a chart child not yet up starts importing matplotlib while the figures are read
        drawer = ChartDrawer()
        traffic = await self._store.run(
            lambda repo: repo.report_traffic(queues, stats.start, stats.end)
        )
        report = await asyncio.to_thread(stats_report, traffic, stats.label, drawer)
        return CommandResult(True, report.text, files=report.files)

    def _room_queues(self, request: CommandRequest) -> list[str]:
        """The queues the asker sees; in a room everyone reads, only that room's."""
        queues = lookup.visible_queues(self._config, request.actor)
        context = request.context
        if context.room is not None and not context.private:
            queues = [
                name
                for name in queues
                if self._config.queue(name).bindings(self._config).get(context.platform)
                == context.room
            ]
        return queues

    async def check_room_privacy(self, platform: str, room: str) -> RoomCheck:
        inspector = self._inspectors.get(platform)
        if inspector is None:
            return RoomCheck(False, "")
        try:
            return await inspector.check_room(room)
        except Exception as exc:
            # an unknown room is treated as public: refusing is the safe way to fail
            log.warning("privacy check of %s room %s failed: %s", platform, room, exc)
            return RoomCheck(True, f"could not check it ({exc})")

    def _global(self, repo: Repository, request: CommandRequest) -> str:
        """Commands about no one ticket: search, history, templates, languages."""
        actor, args = request.actor, request.args
        queues = lookup.visible_queues(self._config, actor)
        context = request.context
        if context.room is not None and not context.private:
            # everyone in this room reads the answer: only this room's queues
            queues = [
                name
                for name in queues
                if self._config.queue(name).bindings(self._config).get(context.platform)
                == context.room
            ]
        if request.name == "search":
            return lookup.search(repo, actor, args, queues, self._config)
        if request.name == "history":
            return lookup.requester_history(repo, args, queues)
        if request.name == "templates":
            return lookup.templates(self._config, actor)
        if request.name == "languages":
            return lookup.languages(repo, actor, args, self._clock.now())
        if request.name == "mine":
            return lookup.mine(repo, actor, queues, self._config)
        if request.name == "queue":
            return lookup.queue_status(self._config, repo, queues, self._clock.now())
        raise TicketError(f"Unknown command {request.name!r}. Try help.")

    @staticmethod
    def _split_number(args: str) -> tuple[str | None, str]:
        first, _, rest = args.strip().partition(" ")
        if _NUMBER.match(_bare(first)):
            return _bare(first), rest.strip()
        return None, args.strip()

    @staticmethod
    def _merge_numbers(args: str) -> tuple[str | None, str]:
        """``merge OTHER`` in a thread, or ``merge NUMBER OTHER`` anywhere."""
        numbers = [_bare(w) for w in args.split()]
        if not numbers or not all(_NUMBER.match(n) for n in numbers) or len(numbers) > 2:
            raise TicketError("Usage: merge [NUMBER] OTHER (fold this ticket into ticket OTHER)")
        if len(numbers) == 2:
            return numbers[0], numbers[1]
        return None, numbers[0]

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


def _is_queue_status(args: str) -> bool:
    return args.strip().lower() in ("status", "")


def _bare(word: str) -> str:
    """``#2026…`` or ``Ticket#2026…`` as typed -> the digits."""
    return word.strip().removeprefix("Ticket").removeprefix("ticket").lstrip("#").strip("[]")
