"""Fakes for our own interfaces (never for outside servers): a chat gateway that records
what it was asked to post, a mail sender that records or fails, and a clock tests move."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.chat import ArticleView, TicketView
from bot.files import ResultFile
from bot.mail import OutgoingEmail
from bot.ports import MailSendError


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class Posted:
    kind: str
    room: str
    ref: str
    ticket: TicketView
    article: ArticleView | None = None
    text: str = ""
    key: str = ""


@dataclass
class RecordingGateway:
    name: str = "matrix"
    posts: list[Posted] = field(default_factory=list)
    fail_next: int = 0
    actions: list[tuple[str, ...]] = field(default_factory=list)
    pinged: list[tuple[str, ...]] = field(default_factory=list)
    reports: list[tuple[str, str, tuple[ResultFile, ...], str]] = field(default_factory=list)
    _counter: int = 0

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("chat platform unreachable")

    def kinds(self) -> list[str]:
        return [p.kind for p in self.posts]

    async def post_ticket(
        self, room: str, ticket: TicketView, first: ArticleView | None, key: str
    ) -> str:
        self._maybe_fail()
        self._counter += 1
        ref = f"$root{self._counter}"
        self.posts.append(Posted("ticket", room, ref, ticket, first, key=key))
        return ref

    async def post_article(
        self, room: str, root_ref: str, ticket: TicketView, article: ArticleView, key: str
    ) -> None:
        self._maybe_fail()
        self.posts.append(Posted("article", room, root_ref, ticket, article, key=key))

    async def update_ticket(self, room: str, root_ref: str, ticket: TicketView, key: str) -> None:
        self._maybe_fail()
        self.posts.append(Posted("update", room, root_ref, ticket, key=key))

    async def post_notice(
        self, room: str, root_ref: str, text: str, key: str, actions: Sequence[str] = ()
    ) -> None:
        self._maybe_fail()
        self.posts.append(
            Posted("notice", room, root_ref, self.posts[0].ticket, text=text, key=key)
        )
        self.actions.append(tuple(actions))

    async def post_ping(
        self, room: str, root_ref: str | None, text: str, users: Sequence[str], key: str
    ) -> None:
        self._maybe_fail()
        self.posts.append(
            Posted("ping", room, root_ref or "", self.posts[0].ticket, text=text, key=key)
        )
        self.pinged.append(tuple(users))

    async def post_report(
        self, room: str, text: str, files: Sequence[ResultFile], key: str
    ) -> None:
        self._maybe_fail()
        self.reports.append((room, text, tuple(files), key))

    def link(self, room: str, root_ref: str) -> str:
        return f"https://chat.example/{room}/{root_ref}"

    def texts(self, kind: str = "notice") -> list[str]:
        return [p.text for p in self.posts if p.kind == kind]


@dataclass
class RecordingSender:
    sent: list[OutgoingEmail] = field(default_factory=list)
    failures: list[MailSendError] = field(default_factory=list)

    async def send(self, message: OutgoingEmail) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
