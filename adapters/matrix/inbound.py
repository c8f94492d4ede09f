"""Reading volunteers' messages and reactions: which command, and which ticket's thread.

Pure functions on event contents, kept apart from the nio callbacks so the parsing
rules (reply fallbacks, thread relations, emoji variants) are tested directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.matrix.render import ACTIONS_KEY
from bot.commands import REACTIONS, parse_command

COMMAND_PREFIX = "!"

# Emoji presentation selector and skin tones: "✋🏽" and "✔️" mean the same as "✋" and "✔".
_EMOJI_VARIANTS = dict.fromkeys([0xFE0F, *range(0x1F3FB, 0x1F400)])


@dataclass(frozen=True)
class Where:
    """Where a message sits: ``thread_ref`` is the event it belongs under, if any.

    ``in_thread`` is True only for a real thread (``rel_type: m.thread``); a plain
    reply also yields a ``thread_ref`` (the replied-to message, often a ticket's root)
    but an answer to it must go in the room, not start a thread under any message.
    """

    thread_ref: str | None
    in_thread: bool


@dataclass(frozen=True)
class ParsedCommand:
    name: str
    args: str
    where: Where


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> quoted text`` lines clients put before a reply's own text."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    return "\n".join(lines[index:]).lstrip("\n")


def where(content: Mapping[str, Any]) -> Where:
    """The thread (or replied-to message) a message's ``m.relates_to`` points at."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return Where(None, False)
    if relates.get("rel_type") == "m.thread" and isinstance(relates.get("event_id"), str):
        return Where(relates["event_id"], True)
    reply = relates.get("m.in_reply_to")
    if isinstance(reply, Mapping) and isinstance(reply.get("event_id"), str):
        return Where(reply["event_id"], False)
    return Where(None, False)


def is_edit(content: Mapping[str, Any]) -> bool:
    """An edit of an earlier message: running it again would repeat the command."""
    relates = content.get("m.relates_to")
    return isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace"


def command_in(body: str, content: Mapping[str, Any]) -> ParsedCommand | None:
    """The command a message gives, or None when it is ordinary conversation."""
    if is_edit(content):
        return None
    parsed = parse_command(strip_reply_fallback(body), COMMAND_PREFIX)
    if parsed is None:
        return None
    name, args = parsed
    return ParsedCommand(name, args, where(content))


def reaction_command(key: str) -> str | None:
    """The command a reaction stands for (``✋`` claim, ``✅`` close), ignoring variants."""
    bare = key.translate(_EMOJI_VARIANTS).strip()
    for emoji, command in REACTIONS.items():
        if emoji.translate(_EMOJI_VARIANTS) == bare:
            return command
    return None


def offered_actions(content: Mapping[str, Any]) -> tuple[str, ...]:
    """The actions a notice of the bot offers (see :data:`adapters.matrix.render.ACTIONS_KEY`)."""
    value = content.get(ACTIONS_KEY)
    if not isinstance(value, list):
        return ()
    return tuple(name for name in value if isinstance(name, str))


def reaction_on_notice(command: str, offered: Sequence[str]) -> str:
    """What a reaction means on a message offering ``offered`` actions.

    ✅ (or ✔️) closes a ticket, except on the notice of a trainee's draft, which offers
    ``approve``: there it approves the draft. Closing a ticket whose reply has not even
    gone out would be the opposite of what the volunteer meant.
    """
    if command == "close" and "approve" in offered:
        return "approve"
    return command
