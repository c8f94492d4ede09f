"""The composition root: builds every part from the validated config and runs them.

This is the one module that imports the core, storage and every adapter; nothing
else in ``bot/`` imports an adapter. Parts are started in order (storage, chat,
outbox, mail) under one task group and stopped in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO

from adapters.console.gateway import ConsoleGateway
from adapters.console.repl import ConsoleRepl
from adapters.email.imap import ImapSettings, ImapWatcher
from adapters.email.maildir import MaildirSource
from adapters.email.parse import parser_for
from adapters.email.smtp import FileSender, SmtpSender, SmtpSettings
from adapters.language import Py3LangidDetector
from adapters.scheduler import ApScheduler
from bot.chat import ChatGateway
from bot.commands import CommandService
from bot.config import Config
from bot.domain import Actor
from bot.intake import IntakeService
from bot.outbox import OutboxDispatcher
from bot.ports import Clock, MailSender, SystemClock
from bot.reminders import ReminderService
from storage.store import SqlStore

log = logging.getLogger(__name__)


@dataclass
class App:
    config: Config
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

    async def check_mail_once(self) -> int:
        """Take in what is waiting in the mail sources now (the demo and tests use it)."""
        count = 0
        if self.maildir is not None:
            count += await self.maildir.check_once()
        if self.imap is not None:
            count += await self.imap.check_once()
        return count

    async def run(self) -> None:
        """Run until cancelled, or until the console's input ends."""
        if self.matrix is not None:
            await self.matrix.start()
        if self.discord is not None:
            await self.discord.start()
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
                    "reminders",
                    self.config.reminders.check_seconds,
                    partial(_discard, self.reminders.tick),
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
    store = await SqlStore.open(config.storage.url)
    await store.run(lambda repo: repo.sync_queues([q.name for q in config.queues]))

    wake_targets: list[OutboxDispatcher] = []

    def wake() -> None:
        for target in wake_targets:
            target.wake()

    intake = IntakeService(config, store, clock, wake, detector=Py3LangidDetector())
    commands = CommandService(config, store, clock, wake)
    reminders = ReminderService(config, store, clock, wake)
    scheduler = ApScheduler()
    gateways: dict[str, ChatGateway] = {}
    console = None
    if config.console is not None and config.console.enabled:
        gateways["console"] = ConsoleGateway(stdout)
    matrix = None
    if config.matrix is not None:
        from adapters.matrix import MatrixAdapter

        matrix = MatrixAdapter(config.matrix, config.queues, commands)
        gateways["matrix"] = matrix.gateway
    discord = None
    if config.discord is not None:
        from adapters.discord import DiscordAdapter

        discord = DiscordAdapter(config.discord, config.queues, commands)
        gateways["discord"] = discord.gateway

    dispatcher = OutboxDispatcher(
        config,
        store,
        clock,
        gateways,
        sender or _mail_sender(config),
        uploads=frozenset({"discord"}),  # Discord shows attachments; others list them
    )
    wake_targets.append(dispatcher)

    if config.console is not None and config.console.enabled:
        actor = Actor("console", config.console.user, config.console.display_name)
        console = ConsoleRepl(
            commands.execute, actor, after_command=dispatcher.drain_all, stdin=stdin, out=stdout
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
        )
    return App(
        config=config,
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
    )
