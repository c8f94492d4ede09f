"""Reading and validating ``bot.toml``.

Everything is checked before anything connects: an unknown key, a wrong type, a
queue without an address or bound to nothing stops the start with one line that
names the key. Secrets may come from the environment (``password_env``) so the
file can be shared. Relative paths are taken relative to the config file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from bot.domain import Actor

T = TypeVar("T")

Security = Literal["tls", "starttls", "none"]
AfterIntake = Literal["flag", "move"]
_SECURITY: tuple[Security, ...] = ("tls", "starttls", "none")


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


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 60.0


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
        return self.addresses[0]

    def may_act(self, actor: Actor) -> bool:
        """A volunteer of this queue: named in ``volunteers``, or holding one of its roles."""
        if actor.user_id in self.volunteers:
            return True
        roles = {f"discord-role:{role}" for role in self.discord_roles}
        return bool(roles & actor.roles)


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

    def queue(self, name: str) -> QueueConfig:
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise KeyError(name)

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
        url = section.get("url", str, storage.url)
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError(
                "storage.url", f"must start with sqlite:/// or postgresql://, got {url!r}"
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
        )
        section.finish()

    outbox = OutboxConfig()
    if (section := root.table("outbox")) is not None:
        outbox = OutboxConfig(
            max_attempts=section.positive("max_attempts", int, outbox.max_attempts),
            retry_seconds=section.positive("retry_seconds", float, outbox.retry_seconds),
        )
        section.finish()

    log_level = "INFO"
    if (section := root.table("logging")) is not None:
        log_level = section.choice("level", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
        section.finish()

    queues = _read_queues(root, matrix, discord)
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
    if (sub := section.table("imap")) is not None:
        imap = ImapConfig(
            host=sub.need("host", str),
            port=sub.positive("port", int, 993),
            security=cast(Security, sub.choice("security", _SECURITY, "tls")),
            username=sub.need("username", str),
            password=sub.secret("password", required=True) or "",
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
        username = sub.opt("username", str)
        smtp = SmtpConfig(
            host=sub.need("host", str),
            port=sub.positive("port", int, 587),
            security=cast(Security, sub.choice("security", _SECURITY, "starttls")),
            username=username,
            password=sub.secret("password", required=username is not None),
            timeout_seconds=sub.positive("timeout_seconds", float, 60.0),
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
    return mail


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
    queues: list[QueueConfig] = []
    seen_names: set[str] = set()
    seen_addresses: dict[str, str] = {}
    for index, table in enumerate(raw):
        section = _Section(table, f"queue[{index}]", root.env)
        name = section.need("name", str)
        section.path = f"queue[{index}] ({name})"
        if name in seen_names:
            raise ConfigError(section.key("name"), f"queue {name!r} is defined twice")
        seen_names.add(name)
        addresses = tuple(a.strip().lower() for a in section.strings("addresses"))
        if not addresses:
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
        discord_roles = section.ints("discord_roles")
        queues.append(
            QueueConfig(
                name=name,
                addresses=addresses,
                volunteers=section.strings("volunteers"),
                default=section.get("default", bool, False),
                matrix_room=matrix_room,
                discord_channel=discord_channel,
                discord_roles=discord_roles,
                console=section.get("console", bool, True),
                sender_name=section.get("sender_name", str, ""),
            )
        )
        section.finish()
    defaults = [q.name for q in queues if q.default]
    if len(defaults) > 1:
        raise ConfigError("queue", f"only one queue may be default, found {', '.join(defaults)}")
    if not defaults:
        raise ConfigError("queue", "mark one queue with default = true (mail to no known address)")
    return tuple(queues)
