"""The whole desk running for real, for the latency and flood benchmarks.

One :func:`desk` brings up, on loopback:

* a throwaway Dovecot (:mod:`bench.servers`, the test suite's own set-up) with one user;
* a throwaway Synapse (:func:`tests.servers.synapse.start_synapse`, the test suite's own
  configuration: no federation, SQLite, its rate limits lifted);
* three Matrix accounts: the bot, a volunteer (``alice``) and an **observer**, a separate
  client that only reads the room with ``/sync`` long-polling, the way a volunteer's
  Matrix client sees it;
* the bot itself as ``ticketbot run`` in a **subprocess** (IMAP IDLE on, SQLite, the
  reply mail written to files), so its event loop and GIL are its own and the
  benchmark's clients do not slow it down.

The bot logs JSON lines at INFO (``--log-format json``): the intake's "new ticket N"
line (millisecond timestamps) tells when a mail was stored, which splits a latency into
mail side (IDLE wake-up, fetch, parse, store) and chat side (outbox wake-up, Matrix send).

Everything is stopped and deleted afterwards; the bot's log is kept only on failure.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bench import servers
from bench.servers import BenchDovecot, ServerUnavailable
from tests.servers import synapse as synapse_module
from tests.servers.synapse import SynapseError, SynapseServer, start_synapse

ROOT = Path(__file__).resolve().parent.parent
SYNC_TIMEOUT_MS = 10_000
BOT_START_TIMEOUT = 90.0


@dataclass
class Seen:
    """One room event as the observer received it."""

    event: dict[str, Any]
    received: float  # time.time() when the /sync answer carrying it arrived

    @property
    def origin_ts(self) -> float:
        """The homeserver's timestamp of the event, in seconds (same machine, same clock)."""
        return float(self.event["origin_server_ts"]) / 1000.0

    @property
    def body(self) -> str:
        return str(self.event.get("content", {}).get("body", ""))

    @property
    def relation(self) -> dict[str, Any]:
        return dict(self.event.get("content", {}).get("m.relates_to") or {})


