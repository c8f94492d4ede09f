"""Storage for several instances on one database: the instance register and outbox claims.

A mixin of :class:`storage.store.PeeweeRepository`. Every method runs inside the store's
transaction. An outbox item is claimed by writing the instance's id into
``outbox.claimed_by``; on PostgreSQL the rows are first locked with ``FOR UPDATE SKIP
LOCKED``, so two instances claiming at the same moment each get different rows without
waiting for each other. A claim stays until the item is done, retried or failed, or
until its instance is gone (its liveness lock free: see ``storage/leases.py``); then any
instance may take it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from peewee import fn

from bot.repository import OutboxItem
from storage import models as m
from storage.database import is_sqlite

WAITING = ("pending", "sending")
#: The advisory lock that makes start-up steps (schema upgrade, queue list) one instance
#: at a time on PostgreSQL ("tb" "st").
STARTUP_LOCK = 0x74627374


def _item(row: m.OutboxEntry) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        channel=row.channel,
        kind=row.kind,
        ticket_id=row.ticket_id,
        article_id=row.article_id,
        payload=json.loads(row.payload or "{}"),
        attempts=row.attempts,
        created_at=row.created_at,
    )


class InstanceQueries:
    # --- the register ------------------------------------------------------------------------

    def register_instance(self, instance_id: int, name: str, now: datetime) -> None:
        """Enter a process that starts now under its (random, never reused) id."""
        m.Instance.insert(
            id=instance_id, name=name, started_at=now, last_seen=now, roles=""
        ).on_conflict_ignore().execute()

    def instance_seen(
        self, instance_id: int, now: datetime, roles: Sequence[str], name: str = ""
    ) -> None:
        """The heartbeat; enters the process if it could not be entered at its start."""
        updated = (
            m.Instance.update(last_seen=now, roles=",".join(roles))
            .where(m.Instance.id == instance_id)
            .execute()
        )
        if not updated:
            m.Instance.insert(
                id=instance_id, name=name, started_at=now, last_seen=now, roles=",".join(roles)
            ).on_conflict_ignore().execute()

    def instance_stopped(self, instance_id: int, now: datetime) -> int:
        """Mark a clean stop and give back the process's claims; how many it gave back."""
        m.Instance.update(stopped_at=now, last_seen=now, roles="").where(
            m.Instance.id == instance_id
        ).execute()
        return int(
            m.OutboxEntry.update(claimed_by=None)
            .where(m.OutboxEntry.claimed_by == instance_id)
            .execute()
        )

    def others_seen_since(self, instance_id: int, since: datetime) -> bool:
        """Whether another instance, not stopped cleanly, was alive at ``since`` or later."""
        return bool(
            m.Instance.select()
            .where(
                (m.Instance.id != instance_id)
                & (m.Instance.last_seen >= since)
                & m.Instance.stopped_at.is_null()
            )
            .exists()
        )

    def prune_instances(self, before: datetime) -> int:
        """Forget instances last seen before ``before`` that hold no claims."""
        claimed = m.OutboxEntry.select(m.OutboxEntry.claimed_by).where(
            m.OutboxEntry.claimed_by.is_null(False)
        )
        return int(
            m.Instance.delete()
            .where((m.Instance.last_seen < before) & m.Instance.id.not_in(claimed))
            .execute()
        )

    # --- claims ------------------------------------------------------------------------------

    def outbox_claimants(self, channel: str, instance_id: int) -> list[int]:
        """Other instances holding claims on waiting items of ``channel``."""
        rows = (
            m.OutboxEntry.select(m.OutboxEntry.claimed_by)
            .where(
                (m.OutboxEntry.channel == channel)
                & m.OutboxEntry.state.in_(WAITING)
                & m.OutboxEntry.claimed_by.is_null(False)
                & (m.OutboxEntry.claimed_by != instance_id)
            )
            .distinct()
        )
        return [int(row.claimed_by or 0) for row in rows]

    def claim_outbox(
        self,
        channel: str,
        now: datetime,
        limit: int,
        instance_id: int,
        gone: Sequence[int] = (),
    ) -> list[OutboxItem]:
        """Claim due items of ``channel`` for ``instance_id`` and return them.

        Only each ticket's oldest waiting item is given (whoever holds it), so a ticket's
        posts keep their order across instances. Items claimed by an instance in
        ``gone`` (found dead by the caller) are taken over.
        """
        earlier_entry = m.OutboxEntry.alias()
        earlier = earlier_entry.select(earlier_entry.id).where(
            (earlier_entry.channel == channel)
            & earlier_entry.state.in_(WAITING)
            & (earlier_entry.ticket == m.OutboxEntry.ticket)
            & (earlier_entry.id < m.OutboxEntry.id)
        )
        free = m.OutboxEntry.claimed_by.is_null() | (m.OutboxEntry.claimed_by == instance_id)
        if gone:
            free = free | m.OutboxEntry.claimed_by.in_(list(gone))
        query = (
            m.OutboxEntry.select()
            .where(
                (m.OutboxEntry.channel == channel)
                & m.OutboxEntry.state.in_(WAITING)
                & (m.OutboxEntry.next_attempt_at <= now)
                & free
                & ~fn.EXISTS(earlier)
            )
            .order_by(m.OutboxEntry.priority, m.OutboxEntry.id)
            .limit(limit)
        )
        db = m.database_proxy.obj
        if db is not None and not is_sqlite(db):
            # rows another instance is claiming this very moment are passed over, not
            # waited for; SQLite needs nothing: its transactions are serial
            query = query.for_update(skip_locked=True)
        rows = list(query)
        if rows:
            m.OutboxEntry.update(claimed_by=instance_id).where(
                m.OutboxEntry.id.in_([row.id for row in rows])
            ).execute()
        return [_item(row) for row in rows]

    def defer_outbox_of_requester(self, address: str, since: datetime) -> int:
        """A flood started: the posts still waiting for the sender's recent tickets wait
        behind everything else (the tickets keep their own order)."""
        tickets = m.Ticket.select(m.Ticket.id).where(
            (m.Ticket.requester_email == address) & (m.Ticket.created_at >= since)
        )
        return int(
            m.OutboxEntry.update(priority=1)
            .where(m.OutboxEntry.state.in_(WAITING) & m.OutboxEntry.ticket.in_(tickets))
            .execute()
        )

    def lock_startup(self) -> None:
        """Start-up steps one instance at a time, until this transaction ends (PostgreSQL)."""
        db = m.database_proxy.obj
        if db is not None and not is_sqlite(db):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (STARTUP_LOCK,))
