"""From what Discord tells us about an interaction or a reaction to a core :class:`CommandRequest`.

Pure functions over small value types (:class:`Person`, :class:`Place`), so the
rules can be tested without a client or a gateway connection:

* a Discord user is ``Actor("discord", "discord:<id>", display name, roles)``, with
  every role as ``discord-role:<id>``, which is what :meth:`QueueConfig.may_act` checks;
* ``room`` is the *queue channel's* id, also for a command given inside a ticket's
  thread (the thread's parent), because the core compares it with the queue's binding;
* ``thread_ref`` is the ticket's root message id. A thread started from a message has
  that message's id, so inside a ticket's thread it is the thread's id, and on the
  root message's buttons and reactions it is the message's id.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from bot.commands import COMMANDS, REACTIONS, ChatContext, CommandRequest
from bot.config import QueueConfig
from bot.domain import Actor

PLATFORM = "discord"
BUTTON_PREFIX = "ticketbot:"
#: The buttons under every root message, in order: custom id suffix -> label.
BUTTONS: dict[str, str] = {"claim": "Claim", "reply": "Reply", "note": "Note", "close": "Close"}
#: Buttons a notice may offer (``actions`` of ``post_notice``), beyond those of the root:
#: commands that need nothing more than the ticket, which the thread gives.
ACTION_BUTTONS: dict[str, str] = {
    name: name.capitalize()
    for name, spec in COMMANDS.items()
    if spec.needs_ticket and not spec.needs_text and not spec.takes_args and name not in BUTTONS
}
#: Commands that need a text, which a modal asks for.
TEXT_COMMANDS = frozenset(name for name, spec in COMMANDS.items() if spec.needs_text)

_NUMBER = re.compile(r"^\d{10,20}$")
_NUMBER_PREFIX = re.compile(r"^(?:\[?ticket\s*)?#?\s*", re.IGNORECASE)
_VARIATION_SELECTOR = "\ufe0f"
_REACTIONS = {key.replace(_VARIATION_SELECTOR, ""): name for key, name in REACTIONS.items()}


class BadNumber(ValueError):
    """The ``number`` option is not a ticket number; the message is shown to the user."""


@dataclass(frozen=True)
class Person:
    """Who acted: a guild member's id, the name shown for them, and their role ids."""

    user_id: int
    display_name: str
    role_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Place:
    """Where it happened: a channel, or a thread and the channel it belongs to."""

    channel_id: int
    parent_id: int | None = None  # set for threads


class QueueChannels:
    """Which Discord channels are queue channels, and of which queue.

    One instance is shared by everything that reads Discord events (commands,
    buttons, reactions), and :meth:`update` changes it in place, so a channel an
    admin binds with ``queue bind`` is a queue channel for the very next event.
    """

    def __init__(self, queues: Iterable[QueueConfig]) -> None:
        self._by_channel: dict[int, QueueConfig] = {}
        self.update(queues)

    def update(self, queues: Iterable[QueueConfig]) -> tuple[list[int], list[int]]:
        """Take the queues in force now; the channel ids (added, removed).

        Every queue is replaced, not only those whose channel changed: a queue's
        access (who may act) changes at run time too.
        """
        before = set(self._by_channel)
        self._by_channel = {q.discord_channel: q for q in queues if q.discord_channel is not None}
        after = set(self._by_channel)
        return sorted(after - before), sorted(before - after)

    @property
    def ids(self) -> list[int]:
        return sorted(self._by_channel)

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._by_channel

    def queue(self, channel_id: int) -> QueueConfig | None:
        return self._by_channel.get(channel_id)

    def queue_of(self, place: Place) -> QueueConfig | None:
        """The queue whose channel this is, or whose channel the thread belongs to."""
        if place.parent_id is not None:
            return self._by_channel.get(place.parent_id)
        return self._by_channel.get(place.channel_id)

    def is_ticket_thread(self, place: Place) -> bool:
        return place.parent_id is not None and place.parent_id in self._by_channel


def actor_for(person: Person) -> Actor:
    roles = frozenset(f"discord-role:{role}" for role in person.role_ids)
    user_id = f"discord:{person.user_id}"
    return Actor(PLATFORM, user_id, person.display_name or user_id, roles)


