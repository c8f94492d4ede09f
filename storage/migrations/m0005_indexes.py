"""Schema step 5: indexes for search and the reports on a large desk.

Measured on a million tickets (docs/search-performance.md), each is here because a plan
needed it:

- ``ticket_updated_at_id`` on ``ticket(updated_at, id)``: search lists newest change
  first with the id as tie-break, and pages by that pair (keyset). Walking this index in
  order and stopping after a page is what makes a common word or a filter matching half
  the desk cheap. It replaces ``ticket_updated_at`` (step 2), which it covers.
- ``ticket_unowned`` on ``ticket(updated_at, id) WHERE owner IS NULL``: ``owner:none``
  is a few percent of a desk (closed tickets keep their owner); the partial index finds
  them in order without reading the rest.
- ``ticket_created_at`` on ``ticket(created_at)``: a month's ``stats`` counts tickets
  created in the month; without it both databases read every ticket.
- ``audit_log_ticket_id_action_at`` on ``audit_log(ticket_id, action, at)``: the
  reports replay a ticket's close/reopen history and find its first close; this answers
  both from the index alone.

Only indexes change; no table or row is touched, so the step is safe to re-run after a
failure (it runs in one transaction).
"""

from __future__ import annotations

from storage.migrations.base import Migrator

VERSION = 5

_STATEMENTS = [
    'CREATE INDEX "ticket_updated_at_id" ON "ticket" ("updated_at", "id")',
    'DROP INDEX "ticket_updated_at"',
    'CREATE INDEX "ticket_unowned" ON "ticket" ("updated_at", "id") WHERE "owner" IS NULL',
    'CREATE INDEX "ticket_created_at" ON "ticket" ("created_at")',
    ('CREATE INDEX "audit_log_ticket_id_action_at" ON "audit_log" ("ticket_id", "action", "at")'),
]


def upgrade(migrator: Migrator) -> None:
    for statement in _STATEMENTS:
        migrator.execute(statement)
