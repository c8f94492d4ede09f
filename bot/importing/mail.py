"""Importing past correspondence as closed tickets (``ticketbot import-mail``).

Pure logic over parsed mail and the core's :class:`bot.repository.Repository`: which mails
form one thread, which are duplicates or unreadable, and how a thread becomes a closed
ticket with its original dates. Nothing here reads files, parses bytes or knows the
database; the command line (bot/cli.py) composes those.

Threads are reassembled as intake would have threaded them: by Message-ID, In-Reply-To
and References, and by ``[Ticket#N]`` tags in subjects. A thread becomes one ticket
whose first mail is its earliest; mail from the desk's own addresses is the team's side
and is stored as replies already sent. Nothing is posted to chat and nothing is mailed:
no outbox entries, no acknowledgements. A Message-ID already stored is skipped, so a
second run adds nothing; a thread that continues a ticket already stored is added to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from bot.domain import SYSTEM, Article, ArticleKind, SendState, Ticket, TicketState
from bot.mail import Address, InboundEmail
from bot.repository import Repository
from bot.routing import TICKET_TAG

#: Mails written per transaction: big enough to be quick, small enough that the bot,
#: running meanwhile, never waits long for the database.
BATCH_MAILS = 250

#: The raw copy kept of a mail bigger than the attachment limits allow: its headers only
#: (as intake does), so a huge archive entry cannot fill the database.
_HEAD_LIMIT = 262144


@dataclass(frozen=True)
class SourceMail:
    """One readable mail of the source, as threading needs it.

    ``email`` may be a light copy (no raw bytes, text or attachments): the whole mail is
    parsed again from the source when it is written, so an archive of any size is never
    held in memory at once.
    """

    key: int  # its position in the source, to read it again
    origin: str  # where it is, for messages: "archive.mbox message 12", "cur/1700000.x:2,S"
    email: InboundEmail
    #: When it has no usable Date header: the mbox From_ line's time, or the file's mtime.
    fallback_date: datetime

    @property
    def date(self) -> datetime:
        when = self.email.date or self.fallback_date
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC)

    @property
    def ids(self) -> tuple[str, ...]:
        """Its own Message-ID and every one it refers to."""
        email = self.email
        return tuple(i for i in (email.message_id, *email.in_reply_to, *email.references) if i)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(TICKET_TAG.findall(self.email.subject))


@dataclass(frozen=True)
class Unreadable:
    origin: str
    why: str


def light(email: InboundEmail) -> InboundEmail:
    """The mail without its bytes, text and attachments: what threading keeps in memory."""
    return replace(email, raw=b"", text="", attachments=())


def unreadable_reason(email: InboundEmail) -> str | None:
    """Why a parsed mail cannot be imported, or None when it can.

    The parser never fails; a mail is unreadable when nothing of a mail is left: no
    bytes, a parse that gave up, or no From, Date and Message-ID header at all (random
    bytes, a stray file in a Maildir).
    """
    if not email.raw.strip():
        return "empty message"
    gave_up = [d for d in email.parse_defects if d.startswith("unparseable mail")]
    if gave_up:
        return gave_up[0]
    synthetic = "missing or unusable Message-ID" in email.parse_defects
    if not email.sender.email and email.date is None and synthetic:
        return "no mail headers (no From, Date or Message-ID)"
    return None


@dataclass
class Thread:
    """Mails that belong together, earliest first."""

    mails: list[SourceMail]

    @property
    def first(self) -> SourceMail:
        return self.mails[0]

    @property
    def ids(self) -> list[str]:
        return list(dict.fromkeys(i for mail in self.mails for i in mail.ids))

    @property
    def tags(self) -> list[str]:
        return list(dict.fromkeys(t for mail in self.mails for t in mail.tags))


class _Sets:
    """Union-find over strings."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        root = self.parent.setdefault(item, item)
        while root != self.parent[root]:
            root = self.parent[root]
        while item != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def group_threads(mails: Iterable[SourceMail]) -> tuple[list[Thread], list[SourceMail]]:
    """The threads of these mails, earliest thread first, and the repeats in the source.

    Two mails are in one thread when one refers to the other (In-Reply-To, References),
    when both refer to the same mail (even one not in the source), or when their
    subjects carry the same ``[Ticket#N]`` tag. A Message-ID met again in the source is
    a repeat (the same mail filed twice): only its first copy counts.
    """
    sets = _Sets()
    kept: list[SourceMail] = []
    repeats: list[SourceMail] = []
    seen: set[str] = set()
    for mail in mails:
        own = mail.email.message_id
        if own in seen:
            repeats.append(mail)
            continue
        seen.add(own)
        kept.append(mail)
        node = "id:" + own
        sets.find(node)
        for other in mail.ids[1:]:
            sets.union(node, "id:" + other)
        for tag in mail.tags:
            sets.union(node, "tag:" + tag)
    groups: dict[str, list[SourceMail]] = {}
    for mail in kept:
        groups.setdefault(sets.find("id:" + mail.email.message_id), []).append(mail)
    threads = [Thread(sorted(group, key=lambda m: (m.date, m.key))) for group in groups.values()]
    threads.sort(key=lambda t: (t.first.date, t.first.key))
    return threads, repeats


