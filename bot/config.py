"""Reading and validating ``bot.toml``.

Everything is checked before anything connects: an unknown key, a wrong type, a
queue without an address or bound to nothing stops the start with one line that
names the key. Secrets may come from the environment (``password_env``) so the
file can be shared. Relative paths are taken relative to the config file.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from bot.domain import Actor
from bot.timeparse import parse_clock, parse_duration

if TYPE_CHECKING:
    from bot.rules import Rule

T = TypeVar("T")

Security = Literal["tls", "starttls", "none"]
AfterIntake = Literal["flag", "move"]
MailAuth = Literal["password", "oauth2"]
_SECURITY: tuple[Security, ...] = ("tls", "starttls", "none")
_MAIL_AUTH: tuple[MailAuth, ...] = ("password", "oauth2")


class ConfigError(Exception):
    """One problem in the configuration, naming the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class StorageConfig:
    url: str = "sqlite:///ticketbot.db"


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int = 993
    security: Security = "tls"
    username: str = ""
    password: str = field(default="", repr=False)
    folder: str = "INBOX"
    idle: bool = True
    poll_seconds: float = 60.0
    after_intake: AfterIntake = "flag"
    move_to: str = ""
    timeout_seconds: float = 60.0
    auth: MailAuth = "password"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 60.0
    auth: MailAuth = "password"


@dataclass(frozen=True)
class OAuth2Config:
    """``[mail.oauth2]``: one OAuth2 client, shared by IMAP and SMTP.

    Shared because providers rotate refresh tokens: two clients refreshing the same
    grant would each invalidate the other's token.
    """

    token_url: str
    client_id: str = field(repr=False)
    client_secret: str | None = field(default=None, repr=False)
    scope: str | None = None
    #: an environment variable that may hold the first refresh token (see docs/oauth2.md)
    refresh_token_env: str | None = None
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class MaildirConfig:
    path: Path
    poll_seconds: float = 10.0


@dataclass(frozen=True)
class FilesConfig:
    """Write replies as .eml files to a folder instead of sending them (the demo's outbox)."""

    path: Path


@dataclass(frozen=True)
class MailConfig:
    imap: ImapConfig | None = None
    maildir: MaildirConfig | None = None
    smtp: SmtpConfig | None = None
    files: FilesConfig | None = None
    oauth2: OAuth2Config | None = None
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_total_attachment_bytes: int = 25 * 1024 * 1024


@dataclass(frozen=True)
class MatrixConfig:
    homeserver: str
    user_id: str
    password: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    device_id: str = "TICKETBOT"
    device_name: str = "ticketbot"


@dataclass(frozen=True)
class DiscordConfig:
    token: str = field(repr=False)
    guild_id: int


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = True
    user: str = "@volunteer:console"
    display_name: str = ""


@dataclass(frozen=True)
class TicketsConfig:
    system_id: int = 10
    preview_lines: int = 6
    #: A claim with no action by its owner for this long goes back to the queue.
    claim_idle: timedelta | None = timedelta(days=3)
    #: How long a reply waits, with an Undo, before it is sent.
    undo_seconds: float = 10.0
    #: The ticket hook of the OTRS/Znuny desk tickets were imported from
    #: (``ticketbot import-otrs``): follow-ups tagged ``[<hook><number>]`` still land.
    otrs_ticket_hook: str = "Ticket#"


@dataclass(frozen=True)
class RemindersConfig:
    """When the bot reminds; each ``None`` turns that reminder off."""

    unclaimed_after: timedelta | None = timedelta(hours=4)
    unanswered_after: timedelta | None = timedelta(days=2)
    digest_at: time | None = time(8, 0)
    check_seconds: float = 60.0


@dataclass(frozen=True)
class AutoResponseConfig:
    max_per_sender_per_day: int = 3


@dataclass(frozen=True)
class FloodConfig:
    """Past ``threshold`` new tickets from one sender within ``window``, further mail from
    them is grouped into one ticket instead of a post each (0: never)."""

    threshold: int = 20
    window: timedelta = timedelta(hours=1)
    notice_every: int = 100


@dataclass(frozen=True)
class BackupConfig:
    """The daily backup the bot takes itself, and where erase and retention put theirs."""

    path: Path = Path("var/backups")
    keep: int = 14
    #: UTC time after which the day's backup is taken; None: no daily backup.
    at: time | None = time(2, 15)


@dataclass(frozen=True)
class RetentionConfig:
    """How long closed tickets are kept before ``ticketbot retention`` archives them."""

    #: None: retention is off (the default); nothing is ever removed by age.
    closed_after: timedelta | None = None
    archive_dir: Path = Path("var/archive")
    #: The most a run may remove, as a share of all tickets; more is refused.
    max_share: float = 0.2


#: The variables a template, salutation, signature or auto-response may use.
TEMPLATE_VARIABLES = frozenset(
    {"requester_name", "requester_email", "ticket_number", "volunteer_name", "queue", "subject"}
)

#: Texts by language code ("en", "de"); "*" is the fallback for any other language.
Texts = Mapping[str, str]

FollowUpPolicy = Literal["reopen", "reopen_within", "new"]


@dataclass(frozen=True)
class OutboxConfig:
    max_attempts: int = 8
    retry_seconds: float = 30.0


