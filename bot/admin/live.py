"""The config in force, changed by admins' commands without a restart.

Services hold a :class:`LiveConfig` and read ``.current`` each time they need it, so an
access taken away stops the volunteer's very next command, and a queue added by
command receives the very next mail to its address.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.admin.overlay import Overlay, effective
from bot.config import Config, ConfigError

if TYPE_CHECKING:
    from bot.repository import Repository

log = logging.getLogger(__name__)


class LiveConfig:
    """``bot.toml``'s config with the admins' stored changes laid over it."""

    def __init__(self, base: Config) -> None:
        self.base = base
        self.current = base
        self._unstripped = base
        #: Rooms the privacy check found public at start: (platform, room) -> why.
        self.blocked: dict[tuple[str, str], str] = {}
        self._listeners: list[Callable[[Config], None]] = []

    def on_change(self, listener: Callable[[Config], None]) -> None:
        """Call ``listener`` with the new config after every change (adapters re-read rooms)."""
        self._listeners.append(listener)

    def load(self, repo: Repository) -> Config:
        """Read the stored changes (inside a store transaction) and put them in force."""
        return self.apply(repo.load_overlay())

    def apply(self, overlay: Overlay) -> Config:
        """Put stored changes in force; what no longer fits ``bot.toml`` is left out item
        by item (logged), never the whole set."""
        try:
            config = effective(self.base, overlay, strict=False)
        except ConfigError as exc:  # not expected: every problem is handled item by item
            log.error("admins' stored settings could not be applied: %s", exc)
            return self.current
        self.set(config)
        return config

    def block_room(self, platform: str, room: str, reason: str) -> None:
        """Keep queues off a room the privacy check found public (until an admin says
        ``queue bind NAME --public-ok`` there): nothing is posted to it."""
        self.blocked[(platform, room)] = reason
        self.set(self.current)

    def unblocked_config(self) -> Config:
        """The config in force as stored, with rooms kept out at start put back (for checks)."""
        return self._unstripped

    def unblock(self, platform: str, room: str) -> None:
        """A blocked room checked again and found private may be used (from the next set)."""
        self.blocked.pop((platform, room), None)

    def _strip_blocked(self, config: Config) -> Config:
        if not self.blocked:
            return config
        queues = []
        for queue in config.queues:
            if not queue.public_ok:
                if ("matrix", str(queue.matrix_room)) in self.blocked:
                    queue = dataclasses.replace(queue, matrix_room=None)
                if ("discord", str(queue.discord_channel)) in self.blocked:
                    queue = dataclasses.replace(queue, discord_channel=None)
            queues.append(queue)
        return dataclasses.replace(config, queues=tuple(queues))

    def set(self, config: Config) -> None:
        self._unstripped = config
        config = self._strip_blocked(config)
        changed = config != self.current
        self.current = config
        if changed:
            for listener in self._listeners:
                try:
                    listener(config)
                except Exception:
                    log.exception("a listener of config changes failed")


def as_live(config: Config | LiveConfig) -> LiveConfig:
    """Services take either: tests often pass a plain config that never changes."""
    return config if isinstance(config, LiveConfig) else LiveConfig(config)