@dataclass(frozen=True)
class Part:
    """Some mails of one thread, written in one transaction (a long thread spans several)."""

    thread: int  # index into the threads
    mails: tuple[SourceMail, ...]


def batches(threads: Sequence[Thread], size: int = BATCH_MAILS) -> list[list[Part]]:
    """The threads cut into transactions of about ``size`` mails, threads kept in order."""
    result: list[list[Part]] = []
    current: list[Part] = []
    count = 0
    for index, thread in enumerate(threads):
        for start in range(0, len(thread.mails), size):
            chunk = tuple(thread.mails[start : start + size])
            if current and count + len(chunk) > size:
                result.append(current)
                current, count = [], 0
            current.append(Part(index, chunk))
            count += len(chunk)
    if current:
        result.append(current)
    return result


@dataclass
class BatchResult:
    """What one transaction wrote (or, in a dry run, would write)."""

    imported: int = 0
    duplicates: int = 0
    tickets_made: int = 0
    added_to_existing: int = 0  # mails added to tickets stored before this run
    ticket_ids: dict[int, int] = field(default_factory=dict)  # thread index -> ticket id
    created: set[int] = field(default_factory=set)  # threads whose ticket this run made


@dataclass
class ImportTally:
    """The whole run, for the summary."""

    read: int = 0
    imported: int = 0
    duplicates: int = 0
    tickets_made: int = 0
    added_to_existing: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)

    def add(self, result: BatchResult) -> None:
        self.imported += result.imported
        self.duplicates += result.duplicates
        self.tickets_made += result.tickets_made
        self.added_to_existing += result.added_to_existing


#: A thread that would get a new ticket, in a dry run (no ticket id exists).
_WOULD_CREATE = -1


