"""Mapping Discord interactions and reactions to the core's command requests (no client)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from adapters.discord import interactions
from adapters.discord.commands import DESCRIPTION_LIMIT, args_help, slash_command
from adapters.discord.interactions import InteractionHandler
from adapters.discord.mapping import (
    ACTION_BUTTONS,
    BadNumber,
    Person,
    Place,
    QueueChannels,
    actor_for,
    args_for,
    button_action,
    context_for,
    normalise_number,
    offered_actions,
    reaction_command,
    request_from_button,
    request_from_reaction,
    request_from_slash,
)
from adapters.discord.views import ActionButtons, TextModal, TicketButtons, offered_buttons
from bot.commands import COMMANDS, ChatContext, CommandRequest, CommandResult
from bot.config import QueueConfig
from bot.domain import Actor

NUMBER = "2026112310000012"
QUEUE, OTHER_QUEUE, THREAD, ROOT, ELSEWHERE = 1001, 1002, 2001, 2001, 3001
VOLUNTEERS = 555
SUPPORT = QueueConfig(
    "support",
    ("support@example.org",),
    default=True,
    discord_channel=QUEUE,
    discord_roles=(VOLUNTEERS,),
)
SALES = QueueConfig("sales", ("sales@example.org",), discord_channel=OTHER_QUEUE)
CHANNELS = QueueChannels([SUPPORT, SALES, QueueConfig("mail-only", ("m@example.org",))])
ALICE = Person(42, "Alice", frozenset({VOLUNTEERS, 9}))
MALLORY = Person(66, "Mallory")


class RecordingExecutor:
    """Stands in for CommandService: records requests, answers with ``result``."""

    def __init__(self, result: CommandResult | None = None) -> None:
        self.requests: list[CommandRequest] = []
        self.result = result or CommandResult(True, "✋ Claimed by Alice", NUMBER, True)

    async def execute(self, request: CommandRequest) -> CommandResult:
        self.requests.append(request)
        return self.result


# --- pure mapping -----------------------------------------------------------------------------


def test_actor_carries_platform_id_name_and_roles() -> None:
    actor = actor_for(ALICE)
    assert actor == Actor(
        "discord", "discord:42", "Alice", frozenset({"discord-role:555", "discord-role:9"})
    )
    assert SUPPORT.may_act(actor)
    assert not SUPPORT.may_act(actor_for(MALLORY))
    assert actor_for(Person(7, "")).display_name == "discord:7"


def test_slash_inside_a_ticket_thread() -> None:
    request = request_from_slash("claim", None, "", ALICE, Place(THREAD, QUEUE), CHANNELS)
    assert request.name == "claim" and request.args == ""
    assert request.context == ChatContext("discord", str(QUEUE), str(THREAD), private=True)


def test_slash_in_the_queue_channel_with_a_number() -> None:
    request = request_from_slash("close", f" #{NUMBER} ", "", ALICE, Place(QUEUE), CHANNELS)
    assert request.args == NUMBER
    assert request.context == ChatContext("discord", str(QUEUE), None, private=True)


def test_slash_elsewhere_names_that_channel_so_the_core_refuses_ticket_text() -> None:
    request = request_from_slash("show", NUMBER, "", ALICE, Place(ELSEWHERE), CHANNELS)
    assert request.context == ChatContext("discord", str(ELSEWHERE), None, private=True)
    # a thread that is not under a queue channel is no ticket thread
    other = request_from_slash("show", None, "", ALICE, Place(4001, ELSEWHERE), CHANNELS)
    assert other.context == ChatContext("discord", str(ELSEWHERE), None, private=True)


def test_reply_text_follows_the_number() -> None:
    request = request_from_slash("reply", NUMBER, " Hello\nthere ", ALICE, Place(QUEUE), CHANNELS)
    assert request.args == f"{NUMBER} Hello\nthere"
    assert args_for(None, "text") == "text" and args_for(None, "") == ""


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        (NUMBER, NUMBER),
        (f"#{NUMBER}", NUMBER),
        (f"Ticket#{NUMBER}", NUMBER),
        (f"[Ticket#{NUMBER}]", NUMBER),
        ("1234567890", "1234567890"),
    ],
)
def test_number_forms(given: str | None, expected: str | None) -> None:
    assert normalise_number(given) == expected


@pytest.mark.parametrize("bad", ["abc", "123", "1" * 21, f"{NUMBER} extra", "claim"])
def test_bad_numbers_are_refused_not_read_as_text(bad: str) -> None:
    with pytest.raises(BadNumber, match="not a ticket number"):
        request_from_slash("claim", bad, "", ALICE, Place(THREAD, QUEUE), CHANNELS)


def test_button_on_a_root_message() -> None:
    assert button_action("ticketbot:claim") == "claim"
    assert button_action("ticketbot:nope") is None and button_action("other:claim") is None
    request = request_from_button("close", "", ALICE, Place(QUEUE), ROOT, CHANNELS)
    assert request == CommandRequest(
        actor_for(ALICE), "close", "", ChatContext("discord", str(QUEUE), str(ROOT), private=True)
    )


def test_args_follow_the_number_and_precede_the_text() -> None:
    pending = request_from_slash(
        "pending", f"#{NUMBER}", "", ALICE, Place(QUEUE), CHANNELS, args=" 3d autoclose "
    )
    assert pending.args == f"{NUMBER} 3d autoclose"
    in_thread = request_from_slash("move", None, "", ALICE, Place(THREAD, QUEUE), CHANNELS, "x")
    assert in_thread.args == "x"
    assert in_thread.context == ChatContext("discord", str(QUEUE), str(THREAD), private=True)
    search = request_from_slash(
        "search", None, "", ALICE, Place(QUEUE), CHANNELS, args="state:open licence"
    )
    assert search.args == "state:open licence" and search.context.thread_ref is None
    both = request_from_slash("reply", NUMBER, "Hi", ALICE, Place(QUEUE), CHANNELS, "--force")
    assert both.args == f"{NUMBER} --force Hi"


def test_merge_takes_the_other_number_in_args() -> None:
    other = "2026112310000099"
    merge = request_from_slash(
        "merge", None, "", ALICE, Place(THREAD, QUEUE), CHANNELS, args=f"Ticket#{other}"
    )
    assert merge.args == other and merge.context.thread_ref == str(THREAD)
    named = request_from_slash("merge", NUMBER, "", ALICE, Place(QUEUE), CHANNELS, args=other)
    assert named.args == f"{NUMBER} {other}"
    odd = request_from_slash("merge", None, "", ALICE, Place(THREAD, QUEUE), CHANNELS, "soon")
    assert odd.args == "soon"  # not a number: the core says what is wrong


def test_action_buttons_on_a_notice_in_the_thread() -> None:
    assert button_action("ticketbot:undo") == "undo"
    assert "undo" in ACTION_BUTTONS and "reply" not in ACTION_BUTTONS
    assert not set(ACTION_BUTTONS) & {"claim", "close", "note", "assign", "pending"}
    notice = 9876
    request = request_from_button("undo", "", ALICE, Place(THREAD, QUEUE), notice, CHANNELS)
    assert request == CommandRequest(
        actor_for(ALICE), "undo", "", ChatContext("discord", str(QUEUE), str(THREAD), private=True)
    )
    assert offered_buttons(["undo", "claim", "undo", "assign", "nope"]) == ["undo", "claim"]


def test_slash_options_follow_the_specs() -> None:
    handler = InteractionHandler(RecordingExecutor(), CHANNELS)
    assert len(COMMANDS) <= 100
    for spec in COMMANDS.values():
        command = slash_command(spec, handler)
        options = {p.name: p for p in command.parameters}
        expected = (["number"] if spec.needs_ticket else []) + (["args"] if spec.takes_args else [])
        assert list(options) == expected, spec.name
        assert all(not p.required for p in options.values())
        assert len(command.description) <= DESCRIPTION_LIMIT
        for option in options.values():
            assert 0 < len(option.description) <= DESCRIPTION_LIMIT
    assert args_help(COMMANDS["pending"]) == (
        "DURATION|DATE [reminder|autoclose], e.g. 3d autoclose"
    )
    assert "OTHER" in args_help(COMMANDS["merge"])
    assert {p.name for p in slash_command(COMMANDS["search"], handler).parameters} == {"args"}


def test_reactions() -> None:
    assert reaction_command("✋") == "claim"
    assert reaction_command("✅") == "close"
    assert reaction_command("✔️") == reaction_command("✔") == "close"
    assert reaction_command("✋\ufe0f") == "claim"
    assert reaction_command("👍") is None
    on_root = request_from_reaction("✋", ALICE, Place(QUEUE), ROOT, CHANNELS)
    assert on_root is not None and on_root.name == "claim"
    assert on_root.context == ChatContext("discord", str(QUEUE), str(ROOT), private=True)
    # on any message inside the ticket's thread: the thread is the ticket
    in_thread = request_from_reaction("✅", ALICE, Place(THREAD, QUEUE), 9999, CHANNELS)
    assert in_thread is not None
    assert in_thread.context == ChatContext("discord", str(QUEUE), str(THREAD), private=True)
    assert request_from_reaction("✋", ALICE, Place(ELSEWHERE), 1, CHANNELS) is None
    assert request_from_reaction("👍", ALICE, Place(QUEUE), 1, CHANNELS) is None


def test_context_without_a_message_in_a_queue_channel() -> None:
    assert context_for(Place(QUEUE), CHANNELS) == ChatContext(
        "discord", str(QUEUE), None, private=True
    )
    assert CHANNELS.ids == [QUEUE, OTHER_QUEUE]
    assert CHANNELS.queue_of(Place(THREAD, OTHER_QUEUE)) == SALES


# --- the handler: defer first, run, answer ephemerally ------------------------------------------


@dataclass
class FakeInteraction:
    """Just what InteractionHandler touches; records the answers in order."""

    user: Any
    channel_id: int
    message: Any = None
    channel: Any = None
    log: list[tuple[Any, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        log = self.log

        async def defer(*, ephemeral: bool = False, thinking: bool = False) -> None:
            log.append(("defer", ephemeral, thinking))

        async def send_modal(modal: TextModal) -> None:
            log.append(("modal", modal))

        async def send_message(content: str, **kwargs: Any) -> None:
            log.append(("message", content, kwargs))

        async def followup(content: str, **kwargs: Any) -> None:
            log.append(("followup", content, kwargs))

        self.response = SimpleNamespace(
            defer=defer, send_modal=send_modal, send_message=send_message
        )
        self.followup = SimpleNamespace(send=followup)


def user(person: Person) -> SimpleNamespace:
    return SimpleNamespace(id=person.user_id, display_name=person.display_name, person=person)


@pytest.fixture(autouse=True)
def members_from_fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake user carries its Person (a real discord.Member carries its roles)."""
    monkeypatch.setattr(interactions, "person_of", lambda user: user.person)


