"""Routing rules from ``bot.toml``: ordered, first match wins (placeholder until written)."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    number: int


def parse_rules(raw: Any, queues: Set[str]) -> tuple[Rule, ...]:
    return ()
