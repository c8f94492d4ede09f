"""Carrying out the outbox: chat posts and reply emails, each once, retried until done.

Every change the core makes writes its outbox items in the same transaction, so
they survive a crash. A worker per channel takes due items in order, hands them to
the chat gateway or the mail sender, and marks them done only after that
succeeded. A reply's article records ``sent`` before its item is done, and a
retry of an already-sent reply does nothing, so nothing is sent twice; the one
window left (the SMTP server accepted but we crashed before recording it) resends
with the same Message-ID, so the receiving side can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.admin.live import LiveConfig, as_live
from bot.chat import ArticleView, ChatGateway, TicketView, article_view, ticket_view
from bot.config import Config
from bot.domain import Article, ArticleKind, SendState
from bot.faults import checkpoint
from bot.mail import Address, OutgoingEmail
from bot.metrics import Metrics
from bot.ports import Clock, Leases, MailSender, MailSendError, SoleLeases, StoreUnavailable
from bot.privacy import hide_requester, mask_article, mask_ticket, pseudonym, pseudonym_key
from bot.replies import strip_quoted
from bot.repository import ChatPost, OutboxItem, Repository, Store
from bot.waiting import wait_set

log = logging.getLogger(__name__)

EMAIL = "email"
#: Items claimed at a time: few, so a post that became urgent (a real ticket during a
#: flood, whose backlog waits behind it) is not stuck behind a long claimed batch while
#: the platform rate-limits each send.
_BATCH = 10


def _claim(
    channel: str, now: datetime, instance_id: int, gone: list[int]
) -> Callable[[Repository], list[OutboxItem]]:
    return lambda repo: repo.claim_outbox(channel, now, _BATCH, instance_id, gone)


@dataclass(frozen=True)
class _ChatWork:
    """Everything a chat item needs, read in one transaction before talking to the platform."""

    room: str | None
    post: ChatPost | None
    ticket: TicketView
    first: ArticleView | None
    article: ArticleView | None
    #: Applied to the bot's own texts about the ticket (notices, pings): where the queue
    #: shows pseudonyms, the requester's address and name never appear in chat.
    hide: Callable[[str], str] = str


class OutboxDispatcher:
    def __init__(
        self,
        config: Config | LiveConfig,
        store: Store,
        clock: Clock,
        gateways: Mapping[str, ChatGateway],
        sender: MailSender | None,
        *,
        uploads: frozenset[str] = frozenset(),
        metrics: Metrics | None = None,
        leases: Leases | None = None,
    ) -> None:
        """``uploads`` names the chat platforms that are handed attachment bytes.

        ``leases`` tells which other instances are alive, so their claimed items are left
        to them and a dead one's are taken over; without it this process is alone.
        """
        self._uploads = uploads
        self._leases: Leases = leases or SoleLeases()
        #: This process's id in the instance register; its claims carry it.
        self.instance_id = 0
        #: Channels this process carries out (None: all). A chat channel is worked only by
        #: the instance holding that platform's connection.
        self._active: set[str] | None = None
        #: The longest a worker sleeps without a wake-up: other instances add items too.
        self.poll_seconds = 60.0
        #: How long another instance's liveness lock must have been free before its
        #: claims are taken over (it may still be finishing an item; see bot/roles.py).
        self.takeover_grace = 0.0
        self._free_since: dict[int, float] = {}
        self._live = as_live(config)
        self.metrics = metrics or Metrics()
        self._store = store
        self._clock = clock
        self._gateways = dict(gateways)
        self._sender = sender
        self._wake_events: dict[str, asyncio.Event] = {}
        #: Channels told of new work since their last claim (see _drain_locked).
        self._new_work: set[str] = set()
        # One drain at a time per channel: the worker and drain_all must never
        # carry out the same item twice.
        self._locks: dict[str, asyncio.Lock] = {}
        # Replies the SMTP server accepted whose record has not been written yet: a
        # retry in this process records them instead of sending them again.
        self._sent_unrecorded: set[int] = set()

    @property
    def _config(self) -> Config:
        """The config in force now: admins' changes apply from the next use on."""
        return self._live.current

    @property
    def channels(self) -> list[str]:
        channels = list(self._gateways)
        if self._sender is not None:
            channels.append(EMAIL)
        return channels

    def only(self, channels: set[str]) -> None:
        """Carry out only these channels from now on (more are added by :meth:`activate`)."""
        self._active = set(channels)

    def activate(self, channel: str) -> None:
        """Start carrying out ``channel`` here (this process took its platform's role)."""
        if self._active is not None:
            self._active.add(channel)
        self.wake()

    @property
    def active_channels(self) -> list[str]:
        return [c for c in self.channels if self._active is None or c in self._active]

    def wake(self) -> None:
        """Called after a commit that may have added items: the workers look at once."""
        for event in self._wake_events.values():
            event.set()
        self._new_work = set(self._wake_events)

    async def run(self) -> None:
        """One worker per channel, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for channel in self.channels:
                group.create_task(self._worker(channel), name=f"outbox-{channel}")

    async def run_channel(self, channel: str) -> None:
        """The worker of one channel, until cancelled (the instance's roles start these)."""
        self.activate(channel)
        await self._worker(channel)

    async def _worker(self, channel: str) -> None:
        event = self._wake_events.setdefault(channel, asyncio.Event())
        while True:
            event.clear()
            wait = 5.0
            try:
                done = await self.drain(channel)
                wait = await self._seconds_until_due(channel)
                if done == 0 and wait <= 0.05:
                    # due, yet nothing was done: it waits behind another instance's claim
                    # or an earlier item's retry. Look again in a while, not in a tight loop.
                    wait = 1.0
            except Exception:
                # a database or platform hiccup must not end the worker (and with it
                # the whole task group): log it and look again shortly
                log.exception("outbox %s: unexpected error; retrying in %.0f s", channel, wait)
            await wait_set(event, wait)

    async def _seconds_until_due(self, channel: str) -> float:
        due = await self._store.run(lambda repo: repo.next_outbox_due(channel))
        if due is None:
            return self.poll_seconds
        return max(0.05, min(self.poll_seconds, (due - self._clock.now()).total_seconds()))

    async def drain(self, channel: str) -> int:
        """Carry out every item due now on ``channel``; return how many succeeded."""
        async with self._locks.setdefault(channel, asyncio.Lock()):
            return await self._drain_locked(channel)

    async def _drain_locked(self, channel: str) -> int:
        done = 0
        me = self.instance_id
        while True:
            now = self._clock.now()
            # items another instance claimed stay its own while it lives; a dead one's
            # (its liveness lock free) are taken over
            others = await self._store.run(lambda repo: repo.outbox_claimants(channel, me))
            gone = await self._gone(others) if others else []
            self._new_work.discard(channel)
            items = await self._store.run(_claim(channel, now, me, gone))
            if not items:
                return done
            # claims give at most each ticket's oldest waiting item, so a ticket's
            # posts stay in order even while one of them waits for its retry
            progressed = False
            for item in items:
                self._leases.held()  # a lost lease: stop before the next item, not after
                if await self._attempt(channel, item):
                    done += 1
                    progressed = True
                if channel in self._new_work:
                    # work came in (perhaps a real ticket during a flood, whose backlog
                    # was just put behind it): claim again, in priority order; what this
                    # round claimed stays ours and comes back in that order
                    break
            if not progressed:
                return done

    async def _gone(self, others: list[int]) -> list[int]:
        """Those of ``others`` (instances holding claims) that have surely stopped."""
        alive = await self._leases.alive(others)
        moment = asyncio.get_running_loop().time()
        gone = []
        for instance in others:
            if instance in alive:
                self._free_since.pop(instance, None)
                continue
            since = self._free_since.setdefault(instance, moment)
            if moment - since >= self.takeover_grace:
                gone.append(instance)
        return sorted(gone)

    async def drain_all(self) -> int:
        """Drain every channel until nothing is due (the demo and tests use it)."""
        total = 0
        while True:
            count = 0
            for channel in self.active_channels:
                count += await self.drain(channel)
            total += count
            if count == 0:
                return total

    async def finish(self, within: float) -> int:
        """Carry out what is due, then wait (up to ``within`` seconds) for replies still in
        their undo window, so a console session that ends does not leave them unsent."""
        total = await self.drain_all()
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            if await self._store.run(lambda repo: repo.outbox_pending_count()) == 0:
                break
            await asyncio.sleep(0.2)
            total += await self.drain_all()
        return total

    async def _attempt(self, channel: str, item: OutboxItem) -> bool:
        try:
            if channel == EMAIL:
                # Sending and recording it belong together: a shutdown arriving while
                # the SMTP server is talking would otherwise send the reply again at
                # the next start. Let the pair finish before giving way.
                task = asyncio.ensure_future(self._send_reply(item))
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(task, timeout=60)
                    raise
            else:
                await self._chat(self._gateways[channel], item)
        except MailSendError as exc:
            await self._mail_failed(item, exc)
            return False
        except Exception as exc:
            await self._retry(item, exc)
            return False
        return True

    # --- chat --------------------------------------------------------------------------------

    async def _chat(self, gateway: ChatGateway, item: OutboxItem) -> None:
        pinned = item.payload.get("queue")
        if item.kind == "ping" and isinstance(pinned, str):
            await self._queue_ping(gateway, item, pinned)
            return
        work = await self._store.run(lambda repo: self._load_chat_work(repo, gateway.name, item))
        if item.kind == "move_out":
            await self._move_out(gateway, work, item)
        elif work.room is None:  # the queue is no longer shown on this platform
            pass
        elif item.kind == "post_ticket":
            if work.post is None or work.post.room != work.room:
                # a new ticket, or one moved here from another room: post it, and for a
                # move its whole history, then it is this platform's root
                ref = await gateway.post_ticket(work.room, work.ticket, work.first, item.key)
                checkpoint("posted")
                post = ChatPost(item.ticket_id, gateway.name, work.room, ref)
                if item.payload.get("history"):
                    await self._replay(gateway, post, work, item)
                await self._store.run(lambda repo: self._posted(repo, post, item))
                return
        else:
            if work.post is None or work.post.room != work.room:
                # No root here yet, and (items being taken oldest first per ticket) no
                # earlier post_ticket waiting either: the queue was bound to this platform
                # after the ticket was made. Show the ticket here first, then this item.
                work = await self._post_root_first(gateway, work, item)
            await self._carry_out(gateway, work, item)
        await self._store.run(lambda repo: repo.outbox_done(item.id, self._clock.now()))

    async def _queue_ping(self, gateway: ChatGateway, item: OutboxItem, queue_name: str) -> None:
        """A post about a whole queue (the digest): in that queue's room, whatever happened
        since to the ticket it was filed under."""
        queue = self._config.find_queue(queue_name)
        room = queue.bindings(self._config).get(gateway.name) if queue is not None else None
        if room is not None:
            users = [str(u) for u in item.payload.get("users", [])]
            await gateway.post_ping(room, None, str(item.payload.get("text", "")), users, item.key)
        await self._store.run(lambda repo: repo.outbox_done(item.id, self._clock.now()))

    async def _carry_out(self, gateway: ChatGateway, work: _ChatWork, item: OutboxItem) -> None:
        post = work.post
        assert post is not None
        if item.kind == "post_article":
            assert work.article is not None
            await gateway.post_article(
                post.room, post.root_ref, work.ticket, work.article, item.key
            )
        elif item.kind == "update_ticket":
            await gateway.update_ticket(post.room, post.root_ref, work.ticket, item.key)
        elif item.kind == "notice":
            text = work.hide(str(item.payload.get("text", "")))
            actions = [str(a) for a in item.payload.get("actions", [])]
            await gateway.post_notice(post.room, post.root_ref, text, item.key, actions)
        elif item.kind == "ping":
            text = work.hide(str(item.payload.get("text", "")))
            users = [str(u) for u in item.payload.get("users", [])]
            root = post.root_ref if item.payload.get("in_thread", True) else None
            await gateway.post_ping(post.room, root, text, users, item.key)
        else:
            log.error("outbox item %s has unknown kind %r; dropping it", item.id, item.kind)

    async def _replay(
        self, gateway: ChatGateway, post: ChatPost, work: _ChatWork, item: OutboxItem
    ) -> None:
        """A moved ticket's messages after the first, posted under its new root (but not the
        one ``item`` itself is about to post)."""

        def views_of(repo: Repository) -> list[ArticleView]:
            key = self._privacy_key(repo, repo.ticket_by_id(item.ticket_id).queue)
            return [
                self._view(repo, gateway.name, a, key)
                for a in repo.articles(item.ticket_id)[1:]
                if a.id != item.article_id
            ]

        views = await self._store.run(views_of)
        for index, view in enumerate(views):
            await gateway.post_article(
                post.room, post.root_ref, work.ticket, view, f"{item.key}:h{index}"
            )

    async def _move_out(self, gateway: ChatGateway, work: _ChatWork, item: OutboxItem) -> None:
        """Mark the old post of a moved ticket, with a pointer to where it is now."""
        room = str(item.payload.get("room", ""))
        root_ref = str(item.payload.get("root_ref", ""))
        queue = str(item.payload.get("queue", ""))
        by = str(item.payload.get("by", ""))
        if not room or not root_ref:
            return
        where = f"queue {queue}"
        if work.post is not None and work.post.root_ref != root_ref:
            where += f": {gateway.link(work.post.room, work.post.root_ref)}"
        else:
            where += " (not shown on this platform)"
        await gateway.update_ticket(
            room, root_ref, replace(work.ticket, moved_to=where), f"{item.key}:root"
        )
        await gateway.post_notice(room, root_ref, f"➡ Moved to {where} by {by}", item.key)

    async def _post_root_first(
        self, gateway: ChatGateway, work: _ChatWork, item: OutboxItem
    ) -> _ChatWork:
        assert work.room is not None
        first = await self._store.run(
            lambda repo: self._first_view(repo, gateway.name, item.ticket_id)
        )
        ref = await gateway.post_ticket(work.room, work.ticket, first, f"{item.key}:root")
        post = ChatPost(item.ticket_id, gateway.name, work.room, ref)
        if work.post is not None:
            # shown elsewhere before: the ticket moved, and this item came first; the
            # new room gets the history now (the move's own post then finds it done)
            await self._replay(gateway, post, work, item)
        await self._store.run(lambda repo: repo.replace_chat_post(post, self._clock.now()))
        return replace(work, post=post)

    def _first_view(self, repo: Repository, platform: str, ticket_id: int) -> ArticleView | None:
        first = repo.first_article(ticket_id)
        if first is None:
            return None
        key = self._privacy_key(repo, repo.ticket_by_id(ticket_id).queue)
        return self._view(repo, platform, first, key)

    def _privacy_key(self, repo: Repository, queue_name: str) -> bytes | None:
        """The pseudonym key where the ticket's queue shows pseudonyms, else None."""
        queue = self._config.find_queue(queue_name)
        return pseudonym_key(repo) if queue is not None and queue.pseudonymize else None

    def _view(
        self,
        repo: Repository,
        platform: str,
        article: Article,
        key: bytes | None = None,
        requester: tuple[str, str] = ("", ""),
    ) -> ArticleView:
        files = []
        if platform in self._uploads and article.attachments and article.id is not None:
            files = repo.attachment_files(article.id)
        body = None
        if article.kind in (ArticleKind.INBOUND, ArticleKind.REPLY):
            # chat shows what is new; the quoted history stays in the ticket
            body = strip_quoted(article.body)
        view = article_view(article, files, body)
        if key is not None:
            view = mask_article(view, pseudonym(article.author, key))
            email, name = requester
            if email:  # the salutation of a reply names the requester
                alias = pseudonym(email, key)
                view = replace(
                    view,
                    body=hide_requester(view.body, email, name, alias),
                    subject=hide_requester(view.subject, email, name, alias),
                )
        return view

    def _posted(self, repo: Repository, post: ChatPost, item: OutboxItem) -> None:
        now = self._clock.now()
        repo.replace_chat_post(post, now)
        repo.outbox_done(item.id, now)

    def _load_chat_work(self, repo: Repository, platform: str, item: OutboxItem) -> _ChatWork:
        ticket = repo.ticket_by_id(item.ticket_id)
        first = repo.first_article(item.ticket_id)
        article = repo.article(item.article_id) if item.article_id is not None else None
        queue = self._config.queue(ticket.queue)
        key = self._privacy_key(repo, ticket.queue)
        if key is None and item.kind == "move_out":
            # the old room keeps the pseudonyms of the queue the ticket left
            key = self._privacy_key(repo, str(item.payload.get("from_queue", "")))
        view = ticket_view(ticket, first, self._config.tickets.preview_lines)
        hide: Callable[[str], str] = str
        requester = (ticket.requester_email, ticket.requester_name)
        if key is not None:
            alias = pseudonym(ticket.requester_email, key)
            view = mask_ticket(view, alias)

            def hide(text: str) -> str:
                return hide_requester(text, *requester, alias)

        return _ChatWork(
            room=queue.bindings(self._config).get(platform),
            post=repo.chat_post(item.ticket_id, platform),
            ticket=view,
            first=self._view(repo, platform, first, key, requester)
            if first is not None and item.kind == "post_ticket"
            else None,
            article=self._view(repo, platform, article, key, requester)
            if article is not None
            else None,
            hide=hide,
        )

    async def _retry(self, item: OutboxItem, exc: Exception) -> None:
        attempts = item.attempts + 1
        delay = min(3600.0, self._config.outbox.retry_seconds * 2 ** (attempts - 1))
        log.warning(
            "outbox %s item %s (%s) failed (attempt %d), retrying in %.0fs: %s",
            item.channel,
            item.id,
            item.kind,
            attempts,
            delay,
            exc,
        )
        retry_at = self._clock.now() + timedelta(seconds=delay)
        await self._store.run(lambda repo: repo.outbox_retry(item.id, str(exc)[:500], retry_at))

    # --- email -------------------------------------------------------------------------------

    async def _send_reply(self, item: OutboxItem) -> None:
        assert self._sender is not None and item.article_id is not None
        article_id = item.article_id
        loaded = await self._store.run(lambda repo: self._load_reply(repo, item, article_id))
        article, message = loaded
        if article.send_state in (SendState.SENT, SendState.CANCELLED) or message is None:
            await self._store.run(lambda repo: repo.outbox_done(item.id, self._clock.now()))
            return
        if article_id not in self._sent_unrecorded:
            assert message is not None
            await self._sender.send(message)
            checkpoint("sent")
            self._sent_unrecorded.add(article_id)
            log.info(
                "reply %s sent to %s", message.message_id, ", ".join(a.email for a in message.to)
            )
        await self._record_sent(item, article_id)
        self._sent_unrecorded.discard(article_id)
        self.wake()

    async def _record_sent(self, item: OutboxItem, article_id: int) -> None:
        """Record an accepted reply, retrying the record (never the send) while the
        database is away: a reply the server took must not go out again because the
        database was locked at that moment."""
        delay = 1.0
        while True:
            try:
                await self._store.run(lambda repo: self._mark_sent(repo, item, article_id))
                return
            except StoreUnavailable as exc:
                log.warning(
                    "reply for article %s was sent but cannot be recorded yet (%s); "
                    "retrying the record in %.0f s",
                    article_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _load_reply(
        self, repo: Repository, item: OutboxItem, article_id: int
    ) -> tuple[Article, OutgoingEmail | None]:
        """The reply to send; None when it was withdrawn (undo) before sending began.

        Marking the item ``sending`` here, in one transaction with the check, is what
        makes an undo either win completely or come too late, never half.
        """
        article = repo.article(article_id)
        if article.send_state is SendState.QUEUED and not repo.begin_send(item.id):
            return article, None
        ticket = repo.ticket_by_id(article.ticket_id)
        queue = self._config.queue(ticket.queue)
        assert article.kind in (ArticleKind.REPLY, ArticleKind.AUTO_REPLY) and article.message_id
        headers: tuple[tuple[str, str], ...] = ()
        if article.kind is ArticleKind.AUTO_REPLY:
            # RFC 3834: mark it automatic, so other responders do not answer it
            headers = (("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All"))
        message = OutgoingEmail(
            sender=Address(queue.reply_address, queue.sender_name),
            to=tuple(Address(address) for address in article.to),
            subject=article.subject,
            text=article.body,
            message_id=article.message_id,
            in_reply_to=article.in_reply_to,
            references=article.references,
            extra_headers=headers,
        )
        return article, message

    def _mark_sent(self, repo: Repository, item: OutboxItem, article_id: int) -> None:
        now = self._clock.now()
        article = repo.article(article_id)
        article.send_state = SendState.SENT
        article.sent_at = now
        article.send_attempts = item.attempts + 1
        article.last_error = ""
        repo.save_article_sending(article)
        repo.outbox_done(item.id, now)
        self.metrics.replies_sent += 1
        if item.attempts > 0:
            self._notify_thread(
                repo, article.ticket_id, f"✉ Reply sent after {item.attempts + 1} attempts."
            )

    async def _mail_failed(self, item: OutboxItem, exc: MailSendError) -> None:
        attempts = item.attempts + 1
        give_up = not exc.temporary or attempts >= self._config.outbox.max_attempts
        delay = min(3600.0, self._config.outbox.retry_seconds * 2 ** (attempts - 1))
        now = self._clock.now()
        assert item.article_id is not None
        article_id = item.article_id

        def record(repo: Repository) -> None:
            article = repo.article(article_id)
            article.send_attempts = attempts
            article.last_error = str(exc)[:500]
            if give_up:
                article.send_state = SendState.FAILED
                repo.outbox_failed(item.id, str(exc)[:500], now)
                self.metrics.replies_failed += 1
                text = f"✖ The reply could not be sent and was given up: {exc}"
            else:
                repo.outbox_retry(item.id, str(exc)[:500], now + timedelta(seconds=delay))
                text = f"⚠ The reply could not be sent yet ({exc}); retrying in {delay:.0f} s."
            repo.save_article_sending(article)
            if give_up or attempts == 1:
                self._notify_thread(repo, article.ticket_id, text)

        await self._store.run(record)
        log.warning("reply for item %s failed (attempt %d): %s", item.id, attempts, exc)
        self.wake()

    def _notify_thread(self, repo: Repository, ticket_id: int, text: str) -> None:
        ticket = repo.ticket_by_id(ticket_id)
        now = self._clock.now()
        for channel in self._config.queue(ticket.queue).bindings(self._config):
            repo.enqueue(channel, "notice", ticket_id, now, payload={"text": text})
