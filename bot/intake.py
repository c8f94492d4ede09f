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
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bot.actions import announce
from bot.admin.live import LiveConfig, as_live
from bot.config import Config
from bot.domain import SYSTEM, Article, ArticleKind, SendState, Ticket, TicketState
from bot.mail import Address, AttachmentData, InboundEmail
from bot.metrics import Metrics
from bot.ports import (
    Clock,
    IntakeOutcome,
    LanguageDetector,
    MailCursor,
    MailKey,
    StoreUnavailable,
)
from bot.replies import Variables, acknowledgement
from bot.repository import Repository, Store
from bot.routing import reply_subject, route_queue, ticket_number_in_subject
from bot.rules import RuleInput, decide
from bot.timeparse import format_duration

log = logging.getLogger(__name__)


_OUR_MESSAGE_ID = re.compile(rb"<ticketbot\.(\d{10,20})\.")
_PERMANENT_STATUS = re.compile(rb"^Status:\s*5\.\d{1,3}\.\d{1,3}", re.I | re.M)
_FINAL_RECIPIENT = re.compile(
    rb"^Final-Recipient:\s*rfc822\s*;\s*<?([^>\s]+@[^>\s]+)>?", re.I | re.M
)
_CLOSED_BY_HAND = (TicketState.CLOSED_SUCCESSFUL, TicketState.CLOSED_UNSUCCESSFUL)


@dataclass(frozen=True)
class _Routing:
    queue: str
    detail: str
    priority: int = 3
    tags: tuple[str, ...] = ()
    spam: bool = False


