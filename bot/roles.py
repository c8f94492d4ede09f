"""Which process does which job, when several share one database.

A role (``intake``, ``matrix``, ``discord``, ``scheduler``: :data:`bot.config.ROLES`) is
held by exactly one process at a time through a lease (:class:`bot.ports.Leases`). The
:class:`RoleKeeper` of each process tries, every ``lease_check_seconds``, to take the
roles it may hold and does not hold yet; when it gets one, it starts that role's work.
A standby therefore takes a dead holder's role within one check of the holder's
database connection closing.

A role is never given back while the process runs: when the leases may have been lost
(the database connection that holds them broke), another process may already be doing
the same work, so this one stops everything and exits (:class:`bot.ports.LeasesLost`);
its supervisor starts it again, as a standby. Stopping is the only safe answer: a
process cut off from its database cannot tell whether someone took over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from bot.ports import Leases

log = logging.getLogger(__name__)

RoleWork = Callable[[], Coroutine[Any, Any, None]]


class RoleKeeper:
    def __init__(
        self,
        leases: Leases,
        work: Mapping[str, RoleWork],
        *,
        check_seconds: float = 5.0,
        name: str = "",
        on_change: Callable[[Sequence[str]], Awaitable[None]] | None = None,
        grace: float = 0.0,
        others_recent: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """``work`` maps each role this process may hold to the coroutine that does it
        (running until cancelled); ``on_change`` hears the roles held after each change
        and at every check (the instance register's heartbeat).

        ``grace``: after taking a role while another instance was recently alive
        (``others_recent``), wait this long before doing its work. A holder whose lease
        connection broke while the process lives notices within one check and stops;
        the wait makes sure it has, so the two never do the same work at once.
        """
        self._leases = leases
        self._work = dict(work)
        self._check_seconds = check_seconds
        self._name = name
        self._on_change = on_change
        self._grace = grace
        self._others_recent = others_recent
        self.held: list[str] = []
        self._first_round = asyncio.Event()

    @property
    def wanted(self) -> list[str]:
        return list(self._work)

    async def first_round(self) -> None:
        """Wait until the first try to take the roles is over (held or not)."""
        await self._first_round.wait()

    async def run(self) -> None:
        """Take roles and run their work until cancelled; raises ``LeasesLost``."""
        async with asyncio.TaskGroup() as group:
            waiting_logged = False
            while True:
                await self._leases.check()
                taken = []
                for role in self._work:
                    if role in self.held:
                        continue
                    if await self._leases.try_acquire(role):
                        self.held.append(role)
                        taken.append(role)
                if taken:
                    if self._grace and self._others_recent and await self._others_recent():
                        log.info(
                            "%s: took role(s) %s; starting in %.0f s, once the last holder "
                            "has surely stopped",
                            self._name or "this instance",
                            ", ".join(taken),
                            self._grace,
                        )
                        await asyncio.sleep(self._grace)
                        await self._leases.check()
                    for role in taken:
                        group.create_task(self._work[role](), name=f"role-{role}")
                    log.info("%s: took role(s) %s", self._name or "this instance", ", ".join(taken))
                missing = [role for role in self._work if role not in self.held]
                if missing and not waiting_logged:
                    log.info(
                        "%s: standing by for %s (held by another instance)",
                        self._name or "this instance",
                        ", ".join(missing),
                    )
                    waiting_logged = True
                if self._on_change is not None:
                    await self._on_change(list(self.held))
                self._first_round.set()
                await asyncio.sleep(self._check_seconds)