class OrderedExecutor(RecordingExecutor):
    """Also notes how many answers the interaction had when the command ran."""

    def __init__(self, interaction: FakeInteraction, result: CommandResult | None = None) -> None:
        super().__init__(result)
        self.interaction = interaction
        self.answers_before: list[int] = []

    async def execute(self, request: CommandRequest) -> CommandResult:
        self.answers_before.append(len(self.interaction.log))
        return await super().execute(request)


async def test_slash_defers_then_runs_then_confirms_ephemerally() -> None:
    interaction = FakeInteraction(user(MALLORY), QUEUE)
    executor = OrderedExecutor(interaction)
    await InteractionHandler(executor, CHANNELS).on_slash(interaction, "claim", NUMBER)  # type: ignore[arg-type]
    assert executor.answers_before == [1]  # the defer went out before the database work
    [request] = executor.requests
    assert request.args == NUMBER and request.actor.user_id == "discord:66"
    assert request.context == ChatContext("discord", str(QUEUE), None, private=True)
    defer, followup = interaction.log
    assert defer == ("defer", True, True)
    assert followup[0] == "followup" and followup[1] == "✋ Claimed by Alice"
    assert followup[2]["ephemeral"] is True
    assert followup[2]["allowed_mentions"].to_dict() == {"parse": []}


