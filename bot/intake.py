"""Turning received mail into tickets and follow-ups.

Each message is handled in one transaction: the raw bytes, the ticket or follow-up,
the chat posts to make and the record that the message is taken in are committed
together, or not at all. The mail adapter flags the message on the server only
after :meth:`IntakeService.ingest` returns, so a crash at any point loses nothing,
and the Message-ID check means a message fetched twice makes one ticket.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from bot.config import Config
from bot.domain import SYSTEM, Article, ArticleKind, Ticket, TicketState
from bot.mail import Address, AttachmentData, InboundEmail
from bot.ports import Clock, IntakeOutcome, MailCursor, MailKey, StoreUnavailable
from bot.repository import Repository, Store
from bot.routing import route_queue, ticket_number_in_subject

log = logging.getLogger(__name__)


class IntakeService:
    """Implements :class:`bot.ports.MailIntake` for every mail source adapter."""

    def __init__(
        self, config: Config, store: Store, clock: Clock, wake: Callable[[], None]
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._wake = wake

    async def ingest(self, email: InboundEmail, key: MailKey) -> IntakeOutcome:
        try:
            outcome = await self._store.run(lambda repo: self._ingest(repo, email, key))
        except StoreUnavailable:
            raise  # the database is away: the mail stays unflagged and is tried again
        except Exception as exc:
            # Something in this one mail cannot be stored as it is. Keep it anyway, as a
            # ticket holding the raw message, so one bad mail never stops the mailbox.
            log.exception("mail %s (%s) could not be stored as parsed", key.item, email.message_id)
            fallback = _unreadable(email, exc)
            outcome = await self._store.run(lambda repo: self._ingest(repo, fallback, key))
        if not outcome.duplicate:
            self._wake()
            log.info(
                "%s ticket %s from %s (%s)",
                "new" if outcome.created else "follow-up to",
                outcome.ticket_number,
                email.sender.email or "unknown sender",
                key.item,
            )
        else:
            log.info("duplicate %s (%s) already stored", email.message_id, key.item)
        return outcome

    def _ingest(self, repo: Repository, email: InboundEmail, key: MailKey) -> IntakeOutcome:
        now = self._clock.now()
        if repo.message_id_exists(email.message_id):
            existing = repo.ticket_by_message_ids([email.message_id])
            repo.record_intake(key, email.message_id, existing.id if existing else None, now)
            self._advance_cursor(repo, key)
            return IntakeOutcome(existing.number if existing else "", False, True)

        ticket = self._find_follow_up_target(repo, email)
        created = ticket is None
        if ticket is None:
            ticket = self._new_ticket(repo, email)
        article = repo.add_article(
            Article(
                id=None,
                ticket_id=_id(ticket),
                kind=ArticleKind.INBOUND,
                author=email.sender.email,
                author_name=email.sender.name,
                subject=email.subject,
                body=_body_with_notes(email),
                created_at=now,
                message_id=email.message_id,
                in_reply_to=email.in_reply_to[0] if email.in_reply_to else "",
                references=email.references,
                to=tuple(a.email for a in email.to),
                cc=tuple(a.email for a in email.cc),
                auto_kind=email.auto_kind,
            ),
            raw=email.raw,
            attachments=email.attachments,
        )
        queue = self._config.queue(ticket.queue)
        channels = list(queue.bindings(self._config))
        if created:
            repo.audit(now, SYSTEM, "ticket.created", ticket.id, f"from {email.sender.email}")
            for channel in channels:
                repo.enqueue(channel, "post_ticket", _id(ticket), now)
        else:
            reopened = email.auto_kind == "" and ticket.touch_by_requester(now)
            if email.auto_kind == "":
                repo.save_ticket(ticket)
            repo.audit(now, SYSTEM, "ticket.follow_up", ticket.id, f"from {email.sender.email}")
            for channel in channels:
                repo.enqueue(channel, "post_article", _id(ticket), now, article_id=article.id)
                if reopened:
                    repo.enqueue(
                        channel,
                        "notice",
                        _id(ticket),
                        now,
                        payload={"text": "↺ Reopened by a new email"},
                    )
                    repo.enqueue(channel, "update_ticket", _id(ticket), now)
            if reopened:
                repo.audit(now, SYSTEM, "ticket.reopened", ticket.id, "follow-up email")
        repo.record_intake(key, email.message_id, ticket.id, now)
        self._advance_cursor(repo, key)
        return IntakeOutcome(ticket.number, created, False)

    def _find_follow_up_target(self, repo: Repository, email: InboundEmail) -> Ticket | None:
        ticket = None
        number = ticket_number_in_subject(email.subject)
        if number is not None:
            ticket = repo.ticket_by_number(number)
        if ticket is None:
            referenced = [*email.in_reply_to, *reversed(email.references)]
            if referenced:
                ticket = repo.ticket_by_message_ids(referenced)
        if ticket is not None and not self._addressed_to_queue_of(email, ticket):
            # e.g. a volunteer forwards a ticket to another team's address: that is a
            # new ticket there, and its text must not land in the first queue's room
            return None
        return ticket

    def _addressed_to_queue_of(self, email: InboundEmail, ticket: Ticket) -> bool:
        """True unless the mail went only to other queues' addresses."""
        queues = {
            queue.name
            for recipient in email.recipients
            for queue in self._config.queues
            if recipient.email.lower() in queue.addresses
        }
        return not queues or ticket.queue in queues

    def _new_ticket(self, repo: Repository, email: InboundEmail) -> Ticket:
        now = self._clock.now()
        queue = route_queue(email, self._config.queues)
        number = repo.next_ticket_number(now.date(), self._config.tickets.system_id)
        return repo.add_ticket(
            Ticket(
                id=None,
                number=number,
                queue=queue.name,
                subject=email.subject,
                requester_email=(email.reply_to[0] if email.reply_to else email.sender).email,
                requester_name=email.sender.name,
                created_at=now,
                updated_at=now,
                state=TicketState.NEW,
            )
        )

    @staticmethod
    def _advance_cursor(repo: Repository, key: MailKey) -> None:
        if key.item.isdigit():
            repo.advance_cursor(key.source, key.validity, int(key.item))

    async def cursor(self, source: str) -> MailCursor | None:
        return await self._store.run(lambda repo: repo.cursor(source))

    async def reset_cursor(self, source: str, validity: int) -> None:
        log.warning("mailbox %s: new UIDVALIDITY %s, reading it from the start", source, validity)
        await self._store.run(lambda repo: repo.set_cursor(source, validity, 0))

    async def pending_done(self, source: str) -> list[MailKey]:
        return await self._store.run(lambda repo: repo.intake_pending(source))

    async def mark_done(self, key: MailKey) -> None:
        now = self._clock.now()
        await self._store.run(lambda repo: repo.intake_done(key, now))


