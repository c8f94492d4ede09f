"""The console as a chat platform: tickets and their threads printed to the terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from adapters.console import render
from bot.chat import ArticleView, TicketView


class ConsoleGateway:
    """Implements :class:`bot.chat.ChatGateway`; a ticket's "root message" is its number."""

    name = "console"

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

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

    def link(self, room: str, root_ref: str) -> str:
        """No links on a terminal: where to look instead."""
        return render.pointer(room, root_ref)
