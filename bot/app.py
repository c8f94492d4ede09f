"""The composition root: builds every part from the validated config and runs them.

This is the one module that imports the core, storage and every adapter; nothing
else in ``bot/`` imports an adapter. Parts are started in order (storage, chat,
outbox, mail) under one task group and stopped in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from adapters.console.gateway import ConsoleGateway
from adapters.console.repl import ConsoleRepl
from adapters.email.imap import ImapSettings, ImapWatcher
from adapters.email.maildir import MaildirSource
from adapters.email.oauth2 import OAuth2Tokens, oauth2_tokens
from adapters.email.parse import parser_for
from adapters.email.smtp import FileSender, SmtpSender, SmtpSettings
from adapters.language import Py3LangidDetector
from adapters.scheduler import ApScheduler
from bot.admin.live import LiveConfig
from bot.chat import ChatGateway
from bot.commands import CommandService
from bot.config import BackupConfig, Config
from bot.domain import Actor
from bot.intake import IntakeService
from bot.metrics import Metrics
from bot.outbox import EMAIL, OutboxDispatcher
from bot.ports import (
    Clock,
    InstanceIdTaken,
    Leases,
    LeasesLost,
    MailSender,
    SoleLeases,
    StoreUnavailable,
    SystemClock,
)
from bot.reminders import ReminderService
from bot.reports.weekly import CHECK_SECONDS as WEEKLY_CHECK_SECONDS
from bot.reports.weekly import WeeklyReport
from bot.roles import RoleKeeper, RoleWork
from bot.status import StatusService
from bot.watchdog import LoopWatchdog
from storage.backup import BackupReport, backup, backup_name, prune_backups, url_kind
from storage.leases import CHECK_TIMEOUT as LEASE_CHECK_TIMEOUT
from storage.leases import FileLeases, leases_for
from storage.store import PeeweeRepository, SqlStore

log = logging.getLogger(__name__)


#: How often the backup job looks at the clock; the day's backup runs at the first look
#: after [backup] at.
BACKUP_CHECK_SECONDS = 300.0
#: After a failed backup, the next try waits this long (a full disk is not fixed in 5 min).
BACKUP_RETRY = timedelta(hours=1)
_BACKUP_KEY = "backup.last_day"
#: How often each instance reads the admins' stored settings again.
SETTINGS_RELOAD_SECONDS = 30.0
#: With several instances, the longest an outbox worker sleeps: another process may have
#: added work for it (a command taken on Discord, posted by the Matrix holder).
SHARED_POLL_SECONDS = 1.0
#: On PostgreSQL, how often an instance writes its heartbeat into the register.
HEARTBEAT_SECONDS = 5.0
#: Stopped or vanished processes stay in the instance register this long.
INSTANCE_KEEP = timedelta(days=30)
INSTANCE_PRUNE_SECONDS = 24 * 3600.0


class DailyBackup:
    """Once a day after ``[backup] at`` (UTC): a checked backup into ``[backup] path``, then
    all but the ``keep`` newest pruned.

    The day of the last good backup is kept in ``job_state``, so a restart neither
    repeats nor skips it. The copy runs in a thread (the event loop goes on); a failure
    is logged, retried an hour later, and never stops the bot.
    """

    def __init__(
        self,
        config: BackupConfig,
        url: str,
        store: SqlStore,
        clock: Clock,
        *,
        backup_fn: Callable[..., BackupReport] = backup,
        prune_fn: Callable[[Path, int], list[Path]] = prune_backups,
    ) -> None:
        self._config = config
        self._url = url
        self._store = store
        self._clock = clock
        self._backup = backup_fn
        self._prune = prune_fn
        self._retry_after: datetime | None = None
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self._config.at is not None and not self._url.endswith(":memory:")

    async def tick(self) -> BackupReport | None:
        """Take the day's backup if it is due; the report, or None when nothing ran."""
        try:
            return await self._tick()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            self._retry_after = self._clock.now() + BACKUP_RETRY
            log.error(
                "daily backup failed (the bot goes on; next try after %s UTC): %s",
                f"{self._retry_after:%H:%M}",
                exc,
            )
            return None

    async def _tick(self) -> BackupReport | None:
        at = self._config.at
        now = self._clock.now()
        if at is None or not self.enabled or now.time() < at:
            return None
        if self._retry_after is not None and now < self._retry_after:
            return None
        today = now.date().isoformat()
        if await self._store.run(lambda repo: repo.job_state(_BACKUP_KEY)) == today:
            return None
        folder = self._config.path
        target = folder / backup_name(url_kind(self._url), now)
        log.info("daily backup: writing %s", target)
        report = await asyncio.to_thread(self._write, folder, target)
        await self._store.run(lambda repo: repo.set_job_state(_BACKUP_KEY, today))
        self._retry_after = None
        log.info(
            "daily backup written and checked: %s (%s)", report.path, report.contents.describe()
        )
        try:
            removed = await asyncio.to_thread(self._prune, folder, self._config.keep)
        except Exception as exc:  # the backup is good; pruning is tried again tomorrow
            log.error("daily backup: pruning old backups in %s failed: %s", folder, exc)
        else:
            for path in removed:
                log.info("daily backup: removed old backup %s", path)
        return report

    def _write(self, folder: Path, target: Path) -> BackupReport:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self._backup(self._url, target, progress=lambda message: log.debug("%s", message))


