"""The console as a chat platform: tickets and their threads printed to the terminal."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from adapters.console import render
from bot.chat import ArticleView, TicketView
from bot.files import ResultFile

#: Where :meth:`ConsoleGateway.post_report` saves a report's files unless told otherwise.
REPORTS_DIR = Path("var/reports")
#: Characters kept out of a saved file's name: control characters, separators, reserved ones.
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069<>:"|?*]+')


class ConsoleGateway:
    """Implements :class:`bot.chat.ChatGateway`; a ticket's "root message" is its number.

    A terminal shows no images: a report's files are saved in ``files_dir``
    (``var/reports``) and their paths printed.
    """

    name = "console"

    def __init__(self, out: TextIO | None = None, files_dir: Path | None = None) -> None:
        self._out = out or sys.stdout
        self._files_dir = files_dir if files_dir is not None else REPORTS_DIR

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    async def post_ticket(
        self, room: str, ticket: TicketView, first: ArticleView | None, key: str
    ) -> str:
        # the first mail follows in full, so the preview would only repeat it
        self._print(render.ticket_block(ticket, preview=first is None))
        if first is not None:
            self._print(render.article_block(ticket.number, first))
        return ticket.number

    async def post_article(
        self, room: str, root_ref: str, ticket: TicketView, article: ArticleView, key: str
    ) -> None:
        self._print(render.article_block(ticket.number, article))

    async def update_ticket(self, room: str, root_ref: str, ticket: TicketView, key: str) -> None:
        self._print(render.update_line(ticket))

    async def post_notice(
        self, room: str, root_ref: str, text: str, key: str, actions: Sequence[str] = ()
    ) -> None:
        self._print(render.notice_line(root_ref, text, actions))

    async def post_ping(
        self, room: str, root_ref: str | None, text: str, users: Sequence[str], key: str
    ) -> None:
        """A terminal cannot notify anyone; the line names who the reminder is for."""
        self._print(render.ping_line(room, root_ref, text, users))

    async def post_report(
        self, room: str, text: str, files: Sequence[ResultFile], key: str
    ) -> None:
        """The text, then each file saved under its base name and the path it went to.

        A retry writes the same files again, over the first copies.
        """
        lines = [render.safe(text)]
        if files:
            self._files_dir.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        for file in files:
            path = self._files_dir / unique_name(base_name(file.name), taken)
            path.write_bytes(file.data)
            about = f"{file.content_type}, {len(file.data):,} bytes"
            lines.append(f"  📎 saved {render.safe(str(path))} ({render.safe(about)})")
        self._print("\n".join(lines))

    def link(self, room: str, root_ref: str) -> str:
        """No links on a terminal: where to look instead."""
        return render.pointer(room, root_ref)


def base_name(name: str) -> str:
    """``name`` without any folder (``../x.png``, ``C:\\x.png`` -> ``x.png``), safe to save.

    Leading dots are dropped too (no hidden files, no ``..``); "file" when nothing is left.
    """
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip(" ").lstrip(".")
    return name.encode()[:200].decode(errors="ignore") or "file"


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2.ext`` (``-3``, ...) when a file of this report already has it."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, dot, suffix = name, "", ""
    candidate, count = name, 1
    while candidate.lower() in taken:
        count += 1
        candidate = f"{stem}-{count}{dot}{suffix}"
    taken.add(candidate.lower())
    return candidate
