"""A loopback double of Discord's REST and gateway API, driven by the real discord.py client.

Discord cannot be reached from the test machine, so the suite points discord.py at this aiohttp
application on 127.0.0.1: REST under ``/api/v10``, the gateway websocket at ``/gateway``.
Objects are Discord-shaped JSON dicts with string snowflakes (time-based, above 10**17).

The function-scoped fixture ``discord_double`` yields a :class:`DiscordDouble`::

    guild = double.add_guild("Help desk")          # set up before the bot connects
    with double.patch_client():                    # Route.BASE, DEFAULT_GATEWAY, no 5 s pause
        task = asyncio.create_task(client.start(double.token))
        await double.wait_ready()                  # READY and GUILD_CREATEs were sent

Attributes: ``api_base``, ``gateway_url``, ``token``, ``application_id``, ``bot_user_id``
(equal to the application id), ``ack_deadline`` (3.0 s; a later first callback gets 404
10062 "Unknown interaction"), ``attachment_size_limit`` (10 MiB: the bytes of files one
message may carry, told to the bot in every interaction; more is answered 413 40005, and
more than 10 files 400 50035).

Setup: ``add_guild(name)`` (adds @everyone with id = guild id, the bot with role "TicketBot",
and an owner), ``add_role(guild_id, name, permissions=0)``, ``add_channel(guild_id, name,
everyone_can_read=False, allow_roles=())`` (private: @everyone denied VIEW_CHANNEL, the bot's
role and ``allow_roles`` allowed), ``add_member(guild_id, name, roles=())``; each returns the id.
``set_permissions(channel_id, role_or_user_id, allow=0, deny=0)`` changes an overwrite (REST
side only: no CHANNEL_UPDATE); ``closed_dms`` holds users whose DMs answer 403 50007.

Recordings: ``messages(channel_id)`` (current state of the messages created in a channel or
thread, oldest first; ephemeral ones only via ``message``; deleted ones carry "deleted": True),
``message(channel_id, message_id)``, ``direct_messages(user_id)``, ``payloads`` (message id ->
JSON that created it), ``edits`` [:class:`Edit`], ``threads`` {id: :class:`ThreadInfo`},
``synced_commands`` (guild id or "global" -> commands as answered),
``interaction_responses(interaction_id)`` ({"type": 4|5|6|7|9, "data"} callbacks, then
{"type": "followup"|"edit_original"|"edit", "data", "message_id"}), ``uploads``
[:class:`Upload`], ``requests`` [:class:`RecordedRequest`], ``unknown_routes`` ["GET /path"],
``identifies``, ``resumes``, ``heartbeats``, ``intents``, ``rate_limited`` (429s served),
``dropped_events`` (dispatches the intents exclude), ``gateway_queries``, ``server_errors``
(exceptions inside the double, answered 503, which discord.py does not retry).

Driving (async; each returns the interaction or message id): ``click_button(user_id,
channel_id, message_id, custom_id)``, ``select(..., custom_id, values)``, ``slash(user_id,
channel_id, name, options={})`` (name may be "group sub"; needs the command synced),
``submit_modal(user_id, channel_id, custom_id, values)`` (mirrors the modal the bot sent:
action rows or labels), ``react(user_id, channel_id, message_id, emoji)``, ``say(user_id,
channel_id, content)`` (blank content without the MESSAGE_CONTENT intent unless the bot is
mentioned). ``wait_for(predicate, timeout=5)`` polls until truthy (KeyError/IndexError mean
"not yet") and returns the value; ``wait_ready(timeout=5)``.

Faults: ``drop_connection(code=4000)`` (dispatches meanwhile are replayed on RESUME),
``invalidate_session(resumable=False)`` (op 9), ``request_reconnect()`` (op 7),
``rate_limit(channel_id, limit=5, per=5.0, already_used=0)`` on POST messages there;
discord.py obeys X-RateLimit headers, so only ``already_used`` (requests made "elsewhere" in the
current window) makes it meet a 429.

Fidelity: zlib-stream frames when asked (else text); ``application/json`` exactly; X-RateLimit-*
headers on every answer; 429s with ``Via`` (without it discord.py assumes a Cloudflare ban);
400s for Discord's size limits (code 50035, see ``check_message``) and empty messages (50006);
403s when the bot lacks VIEW_CHANNEL (50001) or the permission to post or make threads (50013);
the first followup after a defer fills the loading message and keeps the defer's ephemerality;
the bot's own messages come back as MESSAGE_CREATE; THREAD_CREATE follows thread creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import secrets
import time
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest_asyncio
import yarl
from aiohttp import WSMsgType, web

from tests.servers.ports import LOOPBACK, free_port

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

JSON = dict[str, Any]
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[Any]]
API = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
ADD_REACTIONS, VIEW_CHANNEL, SEND_MESSAGES, MANAGE_MESSAGES = 1 << 6, 1 << 10, 1 << 11, 1 << 13
EMBED_LINKS, ATTACH_FILES, READ_HISTORY, APP_COMMANDS = 1 << 14, 1 << 15, 1 << 16, 1 << 31
MANAGE_THREADS, PUBLIC_THREADS, PRIVATE_THREADS = 1 << 34, 1 << 35, 1 << 36
SEND_IN_THREADS = 1 << 38
ADMINISTRATOR, ALL_PERMISSIONS = 1 << 3, (1 << 51) - 1
EVERYONE_PERMISSIONS = (
    ADD_REACTIONS | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_HISTORY
) | (APP_COMMANDS | PUBLIC_THREADS | SEND_IN_THREADS)
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | MANAGE_MESSAGES | MANAGE_THREADS | PRIVATE_THREADS
GUILDS, GUILD_MEMBERS, GUILD_MESSAGES = 1 << 0, 1 << 1, 1 << 9  # gateway intents
GUILD_REACTIONS, DIRECT_MESSAGES, MESSAGE_CONTENT = 1 << 10, 1 << 12, 1 << 15
EVENT_INTENTS = {"MESSAGE_CREATE": GUILD_MESSAGES, "MESSAGE_UPDATE": GUILD_MESSAGES}
EVENT_INTENTS |= {"MESSAGE_DELETE": GUILD_MESSAGES, "MESSAGE_REACTION_ADD": GUILD_REACTIONS}
EVENT_INTENTS |= {"THREAD_CREATE": GUILDS, "THREAD_UPDATE": GUILDS}
DEFAULT_LIMIT, DEFAULT_PER = 1000, 1.0
EPHEMERAL, LOADING = 64, 128
BODY: web.RequestKey[Any] = web.RequestKey("discord_body", object)  # JSON or payload_json
FILES: web.RequestKey[list[web.FileField]] = web.RequestKey("discord_files", list)  # files[n]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the /api/v10 prefix, query string included
    json: Any
    headers: dict[str, str]  # Authorization, Content-Type, X-Audit-Log-Reason, User-Agent


@dataclass(frozen=True)
class Upload:
    filename: str
    size: int
    content: bytes
    content_type: str
    channel_id: str
    message_id: str


@dataclass(frozen=True)
class Edit:
    channel_id: str
    message_id: str
    payload: JSON


@dataclass(frozen=True)
class ThreadInfo:
    parent_id: str
    name: str
    message_id: str | None  # the starter message (equal to the thread id), None if standalone


class DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    compressor: Any  # one zlib stream per connection, or None for text frames
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: JSON) -> None:
        text = json.dumps(frame)
        async with self.lock:
            if self.compressor is None:
                await self.ws.send_str(text)
            else:
                data = self.compressor.compress(text.encode())
                await self.ws.send_bytes(data + self.compressor.flush(zlib.Z_SYNC_FLUSH))


@dataclass
class _Session:
    id: str
    intents: int
    conn: _Conn | None
    seq: int = 0
    log: list[JSON] = field(default_factory=list)


@dataclass
class _Window:
    limit: int
    per: float
    start: float
    used: int

    def take(self) -> tuple[bool, int, float]:
        now = time.monotonic()
        if now - self.start >= self.per:
            self.start, self.used = now, 0
        reset_after = math.ceil(max(0.0, self.start + self.per - now) * 1000) / 1000
        if self.used >= self.limit:
            return False, 0, reset_after
        self.used += 1
        return True, self.limit - self.used, reset_after


@dataclass
class _Interaction:
    id: str
    token: str
    channel_id: str
    message_id: str | None  # the message whose component was used
    kind: int
    created: float
    acked: bool = False
    original_id: str | None = None


def _json_response(data: Any, status: int = 200, headers: JSON | None = None) -> web.Response:
    """Exactly ``application/json``: discord.py reads anything else as text."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _invalid(errors: JSON, where: str, text: Any, limit: int, force: bool = False) -> None:
    """Note a too long string the way Discord's 50035 "Invalid Form Body" lists it."""
    if force or (isinstance(text, str) and len(text) > limit):
        error = {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}
        errors[where] = {"_errors": [error]}