@dataclass
class App:
    config: Config
    live: LiveConfig
    store: SqlStore
    intake: IntakeService
    commands: CommandService
    dispatcher: OutboxDispatcher
    scheduler: ApScheduler
    reminders: ReminderService
    maildir: MaildirSource | None = None
    imap: ImapWatcher | None = None
    matrix: Any = None  # adapters.matrix.MatrixAdapter, imported only when configured
    discord: Any = None  # adapters.discord.DiscordAdapter, likewise
    console: ConsoleRepl | None = None
    gateways: dict[str, ChatGateway] = field(default_factory=dict)
    backups: DailyBackup | None = None
    weekly: WeeklyReport | None = None
    http: Any = None  # adapters.http.HttpServer, imported only when configured
    clock: Clock = field(default_factory=SystemClock)
    leases: Leases = field(default_factory=SoleLeases)
    instance_name: str = ""
    #: This run's id in the instance register (0 until :meth:`run` registers it).
    instance_id: int = 0
    roles_held: list[str] = field(default_factory=list)
    keeper: RoleKeeper | None = None
    _beat_roles: list[str] | None = None
    _beat_at: datetime | None = None

    async def check_mail_once(self) -> int:
        """Take in what is waiting in the mail sources now (the demo and tests use it)."""
        count = 0
        if self.maildir is not None:
            count += await self.maildir.check_once()
        if self.imap is not None:
            count += await self.imap.check_once()
        return count

    async def reload_settings(self) -> None:
        """Read the admins' stored changes again (another instance may have made some)."""
        # read on the database thread, put in force here: listeners (the adapters) must
        # run on the event loop
        overlay = await self.store.run(lambda repo: repo.load_overlay())
        self.live.apply(overlay)

    async def check_privacy(self, platforms: Sequence[str] | None = None) -> list[str]:
        """At start: every queue room the privacy check finds public, and not allowed by an
        admin (``--public-ok``), is kept out of use; each is logged and returned.

        ``platforms``: only these (a process checks the platforms whose role it takes)."""
        found: list[str] = []
        config = self.live.current
        for queue in config.queues:
            for platform, room in queue.bindings(config).items():
                if platform == "console" or queue.public_ok:
                    continue
                if platforms is not None and platform not in platforms:
                    continue
                check = await self.commands.check_room_privacy(platform, room)
                if check.public:
                    line = (
                        f"queue {queue.name}: {platform} room {room} is public ({check.reason}); "
                        "nothing is posted there. Make it private, or have an admin run "
                        f"queue bind {queue.name} --public-ok in it"
                    )
                    log.error("privacy check: %s", line)
                    self.live.block_room(platform, room, check.reason)
                    found.append(line)
        return found

    # --- roles ---------------------------------------------------------------------------------

    def role_work(self) -> dict[str, RoleWork]:
        """The work of each role this process may hold (``[instance] roles``), for what
        is configured: no ``intake`` without a mailbox, no ``matrix`` without [matrix]."""
        work: dict[str, RoleWork] = {}
        allowed = self.config.instance.roles
        if "intake" in allowed and (self.maildir is not None or self.imap is not None):
            work["intake"] = self._intake_role
        if "matrix" in allowed and self.matrix is not None:
            work["matrix"] = partial(self._chat_role, "matrix", self.matrix)
        if "discord" in allowed and self.discord is not None:
            work["discord"] = partial(self._chat_role, "discord", self.discord)
        if "scheduler" in allowed:
            work["scheduler"] = self._scheduler_role
        return work

    async def _intake_role(self) -> None:
        """Take in mail: the Maildir now and every poll, the IMAP folder with IDLE."""
        if self.maildir is not None:
            source = self.maildir
            await source.check_once()
            self.scheduler.every(
                f"maildir-poll:{source.path}",
                self.config.mail.maildir.poll_seconds if self.config.mail.maildir else 10,
                partial(_discard, source.check_once),
            )
        if self.imap is not None:
            await self.imap.run()
        else:
            await asyncio.Event().wait()  # the poll job does the work until cancelled

    async def _chat_role(self, platform: str, adapter: Any) -> None:
        """Hold one chat connection: connect, check the rooms' privacy, then carry out the
        platform's outbox (nothing is posted before the check).

        A homeserver or gateway that is away at the start is tried again with backoff
        (1 s doubling to 60 s) while the role is kept: the rest of the process (intake,
        replies) goes on, and a standby taking over would find the same server away.
        """
        delay = 1.0
        while True:
            try:
                await adapter.start()
                break
            except Exception as exc:
                log.error("%s: cannot connect (%s); trying again in %.0f s", platform, exc, delay)
                with contextlib.suppress(Exception):
                    await adapter.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        await self.check_privacy([platform])
        async with asyncio.TaskGroup() as group:
            group.create_task(adapter.run(), name=platform)
            group.create_task(self.dispatcher.run_channel(platform), name=f"outbox-{platform}")

    async def _scheduler_role(self) -> None:
        """The timed jobs, which must run once for the whole desk."""
        self.scheduler.every(
            "reminders",
            self.config.reminders.check_seconds,
            partial(_discard, self.reminders.tick),
        )
        if self.weekly is not None and self.weekly.enabled:
            self.scheduler.every(
                "weekly-report", WEEKLY_CHECK_SECONDS, partial(_discard, self.weekly.tick)
            )
        if self.backups is not None and self.backups.enabled:
            self.scheduler.every(
                "daily-backup", BACKUP_CHECK_SECONDS, partial(_discard, self.backups.tick)
            )
        self.scheduler.every(
            "instance-register-pruning", INSTANCE_PRUNE_SECONDS, self._prune_instances
        )
        await self._prune_instances()
        await asyncio.Event().wait()

    async def _prune_instances(self) -> None:
        """Forget processes gone for :data:`INSTANCE_KEEP`: the register would only grow."""
        before = self.clock.now() - INSTANCE_KEEP
        with contextlib.suppress(StoreUnavailable):
            removed = await self.store.run(lambda repo: repo.prune_instances(before))
            if removed:
                log.info("instance register: forgot %d process(es) gone since %s", removed, before)

    async def _others_recent(self) -> bool:
        """Was another instance alive lately (so it may still be finishing a role)?"""
        me, since = self.instance_id, self.clock.now() - timedelta(seconds=self._grace() + 5)
        return await self.store.run(lambda repo: repo.others_seen_since(me, since))

    def _grace(self) -> float:
        """How long a holder that lost its lease may take to notice and stop."""
        if isinstance(self.leases, SoleLeases | FileLeases):
            return 0.0  # a file lock cannot be lost while its process lives
        return self.config.instance.lease_check_seconds + LEASE_CHECK_TIMEOUT + 2.0

    async def _register(self) -> int:
        """A fresh instance id, this process's liveness lock on it, and its line in the
        register.

        The id is random rather than a database sequence: a process must start (and
        take mail in, report, retry) even while its database is read-only or locked;
        the register line is then written by the first heartbeat that can.
        """
        now = self.clock.now()
        name = self.instance_name
        while True:
            instance_id = secrets.randbelow(2**31 - 2) + 1
            try:
                await self.leases.start(instance_id)
                break
            except InstanceIdTaken:  # another live process drew the same: draw again
                continue
        try:
            await self.store.run(lambda repo: repo.register_instance(instance_id, name, now))
        except StoreUnavailable as exc:
            log.warning("instance register: cannot write yet (%s); the heartbeat will", exc)
        self.instance_id = instance_id
        self.dispatcher.instance_id = instance_id
        log.info("instance %s (id %d) started", name, instance_id)
        return instance_id

    async def _heartbeat(self, roles: Sequence[str]) -> None:
        self.roles_held = list(roles)
        self.dispatcher.metrics.roles = {
            role: role in roles for role in (self.keeper.wanted if self.keeper else roles)
        }
        self.dispatcher.metrics.instance = f"{self.instance_name} (id {self.instance_id})"
        instance_id, now = self.instance_id, self.clock.now()
        for role in roles:
            self.dispatcher.metrics.roles_since.setdefault(role, now)
        # The register is written when the roles change, and on PostgreSQL every few
        # checks (others read last_seen to know whether a holder may still be stopping).
        # On SQLite nothing reads it, and a write while another process holds the
        # database's lock would keep the one database thread waiting for the busy timeout.
        due = self._grace() > 0 and (
            self._beat_at is None or (now - self._beat_at).total_seconds() >= HEARTBEAT_SECONDS
        )
        if list(roles) == self._beat_roles and not due:
            return
        self._beat_roles, self._beat_at = list(roles), now
        with contextlib.suppress(StoreUnavailable):
            name = self.instance_name
            await self.store.run(lambda repo: repo.instance_seen(instance_id, now, roles, name))

    async def run(self) -> None:
        """Run until cancelled, or until the console's input ends.

        Every process keeps the settings fresh, sends replies (claimed item by item, so
        several processes never send the same one) and serves ``/healthz``; the roles
        (mail intake, each chat connection, the timed jobs) are taken through leases, so
        with several processes on one PostgreSQL each role runs in exactly one of them.
        """
        await self._register()
        keeper = RoleKeeper(
            self.leases,
            self.role_work(),
            check_seconds=self.config.instance.lease_check_seconds,
            name=f"instance {self.instance_name}",
            on_change=self._heartbeat,
            grace=self._grace(),
            others_recent=self._others_recent,
        )
        self.dispatcher.takeover_grace = self._grace()
        self.keeper = keeper
        # chat channels are carried out by the role holding their connection
        self.dispatcher.only({c for c in self.dispatcher.channels if c in (EMAIL, "console")})
        if self._grace() > 0:
            # PostgreSQL: other processes add work for this one's channels (a command taken
            # on Discord, posted by the Matrix holder). On SQLite every process is on one
            # machine and the active one wakes its own workers; polling there would only
            # queue behind another process's write lock on the one database thread.
            self.dispatcher.poll_seconds = SHARED_POLL_SECONDS
        try:
            if self.http is not None:
                await self.http.start()
            self.scheduler.start()
            self.scheduler.every(
                "settings-reload", SETTINGS_RELOAD_SECONDS, partial(_discard, self.reload_settings)
            )
            try:
                await self._run_parts(keeper)
            except* LeasesLost as lost:
                # the roles may be someone else's by now: stop, and say so plainly
                cause: BaseException = lost
                while isinstance(cause, BaseExceptionGroup):
                    cause = cause.exceptions[0]
                raise LeasesLost(str(cause)) from None
        finally:
            # the roles' timed jobs end with the roles, before anything is given back
            self.scheduler.shutdown()
            await self._stopped()
            await self.close()

    async def _run_parts(self, keeper: RoleKeeper) -> None:
        """The parts every instance runs, the role keeper, and the console (demo)."""
        watchdog = LoopWatchdog(self.config.instance.watchdog_seconds)
        async with asyncio.TaskGroup() as group:
            background = [
                group.create_task(keeper.run(), name="roles"),
                group.create_task(watchdog.run(), name="watchdog"),
            ]
            for channel in self.dispatcher.active_channels:
                background.append(
                    group.create_task(
                        self.dispatcher.run_channel(channel), name=f"outbox-{channel}"
                    )
                )
            if self.console is not None:
                await keeper.first_round()
                await self.dispatcher.drain_all()
                await self.console.run()
                log.info("end of input: finishing the outbox and stopping")
                await self.dispatcher.finish(self.config.tickets.undo_seconds + 5)
                for task in background:
                    task.cancel()

    async def _stopped(self) -> None:
        """A clean stop gives its claims back and its roles free at once."""
        instance_id, now = self.instance_id, self.clock.now()
        if instance_id:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.store.run(lambda repo: repo.instance_stopped(instance_id, now)), 10
                )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leases.close(), 15)

    async def close(self) -> None:
        self.scheduler.shutdown()
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self.http.stop()
        for adapter in (self.matrix, self.discord):
            if adapter is not None:
                with contextlib.suppress(Exception):
                    await adapter.stop()
        await self.store.close()