def context_for(
    place: Place, channels: QueueChannels, message_id: int | None = None
) -> ChatContext:
    """The core's view of where a command was given.

    ``private``: every answer to an interaction is ephemeral, seen by the asker alone.

    ``message_id`` is the message a button or reaction belongs to: in a queue
    channel that is a ticket's root message. Inside a ticket's thread the thread is
    the ticket, whichever message in it was used.
    """
    if channels.is_ticket_thread(place):
        return ChatContext(PLATFORM, str(place.parent_id), str(place.channel_id), private=True)
    room = str(place.parent_id if place.parent_id is not None else place.channel_id)
    if message_id is not None and place.parent_id is None and place.channel_id in channels:
        return ChatContext(PLATFORM, room, str(message_id), private=True)
    return ChatContext(PLATFORM, room, None, private=True)


def normalise_number(number: str | None) -> str | None:
    """The ticket number from the ``number`` option ("2026…", "#2026…", "Ticket#2026…").

    Raises :class:`BadNumber` for anything else: passed on, the core would read it as
    text and act on the thread's ticket instead, which is not what was asked.
    """
    if number is None or not number.strip():
        return None
    digits = _NUMBER_PREFIX.sub("", number.strip()).rstrip("]").strip()
    if not _NUMBER.match(digits):
        raise BadNumber(f"{number.strip()[:40]!r} is not a ticket number (10 to 20 digits).")
    return digits


def args_for(number: str | None, text: str = "") -> str:
    """The core's argument string: an optional leading number, then the text."""
    return " ".join(part for part in (number or "", text.strip()) if part)


def request_from_slash(
    name: str,
    number: str | None,
    text: str,
    person: Person,
    place: Place,
    channels: QueueChannels,
    args: str | None = None,
) -> CommandRequest:
    """A slash command (or the modal it opened): ``/claim number:2026…``, ``/pending
    args:3d``, ``/search args:state:open``: the number first, then ``args``, then the text.

    ``merge`` takes the other ticket's number in ``args``; it is normalised like
    ``number`` (``#2026…`` works) when it is one.
    """
    extra = (args or "").strip()
    if name == "merge" and extra:
        with contextlib.suppress(BadNumber):
            extra = normalise_number(extra) or extra
    line = args_for(normalise_number(number), extra)
    context = context_for(place, channels)
    return CommandRequest(actor_for(person), name, args_for(line, text), context)


def button_action(custom_id: str) -> str | None:
    """``ticketbot:claim`` -> ``claim``, ``ticketbot:undo`` -> ``undo``; None for buttons
    that are not ours."""
    if not custom_id.startswith(BUTTON_PREFIX):
        return None
    action = custom_id[len(BUTTON_PREFIX) :]
    return action if action in BUTTONS or action in ACTION_BUTTONS else None


def request_from_button(
    action: str,
    text: str,
    person: Person,
    place: Place,
    message_id: int,
    channels: QueueChannels,
) -> CommandRequest:
    """A button on a root message (or the modal it opened): the message is the ticket."""
    context = context_for(place, channels, message_id)
    return CommandRequest(actor_for(person), action, text.strip(), context)


def reaction_command(emoji: str) -> str | None:
    """✋ -> claim, ✅ -> close; the variation selector (U+FE0F) does not matter."""
    return _REACTIONS.get(emoji.replace(_VARIATION_SELECTOR, ""))


def request_from_reaction(
    emoji: str,
    person: Person,
    place: Place,
    message_id: int,
    channels: QueueChannels,
    offered: Collection[str] = (),
) -> CommandRequest | None:
    """A reaction in a queue channel or a ticket's thread; None when it means nothing.

    ``offered`` are the buttons of the message reacted to (see :func:`offered_actions`):
    ✅ on a notice offering Approve approves the trainee's draft, as its button does;
    anywhere else ✅ closes the ticket.
    """
    name = reaction_command(emoji)
    if name is None or channels.queue_of(place) is None:
        return None
    if name == "close" and "approve" in offered:
        name = "approve"
    context = context_for(place, channels, message_id)
    return CommandRequest(actor_for(person), name, "", context)


def offered_actions(custom_ids: Iterable[str]) -> frozenset[str]:
    """The ticketbot actions among a message's button ids (``ticketbot:approve`` -> approve)."""
    return frozenset(
        action for action in (button_action(custom_id) for custom_id in custom_ids) if action
    )


def thread_of(context: ChatContext) -> int | None:
    """The ticket thread's id (== the root message id) for answers that go into it."""
    return int(context.thread_ref) if context.thread_ref is not None else None