async def test_refusal_and_show_output_are_ephemeral_and_escaped() -> None:
    interaction = FakeInteraction(user(MALLORY), QUEUE)
    refusal = CommandResult(False, "Sorry, only volunteers of queue support may act @everyone")
    await InteractionHandler(RecordingExecutor(refusal), CHANNELS).on_slash(
        interaction,  # type: ignore[arg-type]
        "close",
        None,
    )
    _, answer = interaction.log
    assert answer[1].endswith("@\u200beveryone") and answer[2]["ephemeral"] is True

    interaction = FakeInteraction(user(ALICE), QUEUE)
    show = CommandResult(True, "\n".join(f"- line {i} <@&1> [x](http://e)" for i in range(300)))
    await InteractionHandler(RecordingExecutor(show), CHANNELS).on_slash(
        interaction,  # type: ignore[arg-type]
        "show",
        NUMBER,
    )
    answers = [entry for entry in interaction.log if entry[0] == "followup"]
    assert len(answers) > 1
    for _, text, kwargs in answers:
        assert len(text) <= 2000 and kwargs["ephemeral"] is True
        assert "<@&1>" not in text and "[x](" not in text


async def test_bad_number_is_refused_at_once_without_running() -> None:
    interaction = FakeInteraction(user(ALICE), QUEUE)
    executor = RecordingExecutor()
    await InteractionHandler(executor, CHANNELS).on_slash(interaction, "claim", "12ab")  # type: ignore[arg-type]
    assert executor.requests == []
    [(kind, text, kwargs)] = interaction.log
    assert kind == "message" and "not a ticket number" in text and kwargs["ephemeral"] is True