async def _discard(job: Any) -> None:
    await job()


def _mail_sender(config: Config, oauth2: OAuth2Tokens | None = None) -> MailSender:
    if config.mail.smtp is not None:
        smtp = config.mail.smtp
        return SmtpSender(
            SmtpSettings(
                host=smtp.host,
                port=smtp.port,
                security=smtp.security,
                username=smtp.username,
                password=smtp.password,
                timeout=smtp.timeout_seconds,
                auth=smtp.auth,
                oauth2=oauth2,
            )
        )
    assert config.mail.files is not None
    return FileSender(config.mail.files.path)


async def open_store(
    config: Config, *, longest_wait: float = 60.0, live: LiveConfig | None = None
) -> SqlStore:
    """Open the database, waiting while it is locked, read-only or away.

    A bot started by a supervisor while its database is unavailable would otherwise exit
    and be restarted in a loop; it says what is wrong, once a try, and carries on when it
    can.
    """
    delay = 1.0
    while True:
        store: SqlStore | None = None
        try:
            store = await SqlStore.open(config.storage.url)

            def prepare(repo: PeeweeRepository) -> None:
                # the admins' stored changes first: a renamed queue keeps its new name
                repo.lock_startup()  # instances starting together: one at a time
                current = live.load(repo) if live is not None else config
                repo.sync_queues([q.name for q in current.queues])

            await store.run(prepare)
            return store
        except StoreUnavailable as exc:
            if store is not None:
                await store.close()
            log.warning("the database is unavailable (%s); trying again in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest_wait)


async def build_app(
    config: Config,
    *,
    clock: Clock | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    sender: MailSender | None = None,
    imap_ssl_context: Any = None,
    leases: Leases | None = None,
) -> App:
    """Open storage and build every part; nothing connects to chat or mail yet."""
    clock = clock or SystemClock()
    live = LiveConfig(config)
    store = await open_store(config, live=live)
    oauth2 = oauth2_tokens(config.mail.oauth2, store)  # one client for IMAP and SMTP

    wake_targets: list[OutboxDispatcher] = []

    def wake() -> None:
        for target in wake_targets:
            target.wake()

    metrics = Metrics()
    intake = IntakeService(live, store, clock, wake, detector=Py3LangidDetector(), metrics=metrics)
    commands = CommandService(live, store, clock, wake)
    commands.metrics = metrics
    reminders = ReminderService(live, store, clock, wake)
    scheduler = ApScheduler()
    gateways: dict[str, ChatGateway] = {}
    console = None
    if config.console is not None and config.console.enabled:
        gateways["console"] = ConsoleGateway(
            stdout, files_dir=config.path.resolve().parent / "var" / "reports"
        )
    matrix = None
    if config.matrix is not None:
        from adapters.matrix import MatrixAdapter

        matrix = MatrixAdapter(config.matrix, live.current.queues, commands)
        gateways["matrix"] = matrix.gateway
        matrix.reconnects = metrics.reconnects
        matrix.connections = metrics.connections
        commands.set_room_inspector("matrix", matrix.inspector)
        matrix.apply_config(live.current)  # admins and rooms as stored, from the start
        live.on_change(matrix.apply_config)
    discord = None
    if config.discord is not None:
        from adapters.discord import DiscordAdapter

        discord = DiscordAdapter(config.discord, live.current.queues, commands)
        gateways["discord"] = discord.gateway
        discord.client.reconnects = metrics.reconnects
        discord.client.connections = metrics.connections
        commands.set_room_inspector("discord", discord.inspector)
        discord.apply_config(live.current)
        live.on_change(discord.apply_config)

    name = config.instance.name or f"{socket.gethostname()}:{os.getpid()}"
    if leases is None:
        leases = leases_for(config.storage.url, name)
    dispatcher = OutboxDispatcher(
        live,
        store,
        clock,
        gateways,
        sender or _mail_sender(config, oauth2),
        uploads=frozenset({"discord"}),  # Discord shows attachments; others list them
        metrics=metrics,
        leases=leases,  # whose outbox claims are alive
    )
    wake_targets.append(dispatcher)

    if config.console is not None and config.console.enabled:
        actor = Actor("console", config.console.user, config.console.display_name)
        console = ConsoleRepl(
            commands.execute,
            actor,
            after_command=dispatcher.drain_all,
            stdin=stdin,
            out=stdout,
            files_dir=config.path.resolve().parent / "var" / "reports",
        )

    parse = parser_for(config.mail)
    maildir = None
    if config.mail.maildir is not None:
        maildir = MaildirSource(
            config.mail.maildir.path, intake, parse, config.mail.maildir.poll_seconds
        )
    imap = None
    if config.mail.imap is not None:
        imap = ImapWatcher(
            ImapSettings.from_config(config.mail.imap, oauth2),
            intake,
            parse,
            scheduler,
            ssl_context=imap_ssl_context,
            metrics=metrics,
        )
    http = None
    if config.http is not None:
        from adapters.http import HttpServer

        sources = [imap.source] if imap is not None else []
        http = HttpServer(config.http, StatusService(live, store, clock, metrics, sources))
    return App(
        clock=clock,
        leases=leases,
        instance_name=name,
        http=http,
        config=config,
        live=live,
        store=store,
        intake=intake,
        commands=commands,
        dispatcher=dispatcher,
        scheduler=scheduler,
        reminders=reminders,
        maildir=maildir,
        imap=imap,
        matrix=matrix,
        discord=discord,
        console=console,
        gateways=gateways,
        backups=DailyBackup(config.backup, config.storage.url, store, clock),
        weekly=WeeklyReport(live, store, clock, gateways),
    )
