"""Full-text ticket search: SQLite FTS5 or PostgreSQL text search (to be written)."""

from __future__ import annotations

from collections.abc import Sequence

from peewee import Database

from bot.repository import SearchPage, SearchQuery


def search_tickets(
    db: Database, query: SearchQuery, queues: Sequence[str], offset: int, limit: int
) -> SearchPage:
    raise NotImplementedError