class Observer:
    """A separate Matrix client that long-polls ``/sync`` for one room and keeps every
    timeline event with the time its answer arrived, in a background thread."""

    def __init__(self, synapse: SynapseServer, token: str, room_id: str) -> None:
        self._synapse = synapse
        self._token = token
        self._room_id = room_id
        self._filter = json.dumps(
            {
                "room": {
                    "rooms": [room_id],
                    "timeline": {"limit": 1000},
                    "state": {"lazy_load_members": True},
                    "ephemeral": {"not_types": ["*"]},
                },
                "presence": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
            }
        )
        self.events: list[Seen] = []
        self.limited = 0  # /sync answers that left events out (timeline over the limit)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._since = self._sync(None, 0)[0]
        self._thread = threading.Thread(target=self._loop, name="observer", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Observer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(SYNC_TIMEOUT_MS / 1000 + 5)

    def _sync(self, since: str | None, timeout_ms: int) -> tuple[str, list[dict[str, Any]], bool]:
        query = {"timeout": str(timeout_ms), "filter": self._filter}
        if since is not None:
            query["since"] = since
        answer = self._synapse.request(
            "GET",
            "/_matrix/client/v3/sync?" + urllib.parse.urlencode(query),
            token=self._token,
            timeout=timeout_ms / 1000 + 30,
        )
        room = answer.get("rooms", {}).get("join", {}).get(self._room_id, {})
        timeline = room.get("timeline", {})
        return answer["next_batch"], list(timeline.get("events", [])), bool(timeline.get("limited"))

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                since, events, limited = self._sync(self._since, SYNC_TIMEOUT_MS)
                received = time.time()
                self._since = since
                with self._changed:
                    self.limited += limited
                    self.events.extend(Seen(e, received) for e in events)
                    self._changed.notify_all()
        except BaseException as exc:  # reported by wait_until
            self.error = exc
            with self._changed:
                self._changed.notify_all()

    def wait_until(self, what: str, probe: Callable[[list[Seen]], Any], timeout: float) -> Any:
        """Block until ``probe(events)`` is truthy (checked at every new batch); return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = probe(self.events)
                if value:
                    return value
                if self.error is not None:
                    raise RuntimeError(f"the observer's /sync failed: {self.error}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
                self._changed.wait(min(remaining, 1.0))

    def snapshot(self) -> list[Seen]:
        with self._changed:
            return list(self.events)


@dataclass
class Desk:
    """The running servers, accounts, the bot process and the observer."""

    dovecot: BenchDovecot
    synapse: SynapseServer
    room_id: str
    bot_id: str
    alice: tuple[str, str]
    observer: Observer
    workdir: Path
    process: subprocess.Popen[bytes]
    database: Path
    _txn: int = field(default=0, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "bot.log"

    def say(self, token: str, text: str, thread_root: str | None = None) -> str:
        """Send ``m.text`` to the room as ``token``'s user; return the event id."""
        self._txn += 1
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if thread_root is not None:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread_root}
        path = (
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room_id, safe='')}"
            f"/send/m.room.message/bench-{self._txn}-{secrets.token_hex(4)}"
        )
        event_id: str = self.synapse.request("PUT", path, content, self.alice[1])["event_id"]
        return event_id

    def bot_log(self) -> list[dict[str, Any]]:
        """The bot's JSON log lines so far (other lines, e.g. tracebacks, skipped)."""
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines

    def stored_at(self) -> dict[str, float]:
        """Ticket number -> when the bot logged it stored ("new ticket N from ..."), epoch s."""
        out: dict[str, float] = {}
        for line in self.bot_log():
            message = str(line.get("message", ""))
            if message.startswith("new ticket "):
                number = message.split()[2]
                out[number] = datetime.fromisoformat(str(line["time"])).timestamp()
        return out

    def logged_at(self, logger: str, text: str) -> list[float]:
        """When ``logger`` logged a message containing ``text``, epoch seconds, sorted."""
        return sorted(
            datetime.fromisoformat(str(line["time"])).timestamp()
            for line in self.bot_log()
            if line.get("logger") == logger and text in str(line.get("message", ""))
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the bot exited with status {self.process.returncode}:\n{self.log_tail()}"
            )


def bot_config(
    dovecot: BenchDovecot, synapse: SynapseServer, room_id: str, bot_id: str, volunteer: str,
    workdir: Path, flood_threshold: int,
) -> str:  # fmt: skip
    """The bot's TOML: IMAP with IDLE, Matrix, SQLite, replies to files, no console."""
    account = dovecot.account
    return f"""\
[storage]
url = "sqlite:///{workdir}/bot.db"

[mail.imap]
host = "{account.host}"
port = {account.port}
security = "none"
username = "{account.username}"
password_env = "BENCH_IMAP_PASSWORD"
idle = true
poll_seconds = 60

[mail.files]
path = "{workdir}/outgoing"

[matrix]
homeserver = "{synapse.url}"
user_id = "{bot_id}"
password_env = "BENCH_MATRIX_PASSWORD"
device_id = "BENCHBOT"

[console]
enabled = false

[tickets]
undo_seconds = 0

[reminders]
digest_at = "off"

[flood]
threshold = {flood_threshold}
window = "1h"
notice_every = 500

[logging]
level = "INFO"
format = "json"

[[queue]]
name = "info"
addresses = ["info@example.org"]
matrix_room = "{room_id}"
volunteers = ["{volunteer}"]
default = true
"""