def _unreadable(email: InboundEmail, error: Exception) -> InboundEmail:
    """A stand-in for a mail that could not be stored: plain, with the raw bytes attached."""
    digest = hashlib.sha256(email.raw).hexdigest()
    return InboundEmail(
        raw=email.raw,
        message_id=f"<sha256-{digest}@unreadable.ticketbot.invalid>",
        subject="(a mail ticketbot could not read; the original is attached)",
        sender=Address(_printable(email.sender.email)[:254], _printable(email.sender.name)[:200]),
        to=tuple(Address(_printable(a.email)[:254]) for a in email.to[:20]),
        text=(
            "ticketbot could not store this mail as it was parsed "
            f"({type(error).__name__}). The original message is attached as original.eml."
        ),
        attachments=(AttachmentData("original.eml", "message/rfc822", email.raw),),
        auto_kind=email.auto_kind,
    )


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())


def _id(ticket: Ticket) -> int:
    assert ticket.id is not None, "ticket must be stored first"
    return ticket.id


def _body_with_notes(email: InboundEmail) -> str:
    body = email.text.strip() or "(no text)"
    if email.dropped_attachments:
        dropped = "\n".join(f"- {name}" for name in email.dropped_attachments)
        body += f"\n\n[ticketbot: attachments not kept, over the size limit]\n{dropped}"
    return body
