"""Log lines for people (the default) or for a log collector (``--log-format json``).

Each JSON line carries the ticket number where the message names one, so an operator
can follow one ticket through intake, commands and the outbox with a single filter:
``jq 'select(.ticket == "2026112410000012")'``. A record given ``extra={"ticket": N}``
uses that; otherwise the first ticket number in the message is taken.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

#: Ticket numbers: a date, a two-digit system id and a six-digit counter.
_TICKET = re.compile(r"(?<!\d)(20\d{6}\d{2}\d{6})(?!\d)")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ticket, and any error."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        ticket = getattr(record, "ticket", None)
        if ticket is None:
            found = _TICKET.search(message)
            ticket = found.group(1) if found else None
        if ticket is not None:
            line["ticket"] = str(ticket)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the moment of each line.

    A plain StreamHandler keeps the stream it was made with; when that is replaced (a
    test capturing output, a daemon redirecting it), later lines go to a closed file.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str, fmt: str = "text") -> None:
    """Configure the root logger, to standard error; calling it again replaces its handler
    (and only its own: a test's log capture stays)."""
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _StderrHandler) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level))
    for noisy in ("apscheduler", "nio", "peewee", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))