def check_message(payload: JSON, files: int, *, creating: bool) -> None:
    """Answer 400 like Discord for a message beyond its limits, or an empty new message."""
    errors: JSON = {}
    _invalid(errors, "content", payload.get("content"), 2000)
    embeds = payload.get("embeds") or []
    total = 0
    for i, embed in enumerate(embeds):
        texts = [("title", embed.get("title"), 256)]
        texts.append(("description", embed.get("description"), 4096))
        texts.append(("footer.text", (embed.get("footer") or {}).get("text"), 2048))
        texts.append(("author.name", (embed.get("author") or {}).get("name"), 256))
        for j, fld in enumerate(embed.get("fields") or []):
            texts += [(f"fields.{j}.name", fld.get("name"), 256)]
            texts += [(f"fields.{j}.value", fld.get("value"), 1024)]
        for where, text, limit in texts:
            _invalid(errors, f"embeds.{i}.{where}", text, limit)
            total += len(text or "")
    _invalid(errors, "embeds", None, 6000, force=total > 6000 or len(embeds) > 10)
    for i, row in enumerate(payload.get("components") or []):
        for j, item in enumerate(row.get("components") or []):
            _invalid(errors, f"components.{i}.{j}.custom_id", item.get("custom_id"), 100)
            _invalid(errors, f"components.{i}.{j}.label", item.get("label"), 80)
    if errors:
        raise DiscordError(400, 50035, "Invalid Form Body", errors)
    keys = ("content", "embeds", "components", "sticker_ids", "poll")
    if creating and not files and not any(payload.get(k) for k in keys):
        raise DiscordError(400, 50006, "Cannot send an empty message")