async def test_a_failing_command_still_gets_an_answer() -> None:
    class Broken(RecordingExecutor):
        async def execute(self, request: CommandRequest) -> CommandResult:
            raise RuntimeError("database gone")

    interaction = FakeInteraction(user(ALICE), QUEUE)
    await InteractionHandler(Broken(), CHANNELS).on_slash(interaction, "claim", NUMBER)  # type: ignore[arg-type]
    assert interaction.log[-1][1] == "Sorry, claim failed; the bot's log says why."


async def test_reply_opens_a_modal_that_remembers_number_and_place() -> None:
    interaction = FakeInteraction(user(ALICE), QUEUE)
    executor = RecordingExecutor(
        CommandResult(True, "Reply queued for m@example.org.", NUMBER, True)
    )
    handler = InteractionHandler(executor, CHANNELS)
    await handler.on_slash(interaction, "reply", f"#{NUMBER}")  # type: ignore[arg-type]
    [(kind, modal)] = interaction.log
    assert kind == "modal" and executor.requests == []  # a modal is the first answer
    assert isinstance(modal, TextModal) and modal.number == NUMBER
    assert NUMBER in modal.title and len(modal.title) <= 45
    assert modal.custom_id.startswith("ticketbot:modal:reply:")

    modal.text._value = "Dear Mallory,\n\nfixed."
    submit = FakeInteraction(user(ALICE), QUEUE)
    await handler.on_modal(submit, modal)  # type: ignore[arg-type]
    [request] = executor.requests
    assert request.name == "reply" and request.args == f"{NUMBER} Dear Mallory,\n\nfixed."
    assert request.context == ChatContext("discord", str(QUEUE), None, private=True)
    assert submit.log[0] == ("defer", True, True)