@dataclass(frozen=True)
class QueueConfig:
    name: str
    addresses: tuple[str, ...]
    volunteers: tuple[str, ...] = ()
    default: bool = False
    matrix_room: str | None = None
    discord_channel: int | None = None
    discord_roles: tuple[int, ...] = ()
    console: bool = True
    sender_name: str = ""
    #: The queue's main language, for templates and auto-responses when the ticket's
    #: language is unknown.
    language: str = "en"
    salutation: Texts = field(default_factory=dict)
    signature: Texts = field(default_factory=dict)
    #: Replies signed with the team's name only, never the volunteer's.
    anonymous: bool = False
    autoresponse_new: Texts = field(default_factory=dict)
    autoresponse_reopen: Texts = field(default_factory=dict)
    #: What a follow-up to a closed ticket does.
    follow_up_closed: FollowUpPolicy = "reopen"
    reopen_days: int = 30
    #: The address replies come from: the first own address, or the parent queue's.
    reply_from: str = ""
    #: Who may do what, by user id or role ("discord-role:ID"): "act", "trainee", "read",
    #: or "none" (taken away). Set from ``volunteers``/``discord_roles`` and the grants
    #: admins make at run time; a subject not named here falls back to ``volunteers``.
    access: Mapping[str, str] = field(default_factory=dict)
    #: Closed to new mail: mail to this queue's addresses goes to that queue instead.
    closed_to: str | None = None
    #: Reminder pings and the digest for this queue (``queue set NAME reminders off``).
    reminders: bool = True
    #: Chat shows requesters as pseudonyms, with addresses and phone numbers masked.
    pseudonymize: bool = False
    #: An admin bound this queue to a room the privacy check calls public, on purpose.
    public_ok: bool = False

    @property
    def parent(self) -> str | None:
        """``info`` for ``info::de``; None for a top-level queue."""
        head, sep, _ = self.name.rpartition("::")
        return head if sep else None

    def is_within(self, other: str) -> bool:
        """True for the queue itself and its sub-queues (``info::de`` is within ``info``)."""
        return self.name == other or self.name.startswith(other + "::")

    def bindings(self, config: Config) -> dict[str, str]:
        """Which chat adapters show this queue, and where (adapter name -> room)."""
        found: dict[str, str] = {}
        if self.matrix_room and config.matrix is not None:
            found["matrix"] = self.matrix_room
        if self.discord_channel is not None and config.discord is not None:
            found["discord"] = str(self.discord_channel)
        if self.console and config.console is not None and config.console.enabled:
            found["console"] = self.name
        return found

    @property
    def reply_address(self) -> str:
        return self.reply_from or self.addresses[0]

    def level(self, actor: Actor) -> str | None:
        """The actor's access to this queue: "act", "trainee", "read", or None.

        The strongest of what the person and each of their roles hold; a subject that
        admins never granted or revoked falls back to ``volunteers``/``discord_roles``.
        """
        best: str | None = None
        roles = {f"discord-role:{role}" for role in self.discord_roles}
        for subject in (actor.user_id, *sorted(actor.roles)):
            level = self.access.get(subject)
            if level is None and (subject in self.volunteers or subject in roles):
                level = "act"
            if level is not None and _RANK[level] > _RANK.get(best or "none", 0):
                best = level
        return best

    def may_act(self, actor: Actor) -> bool:
        """A full volunteer of this queue, in person or by one of their roles."""
        return self.level(actor) == "act"

    def may_work(self, actor: Actor) -> bool:
        """A volunteer or a trainee: may claim, note and draft replies."""
        return self.level(actor) in ("act", "trainee")

    def may_read(self, actor: Actor) -> bool:
        """May see and search this queue's tickets."""
        return self.level(actor) in ("act", "trainee", "read")


#: Access levels, weakest first; "none" is an explicit revocation.
ACCESS_LEVELS = ("none", "read", "trainee", "act")
_RANK = {name: rank for rank, name in enumerate(ACCESS_LEVELS)}


@dataclass(frozen=True)
class ReportsConfig:
    """The weekly traffic report, posted to an admins' room (none of it: no report)."""

    #: "mon 08:00" (UTC): the day and time the weekly report is posted; None: off.
    weekly_at: tuple[int, time] | None = None
    matrix_room: str | None = None
    discord_channel: int | None = None
    console: bool = False


@dataclass(frozen=True)
class HttpConfig:
    """The optional HTTP endpoint: backlog badges and a health check, for a status page."""

    host: str = "127.0.0.1"
    port: int = 9102
    #: Serve /badge/QUEUE.svg and .json (queue names and counts, no personal data).
    badges: bool = True
    #: Seconds a badge is reused before the database is asked again.
    badge_cache_seconds: float = 60.0


#: The jobs one process can hold at a time; with several instances on one PostgreSQL,
#: each role is held by exactly one of them (``bot/roles.py``).
ROLES = ("intake", "matrix", "discord", "scheduler")


@dataclass(frozen=True)
class InstanceConfig:
    """Which roles this process may take, and how quickly a standby looks for free ones."""

    #: The roles this process may hold (default: all). Pinning needs PostgreSQL: on
    #: SQLite one process holds them all and a second one waits as a standby.
    roles: tuple[str, ...] = ROLES
    #: Shown in logs, /healthz and the ``instance`` table; default host:pid.
    name: str = ""
    #: How often a standby tries to take a free role (a dead holder's role is taken over
    #: within this many seconds of its database connection closing).
    lease_check_seconds: float = 5.0
    #: A process whose event loop has not turned for this long ends itself (exit status
    #: 70), so a standby takes its roles; 0 turns the watchdog off (bot/watchdog.py).
    watchdog_seconds: float = 60.0