class IntakeService:
    """Implements :class:`bot.ports.MailIntake` for every mail source adapter."""

    def __init__(
        self,
        config: Config | LiveConfig,
        store: Store,
        clock: Clock,
        wake: Callable[[], None],
        detector: LanguageDetector | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._live = as_live(config)
        self.metrics = metrics or Metrics()
        self._store = store
        self._clock = clock
        self._wake = wake
        self._detector = detector

    @property
    def _config(self) -> Config:
        """The config in force now: admins' changes apply from the next use on."""
        return self._live.current

    async def ingest(self, email: InboundEmail, key: MailKey) -> IntakeOutcome:
        language = self._language(email)
        try:
            outcome = await self._store.run(lambda repo: self._ingest(repo, email, key, language))
        except StoreUnavailable:
            raise  # the database is away: the mail stays unflagged and is tried again
        except Exception as exc:
            # Something in this one mail cannot be stored as it is. Keep it anyway, as a
            # ticket holding the raw message, so one bad mail never stops the mailbox.
            log.exception("mail %s (%s) could not be stored as parsed", key.item, email.message_id)
            fallback = _unreadable(email, exc)
            outcome = await self._store.run(lambda repo: self._ingest(repo, fallback, key, ""))
        if not outcome.duplicate and (email.dropped_attachments or email.parse_defects):
            what = [*email.parse_defects[:10]]
            if email.dropped_attachments:
                names = ", ".join(email.dropped_attachments[:5])
                more = len(email.dropped_attachments) - 5
                what.append(
                    f"attachments not kept, over the limit: {names}"
                    + (f" and {more} more" if more > 0 else "")
                )
            log.warning(
                "mail %s (%s) for ticket %s: %s",
                key.item,
                email.message_id,
                outcome.ticket_number,
                "; ".join(what),
            )
        if not outcome.duplicate:
            self.metrics.mails_in += 1
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

    def _language(self, email: InboundEmail) -> str:
        if self._detector is None or email.auto_kind:
            return ""
        try:
            return self._detector.detect(email.text)
        except Exception:  # a detector problem must never stop intake
            log.exception("language detection failed for %s", email.message_id)
            return ""

    def _ingest(
        self, repo: Repository, email: InboundEmail, key: MailKey, language: str
    ) -> IntakeOutcome:
        now = self._clock.now()
        if repo.message_id_exists(email.message_id):
            existing = repo.ticket_by_message_ids([email.message_id])
            repo.record_intake(key, email.message_id, existing.id if existing else None, now)
            self._advance_cursor(repo, key)
            return IntakeOutcome(existing.number if existing else "", False, True)

        ticket = self._find_follow_up_target(repo, email)
        if ticket is not None and not email.auto_kind and self._starts_new(ticket, now):
            previous, ticket = ticket, None
            outcome = self._new(repo, email, key, language, now, linked_to=previous)
            announce(
                self._config,
                repo,
                previous,
                now,
                f"↪ A new email to this closed ticket was opened as ticket {outcome.ticket_number}",
                refresh=False,
            )
            return outcome
        if ticket is None:
            return self._new(repo, email, key, language, now)
        return self._follow_up(repo, ticket, email, key, now)

    # --- new tickets ---------------------------------------------------------------------------

    def _new(
        self,
        repo: Repository,
        email: InboundEmail,
        key: MailKey,
        language: str,
        now: datetime,
        linked_to: Ticket | None = None,
    ) -> IntakeOutcome:
        requester = (email.reply_to[0] if email.reply_to else email.sender).email
        flooding = self._flooding(repo, requester, now)
        if isinstance(flooding, Ticket):
            return self._group(repo, flooding, email, key, now)
        sender = email.sender.email.lower()
        marks = frozenset(repo.sender_marks(sender)) if sender else frozenset()
        routing = self._route(email, language, marks)
        number = repo.next_ticket_number(now.date(), self._config.tickets.system_id)
        ticket = repo.add_ticket(
            Ticket(
                id=None,
                number=number,
                queue=routing.queue,
                subject=email.subject,
                requester_email=requester,
                requester_name=email.sender.name,
                created_at=now,
                updated_at=now,
                state=TicketState.SPAM if routing.spam else TicketState.NEW,
                priority=routing.priority,
                tags=routing.tags,
                language=language,
                linked_to=linked_to.id if linked_to else None,
            )
        )
        article = self._store_article(repo, ticket, email, now)
        repo.audit(now, SYSTEM, "ticket.created", ticket.id, f"from {email.sender.email}")
        repo.audit(now, SYSTEM, "ticket.routed", ticket.id, routing.detail)
        if linked_to is not None:
            repo.audit(now, SYSTEM, "ticket.linked", ticket.id, f"continues {linked_to.number}")
        if not routing.spam:
            for channel in self._config.queue(ticket.queue).bindings(self._config):
                repo.enqueue(channel, "post_ticket", _id(ticket), now)
            if flooding is False:
                self._start_flood(repo, ticket, now)
            else:
                self._acknowledge(repo, ticket, email, article, "new", now)
        repo.record_intake(key, email.message_id, ticket.id, now)
        self._advance_cursor(repo, key)
        return IntakeOutcome(ticket.number, True, False)

    # --- floods --------------------------------------------------------------------------------

    def _flooding(self, repo: Repository, requester: str, now: datetime) -> Ticket | bool | None:
        """None: no flood. False: this mail starts one (it becomes the flood's ticket).
        A ticket: the flood's ticket, which this mail joins without a post of its own."""
        flood = self._config.flood
        if flood.threshold == 0 or not requester:
            return None
        since = now - flood.window
        if repo.tickets_from_since(requester, since) < flood.threshold:
            return None
        return repo.flood_ticket(requester, since) or False

    def _start_flood(self, repo: Repository, ticket: Ticket, now: datetime) -> None:
        flood = self._config.flood
        ticket.tags = tuple(sorted({*ticket.tags, "flood"}))
        repo.save_ticket(ticket)
        repo.audit(
            now,
            SYSTEM,
            "ticket.flood",
            ticket.id,
            f"{flood.threshold}+ tickets from {ticket.requester_email} within {flood.window}",
        )
        log.warning(
            "flood: %s opened %d+ tickets within %s; grouping further mail into ticket %s",
            ticket.requester_email,
            flood.threshold,
            flood.window,
            ticket.number,
        )
        announce(
            self._config,
            repo,
            ticket,
            now,
            f"🌊 {ticket.requester_email} sent {flood.threshold}+ new mails within "
            f"{format_duration(flood.window)}: more mail from them is grouped in this ticket, "
            "not posted one by one (show lists it; spam stops it).",
        )
        # what is still to be posted of this sender's tickets waits behind everyone
        # else's: a real ticket arriving now is not posted behind the flood's backlog
        repo.defer_outbox_of_requester(ticket.requester_email, now - flood.window)

    def _group(
        self, repo: Repository, ticket: Ticket, email: InboundEmail, key: MailKey, now: datetime
    ) -> IntakeOutcome:
        """A flood's next mail: stored in the flood's ticket, counted, not posted; nothing
        is lost, and the queue's room stays readable for everyone else's mail."""
        self._store_article(repo, ticket, email, now)
        grouped = repo.article_count(_id(ticket))
        every = self._config.flood.notice_every
        channels = self._config.queue(ticket.queue).bindings(self._config)
        if ticket.state is not TicketState.SPAM and (grouped % every == 0):
            for channel in channels:
                repo.enqueue(
                    channel,
                    "notice",
                    _id(ticket),
                    now,
                    payload={"text": f"🌊 {grouped} mails grouped in this ticket so far"},
                )
            repo.defer_outbox_of_requester(ticket.requester_email, now - self._config.flood.window)
        repo.record_intake(key, email.message_id, ticket.id, now)
        self._advance_cursor(repo, key)
        return IntakeOutcome(ticket.number, False, False)

    def _route(self, email: InboundEmail, language: str, marks: frozenset[str]) -> _Routing:
        """The queue by address, then the rules; the reason is written to the ticket's history."""
        queue = route_queue(email, self._config.queues)
        by_address = {a: q.name for q in self._config.queues for a in q.addresses}
        address = next(
            (r.email.lower() for r in email.recipients if r.email.lower() in by_address), None
        )
        detail = (
            f"routed to {queue.name} by address {address}"
            if address
            else f"routed to {queue.name}: default queue (no known recipient address)"
        )
        decision = decide(self._config.rules, RuleInput(email, language, marks))
        if decision is None:
            return _Routing(queue.name, detail)
        target = decision.queue or queue.name
        actions = []
        if decision.priority is not None:
            actions.append(f"priority {decision.priority}")
        if decision.tags:
            actions.append("tags " + ", ".join(decision.tags))
        if decision.spam:
            actions.append("spam")
        suffix = f" ({'; '.join(actions)})" if actions else ""
        return _Routing(
            queue=target,
            detail=f"routed to {target} by {decision.reason}{suffix}",
            priority=decision.priority if decision.priority is not None else 3,
            tags=tuple(decision.tags),
            spam=decision.spam,
        )

    # --- follow-ups ----------------------------------------------------------------------------

    def _follow_up(
        self, repo: Repository, ticket: Ticket, email: InboundEmail, key: MailKey, now: datetime
    ) -> IntakeOutcome:
        # a stranger's mail is held even when it calls itself automatic: anyone can add
        # an Auto-Submitted header to get text into someone else's ticket
        held = not self._is_participant(repo, ticket, email)
        article = self._store_article(repo, ticket, email, now, held=held)
        channels = list(self._config.queue(ticket.queue).bindings(self._config))
        show = ticket.state is not TicketState.SPAM
        reopened = False
        if held:
            repo.audit(
                now, SYSTEM, "ticket.held", ticket.id, f"from unknown sender {email.sender.email}"
            )
            self._check_bounce(repo, ticket, email, now, channels if show else [])
        elif email.auto_kind:
            # out-of-office replies and bounces are recorded without changing the state
            repo.audit(
                now,
                SYSTEM,
                "ticket.auto_mail",
                ticket.id,
                f"{email.auto_kind} from {email.sender.email}",
            )
            self._check_bounce(repo, ticket, email, now, channels if show else [])
        else:
            reopened = ticket.touch_by_requester(now)
            repo.save_ticket(ticket)
            repo.audit(now, SYSTEM, "ticket.follow_up", ticket.id, f"from {email.sender.email}")
        if show:
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
            self._acknowledge(repo, ticket, email, article, "reopen", now)
        repo.record_intake(key, email.message_id, ticket.id, now)
        self._advance_cursor(repo, key)
        return IntakeOutcome(ticket.number, False, False)

    def _starts_new(self, ticket: Ticket, now: datetime) -> bool:
        """Per queue: does a follow-up to this closed ticket open a new, linked ticket?"""
        if ticket.state not in _CLOSED_BY_HAND:
            return False
        queue = self._config.queue(ticket.queue)
        if queue.follow_up_closed == "new":
            return True
        if queue.follow_up_closed == "reopen_within":
            return now - ticket.updated_at > timedelta(days=queue.reopen_days)
        return False

    def _is_participant(self, repo: Repository, ticket: Ticket, email: InboundEmail) -> bool:
        """The requester, anyone Cc'd on the ticket's mail, or a sender a volunteer accepted."""
        sender = email.sender.email.lower()
        if not sender:
            return False
        if sender == ticket.requester_email.lower():
            return True
        if sender in self._config.own_addresses:
            return False
        known: set[str] = set()
        for article in repo.articles(_id(ticket)):
            if article.held:
                continue
            if article.kind is ArticleKind.INBOUND:
                known.add(article.author.lower())
                known.update(a.lower() for a in article.cc)
            elif article.kind is ArticleKind.REPLY:
                known.update(a.lower() for a in (*article.to, *article.cc))
        return sender in known

    def _check_bounce(
        self,
        repo: Repository,
        ticket: Ticket,
        email: InboundEmail,
        now: datetime,
        channels: list[str],
    ) -> None:
        """A permanent bounce (DSN status 5.x.x) marks the requester's address undeliverable."""
        if email.auto_kind != "bounce":
            return
        head = email.raw[:262144]
        if not _PERMANENT_STATUS.search(head):
            return
        final = _FINAL_RECIPIENT.search(head)
        address = (
            final.group(1).decode("ascii", "replace").lower() if final else ticket.requester_email
        )
        repo.mark_sender(address, "undeliverable", now, f"bounce on ticket {ticket.number}")
        repo.audit(now, SYSTEM, "sender.undeliverable", ticket.id, address)
        for channel in channels:
            repo.enqueue(
                channel,
                "notice",
                _id(ticket),
                now,
                payload={
                    "text": f"✖ Mail to {address} bounced permanently; the address is marked "
                    "undeliverable."
                },
            )

    # --- acknowledgements (RFC 3834) -----------------------------------------------------------

    def _acknowledge(
        self,
        repo: Repository,
        ticket: Ticket,
        email: InboundEmail,
        article: Article,
        kind: Literal["new", "reopen"],
        now: datetime,
    ) -> None:
        """Send the queue's acknowledgement, unless RFC 3834 or the loop guard says no.

        Never to automatic mail (Auto-Submitted, bounces, lists, bulk), never to the
        desk's own addresses, never to a sender marked spam or undeliverable, and at
        most N a day to one address: two auto-responders pointed at each other stop.
        """
        queue = self._config.queue(ticket.queue)
        to = ticket.requester_email.lower()
        variables = Variables(
            requester_name=ticket.requester_name,
            requester_email=ticket.requester_email,
            ticket_number=ticket.number,
            volunteer_name=queue.sender_name or queue.name,
            queue=queue.name,
            subject=ticket.subject,
        )
        text = acknowledgement(queue, kind, ticket.language or queue.language, variables)
        if text is None or email.auto_kind or "@" not in to:
            return
        if (
            to in self._config.own_addresses
            or email.sender.email.lower() in self._config.own_addresses
        ):
            log.info("no acknowledgement for %s: it is one of the desk's own addresses", to)
            return
        if repo.sender_marks(to) & {"spam", "undeliverable"}:
            return
        limit = self._config.autoresponse.max_per_sender_per_day
        if repo.auto_responses_since(to, now - timedelta(days=1)) >= limit:
            log.info("no acknowledgement for %s: %d sent in the last day", to, limit)
            repo.audit(now, SYSTEM, "ticket.autoresponse_skipped", ticket.id, f"limit {limit}/day")
            return
        domain = queue.reply_address.rpartition("@")[2]
        ack = repo.add_article(
            Article(
                id=None,
                ticket_id=_id(ticket),
                kind=ArticleKind.AUTO_REPLY,
                author=SYSTEM.user_id,
                author_name=queue.sender_name or queue.name,
                subject=reply_subject(ticket.number, ticket.subject),
                body=text,
                created_at=now,
                message_id=f"<ticketbot.{ticket.number}.ack{uuid.uuid4().hex[:12]}@{domain}>",
                in_reply_to=email.message_id,
                references=(*email.references[-20:], email.message_id),
                to=(ticket.requester_email,),
                send_state=SendState.QUEUED,
            )
        )
        repo.record_auto_response(to, now, ticket.id)
        repo.audit(now, SYSTEM, "ticket.autoresponse", ticket.id, f"{kind} to {to}")
        repo.enqueue("email", "send_reply", _id(ticket), now, article_id=ack.id)

    # --- shared --------------------------------------------------------------------------------

    def _store_article(
        self,
        repo: Repository,
        ticket: Ticket,
        email: InboundEmail,
        now: datetime,
        *,
        held: bool = False,
    ) -> Article:
        return repo.add_article(
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
                held=held,
            ),
            raw=self._evidence(email),
            attachments=email.attachments,
        )

    def _evidence(self, email: InboundEmail) -> bytes:
        """The raw mail to keep: whole, unless it is bigger than the attachment limits allow.

        Parts over the limits are not kept as attachments; keeping them inside the raw copy
        would fill the database all the same. An oversized mail keeps its header block.
        """
        limit = self._config.mail.max_total_attachment_bytes + 1024 * 1024
        if len(email.raw) <= limit:
            return email.raw
        head, _, _ = email.raw.partition(b"\r\n\r\n")
        if len(head) == len(email.raw):
            head = email.raw.partition(b"\n\n")[0]
        return (
            head[:262144]
            + b"\r\n\r\n[ticketbot: the original message ("
            + str(len(email.raw)).encode()
            + b" bytes) was over the size limit; only its headers are kept]\r\n"
        )

    def _find_follow_up_target(self, repo: Repository, email: InboundEmail) -> Ticket | None:
        ticket = None
        number = ticket_number_in_subject(email.subject, (self._config.tickets.otrs_ticket_hook,))
        if number is not None:
            ticket = repo.ticket_by_number(number)
        if ticket is None:
            referenced = [*email.in_reply_to, *reversed(email.references)]
            if referenced:
                ticket = repo.ticket_by_message_ids(referenced)
        if ticket is None and email.auto_kind:
            # a bounce or vacation reply quotes our reply, whose Message-ID names the ticket
            found = _OUR_MESSAGE_ID.search(email.raw[:262144])
            if found:
                ticket = repo.ticket_by_number(found.group(1).decode())
        hops = 0
        while ticket is not None and ticket.merged_into is not None and hops < 10:
            ticket = repo.ticket_by_id(
                ticket.merged_into
            )  # mail to a merged ticket joins its target
            hops += 1
        if ticket is not None and not self._addressed_to_queue_of(email, ticket):
            # e.g. a volunteer forwards a ticket to another team's address: that is a
            # new ticket there, and its text must not land in the first queue's room
            return None
        return ticket

    def _addressed_to_queue_of(self, email: InboundEmail, ticket: Ticket) -> bool:
        """True unless the mail went only to other queues' addresses.

        A queue's address covers its sub-queues: a ticket in ``info::de`` takes mail sent
        to ``info@``.
        """
        families = {
            queue.name.split("::")[0]
            for recipient in email.recipients
            for queue in self._config.queues
            if recipient.email.lower() in queue.addresses
        }
        return not families or ticket.queue.split("::")[0] in families

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

    async def mark_done_many(self, keys: Sequence[MailKey]) -> None:
        if not keys:
            return
        now = self._clock.now()
        await self._store.run(lambda repo: repo.intake_done_many(keys, now))


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
    cut = [d for d in email.parse_defects if "ignored" in d or "headers only" in d]
    if cut:
        body += "\n\n[ticketbot: parts of this mail were not read: " + "; ".join(cut) + "]"
    return body