async def test_note_button_opens_a_modal_for_the_clicked_ticket() -> None:
    interaction = FakeInteraction(user(ALICE), QUEUE, message=SimpleNamespace(id=ROOT))
    executor = RecordingExecutor()
    handler = InteractionHandler(executor, CHANNELS)
    await handler.on_button(interaction, "note")  # type: ignore[arg-type]
    [(_, modal)] = interaction.log
    modal.text._value = "called them"
    await handler.on_modal(FakeInteraction(user(ALICE), QUEUE), modal)  # type: ignore[arg-type]
    [request] = executor.requests
    assert request.name == "note" and request.args == "called them"
    assert request.context == ChatContext("discord", str(QUEUE), str(ROOT), private=True)


async def test_claim_button_runs_at_once() -> None:
    interaction = FakeInteraction(user(ALICE), QUEUE, message=SimpleNamespace(id=ROOT))
    executor = RecordingExecutor()
    await InteractionHandler(executor, CHANNELS).on_button(interaction, "claim")  # type: ignore[arg-type]
    [request] = executor.requests
    assert request.context.thread_ref == str(ROOT) and interaction.log[0][0] == "defer"


async def test_no_modal_for_someone_who_may_not_act_in_the_queue() -> None:
    interaction = FakeInteraction(user(MALLORY), QUEUE, message=SimpleNamespace(id=ROOT))
    await InteractionHandler(RecordingExecutor(), CHANNELS).on_button(interaction, "reply")  # type: ignore[arg-type]
    [(kind, text, kwargs)] = interaction.log
    assert kind == "message" and "only volunteers of queue support" in text
    assert kwargs["ephemeral"] is True


async def test_buttons_are_persistent_with_fixed_ids() -> None:
    view = TicketButtons(InteractionHandler(RecordingExecutor(), CHANNELS))
    assert view.is_persistent() and view.timeout is None
    ids = [item.custom_id for item in view.children if isinstance(item, discord.ui.Button)]
    assert ids == ["ticketbot:claim", "ticketbot:reply", "ticketbot:note", "ticketbot:close"]
    actions = ActionButtons(InteractionHandler(RecordingExecutor(), CHANNELS))
    assert actions.is_persistent()
    ids = [item.custom_id for item in actions.children if isinstance(item, discord.ui.Button)]
    assert ids == [f"ticketbot:{name}" for name in ACTION_BUTTONS]
    assert len(ids) <= 25  # one view's worth


async def test_slash_args_reach_the_core() -> None:
    interaction = FakeInteraction(user(ALICE), QUEUE)
    executor = RecordingExecutor()
    handler = InteractionHandler(executor, CHANNELS)
    await handler.on_slash(interaction, "search", None, "from:example.org")  # type: ignore[arg-type]
    await handler.on_slash(interaction, "priority", NUMBER, "5")  # type: ignore[arg-type]
    assert [r.args for r in executor.requests] == ["from:example.org", f"{NUMBER} 5"]


# --- admins' changes, trainees, approval ----------------------------------------------------------


def test_queue_channels_follow_the_config_in_force() -> None:
    channels = QueueChannels([SUPPORT, SALES])
    permissions = QueueConfig("permissions", ("p@example.org",), discord_channel=ELSEWHERE)
    unbound_sales = QueueConfig("sales", ("sales@example.org",))
    assert channels.update([SUPPORT, unbound_sales, permissions]) == ([ELSEWHERE], [OTHER_QUEUE])
    assert channels.ids == [QUEUE, ELSEWHERE]
    assert channels.queue_of(Place(THREAD, ELSEWHERE)) == permissions
    assert channels.is_ticket_thread(Place(THREAD, ELSEWHERE))
    assert OTHER_QUEUE not in channels
    # the same channels with new access: nothing added or removed, the queue replaced
    trainee = Person(77, "Tom")
    granted = QueueConfig(
        "support",
        ("support@example.org",),
        discord_channel=QUEUE,
        access={"discord:77": "trainee"},
    )
    assert channels.update([granted, permissions]) == ([], [])
    queue = channels.queue(QUEUE)
    assert queue is not None and queue.may_work(actor_for(trainee))