@dataclass(frozen=True)
class Config:
    path: Path
    storage: StorageConfig
    mail: MailConfig
    queues: tuple[QueueConfig, ...]
    matrix: MatrixConfig | None = None
    discord: DiscordConfig | None = None
    console: ConsoleConfig | None = None
    tickets: TicketsConfig = TicketsConfig()
    outbox: OutboxConfig = OutboxConfig()
    log_level: str = "INFO"
    #: "text" for people, "json" for one JSON object a line (``--log-format``).
    log_format: str = "text"
    reminders: RemindersConfig = RemindersConfig()
    autoresponse: AutoResponseConfig = AutoResponseConfig()
    flood: FloodConfig = FloodConfig()
    backup: BackupConfig = BackupConfig()
    retention: RetentionConfig = RetentionConfig()
    #: Reply templates: name -> language -> text.
    templates: Mapping[str, Texts] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    #: The ``[[rule]]`` tables as written, so admins' rule commands can copy and edit them.
    rule_tables: tuple[Mapping[str, Any], ...] = ()
    #: The first admins (user ids, ``discord:ID`` or ``discord-role:ID``); more are granted
    #: at run time with ``admin grant``.
    admins: tuple[str, ...] = ()
    reports: ReportsConfig = ReportsConfig()
    http: HttpConfig | None = None
    instance: InstanceConfig = InstanceConfig()

    def is_admin(self, actor: Actor) -> bool:
        return bool({actor.user_id, *actor.roles} & set(self.admins))

    def queue(self, name: str) -> QueueConfig:
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise KeyError(name)

    def find_queue(self, name: str) -> QueueConfig | None:
        """A queue by name, ignoring case (volunteers type ``move INFO::DE``)."""
        for queue in self.queues:
            if queue.name.lower() == name.strip().lower():
                return queue
        return None

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address the desk receives at: mail from these is never answered."""
        return frozenset(a for queue in self.queues for a in queue.addresses)

    @property
    def default_queue(self) -> QueueConfig:
        return next(q for q in self.queues if q.default)


# --- reading helpers -------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


class _Section:
    """A table of the TOML file being read, remembering its dotted path for error messages."""

    def __init__(self, data: Mapping[str, Any], path: str, env: Mapping[str, str]) -> None:
        self.data = data
        self.path = path
        self.env = env
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type[T], default: T) -> T:
        value = self.opt(name, kind)
        return default if value is None else value

    def need(self, name: str, kind: type[T]) -> T:
        value = self.opt(name, kind)
        if value is None:
            raise ConfigError(self.key(name), "is required")
        return value

    def opt(self, name: str, kind: type[T]) -> T | None:
        self.used.add(name)
        if name not in self.data:
            return None
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                self.key(name), f"must be {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}"
            )
        if kind is str and not value.strip():  # type: ignore[attr-defined]
            raise ConfigError(self.key(name), "must not be empty")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        self.used.add(name)
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), f"must be a list of strings, got {value!r}")
        return tuple(value)

    def ints(self, name: str) -> tuple[int, ...]:
        self.used.add(name)
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(self.key(name), f"must be a list of integer ids, got {value!r}")
        return tuple(value)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise ConfigError(
                self.key(name), f"must be one of {', '.join(map(repr, choices))}, got {value!r}"
            )
        return value

    def positive(self, name: str, kind: type[T], default: T) -> T:
        value = self.get(name, kind, default)
        if value <= 0:  # type: ignore[operator]
            raise ConfigError(self.key(name), f"must be greater than 0, got {value!r}")
        return value

    def secret(self, name: str, *, required: bool) -> str | None:
        """A secret given inline as ``name``, or in the environment variable ``name_env`` names."""
        inline = self.opt(name, str)
        env_name = self.opt(f"{name}_env", str)
        if inline is not None and env_name is not None:
            raise ConfigError(self.key(name), f"give either {name} or {name}_env, not both")
        if env_name is not None:
            value = self.env.get(env_name)
            if not value:
                raise ConfigError(
                    self.key(f"{name}_env"), f"environment variable {env_name} is not set"
                )
            return value
        if inline is None and required:
            raise ConfigError(self.key(name), f"is required (or set {name}_env)")
        return inline

    def duration(self, name: str, default: timedelta | None) -> timedelta | None:
        """A duration like ``"4h"`` or ``"2d"``; ``"off"`` turns the feature off."""
        text = self.opt(name, str)
        if text is None:
            return default
        if text.strip().lower() == "off":
            return None
        value = parse_duration(text)
        if value is None:
            raise ConfigError(
                self.key(name), f'must be a duration like "30m", "4h", "2d" or "off", got {text!r}'
            )
        return value

    def texts(self, name: str) -> dict[str, str]:
        """Text by language: a string (any language) or a table ``{en = "...", de = "..."}``.

        Every ``{variable}`` is checked here, so a typo stops the start instead of a reply.
        """
        self.used.add(name)
        if name not in self.data:
            return {}
        value = self.data[name]
        if isinstance(value, str):
            value = {"*": value}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(
                self.key(name), 'must be a text or a table of texts by language {en = "..."}'
            )
        for language, text in value.items():
            check_template(text, f"{self.key(name)}.{language}")
        return dict(value)

    def table(self, name: str) -> _Section | None:
        self.used.add(name)
        if name not in self.data:
            return None
        value = self.data[name]
        if not isinstance(value, dict):
            raise ConfigError(self.key(name), "must be a table")
        return _Section(value, self.key(name), self.env)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown setting")


def check_template(text: str, key: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` for a broken or unknown ``{variable}``."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ConfigError(key, f"{exc} (write {{{{ and }}}} for literal braces)") from None
    for name in fields:
        if name not in TEMPLATE_VARIABLES:
            known = ", ".join(sorted(TEMPLATE_VARIABLES))
            raise ConfigError(key, f"unknown variable {{{name}}}; known: {known}")


def _path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _resolve_storage_url(base: Path, url: str) -> str:
    """Make a relative SQLite path relative to the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:":
            return prefix + str(_path(base, rest))
    return url


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises :class:`ConfigError` naming the bad key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found (use --config PATH)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse_config(data, path, os.environ if env is None else env)


