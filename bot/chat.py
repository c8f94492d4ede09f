"""What the core asks of a chat platform, and the neutral views it hands over.

A gateway renders these views in its own way (Matrix HTML, console text); the text
inside them came from email and is untrusted, so every gateway must show it without
markup and without pinging anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.domain import Article, ArticleKind, Ticket
from bot.mail import AttachmentData


@dataclass(frozen=True)
class TicketView:
    number: str
    queue: str
    state: str
    owner: str  # display label, "" when unclaimed
    requester: str  # "Name <address>"
    subject: str
    preview: str  # the first lines of the first message
    created_at: datetime

    @property
    def headline(self) -> str:
        return f"[Ticket#{self.number}] {self.subject or '(no subject)'}"

    @property
    def status_line(self) -> str:
        owner = f" · claimed by {self.owner}" if self.owner else " · unclaimed"
        return f"{self.state}{owner} · queue {self.queue}"


@dataclass(frozen=True)
class ArticleView:
    kind: str  # inbound | reply | note
    author: str
    created_at: datetime
    subject: str
    body: str
    attachments: tuple[str, ...] = ()
    auto_kind: str = ""
    send_state: str = ""
    #: The attachments' bytes, for platforms that upload them (Discord); Matrix and the
    #: console list ``attachments`` instead.
    files: tuple[AttachmentData, ...] = ()

    @property
    def heading(self) -> str:
        if self.kind == ArticleKind.INBOUND:
            auto = f" ({self.auto_kind})" if self.auto_kind else ""
            return f"✉ Email from {self.author}{auto}"
        if self.kind == ArticleKind.REPLY:
            return f"↩ Reply by {self.author}"
        return f"📝 Internal note by {self.author}"


def ticket_view(ticket: Ticket, first: Article | None, preview_lines: int) -> TicketView:
    requester = (
        f"{ticket.requester_name} <{ticket.requester_email}>"
        if ticket.requester_name
        else ticket.requester_email
    )
    preview = ""
    if first is not None:
        lines = [line.rstrip() for line in first.body.strip().splitlines() if line.strip()]
        preview = "\n".join(line[:200] for line in lines[:preview_lines])
    return TicketView(
        number=ticket.number,
        queue=ticket.queue,
        state=ticket.state.value,
        owner=ticket.owner_name or ticket.owner or "",
        requester=requester,
        subject=ticket.subject,
        preview=preview,
        created_at=ticket.created_at,
    )


def article_view(article: Article, files: Sequence[AttachmentData] = ()) -> ArticleView:
    author = article.author_name or article.author
    if article.kind is ArticleKind.INBOUND and article.author_name:
        author = f"{article.author_name} <{article.author}>"
    names = tuple(f"{a.filename} ({a.content_type}, {a.size} bytes)" for a in article.attachments)
    return ArticleView(
        kind=article.kind.value,
        author=author,
        created_at=article.created_at,
        subject=article.subject,
        body=article.body,
        attachments=names,
        auto_kind=article.auto_kind,
        send_state=article.send_state.value if article.send_state else "",
        files=tuple(files),
    )


class ChatGateway(Protocol):
    """One chat platform as the outbox dispatcher sees it.

    ``key`` is stable across retries of the same outbox item, so a platform that
    supports idempotent sends (Matrix transaction ids) does not post twice.
    """

    name: str

    async def post_ticket(
        self, room: str, ticket: TicketView, first: ArticleView | None, key: str
    ) -> str:
        """Post the root message and the first article in its thread; return the root's id."""

    async def post_article(
        self, room: str, root_ref: str, ticket: TicketView, article: ArticleView, key: str
    ) -> None: ...

    async def update_ticket(self, room: str, root_ref: str, ticket: TicketView, key: str) -> None:
        """Edit the root message to show the current state and owner."""

    async def post_notice(self, room: str, root_ref: str, text: str, key: str) -> None:
        """A short line from the bot in the ticket's thread (claimed by, closed by, send failed)."""
