"""JSON log lines carry the ticket number, so one ticket can be followed through the logs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from bot.logformat import JsonFormatter, setup_logging
from tests.core.conftest import desk_config


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("bot.commands", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_ticket_number_in_the_message_becomes_a_field() -> None:
    line = json.loads(
        JsonFormatter().format(record("%s by %s on %s", "claim", "@a:x", "2026112410000012"))
    )
    assert line["ticket"] == "2026112410000012"
    assert line["message"] == "claim by @a:x on 2026112410000012"
    assert line["level"] == "INFO" and line["logger"] == "bot.commands"
    assert line["time"].endswith("+00:00")


def test_an_explicit_ticket_wins_and_lines_without_one_have_none() -> None:
    explicit = json.loads(JsonFormatter().format(record("sent", ticket="2026112410000001")))
    assert explicit["ticket"] == "2026112410000001"
    plain = json.loads(JsonFormatter().format(record("outbox idle; 12345678901234567890 bytes")))
    assert "ticket" not in plain


def test_errors_are_kept_in_one_line() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        import sys

        made = record("failed on 2026112410000003")
        made.exc_info = sys.exc_info()
    text = JsonFormatter().format(made)
    assert "\n" not in text
    line = json.loads(text)
    assert "ValueError: broken" in line["error"] and line["ticket"] == "2026112410000003"


def test_setup_logging_writes_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    setup_logging("INFO", "json")
    try:
        logging.getLogger("bot.intake").info("ticket %s created", "2026112410000007")
        logging.getLogger("bot.intake").debug("not shown")
    finally:  # leave the root logger as pytest had it
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["ticket"] for x in lines] == ["2026112410000007"]


def test_the_format_is_a_setting(tmp_path: Path) -> None:
    config = desk_config(tmp_path, extra={"logging": {"level": "INFO", "format": "json"}})
    assert config.log_format == "json"
