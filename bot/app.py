"""The composition root: builds every part from the validated config and runs them.

This is the one module that imports the core, storage and every adapter; nothing
else in ``bot/`` imports an adapter. Parts are started in order (storage, chat,
outbox, mail) under one task group and stopped in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from adapters.console.gateway import ConsoleGateway
from adapters.console.repl import ConsoleRepl
from adapters.email.imap import ImapSettings, ImapWatcher
from adapters.email.maildir import MaildirSource
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
from bot.outbox import OutboxDispatcher
from bot.ports import Clock, MailSender, StoreUnavailable, SystemClock
from bot.reminders import ReminderService
from bot.reports.weekly import CHECK_SECONDS as WEEKLY_CHECK_SECONDS
from bot.reports.weekly import WeeklyReport
from bot.status import StatusService
from storage.backup import BackupReport, backup, backup_name, prune_backups, url_kind
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

    async def check_privacy(self) -> list[str]:
        """At start: every queue room the privacy check finds public, and not allowed by an
        admin (``--public-ok``), is kept out of use; each is logged and returned."""
        found: list[str] = []
        config = self.live.current
        for queue in config.queues:
            for platform, room in queue.bindings(config).items():
                if platform == "console" or queue.public_ok:
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

    async def run(self) -> None:
        """Run until cancelled, or until the console's input ends."""
        if self.matrix is not None:
            await self.matrix.start()
        if self.discord is not None:
            await self.discord.start()
        await self.check_privacy()
        if self.http is not None:
            await self.http.start()
        self.scheduler.start()
        try:
            if self.maildir is not None:
                await self.maildir.check_once()
            await self.dispatcher.drain_all()
            async with asyncio.TaskGroup() as group:
                background = [group.create_task(self.dispatcher.run(), name="outbox")]
                if self.maildir is not None:
                    source = self.maildir
                    self.scheduler.every(
                        f"maildir-poll:{source.path}",
                        self.config.mail.maildir.poll_seconds if self.config.mail.maildir else 10,
                        partial(_discard, source.check_once),
                    )
                self.scheduler.every(
                    "settings-reload",
                    SETTINGS_RELOAD_SECONDS,
                    partial(_discard, self.reload_settings),
                )
                self.scheduler.every(
                    "reminders",
                    self.config.reminders.check_seconds,
                    partial(_discard, self.reminders.tick),
                )
                if self.weekly is not None and self.weekly.enabled:
                    self.scheduler.every(
                        "weekly-report",
                        WEEKLY_CHECK_SECONDS,
                        partial(_discard, self.weekly.tick),
                    )
                if self.backups is not None and self.backups.enabled:
                    self.scheduler.every(
                        "daily-backup",
                        BACKUP_CHECK_SECONDS,
                        partial(_discard, self.backups.tick),
                    )
                if self.imap is not None:
                    background.append(group.create_task(self.imap.run(), name="imap"))
                if self.matrix is not None:
                    background.append(group.create_task(self.matrix.run(), name="matrix"))
                if self.discord is not None:
                    background.append(group.create_task(self.discord.run(), name="discord"))
                if self.console is not None:
                    await self.console.run()
                    log.info("end of input: finishing the outbox and stopping")
                    await self.dispatcher.finish(self.config.tickets.undo_seconds + 5)
                    for task in background:
                        task.cancel()
        finally:
            await self.close()

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


def _mail_sender(config: Config) -> MailSender:
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
) -> App:
    """Open storage and build every part; nothing connects to chat or mail yet."""
    clock = clock or SystemClock()
    live = LiveConfig(config)
    store = await open_store(config, live=live)

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
        commands.set_room_inspector("matrix", matrix.inspector)
        matrix.apply_config(live.current)  # admins and rooms as stored, from the start
        live.on_change(matrix.apply_config)
    discord = None
    if config.discord is not None:
        from adapters.discord import DiscordAdapter

        discord = DiscordAdapter(config.discord, live.current.queues, commands)
        gateways["discord"] = discord.gateway
        commands.set_room_inspector("discord", discord.inspector)
        discord.apply_config(live.current)
        live.on_change(discord.apply_config)

    dispatcher = OutboxDispatcher(
        live,
        store,
        clock,
        gateways,
        sender or _mail_sender(config),
        uploads=frozenset({"discord"}),  # Discord shows attachments; others list them
        metrics=metrics,
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
            ImapSettings.from_config(config.mail.imap),
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