class MailImporter:
    """Writes threads as closed tickets through the repository, batch by batch.

    ``own_addresses`` are the desk's addresses: mail from them is the team's side. Each
    batch runs in one transaction; :meth:`committed` records the ticket ids a committed
    batch made, so a thread cut over two batches stays one ticket.
    """

    def __init__(
        self,
        *,
        queue: str,
        own_addresses: Iterable[str],
        system_id: int,
        source: str,
        now: datetime,
        raw_limit: int,
        dry_run: bool = False,
    ) -> None:
        self.queue = queue
        self.own = frozenset(a.lower() for a in own_addresses)
        self.system_id = system_id
        self.source = source
        self.now = now
        self.raw_limit = raw_limit
        self.dry_run = dry_run
        self._ticket_ids: dict[int, int] = {}
        self._created: set[int] = set()

    def committed(self, result: BatchResult) -> None:
        self._ticket_ids.update(result.ticket_ids)
        self._created |= result.created

    def write_batch(
        self,
        repo: Repository,
        threads: Sequence[Thread],
        parts: Sequence[Part],
        emails: Mapping[int, InboundEmail],
    ) -> BatchResult:
        """Write these parts; ``emails`` holds each mail fully parsed, by its key."""
        result = BatchResult()
        for part in parts:
            self._write_part(repo, threads[part.thread], part, emails, result)
        return result

    def _write_part(
        self,
        repo: Repository,
        thread: Thread,
        part: Part,
        emails: Mapping[int, InboundEmail],
        result: BatchResult,
    ) -> None:
        fresh = [m for m in part.mails if not repo.message_id_exists(m.email.message_id)]
        result.duplicates += len(part.mails) - len(fresh)
        if not fresh:
            return
        known = result.ticket_ids.get(part.thread, self._ticket_ids.get(part.thread))
        ticket: Ticket | None = None
        created_now = part.thread in result.created or part.thread in self._created
        if known == _WOULD_CREATE:
            result.imported += len(fresh)
            return
        if known is not None:
            ticket = repo.ticket_by_id(known)
        else:
            ticket = self._stored_ticket(repo, thread)
        if ticket is None:
            if self.dry_run:
                result.ticket_ids[part.thread] = _WOULD_CREATE
                result.created.add(part.thread)
                result.tickets_made += 1
                result.imported += len(fresh)
                return
            ticket = self._new_ticket(repo, emails[fresh[0].key], fresh[0].date)
            assert ticket.id is not None
            result.ticket_ids[part.thread] = ticket.id
            result.created.add(part.thread)
            result.tickets_made += 1
            created_now = True
            repo.audit(
                self.now,
                SYSTEM,
                "ticket.imported",
                ticket.id,
                f"from {self.source}: first mail {fresh[0].origin}",
            )
        assert ticket.id is not None
        result.ticket_ids[part.thread] = ticket.id
        result.imported += len(fresh)
        if not created_now:
            result.added_to_existing += len(fresh)
            if not self.dry_run:
                repo.audit(
                    self.now,
                    SYSTEM,
                    "ticket.imported",
                    ticket.id,
                    f"{len(fresh)} mail(s) added from {self.source}",
                )
        if self.dry_run:
            return
        for mail in fresh:
            self._add_article(repo, ticket.id, emails[mail.key], mail.date)
        last = max(mail.date for mail in fresh)
        if ticket.state.is_closed and last > ticket.updated_at:
            ticket.updated_at = last  # the last change of a closed ticket: its last mail
            repo.save_ticket(ticket)

    def _stored_ticket(self, repo: Repository, thread: Thread) -> Ticket | None:
        """A ticket already in the database that this thread continues."""
        ids = thread.ids
        ticket = None
        for start in range(0, len(ids), 100):  # the repository looks at 100 ids at a time
            ticket = repo.ticket_by_message_ids(ids[start : start + 100])
            if ticket is not None:
                break
        for tag in thread.tags:
            if ticket is not None:
                break
            ticket = repo.ticket_by_number(tag)
        hops = 0
        while ticket is not None and ticket.merged_into is not None and hops < 10:
            ticket = repo.ticket_by_id(ticket.merged_into)
            hops += 1
        return ticket

    def _is_team(self, address: Address) -> bool:
        return address.email.lower() in self.own

    def _requester(self, email: InboundEmail) -> Address:
        """The first mail's sender (its Reply-To, as intake reads it); when the team wrote
        first, the first recipient outside the desk."""
        if not self._is_team(email.sender):
            return email.reply_to[0] if email.reply_to else email.sender
        outside = [a for a in (*email.to, *email.cc) if not self._is_team(a)]
        return outside[0] if outside else email.sender

    def _new_ticket(self, repo: Repository, email: InboundEmail, when: datetime) -> Ticket:
        requester = self._requester(email)
        name = requester.name or (email.sender.name if requester == email.sender else "")
        return repo.add_ticket(
            Ticket(
                id=None,
                number=repo.next_ticket_number(when.date(), self.system_id),
                queue=self.queue,
                subject=email.subject,
                requester_email=requester.email,
                requester_name=name,
                created_at=when,
                updated_at=when,
                state=TicketState.CLOSED_SUCCESSFUL,
            )
        )

    def _add_article(
        self, repo: Repository, ticket_id: int, email: InboundEmail, when: datetime
    ) -> None:
        team = self._is_team(email.sender)
        repo.add_article(
            Article(
                id=None,
                ticket_id=ticket_id,
                kind=ArticleKind.REPLY if team else ArticleKind.INBOUND,
                author=email.sender.email,
                author_name=email.sender.name,
                subject=email.subject,
                body=body_with_notes(email),
                created_at=when,
                message_id=email.message_id,
                in_reply_to=email.in_reply_to[0] if email.in_reply_to else "",
                references=email.references,
                to=tuple(a.email for a in email.to),
                cc=tuple(a.email for a in email.cc),
                auto_kind=email.auto_kind,
                # the team's mail went out long ago: sent, and never queued again
                send_state=SendState.SENT if team else None,
                sent_at=when if team else None,
            ),
            raw=evidence(email.raw, self.raw_limit),
            attachments=email.attachments,
        )


