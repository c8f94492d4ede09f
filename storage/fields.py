"""Column types shared by the models and the frozen migration steps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from peewee import DateTimeField


class UtcDateTimeField(DateTimeField):
    """Stores timezone-aware UTC datetimes as naive UTC, and gives them back aware.

    The core works in aware UTC; SQLite has no time zones, so the database holds UTC.
    """

    def db_value(self, value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return super().db_value(value)  # type: ignore[no-untyped-call]

    def python_value(self, value: Any) -> Any:
        value = super().python_value(value)  # type: ignore[no-untyped-call]
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value