def _synapse(workdir: Path, message_limits: bool) -> SynapseServer:
    """The tests' Synapse; with ``message_limits`` its default ``rc_message`` (0.2/s,
    burst 10) stays in force for the bot instead of being lifted like the others."""
    saved = synapse_module.RATE_LIMITS
    if message_limits:
        synapse_module.RATE_LIMITS = {k: v for k, v in saved.items() if k != "rc_message"}
    try:
        return start_synapse(workdir)
    except pytest.fail.Exception as exc:  # the test helper reports through pytest
        raise ServerUnavailable(str(exc)) from None
    finally:
        synapse_module.RATE_LIMITS = saved


def _wait_joined(synapse: SynapseServer, token: str, room_id: str, user: str) -> None:
    path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id, safe='')}/joined_members"
    deadline = time.monotonic() + BOT_START_TIMEOUT
    while user not in synapse.request("GET", path, token=token).get("joined", {}):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{user} did not join {room_id} within {BOT_START_TIMEOUT:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def desk(
    flood_threshold: int = 20,
    say: Callable[[str], None] = print,
    debug: bool = False,
    keep_log: Path | None = None,
    message_limits: bool = False,
) -> Iterator[Desk]:
    """Start everything, wait until the bot is in the room; stop and delete it all after."""
    workdir = Path(tempfile.mkdtemp(prefix="ticketbot-bench-live-"))
    (workdir / "synapse").mkdir()
    process: subprocess.Popen[bytes] | None = None
    synapse: SynapseServer | None = None
    observer: Observer | None = None
    failed = True
    try:
        with servers.dovecot() as dovecot:
            started = time.monotonic()
            synapse = _synapse(workdir / "synapse", message_limits)
            say(f"Dovecot and Synapse {synapse.version} up ({time.monotonic() - started:.1f} s)")
            bot_password = secrets.token_urlsafe(12)
            bot_id, _ = synapse.register("ticketbot", bot_password)
            alice = synapse.register("alice", "alice-pw")
            observer_id, observer_token = synapse.register("observer", "observer-pw")
            room_id = synapse.create_room(alice[1], [bot_id, observer_id], "info")
            synapse.join(observer_token, room_id)
            config = workdir / "bot.toml"
            config.write_text(
                bot_config(dovecot, synapse, room_id, bot_id, alice[0], workdir, flood_threshold)
            )
            env = {
                **os.environ,
                "BENCH_IMAP_PASSWORD": dovecot.account.password,
                "BENCH_MATRIX_PASSWORD": bot_password,
            }
            with (workdir / "bot.log").open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bot.cli", "run", "--config", str(config)]
                    + (["--log-level", "DEBUG"] if debug else []),
                    cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            observer = Observer(synapse, observer_token, room_id).start()
            result = Desk(
                dovecot=dovecot, synapse=synapse, room_id=room_id, bot_id=bot_id, alice=alice,
                observer=observer, workdir=workdir, process=process,
                database=workdir / "bot.db",
            )  # fmt: skip
            try:
                _wait_joined(synapse, alice[1], room_id, bot_id)
            except (RuntimeError, SynapseError) as exc:
                result.check_alive()
                raise RuntimeError(f"{exc}\n{result.log_tail()}") from None
            say(f"the bot is in the room ({time.monotonic() - started:.1f} s after start)")
            yield result
            failed = False
    finally:
        if observer is not None:
            observer.stop()
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if synapse is not None:
            synapse.stop()
        if keep_log is not None and (workdir / "bot.log").exists():
            shutil.copy(workdir / "bot.log", keep_log)
            say(f"the bot's log is kept in {keep_log}")
        elif failed and (workdir / "bot.log").exists():
            kept = Path(tempfile.gettempdir()) / f"ticketbot-bench-bot-{int(time.time())}.log"
            shutil.copy(workdir / "bot.log", kept)
            print(f"the bot's log is kept in {kept}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    """n, p50, p95, max and mean of ``values`` (seconds), in milliseconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": percentile(values, 0.50) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "max_ms": max(values) * 1000,
        "mean_ms": sum(values) / len(values) * 1000,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