class DiscordDouble:
    """The running double: its state, what it recorded, and the handles that drive the bot."""

    def __init__(self) -> None:
        self.port = free_port()
        self.api_base = f"http://{LOOPBACK}:{self.port}{API}"
        self.gateway_url = f"ws://{LOOPBACK}:{self.port}/gateway"
        self._last_id = 0
        self.token = "double." + secrets.token_urlsafe(24)
        self.application_id = self.bot_user_id = self._next_id()
        self.heartbeat_interval_ms, self.ack_deadline = 41250, 3.0
        self.attachment_size_limit = 10 << 20  # bytes of files per message; 413 beyond
        self._users: dict[str, JSON] = {}
        self.bot_user = self._new_user(self.bot_user_id, "TicketBot", bot=True)
        self._guilds: dict[str, JSON] = {}
        self._channels: dict[str, JSON] = {}
        self._messages: dict[str, JSON] = {}
        self._channel_messages: dict[str, list[str]] = {}
        self._interactions: dict[str, _Interaction] = {}
        self._tokens: dict[str, str] = {}
        self._responses: dict[str, list[JSON]] = {}
        self._modals: dict[str, JSON] = {}
        self._dm_channels: dict[str, str] = {}
        self._attachments: dict[str, bytes] = {}
        self._windows: dict[str, _Window] = {}
        self._limits: dict[str, tuple[int, float, int]] = {}
        self._session: _Session | None = None
        self._conns: list[_Conn] = []
        self._ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.payloads: dict[str, JSON] = {}
        self.edits: list[Edit] = []
        self.threads: dict[str, ThreadInfo] = {}
        self.synced_commands: dict[str, list[JSON]] = {}
        self.uploads: list[Upload] = []
        self.requests: list[RecordedRequest] = []
        self.unknown_routes: list[str] = []
        self.dropped_events: list[str] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.closed_dms: set[str] = set()  # users whose DMs answer 403 50007
        self.server_errors: list[str] = []  # exceptions in the double's handlers (answered 503)
        self.identifies = self.resumes = self.heartbeats = self.rate_limited = self.intents = 0

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 << 20)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._attachment)
        for method, path, handler in self._routes():
            app.router.add_route(method, API + path, self._answer(handler))
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()

    async def stop(self) -> None:
        for conn in list(self._conns):
            await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    @contextlib.contextmanager
    def patch_client(self) -> Iterator[None]:
        """Point discord.py at the double; re-IDENTIFY without discord.py's 5 s pause."""

        async def no_pause(client: discord.Client, shard_id: int | None, *, initial: bool) -> None:
            return None

        saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, discord.Client.before_identify_hook)
        Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        discord.Client.before_identify_hook = no_pause  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved[0], saved[1]
            discord.Client.before_identify_hook = saved[2]  # type: ignore[method-assign]

    # ---- setup -----------------------------------------------------------------------------

    def add_guild(self, name: str) -> str:
        gid = self._next_id()
        owner = self._new_user(self._next_id(), f"{name} owner")
        self._guilds[gid] = {"id": gid, "name": name, "owner_id": owner["id"], "roles": []}
        self._guilds[gid]["members"] = {}
        self._add_role(gid, {"id": gid, "name": "@everyone"}, EVERYONE_PERMISSIONS)
        self._guilds[gid]["bot_role_id"] = bot_role = self.add_role(
            gid, "TicketBot", BOT_PERMISSIONS
        )
        self._add_member(gid, self.bot_user, [bot_role])
        self._add_member(gid, owner, [])
        return gid

    def add_role(self, guild_id: str, name: str, permissions: int = 0) -> str:
        return self._add_role(guild_id, {"id": self._next_id(), "name": name}, permissions)

    def add_channel(
        self,
        guild_id: str,
        name: str,
        everyone_can_read: bool = False,
        allow_roles: Iterable[str] = (),
    ) -> str:
        overwrites: list[JSON] = []
        if not everyone_can_read:
            overwrites.append({"id": guild_id, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)})
            for role_id in (self._guilds[guild_id]["bot_role_id"], *allow_roles):
                overwrites.append(
                    {"id": role_id, "type": 0, "allow": str(VIEW_CHANNEL), "deny": "0"}
                )
        cid = self._next_id()
        self._channels[cid] = {
            "id": cid, "type": 0, "guild_id": guild_id, "name": name, "parent_id": None,
            "position": len(self._channels), "permission_overwrites": overwrites, "topic": None,
            "nsfw": False, "last_message_id": None, "rate_limit_per_user": 0, "flags": 0,
        }  # fmt: skip
        self._channel_messages[cid] = []
        return cid

    def add_member(self, guild_id: str, name: str, roles: Iterable[str] = ()) -> str:
        user = self._new_user(self._next_id(), name)
        self._add_member(guild_id, user, list(roles))
        return str(user["id"])

    def set_permissions(
        self, channel_id: str, target_id: str, allow: int = 0, deny: int = 0
    ) -> None:
        """Add or replace an overwrite (role or member id) on a channel, e.g. to deny the bot."""
        member = any(target_id in g["members"] for g in self._guilds.values())
        overwrites = self._channels[channel_id]["permission_overwrites"]
        overwrites[:] = [o for o in overwrites if o["id"] != target_id]
        overwrites.append(
            {"id": target_id, "type": int(member), "allow": str(allow), "deny": str(deny)}
        )

    # ---- recordings ------------------------------------------------------------------------

    def messages(self, channel_id: str) -> list[JSON]:
        return [copy.deepcopy(self._messages[m]) for m in self._channel_messages[channel_id]]

    def message(self, channel_id: str, message_id: str) -> JSON:
        msg = self._messages[message_id]
        if msg["channel_id"] != channel_id:
            raise KeyError(f"message {message_id} is in channel {msg['channel_id']}")
        return copy.deepcopy(msg)

    def direct_messages(self, user_id: str) -> list[JSON]:
        """Messages the bot sent to a user's DM channel."""
        dm = self._dm_channels.get(user_id)
        return self.messages(dm) if dm else []

    def interaction_responses(self, interaction_id: str) -> list[JSON]:
        return copy.deepcopy(self._responses[interaction_id])

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(KeyError, IndexError):
                if value := predicate():
                    return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout}s; unknown routes: {self.unknown_routes}")
            await asyncio.sleep(0.01)

    async def wait_ready(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    # ---- driving the bot -------------------------------------------------------------------

    async def click_button(
        self, user_id: str, channel_id: str, message_id: str, custom_id: str
    ) -> str:
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interaction(user_id, channel_id, 3, data, message_id)

    async def select(
        self, user_id: str, channel_id: str, message_id: str, custom_id: str, values: list[str]
    ) -> str:
        data = {"custom_id": custom_id, "component_type": 3, "values": values}
        return await self._interaction(user_id, channel_id, 3, data, message_id)

    async def slash(
        self, user_id: str, channel_id: str, name: str, options: dict[str, str | int] | None = None
    ) -> str:
        guild_id = self._channels[channel_id]["guild_id"]
        head, *subs = name.split()
        synced = self.synced_commands.get(guild_id, []) + self.synced_commands.get("global", [])
        command = next((c for c in synced if c["name"] == head), None)
        if command is None:
            raise KeyError(f"command {head!r} was not synced to guild {guild_id}")
        spec, resolved, opts = command, JSON(), []
        for sub in subs:
            spec = next(o for o in spec.get("options", []) if o["name"] == sub)
        for key, value in (options or {}).items():
            kind = next((o["type"] for o in spec.get("options", []) if o["name"] == key), None)
            kind = kind or (4 if isinstance(value, int) else 3)
            opts.append({"name": key, "type": kind, "value": value})
            if kind in (6, 9) and str(value) in self._guilds[guild_id]["members"]:
                member = self._member_json(guild_id, str(value), channel_id)
                resolved.setdefault("users", {})[str(value)] = member.pop("user")
                resolved.setdefault("members", {})[str(value)] = member
        for sub in reversed(subs):
            opts = [{"name": sub, "type": 1 if sub == subs[-1] else 2, "options": opts}]
        data = {"id": command["id"], "name": head, "type": 1, "guild_id": guild_id, "options": opts}
        return await self._interaction(user_id, channel_id, 2, {**data, "resolved": resolved})

    async def submit_modal(
        self, user_id: str, channel_id: str, custom_id: str, values: dict[str, str | list[str]]
    ) -> str:
        def answer(item: JSON) -> JSON:
            value = values.get(item.get("custom_id", ""), "")
            key = "value" if item["type"] == 4 else "values"
            return {
                "type": item["type"],
                "id": item.get("id", 0),
                "custom_id": item["custom_id"],
                key: value,
            }

        modal = self._modals.get(custom_id)
        components = []
        for top in modal["components"] if modal else []:
            if top["type"] == 1:
                components.append({"type": 1, "components": [answer(c) for c in top["components"]]})
            elif top["type"] == 18:
                components.append(
                    {"type": 18, "id": top.get("id", 0), "component": answer(top["component"])}
                )
        if modal is None:  # never opened here: plain action rows with text inputs
            components = [
                {"type": 1, "components": [answer({"type": 4, "custom_id": k})]} for k in values
            ]
        return await self._interaction(
            user_id, channel_id, 5, {"custom_id": custom_id, "components": components}
        )

    async def react(self, user_id: str, channel_id: str, message_id: str, emoji: str) -> str:
        msg, guild_id = self._messages[message_id], self._channels[channel_id]["guild_id"]
        me = user_id == self.bot_user_id
        for reaction in msg["reactions"]:
            if reaction["emoji"]["name"] == emoji:
                reaction["count"], reaction["me"] = reaction["count"] + 1, reaction["me"] or me
                break
        else:
            msg["reactions"].append({"emoji": {"id": None, "name": emoji}, "count": 1, "me": me})
        await self._dispatch("MESSAGE_REACTION_ADD", {
            "user_id": user_id, "channel_id": channel_id, "message_id": message_id,
            "guild_id": guild_id, "member": self._member_json(guild_id, user_id),
            "emoji": {"id": None, "name": emoji}, "message_author_id": msg["author"]["id"],
            "burst": False, "type": 0,
        })  # fmt: skip
        return message_id

    async def say(self, user_id: str, channel_id: str, content: str) -> str:
        """A member writes in a channel or thread: MESSAGE_CREATE (content needs the intent)."""
        msg = self._store_message(channel_id, {"content": content}, self._users[user_id], [])
        event = copy.deepcopy(msg)
        if mentioned := f"<@{self.bot_user_id}>" in content:
            event["mentions"] = [self.bot_user]
        if not self.intents & MESSAGE_CONTENT and not mentioned:
            event.update(content="", embeds=[], attachments=[], components=[])
        await self._dispatch("MESSAGE_CREATE", event)
        return str(msg["id"])

    # ---- faults ----------------------------------------------------------------------------

    def rate_limit(
        self, channel_id: str, limit: int = 5, per: float = 5.0, already_used: int = 0
    ) -> None:
        self._limits[channel_id] = (limit, per, already_used)
        self._windows.pop(f"POST /channels/{{channel_id}}/messages {channel_id}", None)

    async def drop_connection(self, code: int = 4000) -> None:
        session = self._live()
        conn, session.conn = session.conn, None
        assert conn is not None
        await conn.ws.close(code=code, message=b"dropped by the test double")

    async def invalidate_session(self, resumable: bool = False) -> None:
        conn = self._live().conn
        assert conn is not None
        if not resumable:
            self._session = None
        await conn.send({"op": 9, "d": resumable, "s": None, "t": None})

    async def request_reconnect(self) -> None:
        conn = self._live().conn
        assert conn is not None
        await conn.send({"op": 7, "d": None, "s": None, "t": None})

    # ---- internals: objects ----------------------------------------------------------------

    def _next_id(self) -> str:
        stamp = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, stamp, 10**17 + 1)
        return str(self._last_id)

    def _new_user(self, user_id: str, name: str, *, bot: bool = False) -> JSON:
        user = {"id": user_id, "username": name, "global_name": name, "discriminator": "0"}
        self._users[user_id] = {**user, "avatar": None, "bot": bot, "public_flags": 0, "flags": 0}
        return self._users[user_id]

    def _add_role(self, guild_id: str, role: JSON, permissions: int) -> str:
        roles = self._guilds[guild_id]["roles"]
        role.update(permissions=str(permissions), position=len(roles), colors={"primary_color": 0})
        roles.append({**role, "hoist": False, "managed": False, "mentionable": False, "flags": 0})
        return str(role["id"])

    def _add_member(self, guild_id: str, user: JSON, roles: list[str]) -> None:
        self._guilds[guild_id]["members"][user["id"]] = {
            "user": user, "roles": roles, "joined_at": _now(), "deaf": False, "mute": False,
            "flags": 0, "pending": False, "nick": None,
        }  # fmt: skip

    def _member_json(self, guild_id: str, user_id: str, channel_id: str | None = None) -> JSON:
        member: JSON = copy.deepcopy(self._guilds[guild_id]["members"][user_id])
        if channel_id is not None:
            member["permissions"] = str(self._permissions(guild_id, user_id, channel_id))
        return member

    def _permissions(self, guild_id: str, user_id: str, channel_id: str) -> int:
        """Discord's algorithm: roles, then @everyone, role and member overwrites."""
        guild = self._guilds[guild_id]
        roles = set(guild["members"][user_id]["roles"]) | {guild_id}
        perms = 0
        for role in guild["roles"]:
            perms |= int(role["permissions"]) if role["id"] in roles else 0
        if perms & ADMINISTRATOR or user_id == guild["owner_id"]:
            return ALL_PERMISSIONS
        channel = self._channels[channel_id]
        channel = self._channels.get(channel["parent_id"] or "", channel)  # threads: the parent's
        overwrites = {o["id"]: o for o in channel["permission_overwrites"]}
        for layer in ([guild_id], roles - {guild_id}, [user_id]):
            deny = allow = 0
            for ow in (overwrites[i] for i in layer if i in overwrites):
                deny, allow = deny | int(ow["deny"]), allow | int(ow["allow"])
            perms = (perms & ~deny) | allow
        return perms

    def _guild_create(self, guild_id: str) -> JSON:
        guild = self._guilds[guild_id]
        members = [
            m for m in guild["members"].values()
            if self.intents & GUILD_MEMBERS or m["user"]["id"] == self.bot_user_id
        ]  # fmt: skip
        channels = [c for c in self._channels.values() if c["guild_id"] == guild_id]
        return {
            "id": guild_id, "name": guild["name"], "owner_id": guild["owner_id"], "icon": None,
            "roles": guild["roles"], "members": members, "member_count": len(guild["members"]),
            "channels": [c for c in channels if c["type"] not in (11, 12)],
            "threads": [c for c in channels if c["type"] in (11, 12)],
            "unavailable": False, "large": False, "joined_at": _now(), "features": [],
            "emojis": [], "stickers": [], "presences": [], "voice_states": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "preferred_locale": "en-US", "premium_tier": 0, "system_channel_flags": 0,
        }  # fmt: skip

    def _store_message(
        self, channel_id: str, payload: JSON, author: JSON, files: list[web.FileField], **extra: Any
    ) -> JSON:
        channel, mid = self._channels[channel_id], self._next_id()
        msg: JSON = {
            "id": mid, "channel_id": channel_id, "guild_id": channel["guild_id"], "author": author,
            "content": payload.get("content") or "", "timestamp": _now(), "edited_timestamp": None,
            "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": [], "embeds": payload.get("embeds") or [], "pinned": False,
            "components": payload.get("components") or [], "type": 0, "reactions": [],
            "flags": payload.get("flags") or 0, **extra,
        }  # fmt: skip
        if payload.get("message_reference"):
            msg.update(type=19, message_reference=payload["message_reference"])
        msg["attachments"] = self._take_files(msg, payload, files)
        self._messages[mid], self.payloads[mid] = msg, payload
        if not msg["flags"] & EPHEMERAL:
            self._channel_messages[channel_id].append(mid)
            channel["last_message_id"] = mid
            if "message_count" in channel:
                channel["message_count"] += 1
                channel["total_message_sent"] += 1
        return msg

    def _take_files(self, msg: JSON, payload: JSON, files: list[web.FileField]) -> list[JSON]:
        """Keep the attachments the payload lists by id (all, if it lists none), add the files."""
        kept = {str(a["id"]): a for a in msg["attachments"]}
        wanted = payload.get("attachments")
        result = (
            list(kept.values())
            if wanted is None
            else [kept[str(a["id"])] for a in wanted if str(a["id"]) in kept]
        )
        for upload in files:
            content, aid = upload.file.read(), self._next_id()
            self._attachments[aid] = content
            url = f"http://{LOOPBACK}:{self.port}/attachments/{aid}/{upload.filename}"
            result.append({
                "id": aid, "filename": upload.filename, "size": len(content), "url": url,
                "proxy_url": url, "content_type": upload.content_type,
            })  # fmt: skip
            where = (msg["channel_id"], msg["id"])
            self.uploads.append(
                Upload(upload.filename, len(content), content, upload.content_type, *where)
            )
        return result

    async def _edit_message(self, msg: JSON, payload: JSON, files: list[web.FileField]) -> JSON:
        check_message(payload, len(files), creating=False)
        msg.update(
            {
                k: payload[k]
                for k in ("content", "embeds", "components", "flags")
                if payload.get(k) is not None
            }
        )
        if "attachments" in payload or files:
            msg["attachments"] = self._take_files(msg, payload, files)
        msg["edited_timestamp"] = _now()
        self.edits.append(Edit(msg["channel_id"], msg["id"], payload))
        if not msg["flags"] & EPHEMERAL:
            await self._dispatch("MESSAGE_UPDATE", copy.deepcopy(msg))
        return msg

    def _bot_message(self, inter: _Interaction, payload: JSON, files: list[web.FileField]) -> JSON:
        extra = {"webhook_id": self.application_id, "application_id": self.application_id}
        return self._store_message(inter.channel_id, payload, self.bot_user, files, **extra)

    # ---- internals: gateway ----------------------------------------------------------------

    def _live(self) -> _Session:
        if self._session is None or self._session.conn is None:
            raise RuntimeError("the bot is not connected to the gateway double")
        return self._session

    async def _dispatch(self, event: str, data: JSON, needed: int | None = None) -> None:
        session = self._session
        if session is None:
            raise RuntimeError(f"{event}: the bot has not identified with the gateway double")
        if (needed := needed or EVENT_INTENTS.get(event)) and not session.intents & needed:
            self.dropped_events.append(event)
            return
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.log.append(frame)
        if session.conn is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await session.conn.send(frame)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.gateway_queries.append(dict(request.query))
        zlib_stream = request.query.get("compress") == "zlib-stream"
        conn = _Conn(ws, zlib.compressobj() if zlib_stream else None)
        self._conns.append(conn)
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms}
            await conn.send({"op": 10, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_op(conn, json.loads(msg.data))
        finally:
            self._conns.remove(conn)
            if self._session is not None and self._session.conn is conn:
                self._session.conn = None
        return ws

    async def _on_op(self, conn: _Conn, frame: JSON) -> None:
        op, d = frame.get("op"), frame.get("d") or {}
        if op == 1:
            self.heartbeats += 1
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2 and d["token"] != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
        elif op == 2:
            await self._identify(conn, d)
        elif op == 6:
            session = self._session
            if session is None or d["session_id"] != session.id or d["token"] != self.token:
                await conn.send({"op": 9, "d": False, "s": None, "t": None})
                return
            self.resumes += 1
            session.conn = conn
            for missed in [f for f in session.log if f["s"] > (d.get("seq") or 0)]:
                await conn.send(missed)
            await self._dispatch("RESUMED", {})
        elif op == 8:
            guild_id = str(d["guild_id"])
            members = list(self._guilds[guild_id]["members"].values())
            chunk = {"guild_id": guild_id, "members": members, "chunk_index": 0, "chunk_count": 1}
            await self._dispatch("GUILD_MEMBERS_CHUNK", {**chunk, "nonce": d.get("nonce")})

    async def _identify(self, conn: _Conn, d: JSON) -> None:
        self._ready.clear()
        self.identifies += 1
        self.intents = int(d.get("intents", 0))
        self._session = _Session(secrets.token_hex(16), self.intents, conn)
        await self._dispatch("READY", {
            "v": 10, "user": {**self.bot_user, "verified": True, "mfa_enabled": False},
            "guilds": [{"id": g, "unavailable": True} for g in self._guilds],
            "session_id": self._session.id, "resume_gateway_url": self.gateway_url,
            "shard": d.get("shard") or [0, 1], "private_channels": [], "relationships": [],
            "application": {"id": self.application_id, "flags": 0},
        })  # fmt: skip
        for guild_id in self._guilds:
            await self._dispatch("GUILD_CREATE", self._guild_create(guild_id))
        self._ready.set()

    async def _interaction(
        self, user_id: str, channel_id: str, kind: int, data: JSON, message_id: str | None = None
    ) -> str:
        channel = self._channels[channel_id]
        guild_id, iid = channel["guild_id"], self._next_id()
        token = f"interaction.{iid}.{secrets.token_urlsafe(16)}"
        payload: JSON = {
            "id": iid, "application_id": self.application_id, "type": kind, "data": data,
            "guild_id": guild_id, "guild": {"id": guild_id, "locale": "en-US", "features": []},
            "channel_id": channel_id, "channel": channel, "token": token, "version": 1,
            "member": self._member_json(guild_id, user_id, channel_id),
            "app_permissions": str(self._permissions(guild_id, self.bot_user_id, channel_id)),
            "locale": "en-US", "guild_locale": "en-US", "entitlements": [], "context": 0,
            "authorizing_integration_owners": {"0": guild_id},
            "attachment_size_limit": self.attachment_size_limit,
        }  # fmt: skip
        if message_id is not None:
            payload["message"] = self.message(channel_id, message_id)
        self._interactions[iid] = _Interaction(
            iid, token, channel_id, message_id, kind, time.monotonic()
        )
        self._tokens[token], self._responses[iid] = iid, []
        await self._dispatch("INTERACTION_CREATE", payload)
        return iid

    # ---- internals: REST -------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Unknown routes, recording, auth, rate limits and DiscordError answers for /api/v10."""
        if not request.path.startswith(API + "/"):
            response: web.StreamResponse = await handler(request)
            return response
        info, path = request.match_info, request.path_qs.removeprefix(API)
        if info.http_exception is not None:
            self.unknown_routes.append(f"{request.method} {request.path.removeprefix(API)}")
            return _json_response({"message": "Unknown route", "code": 0}, status=404)
        body, files = await self._read_body(request)
        request[BODY], request[FILES] = body, files
        keep = ("Authorization", "Content-Type", "X-Audit-Log-Reason", "User-Agent")
        headers = {k: request.headers[k] for k in keep if k in request.headers}
        self.requests.append(RecordedRequest(request.method, path, body, headers))
        template = info.route.resource.canonical.removeprefix(API)  # type: ignore[union-attr]
        auth = request.headers.get("Authorization") == f"Bot {self.token}"
        if not auth and not template.startswith(("/interactions/", "/webhooks/")):
            return _json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        major = info.get("channel_id") or info.get("guild_id") or info.get("token") or ""
        key = f"{request.method} {template} {major}"
        if (window := self._windows.get(key)) is None:
            limit = (DEFAULT_LIMIT, DEFAULT_PER, 0)
            if key.startswith("POST /channels/{channel_id}/messages "):
                limit = self._limits.get(major, limit)
            window = self._windows[key] = _Window(limit[0], limit[1], time.monotonic(), limit[2])
        allowed, remaining, reset_after = window.take()
        rl_headers = {
            "X-RateLimit-Limit": str(window.limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": f"{abs(hash((request.method, template))):x}",
        }  # fmt: skip
        if not allowed:
            self.rate_limited += 1
            rl_headers |= {"Retry-After": str(math.ceil(reset_after)), "Via": "1.1 google"}
            rl_headers["X-RateLimit-Scope"] = "shared"
            body = {
                "message": "You are being rate limited.",
                "retry_after": reset_after,
                "global": False,
            }
            return _json_response(body, status=429, headers=rl_headers)
        try:
            self._check_files(files)
            result: web.StreamResponse = await handler(request)
        except DiscordError as error:
            result = _json_response(error.body, status=error.status)
        except Exception as error:  # a bug in the double: 503 is not retried by discord.py
            self.server_errors.append(f"{request.method} {path}: {error!r}")
            result = _json_response({"message": f"double: {error!r}", "code": 0}, status=503)
        result.headers.update(rl_headers)
        return result

    def _check_files(self, files: list[web.FileField]) -> None:
        """Discord's upload limits: 10 files a message, ``attachment_size_limit`` bytes in all."""
        if len(files) > 10:
            error = {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 10 or fewer in length."}
            raise DiscordError(400, 50035, "Invalid Form Body", {"files": {"_errors": [error]}})
        size = 0
        for upload in files:
            size += len(upload.file.read())
            upload.file.seek(0)
        if size > self.attachment_size_limit:
            raise DiscordError(413, 40005, "Request entity too large")

    async def _read_body(self, request: web.Request) -> tuple[Any, list[web.FileField]]:
        if request.content_type == "application/json":
            return await request.json(), []
        if request.content_type != "multipart/form-data":
            return None, []
        body, files = None, {}
        for name, value in (await request.post()).items():
            if name == "payload_json":
                body = json.loads(value.file.read() if isinstance(value, web.FileField) else value)
            elif isinstance(value, web.FileField):
                files[int(name.removeprefix("files[").removesuffix("]"))] = value
        return body, [files[i] for i in sorted(files)]

    @staticmethod
    def _answer(handler: Handler) -> Handler:
        async def answer(request: web.Request) -> web.Response:
            result = await handler(request)
            return web.Response(status=204) if result is None else _json_response(result)

        return answer

    def _routes(self) -> list[tuple[str, str, Handler]]:
        ch, msg = "/channels/{channel_id}", "/channels/{channel_id}/messages/{message_id}"
        hook, app = "/webhooks/{app_id}/{token}", "/applications/{app_id}"
        return [
            ("GET", "/users/@me", self._r_me),
            ("GET", "/users/{user_id}", self._r_user),
            ("POST", "/users/@me/channels", self._r_open_dm),
            ("GET", "/oauth2/applications/@me", self._r_application),
            ("GET", "/gateway/bot", self._r_gateway),
            ("GET", "/guilds/{guild_id}", self._r_guild),
            ("GET", "/guilds/{guild_id}/channels", self._r_guild),
            ("GET", "/guilds/{guild_id}/roles", self._r_guild),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._r_member),
            ("GET", ch, self._r_channel),
            ("PATCH", ch, self._r_edit_channel),
            ("POST", ch + "/messages", self._r_send),
            ("GET", msg, self._r_message),
            ("PATCH", msg, self._r_edit),
            ("DELETE", msg, self._r_delete),
            ("PUT", msg + "/reactions/{emoji}/@me", self._r_react),
            ("POST", msg + "/threads", self._r_thread),
            ("POST", ch + "/threads", self._r_thread),
            ("PUT", ch + "/thread-members/{user_id}", self._r_nothing),
            ("PUT", app + "/guilds/{guild_id}/commands", self._r_sync),
            ("PUT", app + "/commands", self._r_sync),
            ("GET", app + "/guilds/{guild_id}/commands", self._r_commands),
            ("GET", app + "/commands", self._r_commands),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._r_callback),
            ("POST", hook, self._r_followup),
            ("GET", hook + "/messages/{message_id}", self._r_webhook_message),
            ("PATCH", hook + "/messages/{message_id}", self._r_webhook_message),
            ("DELETE", hook + "/messages/{message_id}", self._r_webhook_message),
        ]

    async def _attachment(self, request: web.Request) -> web.Response:
        return web.Response(body=self._attachments[request.match_info["attachment_id"]])

    async def _r_me(self, request: web.Request) -> JSON:
        return {**self.bot_user, "verified": True, "mfa_enabled": False, "locale": "en-US"}

    async def _r_user(self, request: web.Request) -> JSON:
        if (user := self._users.get(request.match_info["user_id"])) is None:
            raise DiscordError(404, 10013, "Unknown User")
        return user

    async def _r_open_dm(self, request: web.Request) -> JSON:
        user_id = str((request[BODY] or {}).get("recipient_id"))
        if user_id not in self._users:
            raise DiscordError(400, 50035, "Invalid Form Body")
        if (cid := self._dm_channels.get(user_id)) is None:
            self._dm_channels[user_id] = cid = self._next_id()
            dm = {"id": cid, "type": 1, "guild_id": None, "recipients": [self._users[user_id]]}
            self._channels[cid], self._channel_messages[cid] = {**dm, "last_message_id": None}, []
        return self._channels[cid]

    async def _r_nothing(self, request: web.Request) -> None:
        return None

    async def _r_application(self, request: web.Request) -> JSON:
        return {
            "id": self.application_id, "name": "TicketBot", "description": "", "icon": None,
            "bot_public": False, "bot_require_code_grant": False, "verify_key": "0" * 64,
            "owner": self.bot_user, "flags": 0, "bot": self.bot_user, "team": None,
        }  # fmt: skip

    async def _r_gateway(self, request: web.Request) -> JSON:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    async def _r_guild(self, request: web.Request) -> Any:
        if (guild_id := request.match_info["guild_id"]) not in self._guilds:
            raise DiscordError(404, 10004, "Unknown Guild")
        full, part = self._guild_create(guild_id), request.path.rsplit("/", 1)[1]
        if part in ("channels", "roles"):
            return full[part]
        return {k: v for k, v in full.items() if k not in ("channels", "threads", "members")}

    async def _r_member(self, request: web.Request) -> JSON:
        guild_id, user_id = request.match_info["guild_id"], request.match_info["user_id"]
        if user_id not in self._guilds.get(guild_id, {}).get("members", {}):
            raise DiscordError(404, 10007, "Unknown Member")
        return self._member_json(guild_id, user_id)

    async def _r_channel(self, request: web.Request) -> JSON:
        if (channel := self._channels.get(request.match_info["channel_id"])) is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return channel

    async def _r_message(self, request: web.Request) -> JSON:
        msg = self._messages.get(request.match_info["message_id"])
        if (
            msg is None
            or msg["channel_id"] != request.match_info["channel_id"]
            or msg.get("deleted")
        ):
            raise DiscordError(404, 10008, "Unknown Message")
        return msg

    def _check_bot_may(self, channel: JSON, needed: int) -> None:
        if channel["type"] == 1:  # a DM
            if channel["recipients"][0]["id"] in self.closed_dms:
                raise DiscordError(403, 50007, "Cannot send messages to this user")
            return
        perms = self._permissions(channel["guild_id"], self.bot_user_id, channel["id"])
        if not perms & VIEW_CHANNEL:
            raise DiscordError(403, 50001, "Missing Access")
        if channel["type"] in (11, 12) and needed == SEND_MESSAGES:
            needed = SEND_IN_THREADS
        if perms & needed != needed:
            raise DiscordError(403, 50013, "Missing Permissions")

    async def _r_send(self, request: web.Request) -> JSON:
        channel, payload, files = (
            await self._r_channel(request),
            request[BODY] or {},
            request[FILES],
        )
        self._check_bot_may(channel, SEND_MESSAGES | (ATTACH_FILES if files else 0))
        check_message(payload, len(files), creating=True)
        msg = self._store_message(channel["id"], payload, self.bot_user, files)
        dm = DIRECT_MESSAGES if channel["type"] == 1 else None
        await self._dispatch("MESSAGE_CREATE", copy.deepcopy(msg), dm)
        return msg

    async def _r_edit(self, request: web.Request) -> JSON:
        msg = await self._r_message(request)
        return await self._edit_message(msg, request[BODY] or {}, request[FILES])

    async def _r_delete(self, request: web.Request) -> None:
        msg = await self._r_message(request)
        msg["deleted"] = True
        ids = {"id": msg["id"], "channel_id": msg["channel_id"], "guild_id": msg["guild_id"]}
        await self._dispatch("MESSAGE_DELETE", ids)

    async def _r_react(self, request: web.Request) -> None:
        msg = await self._r_message(request)
        await self.react(
            self.bot_user_id, msg["channel_id"], msg["id"], request.match_info["emoji"]
        )

    async def _r_edit_channel(self, request: web.Request) -> JSON:
        channel, payload = await self._r_channel(request), request[BODY] or {}
        channel.update({k: payload[k] for k in ("name", "topic") if k in payload})
        if (meta := channel.get("thread_metadata")) is not None:
            meta.update({k: payload[k] for k in ("archived", "locked") if k in payload})
            await self._dispatch("THREAD_UPDATE", channel)
        return channel

    async def _r_thread(self, request: web.Request) -> JSON:
        parent, payload = await self._r_channel(request), request[BODY] or {}
        private = payload.get("type") == 12 and "message_id" not in request.match_info
        self._check_bot_may(parent, PRIVATE_THREADS if private else PUBLIC_THREADS)
        if (starter := request.match_info.get("message_id")) is not None:
            await self._r_message(request)
        if not 1 <= len(name := payload.get("name") or "") <= 100:
            _invalid(errors := JSON(), "name", name, 100, force=True)
            raise DiscordError(400, 50035, "Invalid Form Body", errors)
        if (thread_id := starter or self._next_id()) in self._channels:
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        meta = {"archived": False, "locked": False, "archive_timestamp": _now(), "invitable": True}
        meta["auto_archive_duration"] = payload.get("auto_archive_duration") or 1440
        thread = {
            "id": thread_id, "type": 11 if starter else payload.get("type", 11),
            "guild_id": parent["guild_id"], "parent_id": parent["id"], "owner_id": self.bot_user_id,
            "name": name, "message_count": 0, "member_count": 1, "total_message_sent": 0,
            "rate_limit_per_user": payload.get("rate_limit_per_user") or 0, "flags": 0,
            "last_message_id": None, "permission_overwrites": [], "thread_metadata": meta,
        }  # fmt: skip
        self._channels[thread_id], self._channel_messages[thread_id] = thread, []
        self.threads[thread_id] = ThreadInfo(parent["id"], name, starter)
        if starter is not None:
            self._messages[starter]["thread"] = thread
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    async def _r_sync(self, request: web.Request) -> list[JSON]:
        guild_id = request.match_info.get("guild_id", "global")
        where = {} if guild_id == "global" else {"guild_id": guild_id}
        answered = []
        for command in request[BODY] or []:
            answered.append({
                "id": self._next_id(), "application_id": self.application_id, "version": "1",
                "type": 1, "default_member_permissions": None, "nsfw": False, **command, **where,
            })  # fmt: skip
        self.synced_commands[guild_id] = answered
        return answered

    async def _r_commands(self, request: web.Request) -> list[JSON]:
        return self.synced_commands.get(request.match_info.get("guild_id", "global"), [])

    def _interaction_for(self, request: web.Request) -> _Interaction:
        if (iid := self._tokens.get(request.match_info["token"])) is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        return self._interactions[iid]

    async def _r_callback(self, request: web.Request) -> JSON | None:
        inter, body, files = self._interaction_for(request), request[BODY] or {}, request[FILES]
        late = time.monotonic() - inter.created > self.ack_deadline
        if inter.id != request.match_info["interaction_id"] or (late and not inter.acked):
            raise DiscordError(404, 10062, "Unknown interaction")
        if inter.acked:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        kind, data = body.get("type"), body.get("data") or {}
        message: JSON | None = None
        if kind == 4:
            check_message(data, len(files), creating=True)
        if kind == 9:
            _invalid(errors := JSON(), "title", data.get("title"), 45)
            if errors or not 1 <= len(data.get("components") or []) <= 5:
                raise DiscordError(400, 50035, "Invalid Form Body", errors)
            self._modals[data["custom_id"]] = data
        inter.acked = True
        self._responses[inter.id].append({"type": kind, "data": data})
        if kind in (4, 5):
            payload = data if kind == 4 else {"flags": (data.get("flags") or 0) | LOADING}
            message = self._bot_message(inter, payload, files)
            inter.original_id = message["id"]
            if not message["flags"] & EPHEMERAL:
                await self._dispatch("MESSAGE_CREATE", copy.deepcopy(message))
        elif kind == 7 and inter.message_id is not None:
            message = await self._edit_message(self._messages[inter.message_id], data, files)
        if request.query.get("with_response") not in ("1", "true", "True"):
            return None
        flags = message["flags"] if message else 0
        return {
            "interaction": {
                "id": inter.id, "type": inter.kind, "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
                "response_message_id": message["id"] if message else None,
            },
            "resource": {"type": kind, **({"message": message} if message else {})},
        }  # fmt: skip

    async def _r_followup(self, request: web.Request) -> JSON | None:
        inter, payload, files = self._interaction_for(request), request[BODY] or {}, request[FILES]
        if not inter.acked:
            raise DiscordError(404, 10015, "Unknown Webhook")
        original = self._messages.get(inter.original_id or "")
        if original is not None and original["flags"] & LOADING:
            # Discord: the first followup after a defer fills the loading message instead
            keep = original["flags"] & EPHEMERAL
            message = await self._edit_message(original, {**payload, "flags": keep}, files)
        else:
            check_message(payload, len(files), creating=True)
            message = self._bot_message(inter, payload, files)
            if not message["flags"] & EPHEMERAL:
                await self._dispatch("MESSAGE_CREATE", copy.deepcopy(message))
        self._responses[inter.id].append(
            {"type": "followup", "data": payload, "message_id": message["id"]}
        )
        return message if request.query.get("wait") in ("1", "true", "True") else None

    async def _r_webhook_message(self, request: web.Request) -> JSON | None:
        inter, mid = self._interaction_for(request), request.match_info["message_id"]
        original = mid == "@original"
        mid = (inter.original_id or inter.message_id or "") if original else mid
        if (message := self._messages.get(mid)) is None or message.get("deleted"):
            raise DiscordError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return message
        if request.method == "DELETE":
            message["deleted"] = True
            return None
        payload = request[BODY] or {}
        if message["flags"] & LOADING:
            payload = {**payload, "flags": message["flags"] & EPHEMERAL}
        entry = {
            "type": "edit_original" if original else "edit",
            "data": request[BODY],
            "message_id": mid,
        }
        self._responses[inter.id].append(entry)
        return await self._edit_message(message, payload, request[FILES])


@pytest_asyncio.fixture
async def discord_double() -> AsyncIterator[DiscordDouble]:
    """A fresh Discord double on a loopback port for one test."""
    double = DiscordDouble()
    await double.start()
    try:
        yield double
    finally:
        await double.stop()
