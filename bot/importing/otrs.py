"""Moving a desk in from OTRS/Znuny (``ticketbot import-otrs``): the mapping.

Pure logic over OTRS rows already read (:class:`OtrsTicket`, read by
:mod:`storage.otrs_import`) and the core's :class:`bot.repository.Repository`: which of
our queues and states an OTRS ticket gets, what each article becomes, who the requester
is, when a ticket was closed, and how a ticket is written so that a second run adds
nothing. Nothing here opens a database; the command (bot/importing/otrs_command.py)
composes the reader, this and the store.

Tickets keep their OTRS number (``tn``), so a requester's follow-up tagged
``[Ticket#2019061210000012]`` (or whatever hook the old desk used, see
``[tickets] otrs_ticket_hook``) lands on the imported ticket. As with ``import-mail``,
nothing is posted to chat and nothing is mailed: articles the team sent from OTRS are
stored as replies already sent, and no outbox entry is made.

Idempotence: a ticket is known by its number; an article by its Message-ID when it had
one that is not stored elsewhere, else by a Message-ID made from its OTRS article id
and ticket number (:func:`article_key`), so internal notes and mails filed twice in
OTRS are recognised on the next run too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import getaddresses

from bot.domain import (
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    MIN_PRIORITY,
    SYSTEM,
    Actor,
    Article,
    ArticleKind,
    SendState,
    Ticket,
    TicketState,
)
from bot.importing.mail import evidence
from bot.mail import Address, AttachmentData
from bot.repository import Repository

#: Tickets written per transaction: a few hundred articles, so the bot running
#: meanwhile never waits long for the database.
BATCH_TICKETS = 50

#: The ``ticket.imported`` history line of a ticket this command made starts with this;
#: a ticket with the same number but without it was not made here: it is left alone.
AUDIT_PREFIX = "OTRS ticket"

#: What an OTRS state type becomes (state *types* are fixed in OTRS; state names are
#: the admin's own). "closed" is refined by the state's name, see :func:`map_state`.
STATE_TYPES: dict[str, TicketState] = {
    "new": TicketState.NEW,
    "open": TicketState.OPEN,
    "pending reminder": TicketState.PENDING_REMINDER,
    "pending auto": TicketState.PENDING_AUTOCLOSE,
    "closed": TicketState.CLOSED_SUCCESSFUL,
    "merged": TicketState.MERGED,
    "removed": TicketState.CLOSED_UNSUCCESSFUL,
}

_MERGED_NAME = re.compile(r"^%%(?P<tn>[^%]+)%%\d+%%(?P<target>[^%]+)%%\d+")


class OtrsMappingError(Exception):
    """The OTRS data cannot be mapped as asked (unknown queues); nothing was written."""


@dataclass(frozen=True)
class OtrsAttachment:
    filename: str
    content_type: str
    data: bytes
    disposition: str = ""


@dataclass(frozen=True)
class OtrsArticle:
    """One row of ``article`` with its ``article_data_mime`` (absent for chat articles),
    raw mail (``article_data_mime_plain``) and attachments; times already in UTC."""

    id: int
    sender_type: str  # agent | system | customer
    channel: str  # Email | Phone | Internal | Chat
    visible_for_customer: bool
    created_at: datetime
    created_by: str  # the OTRS user (agent) login who stored it
    created_by_name: str
    has_mime: bool = True
    a_from: str = ""
    a_reply_to: str = ""
    a_to: str = ""
    a_cc: str = ""
    subject: str = ""
    message_id: str = ""
    in_reply_to: str = ""
    references: str = ""
    content_type: str = ""
    body: str = ""
    raw: bytes | None = None
    attachments: tuple[OtrsAttachment, ...] = ()


@dataclass(frozen=True)
class OtrsHistory:
    """One ``ticket_history`` row: its type's name, the ticket's state type after it."""

    type: str
    name: str
    state_type: str
    created_at: datetime
    created_by: str
    created_by_name: str


@dataclass(frozen=True)
class OtrsTicket:
    id: int
    tn: str
    title: str
    queue: str
    state: str  # the state's name ("closed successful", "pending auto close+")
    state_type: str  # its type ("closed", "pending auto")
    priority: str  # "3 normal"
    customer_user_id: str
    created_at: datetime
    changed_at: datetime
    pending_until: datetime | None
    articles: tuple[OtrsArticle, ...] = ()
    history: tuple[OtrsHistory, ...] = ()


# --- the mapping -------------------------------------------------------------------------------


def parse_queue_map(items: Iterable[str]) -> dict[str, str]:
    """``OTRS=ours`` pairs as given on the command line; raises ValueError naming a bad one."""
    result: dict[str, str] = {}
    for item in items:
        otrs, sep, ours = item.partition("=")
        if not sep or not otrs.strip() or not ours.strip():
            raise ValueError(f"--queue-map {item!r}: expected OTRS_QUEUE=OUR_QUEUE")
        result[otrs.strip()] = ours.strip()
    return result


def resolve_queues(
    in_use: Iterable[str],
    queue_map: Mapping[str, str],
    ours: Sequence[str],
    default: str | None,
) -> dict[str, str]:
    """Our queue for each OTRS queue that holds tickets: mapped, else the same name, else
    ``default``. Raises :class:`OtrsMappingError` listing every queue left over."""
    known = set(ours)
    listing = ", ".join(ours)
    bad_targets = sorted({t for t in queue_map.values() if t not in known})
    if bad_targets:
        raise OtrsMappingError(
            f"--queue-map names queue(s) this desk does not have: {', '.join(bad_targets)}; "
            f"known: {listing}"
        )
    if default is not None and default not in known:
        raise OtrsMappingError(f"--default-queue {default!r} is not a queue; known: {listing}")
    result: dict[str, str] = {}
    unknown: list[str] = []
    for name in sorted(set(in_use)):
        if name in queue_map:
            result[name] = queue_map[name]
        elif name in known:
            result[name] = name
        elif default is not None:
            result[name] = default
        else:
            unknown.append(name)
    if unknown:
        raise OtrsMappingError(
            "OTRS queue(s) with tickets but no queue here: "
            + ", ".join(repr(name) for name in unknown)
            + f"; map each with --queue-map 'OTRS=OURS' or give --default-queue (known: {listing})"
        )
    return result


def map_state(state_type: str, state_name: str) -> TicketState:
    """Our state for an OTRS state. A closed state named "...unsuccessful" stays so."""
    state = STATE_TYPES.get(state_type.lower())
    if state is None:
        raise OtrsMappingError(f"unknown OTRS state type {state_type!r} (state {state_name!r})")
    if state is TicketState.CLOSED_SUCCESSFUL and "unsuccessful" in state_name.lower():
        return TicketState.CLOSED_UNSUCCESSFUL
    return state


def map_priority(name: str) -> int:
    """OTRS priorities are named "1 very low" ... "5 very high", like ours 1 to 5."""
    found = re.match(r"\s*(\d+)", name)
    if not found:
        return DEFAULT_PRIORITY
    return min(max(int(found.group(1)), MIN_PRIORITY), MAX_PRIORITY)


def article_kind(article: OtrsArticle) -> tuple[ArticleKind, SendState | None]:
    """What an OTRS article becomes.

    The customer's articles are inbound mail (also those an agent typed in from a
    phone call: the customer's words); an agent's e-mail visible to the customer is a
    reply already sent, the system's one an auto-reply already sent; everything else
    (internal notes, articles hidden from the customer, agents' phone and chat
    records) is a note, which never leaves the desk.
    """
    if article.sender_type == "customer":
        return ArticleKind.INBOUND, None
    if article.channel == "Email" and article.visible_for_customer:
        if article.sender_type == "system":
            return ArticleKind.AUTO_REPLY, SendState.SENT
        return ArticleKind.REPLY, SendState.SENT
    return ArticleKind.NOTE, None


def addresses(header: str) -> list[Address]:
    return [Address(mail.strip(), name.strip()) for name, mail in getaddresses([header]) if mail]


def requester(ticket: OtrsTicket) -> Address:
    """The first customer article's Reply-To or From (as intake reads mail); else the
    customer user when it is an address; else the first recipient of the first article."""
    for article in ticket.articles:
        if article.sender_type == "customer":
            found = addresses(article.a_reply_to) or addresses(article.a_from)
            if found:
                return found[0]
    if "@" in ticket.customer_user_id:
        return Address(ticket.customer_user_id.strip())
    for article in ticket.articles:
        found = addresses(article.a_to)
        if found:
            return found[0]
    return Address("")


def closed_at(ticket: OtrsTicket) -> tuple[datetime, OtrsHistory | None] | None:
    """When a closed ticket was last closed (and the history row that closed it): the
    first history row after the last one that left it in a state not closed. None when
    the ticket is not closed; its last change when OTRS kept no history."""
    if map_state(ticket.state_type, ticket.state) not in (
        TicketState.CLOSED_SUCCESSFUL,
        TicketState.CLOSED_UNSUCCESSFUL,
    ):
        return None
    closing: OtrsHistory | None = None
    for row in ticket.history:  # oldest first
        finished = row.state_type.lower() in ("closed", "removed")
        closing = (closing or row) if finished else None
    if closing is None:
        return ticket.changed_at, None
    return closing.created_at, closing


def merge_target(ticket: OtrsTicket) -> str | None:
    """The number a merged ticket was merged into, from its "Merged" history row
    (``%%MergedTicketNumber%%MergedTicketID%%MainTicketNumber%%MainTicketID``)."""
    for row in reversed(ticket.history):
        if row.type == "Merged":
            found = _MERGED_NAME.match(row.name)
            if found and found.group("tn") == ticket.tn:
                return found.group("target")
    return None


def article_key(article: OtrsArticle, tn: str) -> str:
    """A Message-ID for an article without a usable one of its own; the same every run."""
    return f"<otrs-{article.id}.{tn}@import.ticketbot.invalid>"


def _agent(login: str, name: str) -> Actor:
    return Actor("otrs", f"otrs:{login}" if login else "otrs", name or login)


# --- writing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTicket:
    """A ticket already stored under an OTRS number: whether this command made it, and
    the Message-IDs its articles have (as stored)."""

    id: int
    imported: bool
    message_ids: frozenset[str]


@dataclass
class OtrsBatchResult:
    """What one transaction wrote (or, in a dry run, would write)."""

    tickets_made: int = 0
    tickets_present: int = 0
    articles_made: int = 0
    articles_present: int = 0
    articles_added_to_present: int = 0
    attachments_made: int = 0
    attachments_dropped: int = 0
    articles_refused: int = 0  # articles of those tickets
    conflicts: list[str] = field(default_factory=list)  # numbers used by other tickets
    merges: dict[str, str] = field(default_factory=dict)  # merged tn -> target tn
    numbers: list[str] = field(default_factory=list)  # numbers of tickets made


@dataclass
class OtrsTally:
    """The whole run, for the summary."""

    otrs_tickets: int = 0
    otrs_articles: int = 0
    read_tickets: int = 0
    read_articles: int = 0
    tickets_made: int = 0
    tickets_present: int = 0
    articles_made: int = 0
    articles_present: int = 0
    articles_added_to_present: int = 0
    attachments_made: int = 0
    attachments_dropped: int = 0
    merges_linked: int = 0
    articles_refused: int = 0
    conflicts: list[str] = field(default_factory=list)
    merges: dict[str, str] = field(default_factory=dict)
    numbers: list[str] = field(default_factory=list)

    def add(self, result: OtrsBatchResult) -> None:
        self.tickets_made += result.tickets_made
        self.tickets_present += result.tickets_present
        self.articles_made += result.articles_made
        self.articles_present += result.articles_present
        self.articles_added_to_present += result.articles_added_to_present
        self.attachments_made += result.attachments_made
        self.attachments_dropped += result.attachments_dropped
        self.articles_refused += result.articles_refused
        self.conflicts.extend(result.conflicts)
        self.merges.update(result.merges)
        self.numbers.extend(result.numbers)


class OtrsImporter:
    """Writes OTRS tickets through the repository, one batch per transaction.

    ``queues`` maps OTRS queue names to ours (:func:`resolve_queues`). Attachments are
    kept within the ``[mail]`` size limits as intake keeps them: one over
    ``max_attachment`` or past ``max_total`` for its article is left out and named at
    the end of the article's text.
    """

    def __init__(
        self,
        *,
        queues: Mapping[str, str],
        source: str,
        now: datetime,
        max_attachment: int,
        max_total: int,
        raw_limit: int,
        dry_run: bool = False,
    ) -> None:
        self.queues = dict(queues)
        self.source = source
        self.now = now
        self.max_attachment = max_attachment
        self.max_total = max_total
        self.raw_limit = raw_limit
        self.dry_run = dry_run

    def write_batch(
        self,
        repo: Repository,
        tickets: Sequence[OtrsTicket],
        known: Mapping[str, StoredTicket],
    ) -> OtrsBatchResult:
        """Write these tickets; ``known`` says which of their numbers are stored already
        (read for the whole batch at once, :func:`storage.otrs_import.stored_tickets`)."""
        result = OtrsBatchResult()
        for ticket in tickets:
            self._write_ticket(repo, ticket, known.get(ticket.tn), result)
        return result

    def _write_ticket(
        self,
        repo: Repository,
        otrs: OtrsTicket,
        known: StoredTicket | None,
        result: OtrsBatchResult,
    ) -> None:
        target = merge_target(otrs)
        if target is not None:
            result.merges[otrs.tn] = target
        if known is not None and not known.imported:
            result.conflicts.append(otrs.tn)
            result.articles_refused += len(otrs.articles)
            return
        if known is None:
            result.tickets_made += 1
            result.numbers.append(otrs.tn)
            result.articles_made += len(otrs.articles)
            if not self.dry_run:
                ticket = self._new_ticket(repo, otrs)
                assert ticket.id is not None
                self._add_articles(repo, ticket.id, otrs, otrs.articles, result)
            return
        result.tickets_present += 1
        fresh = [a for a in otrs.articles if not self._present(repo, known, otrs.tn, a)]
        result.articles_present += len(otrs.articles) - len(fresh)
        result.articles_made += len(fresh)
        result.articles_added_to_present += len(fresh)
        if self.dry_run or not fresh:
            return
        repo.audit(
            self.now,
            SYSTEM,
            "ticket.imported",
            known.id,
            f"{AUDIT_PREFIX} {otrs.tn}: {len(fresh)} article(s) added from {self.source}",
        )
        self._add_articles(repo, known.id, otrs, fresh, result)
        stored = repo.ticket_by_id(known.id)
        last = max(a.created_at for a in fresh)
        if stored.state.is_closed and last > stored.updated_at:
            stored.updated_at = last  # the last change of a closed ticket: its last article
            repo.save_ticket(stored)

    def _add_articles(
        self,
        repo: Repository,
        ticket_id: int,
        otrs: OtrsTicket,
        articles: Sequence[OtrsArticle],
        result: OtrsBatchResult,
    ) -> None:
        used: set[str] = set()
        for article in articles:
            self._add_article(repo, ticket_id, otrs.tn, article, used, result)

    @staticmethod
    def _made_here(repo: Repository, ticket: Ticket) -> bool:
        assert ticket.id is not None
        return any(
            record.action == "ticket.imported" and record.detail.startswith(AUDIT_PREFIX)
            for record in repo.history(ticket.id)
        )

    @staticmethod
    def _present(repo: Repository, known: StoredTicket, tn: str, article: OtrsArticle) -> bool:
        """Stored by an earlier run: under its made-up key, or its own Message-ID on this
        very ticket (a Message-ID stored on another ticket is someone else's mail)."""
        if article_key(article, tn) in known.message_ids or article.message_id in known.message_ids:
            return True
        if article.message_id and repo.message_id_exists(article.message_id):
            # stored in another form (a very long id is kept as its hash): whose is it?
            holder = repo.ticket_by_message_ids([article.message_id])
            return holder is not None and holder.id == known.id
        return False

    def _new_ticket(self, repo: Repository, otrs: OtrsTicket) -> Ticket:
        state = map_state(otrs.state_type, otrs.state)
        person = requester(otrs)
        ticket = repo.add_ticket(
            Ticket(
                id=None,
                number=otrs.tn,
                queue=self.queues[otrs.queue],
                subject=otrs.title or _first_subject(otrs) or "(no subject)",
                requester_email=person.email,
                requester_name=person.name,
                created_at=otrs.created_at,
                updated_at=max(otrs.changed_at, otrs.created_at),
                state=state,
                priority=map_priority(otrs.priority),
                pending_until=otrs.pending_until if state.is_pending else None,
            )
        )
        assert ticket.id is not None
        target = merge_target(otrs)
        repo.audit(
            self.now,
            SYSTEM,
            "ticket.imported",
            ticket.id,
            f"{AUDIT_PREFIX} {otrs.tn} (id {otrs.id}) from {self.source}: queue {otrs.queue!r}, "
            f"state {otrs.state!r}, {len(otrs.articles)} article(s), created "
            f"{otrs.created_at:%Y-%m-%d %H:%M} UTC" + (f", merged into {target}" if target else ""),
        )
        closing = closed_at(otrs)
        if closing is not None:
            when, row = closing
            who = _agent(row.created_by, row.created_by_name) if row else SYSTEM
            # reports count closures by this line: the old desk's closures count at their time
            repo.audit(when, who, "ticket.close", ticket.id, f"closed in OTRS ({otrs.state})")
        return ticket

    def _add_article(
        self,
        repo: Repository,
        ticket_id: int,
        tn: str,
        otrs: OtrsArticle,
        used: set[str],
        result: OtrsBatchResult,
    ) -> None:
        kind, send_state = article_kind(otrs)
        own = otrs.message_id
        if not own or own in used or repo.message_id_exists(own):
            own = article_key(otrs, tn)
        used.add(own)
        kept, dropped = self._within_limits(otrs.attachments)
        result.attachments_made += len(kept)
        result.attachments_dropped += len(dropped)
        sender = (addresses(otrs.a_from) or [Address("")])[0]
        if kind in (ArticleKind.INBOUND, ArticleKind.AUTO_REPLY):
            author, author_name = sender.email, sender.name
        else:
            agent = _agent(otrs.created_by, otrs.created_by_name)
            author, author_name = agent.user_id, agent.display_name or sender.name
        repo.add_article(
            Article(
                id=None,
                ticket_id=ticket_id,
                kind=kind,
                author=author,
                author_name=author_name,
                subject=otrs.subject,
                body=article_body(otrs, dropped),
                created_at=otrs.created_at,
                message_id=own,
                in_reply_to=otrs.in_reply_to.strip(),
                references=tuple(otrs.references.split()),
                to=tuple(a.email for a in addresses(otrs.a_to)),
                cc=tuple(a.email for a in addresses(otrs.a_cc)),
                send_state=send_state,
                sent_at=otrs.created_at if send_state is SendState.SENT else None,
            ),
            raw=evidence(otrs.raw, self.raw_limit) if otrs.raw else None,
            attachments=[AttachmentData(a.filename, a.content_type, a.data) for a in kept],
        )

    def _within_limits(
        self, attachments: Sequence[OtrsAttachment]
    ) -> tuple[list[OtrsAttachment], list[OtrsAttachment]]:
        kept: list[OtrsAttachment] = []
        dropped: list[OtrsAttachment] = []
        total = 0
        for attachment in attachments:
            size = len(attachment.data)
            if size > self.max_attachment or total + size > self.max_total:
                dropped.append(attachment)
            else:
                kept.append(attachment)
                total += size
        return kept, dropped

    def link_merged(self, repo: Repository, merges: Mapping[str, str]) -> int:
        """Point each imported merged ticket at the ticket it was merged into, once both
        are stored (the target may come in a later batch); returns how many were set."""
        linked = 0
        for number, target_number in merges.items():
            ticket = repo.ticket_by_number(number)
            target = repo.ticket_by_number(target_number)
            if ticket is None or target is None or ticket.merged_into is not None:
                continue
            if not (self._made_here(repo, ticket) and self._made_here(repo, target)):
                continue
            if ticket.state is not TicketState.MERGED:
                continue
            ticket.merged_into = target.id
            repo.save_ticket(ticket)
            linked += 1
        return linked


def _first_subject(ticket: OtrsTicket) -> str:
    return next((a.subject for a in ticket.articles if a.subject), "")


def article_body(article: OtrsArticle, dropped: Sequence[OtrsAttachment] = ()) -> str:
    """The article's text; a record of another channel says so; what was not kept is
    named at its end (as intake does)."""
    if not article.has_mime:
        return f"(OTRS {article.channel.lower()} article: its text is not in article_data_mime)"
    body = article.body.strip() or "(no text)"
    if article.channel not in ("Email", "Internal"):
        body = f"[OTRS {article.channel.lower()} article]\n{body}"
    if dropped:
        names = "\n".join(f"- {a.filename}" for a in dropped)
        body += f"\n\n[ticketbot: attachments not kept, over the size limit]\n{names}"
    return body


# --- the summary --------------------------------------------------------------------------------


def summary_lines(
    tally: OtrsTally,
    *,
    dry_run: bool,
    counts: tuple[tuple[int, int], tuple[int, int]] | None,
    present_after: int | None,
    seconds: float,
    show: int = 20,
) -> tuple[list[str], bool]:
    """The summary printed at the end, and whether the count checks held.

    ``counts`` is (tickets, articles) in our database before and after the run;
    ``present_after`` is how many of the OTRS ticket numbers are stored after it.
    """
    would = " (would be)" if dry_run else ""
    rate = tally.read_tickets / seconds if seconds > 0 else 0.0
    lines = [
        f"OTRS tickets:          {tally.otrs_tickets} with {tally.otrs_articles} article(s)",
        f"tickets read:          {tally.read_tickets} ({seconds:.1f} s, {rate:.0f} tickets/s)",
        f"tickets made:          {tally.tickets_made}{would}",
        f"tickets already here:  {tally.tickets_present}",
        f"articles made:         {tally.articles_made}{would}",
        f"articles already here: {tally.articles_present}",
        f"attachments kept:      {tally.attachments_made}{would}",
    ]
    if tally.articles_added_to_present:
        lines.append(
            f"added to tickets imported before: {tally.articles_added_to_present} article(s)"
            + would
        )
    if tally.attachments_dropped:
        lines.append(
            f"attachments left out (over the [mail] size limits): {tally.attachments_dropped}"
        )
    if tally.merges_linked:
        lines.append(f"merged tickets linked to their target: {tally.merges_linked}")
    ok = True
    if tally.conflicts:
        ok = False
        lines.append(
            f"number taken: {len(tally.conflicts)} OTRS ticket(s) not imported, their number "
            "belongs to a ticket of this desk that did not come from OTRS:"
        )
        lines.extend(f"  {number}" for number in tally.conflicts[:show])
        if len(tally.conflicts) > show:
            lines.append(f"  ... and {len(tally.conflicts) - show} more")
    if counts is not None:
        (tickets_before, articles_before), (tickets_after, articles_after) = counts
        grew = (tickets_after - tickets_before, articles_after - articles_before)
        want = (0, 0) if dry_run else (tally.tickets_made, tally.articles_made)
        held = grew == want
        ok = ok and held
        lines.append(
            f"check: tickets {tickets_before} -> {tickets_after} (+{grew[0]}), articles "
            f"{articles_before} -> {articles_after} (+{grew[1]}): "
            + (
                "as reported"
                if held
                else f"MISMATCH, expected +{want[0]} tickets and +{want[1]} articles "
                "(did the bot take in mail meanwhile?)"
            )
        )
    if present_after is not None:
        held = present_after == tally.otrs_tickets
        ok = ok and held
        lines.append(
            f"check: {present_after} of the {tally.otrs_tickets} OTRS ticket numbers are "
            "stored here: " + ("complete" if held else "INCOMPLETE")
        )
    articles = tally.articles_made + tally.articles_present + tally.articles_refused
    if articles != tally.otrs_articles or tally.read_articles != tally.otrs_articles:
        ok = False
        lines.append(
            f"check: OTRS holds {tally.otrs_articles} articles, {tally.read_articles} were "
            f"read, {articles} made, present or refused"
        )
    accounted = tally.tickets_made + tally.tickets_present + len(tally.conflicts)
    if accounted != tally.read_tickets:
        ok = False
        lines.append(
            f"check: {tally.read_tickets} tickets read, but {accounted} made, present or refused"
        )
    return lines, ok
