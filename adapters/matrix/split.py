"""Cutting long text into several Matrix messages that each fit the event size limit.

A homeserver rejects an event whose JSON exceeds 65,536 bytes, and the outbox
would retry such a post forever. Sizes are therefore counted exactly, for both the
plain ``body`` and the escaped ``formatted_body`` (an email full of ``<`` grows
fourfold when escaped), before anything is sent. Text is cut between lines where
possible; a single over-long line is cut between characters (Python strings hold
whole code points, so a multi-byte character is never torn apart).
"""

from __future__ import annotations

import functools
import html
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.matrix.text import json_len, utf8_len

#: Plain ``body`` size per message: what the brief of the event limit leaves for text.
MAX_BODY_BYTES = 24_000
#: Whole content JSON per message; the rest of 65,536 is the server's envelope
#: (event ids, signatures, hashes), a few hundred bytes to a few kilobytes.
MAX_CONTENT_BYTES = 60_000

_PLAIN_SEP = "\n"
_HTML_SEP = "<br>"


@dataclass(frozen=True)
class Line:
    """One line of a message; ``text`` is already cleaned and defanged, never markup.

    ``style`` is one of our own allow-listed inline tags (``b``, ``i``, ``code``) or
    empty; the text inside is always escaped.
    """

    text: str
    style: str = ""

    @property
    def plain(self) -> str:
        return self.text

    @property
    def html(self) -> str:
        escaped = html.escape(self.text, quote=True)
        if self.style and escaped:
            return f"<{self.style}>{escaped}</{self.style}>"
        return escaped

    def with_text(self, text: str) -> Line:
        return Line(text, self.style)


@dataclass(frozen=True)
class Budget:
    """Bytes left in one message: in the plain body and in the whole content JSON."""

    body: int
    json: int

    def fits(self, cost: Budget) -> bool:
        return cost.body <= self.body and cost.json <= self.json

    def minus(self, cost: Budget) -> Budget:
        return Budget(self.body - cost.body, self.json - cost.json)


def line_cost(line: Line) -> Budget:
    """What a line adds to a message, counting the separator that precedes it."""
    return Budget(
        body=utf8_len(line.plain) + len(_PLAIN_SEP),
        json=json_len(line.plain) + json_len(_PLAIN_SEP) + json_len(line.html) + len(_HTML_SEP),
    )


def join_plain(lines: Sequence[Line]) -> str:
    return _PLAIN_SEP.join(line.plain for line in lines)


def join_html(lines: Sequence[Line]) -> str:
    return _HTML_SEP.join(line.html for line in lines)


def pack(lines: Sequence[Line], budget: Budget) -> list[list[Line]]:
    """Group lines into as few parts as possible, each within ``budget``.

    A line too long for any part fills the rest of the current part (when that is a
    fair amount) and continues over as many parts as it takes.
    """
    parts: list[list[Line]] = []
    current: list[Line] = []
    left = budget
    for line in lines:
        cost = line_cost(line)
        if left.fits(cost):
            current.append(line)
            left = left.minus(cost)
            continue
        if not budget.fits(cost) and current and _roomy(left, budget):
            head, line = _cut(line, left)
            current.append(head)
        if current:
            parts.append(current)
        while not budget.fits(line_cost(line)):
            head, line = _cut(line, budget)
            parts.append([head])
        current, left = [line], budget.minus(line_cost(line))
    if current or not parts:
        parts.append(current)
    return parts


def _roomy(left: Budget, budget: Budget) -> bool:
    return left.body * 4 >= budget.body and left.json * 4 >= budget.json


def _cut(line: Line, budget: Budget) -> tuple[Line, Line]:
    """Split an over-long line into the longest head that fits and the rest.

    Prefers to cut after a space in the second half of the head, so words stay whole.
    """
    fixed = line_cost(line.with_text(""))
    left = budget.minus(fixed)
    end = 0
    for index, char in enumerate(line.text):
        cost = _char_cost(char)
        if not left.fits(cost):
            break
        left = left.minus(cost)
        end = index + 1
    end = max(end, 1)  # a budget always holds one character; never loop without progress
    space = line.text.rfind(" ", end // 2, end)
    if space > 0:
        end = space + 1
    return line.with_text(line.text[:end]), line.with_text(line.text[end:])


@functools.lru_cache(maxsize=4096)
def _char_cost(char: str) -> Budget:
    return Budget(utf8_len(char), json_len(char) + json_len(html.escape(char, quote=True)))
