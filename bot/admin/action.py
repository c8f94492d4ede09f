"""One admin command being carried out, and the small parsers admin commands share."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.admin.overlay import Overlay, effective
from bot.config import Config, ConfigError, QueueConfig
from bot.domain import Actor, TicketError
from bot.ports import RoomCheck
from bot.repository import Repository

_DISCORD_USER = re.compile(r"^<@!?(\d+)>$")
_DISCORD_ROLE = re.compile(r"^<@&(\d+)>$")
_SUBJECT = re.compile(
    r"@[^:\s]+:\S+|discord:\d+|discord-role:\d+|console:\S+",
)

QUEUE_KEY = "queue:"


@dataclass
class AdminAction:
    """An admin command: who, where, with which words, against the config in force."""

    config: Config
    base: Config
    repo: Repository
    actor: Actor
    now: datetime
    platform: str
    room: str | None
    words: list[str]
    #: Results of the privacy checks run before the transaction, by (platform, room).
    room_checks: dict[tuple[str, str], RoomCheck] = field(default_factory=dict)
    #: What was already inconsistent before this command (after a bot.toml edit): not
    #: this command's fault, so it does not block fixing it.
    preexisting: str | None = None

    def audit(
        self,
        action: str,
        detail: str,
        *,
        before: str = "",
        after: str = "",
        ticket_id: int | None = None,
    ) -> None:
        self.repo.audit(self.now, self.actor, action, ticket_id, detail, before=before, after=after)

    def queue(self, name: str) -> QueueConfig:
        queue = self.config.find_queue(name)
        if queue is None:
            known = ", ".join(q.name for q in self.config.queues)
            raise TicketError(f"There is no queue {name!r}. Queues: {known}.")
        return queue

    def queue_setting(self, name: str) -> dict[str, Any]:
        value = self.repo.desk_setting(QUEUE_KEY + name)
        return dict(value) if isinstance(value, dict) else {}

    def save_queue_setting(self, name: str, value: dict[str, Any] | None) -> None:
        self.repo.set_desk_setting(QUEUE_KEY + name, value, self.now, self.actor.user_id)

    def check(self) -> Config:
        """The config the stored changes now give; refuses (rolling back) when this
        command made them clash."""
        overlay: Overlay = self.repo.load_overlay()
        try:
            return effective(self.base, overlay)
        except ConfigError as exc:
            if str(exc) == self.preexisting:
                return effective(self.base, overlay, strict=False)
            raise TicketError(f"That would break the desk's settings: {exc}") from None


def fresh_config(base: Config, repo: Repository) -> tuple[Config, str | None]:
    """The config as stored right now (not a copy from before another admin's change),
    and what in it is already inconsistent, if anything."""
    overlay = repo.load_overlay()
    try:
        return effective(base, overlay), None
    except ConfigError as exc:
        return effective(base, overlay, strict=False), str(exc)


def split_words(args: str) -> list[str]:
    """Words as a shell would split them, so texts can be quoted."""
    try:
        return shlex.split(args)
    except ValueError as exc:
        raise TicketError(f"Cannot read that: {exc} (close your quotes)") from None


def take_option(words: list[str], name: str) -> str | None:
    """Remove ``--name VALUE`` (or ``--name=VALUE``) from ``words``; its value or None."""
    for index, word in enumerate(words):
        if word == name:
            if index + 1 >= len(words):
                raise TicketError(f"{name} needs a value")
            value = words[index + 1]
            del words[index : index + 2]
            return value
        if word.startswith(name + "="):
            del words[index]
            return word[len(name) + 1 :]
    return None


def take_flag(words: list[str], name: str) -> bool:
    if name in words:
        words.remove(name)
        return True
    return False


def subject_of(text: str, platform: str) -> str:
    """A user or role as typed (``@alice:example.org``, ``<@123>``, ``<@&456>``) -> its id."""
    text = text.strip()
    if match := _DISCORD_USER.match(text):
        return f"discord:{match.group(1)}"
    if match := _DISCORD_ROLE.match(text):
        return f"discord-role:{match.group(1)}"
    if text.startswith("role:") and text[5:].isdigit():
        return f"discord-role:{text[5:]}"
    if platform == "discord" and text.isdigit():
        return f"discord:{text}"
    if not _SUBJECT.fullmatch(text):
        raise TicketError(
            f"{text!r} is not a user or role: write @name:server (Matrix), a Discord "
            "@mention or role mention, discord:ID or discord-role:ID"
        )
    return text
