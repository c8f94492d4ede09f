"""What each ticket command does, one module per kind of work.

Every handler runs inside the command's single transaction (see
:mod:`bot.repository`): it changes the ticket, writes the audit line, and queues
the chat posts and emails the change causes, all or nothing. Handlers get an
:class:`Action` and return the short answer shown to the volunteer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import Config, QueueConfig
from bot.domain import Actor, Ticket
from bot.repository import Repository


@dataclass
class Action:
    """One command being carried out: who, on which ticket, with what arguments."""

    config: Config
    repo: Repository
    ticket: Ticket
    actor: Actor
    name: str
    args: str
    now: datetime

    @property
    def queue(self) -> QueueConfig:
        return self.config.queue(self.ticket.queue)

    @property
    def ticket_id(self) -> int:
        return ticket_id(self.ticket)

    def audit(self, detail: str, action: str | None = None, ticket: Ticket | None = None) -> None:
        target = ticket or self.ticket
        self.repo.audit(self.now, self.actor, action or f"ticket.{self.name}", target.id, detail)

    def announce(
        self, text: str, *, ticket: Ticket | None = None, actions: Sequence[str] = ()
    ) -> None:
        """A notice in the ticket's thread on every platform, and its root message refreshed."""
        announce(self.config, self.repo, ticket or self.ticket, self.now, text, actions=actions)

    def post(self, kind: str, *, article_id: int | None = None, **payload: Any) -> None:
        """Queue one kind of chat work for every platform the ticket's queue is shown on."""
        for channel in self.queue.bindings(self.config):
            self.repo.enqueue(
                channel, kind, self.ticket_id, self.now, article_id=article_id, payload=payload
            )


def announce(
    config: Config,
    repo: Repository,
    ticket: Ticket,
    now: datetime,
    text: str,
    *,
    actions: Sequence[str] = (),
    refresh: bool = True,
) -> None:
    payload: dict[str, Any] = {"text": text}
    if actions:
        payload["actions"] = list(actions)
    for channel in config.queue(ticket.queue).bindings(config):
        # the root first: it is what a volunteer looks at to see who holds a ticket
        # (bench/latency.py: claim -> edit waited behind the notice's round trip)
        if refresh:
            repo.enqueue(channel, "update_ticket", ticket_id(ticket), now)
        repo.enqueue(channel, "notice", ticket_id(ticket), now, payload=payload)


def ticket_id(ticket: Ticket) -> int:
    assert ticket.id is not None, "ticket must be stored first"
    return ticket.id