def test_admin_commands_take_args_and_say_they_are_for_admins() -> None:
    handler = InteractionHandler(RecordingExecutor(), CHANNELS)
    for spec in COMMANDS.values():
        command = slash_command(spec, handler)
        assert command.description.endswith("(admins)") == spec.admin, spec.name
        assert command.default_permissions is None  # the core decides who is an admin
    assert {p.name for p in slash_command(COMMANDS["queue"], handler).parameters} == {"args"}
    assert args_help(COMMANDS["queue"]).startswith("status | list|info|add|rename|")
    assert "queue" not in args_help(COMMANDS["queue"])
    assert args_help(COMMANDS["privacy"]).startswith("check | pseudonymize QUEUE on|off")


def test_slash_admin_command_in_any_channel_names_that_channel() -> None:
    request = request_from_slash(
        "queue", None, "", ALICE, Place(ELSEWHERE), CHANNELS, args=" bind permissions "
    )
    assert request.name == "queue" and request.args == "bind permissions"
    assert request.context == ChatContext("discord", str(ELSEWHERE), None, private=True)
    grant = request_from_slash(
        "access", None, "", ALICE, Place(QUEUE), CHANNELS, args="grant <@&555> support trainee"
    )
    assert grant.args == "grant <@&555> support trainee"


def test_check_mark_on_an_approve_notice_approves() -> None:
    assert offered_actions(["ticketbot:approve", "ticketbot:nope", "other:undo", "x"]) == {
        "approve"
    }
    notice = 9876
    offered = offered_actions(["ticketbot:approve"])
    approve = request_from_reaction("✅", ALICE, Place(THREAD, QUEUE), notice, CHANNELS, offered)
    assert approve is not None and approve.name == "approve"
    assert approve.context == ChatContext("discord", str(QUEUE), str(THREAD), private=True)
    tick = request_from_reaction("✔️", ALICE, Place(THREAD, QUEUE), notice, CHANNELS, offered)
    assert tick is not None and tick.name == "approve"
    plain = request_from_reaction("✅", ALICE, Place(THREAD, QUEUE), notice, CHANNELS)
    assert plain is not None and plain.name == "close"
    claim = request_from_reaction("✋", ALICE, Place(THREAD, QUEUE), notice, CHANNELS, offered)
    assert claim is not None and claim.name == "claim"
    assert "approve" in ACTION_BUTTONS and offered_buttons(["approve"]) == ["approve"]


async def test_a_trainee_gets_the_reply_box_a_reader_does_not() -> None:
    tom, rita = Person(77, "Tom"), Person(78, "Rita")
    queue = QueueConfig(
        "support",
        ("support@example.org",),
        discord_channel=QUEUE,
        access={"discord:77": "trainee", "discord:78": "read"},
    )
    handler = InteractionHandler(RecordingExecutor(), QueueChannels([queue]))
    interaction = FakeInteraction(user(tom), QUEUE, message=SimpleNamespace(id=ROOT))
    await handler.on_button(interaction, "reply")  # type: ignore[arg-type]
    [(kind, _)] = interaction.log
    assert kind == "modal"
    interaction = FakeInteraction(user(rita), QUEUE, message=SimpleNamespace(id=ROOT))
    await handler.on_button(interaction, "reply")  # type: ignore[arg-type]
    [(kind, text, _)] = interaction.log
    assert kind == "message" and "only volunteers of queue support" in text
