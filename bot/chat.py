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
from bot.files import ResultFile
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
    priority: int = 3
    tags: tuple[str, ...] = ()
    language: str = ""
    pending_until: datetime | None = None
    #: Set on the old root of a moved ticket, or one merged into another: where it is now.
    moved_to: str = ""

    @property
    def headline(self) -> str:
        return f"[Ticket#{self.number}] {self.subject or '(no subject)'}"

    @property
    def state_label(self) -> str:
        """``pending reminder until 2026-12-01 09:00``, ``closed successful``, ``new``."""
        label = self.state.replace("_", " ")
        if self.pending_until is not None and self.state.startswith("pending"):
            label += f" until {self.pending_until:%Y-%m-%d %H:%M} UTC"
        return label

    @property
    def status_line(self) -> str:
        """One line for the root message; plain text, each adapter escapes it."""
        if self.moved_to:
            return f"moved · now {self.moved_to}"
        owner = f" · claimed by {self.owner}" if self.owner else " · unclaimed"
        parts = [f"{self.state_label}{owner} · queue {self.queue}"]
        if self.priority != 3:
            parts.append(f"priority {self.priority}")
        if self.language:
            parts.append(f"language {self.language}")
        if self.tags:
            parts.append("tags " + ", ".join(self.tags))
        return " · ".join(parts)


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
    article_id: int | None = None
    #: From someone who is not a participant: waiting for ``attach`` or ``newticket``.
    held: bool = False

    @property
    def heading(self) -> str:
        if self.kind == ArticleKind.INBOUND:
            auto = f" ({self.auto_kind})" if self.auto_kind else ""
            if self.held:
                return (
                    f"⚠ Email from an unknown sender, {self.author}{auto}: held. "
                    f"attach {self.article_id} adds it to this ticket, "
                    f"newticket {self.article_id} opens it as a new one"
                )
            return f"✉ Email from {self.author}{auto}"
        if self.kind == ArticleKind.REPLY:
            if self.send_state == "approval":
                return f"↩ Draft reply by {self.author}, waiting for a volunteer's approval"
            return f"↩ Reply by {self.author}"
        if self.kind == ArticleKind.AUTO_REPLY:
            return "🤖 Automatic acknowledgement sent"
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
        priority=ticket.priority,
        tags=ticket.tags,
        language=ticket.language,
        pending_until=ticket.pending_until,
    )


def article_view(
    article: Article, files: Sequence[AttachmentData] = (), body: str | None = None
) -> ArticleView:
    """``body`` replaces the stored text where chat shows less (quoted history stripped)."""
    author = article.author_name or article.author
    if article.kind is ArticleKind.INBOUND and article.author_name:
        author = f"{article.author_name} <{article.author}>"
    names = tuple(f"{a.filename} ({a.content_type}, {a.size} bytes)" for a in article.attachments)
    return ArticleView(
        kind=article.kind.value,
        author=author,
        created_at=article.created_at,
        subject=article.subject,
        body=article.body if body is None else body,
        attachments=names,
        auto_kind=article.auto_kind,
        send_state=article.send_state.value if article.send_state else "",
        files=tuple(files),
        article_id=article.id,
        held=article.held,
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

    async def post_notice(
        self, room: str, root_ref: str, text: str, key: str, actions: Sequence[str] = ()
    ) -> None:
        """A short line from the bot in the ticket's thread (claimed by, closed by, send failed).

        ``actions`` names commands offered right there (``undo`` while a reply waits):
        buttons where the platform has them; the text already says how to type them.
        """

    async def post_ping(
        self, room: str, root_ref: str | None, text: str, users: Sequence[str], key: str
    ) -> None:
        """A reminder that notifies ``users`` (the core's user ids, e.g. ``discord:123``).

        In the ticket's thread when ``root_ref`` is given, else in the room itself.
        ``text`` is the bot's own; these users are the only ones it may notify.
        """

    def link(self, room: str, root_ref: str) -> str:
        """A link (or, without links, a plain pointer) to a ticket's root message."""

    async def post_report(
        self, room: str, text: str, files: Sequence[ResultFile], key: str
    ) -> None:
        """A message with files in a room, outside any ticket: the weekly traffic report.

        Images show inline where the platform can; nothing in it pings anyone.
        """