def parse_config(data: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> Config:
    base = path.resolve().parent
    root = _Section(data, "", env)

    storage = StorageConfig()
    if (section := root.table("storage")) is not None:
        # the URL may hold a database password: url_env names a variable holding it
        url = section.secret("url", required=False) or storage.url
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            shown = url.split("://", 1)[0] + "://…" if "@" in url else url  # no password
            raise ConfigError(
                "storage.url", f"must start with sqlite:/// or postgresql://, got {shown!r}"
            )
        storage = StorageConfig(url=url)
        section.finish()
    storage = StorageConfig(url=_resolve_storage_url(base, storage.url))

    mail = _read_mail(root.table("mail"), base)
    matrix = _read_matrix(root.table("matrix"))
    discord = _read_discord(root.table("discord"))
    console = _read_console(root.table("console"))

    tickets = TicketsConfig()
    if (section := root.table("tickets")) is not None:
        system_id = section.get("system_id", int, tickets.system_id)
        if not 10 <= system_id <= 99:
            raise ConfigError("tickets.system_id", f"must be two digits (10-99), got {system_id}")
        tickets = TicketsConfig(
            system_id=system_id,
            preview_lines=section.positive("preview_lines", int, tickets.preview_lines),
            claim_idle=section.duration("claim_idle", tickets.claim_idle),
            undo_seconds=section.get("undo_seconds", float, tickets.undo_seconds),
            otrs_ticket_hook=section.get("otrs_ticket_hook", str, tickets.otrs_ticket_hook),
        )
        if tickets.undo_seconds < 0:
            raise ConfigError("tickets.undo_seconds", "must be 0 (no undo) or more")
        hook = tickets.otrs_ticket_hook
        if len(hook) > 40 or any(c in hook for c in "[]\r\n") or hook != hook.strip():
            raise ConfigError(
                "tickets.otrs_ticket_hook",
                f"must be the hook text without brackets or surrounding spaces, got {hook!r}",
            )
        section.finish()

    reminders = RemindersConfig()
    if (section := root.table("reminders")) is not None:
        digest = reminders.digest_at
        if "digest_at" in section.data:
            text = section.get("digest_at", str, "")
            digest = None if text == "off" else parse_clock(text)
            if digest is None and text != "off":
                raise ConfigError(
                    "reminders.digest_at", f'must be a UTC time like "08:00" or "off", got {text!r}'
                )
        reminders = RemindersConfig(
            unclaimed_after=section.duration("unclaimed_after", reminders.unclaimed_after),
            unanswered_after=section.duration("unanswered_after", reminders.unanswered_after),
            digest_at=digest,
            check_seconds=section.positive("check_seconds", float, reminders.check_seconds),
        )
        section.finish()

    autoresponse = AutoResponseConfig()
    if (section := root.table("autoresponse")) is not None:
        autoresponse = AutoResponseConfig(
            max_per_sender_per_day=section.get(
                "max_per_sender_per_day", int, autoresponse.max_per_sender_per_day
            )
        )
        if autoresponse.max_per_sender_per_day < 0:
            raise ConfigError("autoresponse.max_per_sender_per_day", "must be 0 or more")
        section.finish()

    flood = FloodConfig()
    if (section := root.table("flood")) is not None:
        window = section.duration("window", flood.window)
        if window is None:
            raise ConfigError(
                "flood.window",
                'must be a duration like "1h" (use threshold = 0 to turn grouping off)',
            )
        flood = FloodConfig(
            threshold=section.get("threshold", int, flood.threshold),
            window=window,
            notice_every=section.positive("notice_every", int, flood.notice_every),
        )
        if flood.threshold < 0:
            raise ConfigError("flood.threshold", "must be 0 (off) or more")
        section.finish()

    backup = _read_backup(root.table("backup"), base)
    retention = _read_retention(root.table("retention"), base)

    templates: dict[str, Texts] = {}
    if (section := root.table("templates")) is not None:
        for name in section.data:
            key = section.key(name)
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(key, "a template name is letters, digits, - and _")
            templates[name] = section.texts(name)
            if not templates[name]:
                raise ConfigError(key, "needs at least one language")

    outbox = OutboxConfig()
    if (section := root.table("outbox")) is not None:
        outbox = OutboxConfig(
            max_attempts=section.positive("max_attempts", int, outbox.max_attempts),
            retry_seconds=section.positive("retry_seconds", float, outbox.retry_seconds),
        )
        section.finish()

    log_level, log_format = "INFO", "text"
    if (section := root.table("logging")) is not None:
        log_level = section.choice("level", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
        log_format = section.choice("format", ("text", "json"), "text")
        section.finish()

    queues = _read_queues(root, matrix, discord)

    from bot.rules import parse_rules  # rules name queues; read them last

    root.used.add("rule")
    rule_tables = root.data.get("rule", [])
    rules = parse_rules(rule_tables, {q.name for q in queues})
    admins = root.strings("admins")
    for index, admin in enumerate(admins):
        if not _SUBJECT.fullmatch(admin):
            raise ConfigError(
                f"admins[{index}]",
                f"{admin!r} is not a user: write @name:server (Matrix), discord:ID, "
                "discord-role:ID or console:NAME",
            )
    reports = _read_reports(root.table("reports"), matrix, discord)
    http = _read_http(root.table("http"))
    instance = _read_instance(root.table("instance"), storage, matrix, discord, reports)
    root.finish()

    config = Config(
        path=path,
        storage=storage,
        mail=mail,
        queues=queues,
        matrix=matrix,
        discord=discord,
        console=console,
        tickets=tickets,
        outbox=outbox,
        log_level=log_level,
        log_format=log_format,
        reminders=reminders,
        autoresponse=autoresponse,
        flood=flood,
        backup=backup,
        retention=retention,
        templates=templates,
        rules=rules,
        rule_tables=tuple(rule_tables),
        admins=admins,
        reports=reports,
        http=http,
        instance=instance,
    )
    for index, queue in enumerate(queues):
        if not queue.bindings(config):
            raise ConfigError(
                f"queue[{index}] ({queue.name})",
                "is bound to nothing: set matrix_room (with [matrix]), "
                "discord_channel (with [discord]) or enable [console]",
            )
    return config


def _read_mail(section: _Section | None, base: Path) -> MailConfig:
    if section is None:
        raise ConfigError("mail", "is required: configure [mail.imap] or [mail.maildir]")
    imap = maildir = smtp = files = None
    oauth2 = _read_oauth2(section.table("oauth2"))
    if (sub := section.table("imap")) is not None:
        imap_auth = _mail_auth(sub, oauth2)
        imap = ImapConfig(
            host=sub.need("host", str),
            port=sub.positive("port", int, 993),
            security=cast(Security, sub.choice("security", _SECURITY, "tls")),
            username=sub.need("username", str),
            password=sub.secret("password", required=imap_auth == "password") or "",
            auth=imap_auth,
            folder=sub.get("folder", str, "INBOX"),
            idle=sub.get("idle", bool, True),
            poll_seconds=sub.positive("poll_seconds", float, 60.0),
            after_intake=cast(AfterIntake, sub.choice("after_intake", ("flag", "move"), "flag")),
            move_to=sub.get("move_to", str, ""),
            timeout_seconds=sub.positive("timeout_seconds", float, 60.0),
        )
        if imap.after_intake == "move" and not imap.move_to:
            raise ConfigError("mail.imap.move_to", 'is required when after_intake = "move"')
        if imap.after_intake == "move" and imap.move_to == imap.folder:
            raise ConfigError("mail.imap.move_to", f"must differ from folder ({imap.folder!r})")
        sub.finish()
    if (sub := section.table("maildir")) is not None:
        maildir = MaildirConfig(
            path=_path(base, sub.need("path", str)),
            poll_seconds=sub.positive("poll_seconds", float, 10.0),
        )
        sub.finish()
    if (sub := section.table("smtp")) is not None:
        smtp_auth = _mail_auth(sub, oauth2)
        username = sub.need("username", str) if smtp_auth == "oauth2" else sub.opt("username", str)
        smtp = SmtpConfig(
            host=sub.need("host", str),
            port=sub.positive("port", int, 587),
            security=cast(Security, sub.choice("security", _SECURITY, "starttls")),
            username=username,
            password=sub.secret(
                "password", required=username is not None and smtp_auth == "password"
            ),
            timeout_seconds=sub.positive("timeout_seconds", float, 60.0),
            auth=smtp_auth,
        )
        sub.finish()
    if (sub := section.table("files")) is not None:
        files = FilesConfig(path=_path(base, sub.need("path", str)))
        sub.finish()
    mail = MailConfig(
        imap=imap,
        maildir=maildir,
        smtp=smtp,
        files=files,
        oauth2=oauth2,
        max_attachment_bytes=section.positive("max_attachment_bytes", int, 10 * 1024 * 1024),
        max_total_attachment_bytes=section.positive(
            "max_total_attachment_bytes", int, 25 * 1024 * 1024
        ),
    )
    section.finish()
    if imap is None and maildir is None:
        raise ConfigError("mail", "no intake: configure [mail.imap] or [mail.maildir]")
    if smtp is None and files is None:
        raise ConfigError("mail", "no way to send replies: configure [mail.smtp] or [mail.files]")
    if smtp is not None and files is not None:
        raise ConfigError("mail.files", "give either [mail.smtp] or [mail.files], not both")
    if oauth2 is not None and "oauth2" not in (
        imap.auth if imap else None,
        smtp.auth if smtp else None,
    ):
        raise ConfigError(
            "mail.oauth2", 'is used by nothing: set auth = "oauth2" in [mail.imap] or [mail.smtp]'
        )
    return mail


def _read_oauth2(section: _Section | None) -> OAuth2Config | None:
    """``[mail.oauth2]``: the token endpoint and the client; the refresh token is not here.

    The refresh token changes (providers rotate it), so it lives in the database, put
    there by ``ticketbot oauth2 set-token``; see docs/oauth2.md.
    """
    if section is None:
        return None
    token_url = section.need("token_url", str)
    scheme, _sep, rest = token_url.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if scheme not in ("https", "http") or not host:
        raise ConfigError(section.key("token_url"), f"must be an https:// URL, got {token_url!r}")
    if scheme == "http" and host not in ("127.0.0.1", "::1", "localhost"):
        # the client secret and the refresh token travel in the request body
        raise ConfigError(
            section.key("token_url"), f"must be https:// (http only on loopback), got {token_url!r}"
        )
    oauth2 = OAuth2Config(
        token_url=token_url,
        client_id=section.secret("client_id", required=True) or "",
        client_secret=section.secret("client_secret", required=False),
        scope=section.opt("scope", str),
        refresh_token_env=section.opt("refresh_token_env", str),
        timeout_seconds=section.positive("timeout_seconds", float, 30.0),
    )
    section.finish()
    return oauth2


def _mail_auth(section: _Section, oauth2: OAuth2Config | None) -> MailAuth:
    """``auth`` of [mail.imap] or [mail.smtp]: "oauth2" needs [mail.oauth2] and no password."""
    auth = cast(MailAuth, section.choice("auth", _MAIL_AUTH, "password"))
    if auth == "oauth2":
        if oauth2 is None:
            raise ConfigError(section.key("auth"), '"oauth2" needs a [mail.oauth2] section')
        for name in ("password", "password_env"):
            if name in section.data:
                raise ConfigError(section.key(name), 'is not used with auth = "oauth2"; remove it')
    return auth


def _read_backup(section: _Section | None, base: Path) -> BackupConfig:
    default = BackupConfig()
    if section is None:
        return BackupConfig(path=_path(base, str(default.path)))
    at = default.at
    if "at" in section.data:
        text = section.get("at", str, "")
        at = None if text.strip().lower() == "off" else parse_clock(text)
        if at is None and text.strip().lower() != "off":
            raise ConfigError(
                "backup.at", f'must be a UTC time like "02:15" or "off", got {text!r}'
            )
    backup = BackupConfig(
        path=_path(base, section.get("path", str, str(default.path))),
        keep=section.positive("keep", int, default.keep),
        at=at,
    )
    section.finish()
    return backup


_YEARS = re.compile(r"(\d+)\s*y(?:ears?)?(?![a-z])", re.IGNORECASE)


def _read_retention(section: _Section | None, base: Path) -> RetentionConfig:
    default = RetentionConfig()
    if section is None:
        return RetentionConfig(archive_dir=_path(base, str(default.archive_dir)))
    closed_after = None
    text = section.opt("closed_after", str)
    if text is not None and text.strip().lower() != "off":
        # years are not a unit of parse_duration: a year is taken as 365 days
        as_days = _YEARS.sub(lambda m: f"{int(m.group(1)) * 365}d", text)
        closed_after = parse_duration(as_days)
        if closed_after is None:
            raise ConfigError(
                "retention.closed_after",
                f'must be a duration like "2y", "540d", "26w" or "off", more than 0 and at '
                f"most ten years, got {text!r}",
            )
        if closed_after < timedelta(days=1):
            raise ConfigError(
                "retention.closed_after",
                f"must be at least a day, got {text!r} (m is minutes: write days, like "
                '"180d", or years, like "2y")',
            )
    max_share = section.get("max_share", float, default.max_share)
    if not 0 < max_share <= 1:
        raise ConfigError(
            "retention.max_share",
            f"must be a share of all tickets above 0 and at most 1 (0.2 is 20%), got {max_share}",
        )
    retention = RetentionConfig(
        closed_after=closed_after,
        archive_dir=_path(base, section.get("archive_dir", str, str(default.archive_dir))),
        max_share=max_share,
    )
    section.finish()
    return retention


#: Who can be named as an admin or granted access.
_SUBJECT = re.compile(r"@[^:\s]+:\S+|discord:\d+|discord-role:\d+|console:\S+|@[^:\s]+:console")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _read_reports(
    section: _Section | None, matrix: MatrixConfig | None, discord: DiscordConfig | None
) -> ReportsConfig:
    if section is None:
        return ReportsConfig()
    weekly_at: tuple[int, time] | None = None
    text = section.opt("weekly", str)
    if text is not None and text.strip().lower() != "off":
        day, _, clock = text.strip().lower().partition(" ")
        at = parse_clock(clock) if clock else None
        if day[:3] not in _DAYS or at is None:
            raise ConfigError(
                "reports.weekly",
                f'must be a day and UTC time like "mon 08:00" or "off", got {text!r}',
            )
        weekly_at = (_DAYS.index(day[:3]), at)
    matrix_room = section.opt("matrix_room", str)
    if matrix_room is not None and matrix is None:
        raise ConfigError("reports.matrix_room", "needs a [matrix] section")
    discord_channel = section.opt("discord_channel", int)
    if discord_channel is not None and discord is None:
        raise ConfigError("reports.discord_channel", "needs a [discord] section")
    reports = ReportsConfig(
        weekly_at=weekly_at,
        matrix_room=matrix_room,
        discord_channel=discord_channel,
        console=section.get("console", bool, False),
    )
    section.finish()
    if weekly_at is not None and not (matrix_room or discord_channel or reports.console):
        raise ConfigError(
            "reports.weekly", "needs a room to post to: matrix_room, discord_channel or console"
        )
    return reports


def _read_http(section: _Section | None) -> HttpConfig | None:
    if section is None:
        return None
    listen = section.need("listen", str)
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError("http.listen", f'must be HOST:PORT like "127.0.0.1:9102", got {listen!r}')
    http = HttpConfig(
        host=host.strip("[]"),
        port=int(port_text),
        badges=section.get("badges", bool, True),
        badge_cache_seconds=section.get("badge_cache_seconds", float, 60.0),
    )
    if http.badge_cache_seconds < 0:
        raise ConfigError("http.badge_cache_seconds", "must be 0 or more")
    section.finish()
    return http


def _read_instance(
    section: _Section | None,
    storage: StorageConfig,
    matrix: MatrixConfig | None,
    discord: DiscordConfig | None,
    reports: ReportsConfig,
) -> InstanceConfig:
    if section is None:
        return InstanceConfig()
    roles = section.strings("roles") if "roles" in section.data else ROLES
    for index, role in enumerate(roles):
        if role not in ROLES:
            raise ConfigError(
                f"instance.roles[{index}]",
                f"unknown role {role!r}; the roles are {', '.join(ROLES)}",
            )
    if not roles:
        raise ConfigError("instance.roles", "must name at least one role: " + ", ".join(ROLES))
    for role, configured in (("matrix", matrix), ("discord", discord)):
        if role in roles and configured is None and "roles" in section.data:
            raise ConfigError("instance.roles", f"names {role!r} but there is no [{role}] section")
    if set(roles) != set(ROLES) and storage.url.startswith("sqlite:"):
        raise ConfigError(
            "instance.roles",
            "pinning roles to processes needs PostgreSQL ([storage] url = postgresql://...): "
            "on SQLite one process holds every role and another one waits as a standby",
        )
    if "scheduler" in roles and reports.weekly_at is not None:
        # the weekly report is posted by the scheduler's holder, on its own connections
        for platform, room in (
            ("matrix", reports.matrix_room),
            ("discord", reports.discord_channel),
        ):
            if room and platform not in roles:
                raise ConfigError(
                    "instance.roles",
                    f"has 'scheduler' without {platform!r}: the weekly report ([reports]) is "
                    f"posted to {platform} by the process holding 'scheduler', so pin both "
                    "together",
                )
    instance = InstanceConfig(
        roles=tuple(dict.fromkeys(roles)),
        name=section.get("name", str, ""),
        lease_check_seconds=section.positive("lease_check_seconds", float, 5.0),
        watchdog_seconds=section.get("watchdog_seconds", float, 60.0),
    )
    if instance.watchdog_seconds != 0 and not 5 <= instance.watchdog_seconds <= 3600:
        raise ConfigError(
            "instance.watchdog_seconds",
            "must be 0 (off) or from 5 to 3600: the seconds the event loop may stand still "
            f"before the process ends itself, got {instance.watchdog_seconds:g}",
        )
    if instance.lease_check_seconds > 9:
        # a takeover: up to one check to see the role free, then one check plus 12 s for
        # a holder that lost its lease to notice (bot/roles.py): 2 x 9 + 12 = 30 s
        raise ConfigError(
            "instance.lease_check_seconds",
            f"must be at most 9 (a standby must take over within 30 s), got "
            f"{instance.lease_check_seconds:g}",
        )
    section.finish()
    return instance


def _read_matrix(section: _Section | None) -> MatrixConfig | None:
    if section is None:
        return None
    homeserver = section.need("homeserver", str)
    if not homeserver.startswith(("http://", "https://")):
        raise ConfigError("matrix.homeserver", f"must be an http(s) URL, got {homeserver!r}")
    user_id = section.need("user_id", str)
    if not (user_id.startswith("@") and ":" in user_id):
        raise ConfigError("matrix.user_id", f"must look like @name:server, got {user_id!r}")
    token = section.secret("access_token", required=False)
    password = section.secret("password", required=token is None)
    matrix = MatrixConfig(
        homeserver=homeserver.rstrip("/"),
        user_id=user_id,
        password=password,
        access_token=token,
        device_id=section.get("device_id", str, "TICKETBOT"),
        device_name=section.get("device_name", str, "ticketbot"),
    )
    section.finish()
    return matrix


def _read_discord(section: _Section | None) -> DiscordConfig | None:
    if section is None:
        return None
    token = section.secret("token", required=True)
    assert token is not None
    guild_id = section.need("guild_id", int)
    if guild_id <= 0:
        raise ConfigError("discord.guild_id", f"must be a Discord server id, got {guild_id}")
    discord = DiscordConfig(token=token, guild_id=guild_id)
    section.finish()
    return discord


def _read_console(section: _Section | None) -> ConsoleConfig | None:
    if section is None:
        return None
    console = ConsoleConfig(
        enabled=section.get("enabled", bool, True),
        user=section.get("user", str, ConsoleConfig.user),
        display_name=section.get("display_name", str, ""),
    )
    section.finish()
    return console


def _read_queues(
    root: _Section, matrix: MatrixConfig | None, discord: DiscordConfig | None
) -> tuple[QueueConfig, ...]:
    root.used.add("queue")
    raw = root.data.get("queue")
    if raw is None:
        raise ConfigError("queue", "at least one [[queue]] is required")
    if not isinstance(raw, list) or not all(isinstance(q, dict) for q in raw):
        raise ConfigError("queue", "must be written as [[queue]] tables")
    queues: dict[str, QueueConfig] = {}
    seen_addresses: dict[str, str] = {}
    for index, table in enumerate(raw):
        section = _Section(table, f"queue[{index}]", root.env)
        name = section.need("name", str)
        section.path = f"queue[{index}] ({name})"
        if name in queues:
            raise ConfigError(section.key("name"), f"queue {name!r} is defined twice")
        if any(not part.strip() or part != part.strip() for part in name.split("::")):
            raise ConfigError(section.key("name"), f"{name!r}: sub-queues are written info::de")
        parent_name = name.rpartition("::")[0] or None
        parent = queues.get(parent_name) if parent_name else None
        if parent_name and parent is None:
            raise ConfigError(
                section.key("name"), f"define the parent queue {parent_name!r} before {name!r}"
            )
        addresses = tuple(a.strip().lower() for a in section.strings("addresses"))
        if not addresses and parent is None:
            raise ConfigError(section.key("addresses"), "needs at least one email address")
        for address in addresses:
            if "@" not in address or " " in address:
                raise ConfigError(section.key("addresses"), f"{address!r} is not an address")
            if address in seen_addresses:
                raise ConfigError(
                    section.key("addresses"),
                    f"{address} already belongs to queue {seen_addresses[address]!r}",
                )
            seen_addresses[address] = name
        matrix_room = section.opt("matrix_room", str)
        if matrix_room is not None:
            if matrix is None:
                raise ConfigError(section.key("matrix_room"), "needs a [matrix] section")
            # Room ids are "!opaque" (":server" is absent from room version 12 on);
            # aliases are always "#name:server".
            alias_ok = matrix_room.startswith("#") and ":" in matrix_room
            if not (matrix_room.startswith("!") and len(matrix_room) > 1) and not alias_ok:
                raise ConfigError(
                    section.key("matrix_room"),
                    f"must be a room id (!id:server) or alias (#name:server), got {matrix_room!r}",
                )
        discord_channel = section.opt("discord_channel", int)
        if discord_channel is not None and discord is None:
            raise ConfigError(section.key("discord_channel"), "needs a [discord] section")
        follow_up = section.choice(
            "follow_up_closed",
            ("reopen", "reopen_within", "new"),
            parent.follow_up_closed if parent else "reopen",
        )
        queue = QueueConfig(
            name=name,
            addresses=addresses,
            # A sub-queue answers from its parent's address unless it has its own.
            reply_from=addresses[0] if addresses else (parent.reply_address if parent else ""),
            # Access to a queue covers its sub-queues.
            volunteers=_merged(parent.volunteers if parent else (), section.strings("volunteers")),
            default=section.get("default", bool, False),
            matrix_room=matrix_room or (parent.matrix_room if parent else None),
            discord_channel=discord_channel
            if discord_channel is not None
            else (parent.discord_channel if parent else None),
            discord_roles=_merged(
                parent.discord_roles if parent else (), section.ints("discord_roles")
            ),
            console=section.get("console", bool, parent.console if parent else True),
            sender_name=section.get("sender_name", str, parent.sender_name if parent else ""),
            language=section.get("language", str, parent.language if parent else "en").lower(),
            salutation=section.texts("salutation") or (parent.salutation if parent else {}),
            signature=section.texts("signature") or (parent.signature if parent else {}),
            anonymous=section.get("anonymous", bool, parent.anonymous if parent else False),
            autoresponse_new=section.texts("autoresponse_new")
            or (parent.autoresponse_new if parent else {}),
            autoresponse_reopen=section.texts("autoresponse_reopen")
            or (parent.autoresponse_reopen if parent else {}),
            follow_up_closed=cast(FollowUpPolicy, follow_up),
            reopen_days=section.positive("reopen_days", int, parent.reopen_days if parent else 30),
        )
        queues[name] = queue
        section.finish()
    defaults = [q.name for q in queues.values() if q.default]
    if len(defaults) > 1:
        raise ConfigError("queue", f"only one queue may be default, found {', '.join(defaults)}")
    if not defaults:
        raise ConfigError("queue", "mark one queue with default = true (mail to no known address)")
    return tuple(queues.values())


def _merged(inherited: tuple[T, ...], own: tuple[T, ...]) -> tuple[T, ...]:
    return tuple(dict.fromkeys((*inherited, *own)))
