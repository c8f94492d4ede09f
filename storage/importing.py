"""What ``ticketbot import-mail`` reads from the database beyond the repository: the
numbers of tickets and articles, to check that a run added what it reported.

Called inside the store's transaction (``store.run``), where the models are bound.
"""

from __future__ import annotations

from storage import models as m


def database_counts() -> tuple[int, int]:
    """(tickets, articles) in the database now."""
    return int(m.Ticket.select().count()), int(m.Article.select().count())