def evidence(raw: bytes, limit: int) -> bytes:
    """The raw mail to keep, as intake keeps it: whole, or its headers when over ``limit``."""
    if len(raw) <= limit:
        return raw
    head, _, _ = raw.partition(b"\r\n\r\n")
    if len(head) == len(raw):
        head = raw.partition(b"\n\n")[0]
    return (
        head[:_HEAD_LIMIT]
        + b"\r\n\r\n[ticketbot: the original message ("
        + str(len(raw)).encode()
        + b" bytes) was over the size limit; only its headers are kept]\r\n"
    )


def body_with_notes(email: InboundEmail) -> str:
    """The article text, with what was not kept said at its end (as intake does)."""
    body = email.text.strip() or "(no text)"
    if email.dropped_attachments:
        dropped = "\n".join(f"- {name}" for name in email.dropped_attachments)
        body += f"\n\n[ticketbot: attachments not kept, over the size limit]\n{dropped}"
    cut = [d for d in email.parse_defects if "ignored" in d or "headers only" in d]
    if cut:
        body += "\n\n[ticketbot: parts of this mail were not read: " + "; ".join(cut) + "]"
    return body


def plan_without_database(threads: Sequence[Thread]) -> BatchResult:
    """A dry run on a database that does not exist yet: every mail and thread is new."""
    mails = sum(len(t.mails) for t in threads)
    return BatchResult(imported=mails, tickets_made=len(threads))


def summary_lines(
    tally: ImportTally,
    *,
    dry_run: bool,
    counts: tuple[tuple[int, int], tuple[int, int]] | None,
    seconds: float,
    show_unreadable: int = 20,
) -> tuple[list[str], bool]:
    """The summary printed at the end, and whether the count check held.

    ``counts`` is (tickets, articles) in the database before and after the run.
    """
    would = "would be " if dry_run else ""
    rate = tally.read / seconds if seconds > 0 else 0.0
    lines = [
        f"mails read:            {tally.read} ({seconds:.1f} s, {rate:.0f} mails/s)",
        f"imported:              {tally.imported}" + (" (would be)" if dry_run else ""),
        f"skipped as duplicates: {tally.duplicates}",
        f"unreadable:            {len(tally.unreadable)}",
    ]
    for item in tally.unreadable[:show_unreadable]:
        lines.append(f"  {item.origin}: {item.why}")
    if len(tally.unreadable) > show_unreadable:
        lines.append(f"  ... and {len(tally.unreadable) - show_unreadable} more")
    lines.append(
        f"tickets made:          {tally.tickets_made}" + (" (would be)" if dry_run else "")
    )
    if tally.added_to_existing:
        lines.append(
            f"added to tickets already stored: {tally.added_to_existing} mail(s) {would}".rstrip()
        )
    ok = True
    if counts is not None:
        (tickets_before, articles_before), (tickets_after, articles_after) = counts
        grew = (tickets_after - tickets_before, articles_after - articles_before)
        want = (0, 0) if dry_run else (tally.tickets_made, tally.imported)
        ok = grew == want
        lines.append(
            f"check: tickets {tickets_before} -> {tickets_after} (+{grew[0]}), articles "
            f"{articles_before} -> {articles_after} (+{grew[1]}): "
            + (
                "as reported"
                if ok
                else f"MISMATCH, expected +{want[0]} tickets and +{want[1]} articles "
                "(did the bot take in mail meanwhile?)"
            )
        )
    elif dry_run:
        lines.append("check: the database does not exist yet; every mail was counted as new")
    accounted = tally.imported + tally.duplicates + len(tally.unreadable)
    if accounted != tally.read:
        ok = False
        lines.append(
            f"check: {tally.read} mails read, but {accounted} imported, skipped or unreadable"
        )
    return lines, ok
