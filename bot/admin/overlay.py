"""How ``bot.toml`` and the admins' run-time changes combine into the config in force.

The rule is one sentence, and the README repeats it: **where both speak, the database
wins**. ``bot.toml`` describes the queues, access and rules a desk starts with; an
admin's command stores only what it changes (a queue's new room, a grant, the edited
rule list) and :func:`effective` lays those changes over the file's config. Connections
and secrets are never changed by command, so they always come from the file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.config import Config, ConfigError, QueueConfig

log = logging.getLogger(__name__)

#: Queue settings an admin may change, and the field of :class:`QueueConfig` each sets.
QUEUE_FIELDS = (
    "addresses",
    "matrix_room",
    "discord_channel",
    "console",
    "language",
    "salutation",
    "signature",
    "autoresponse_new",
    "autoresponse_reopen",
    "reminders",
    "closed_to",
    "pseudonymize",
    "public_ok",
)

#: Settings a sub-queue takes from its parent unless it has its own.
_INHERITED = (
    "matrix_room",
    "discord_channel",
    "console",
    "language",
    "salutation",
    "signature",
    "autoresponse_new",
    "autoresponse_reopen",
    "reminders",
    "pseudonymize",
)


@dataclass(frozen=True)
class Grant:
    """Access to ``queue`` for ``subject`` (a user id or ``discord-role:ID``)."""

    subject: str
    queue: str
    level: str  # act | trainee | read | none
    subqueues: bool = True
    granted_by: str = ""


@dataclass(frozen=True)
class Overlay:
    """Everything admins changed, as stored."""

    #: Queue name (as it is now) -> the settings changed; ``origin = "command"`` marks a
    #: queue added by command, ``renamed_from`` the ``bot.toml`` name of a renamed one.
    queues: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    grants: tuple[Grant, ...] = ()
    admins: tuple[str, ...] = ()
    #: The whole rule list once an admin edited it (``[[rule]]`` tables), else None.
    rules: tuple[Mapping[str, Any], ...] | None = None


def effective(base: Config, overlay: Overlay, *, strict: bool = True) -> Config:
    """The config in force: ``base`` (from the file) with the admins' changes laid over.

    ``strict`` (admin commands, before they commit): raises :class:`ConfigError` when
    the changes no longer fit together, such as a rule naming a queue that is gone. Not
    strict (loading at start and on reload, after someone edited ``bot.toml``): what no
    longer fits is left out item by item, with a log line, and everything else an admin
    set (grants, revocations, admins, queues) still applies.
    """
    renames = {
        str(data["renamed_from"]): name
        for name, data in overlay.queues.items()
        if data.get("renamed_from")
    }
    base_by_name = {q.name: q for q in base.queues}
    queues: dict[str, QueueConfig] = {}
    for queue in base.queues:
        name = _renamed(queue.name, renames)
        queues[name] = dataclasses.replace(queue, name=name)
    added = sorted(
        (name for name, data in overlay.queues.items() if data.get("origin") == "command"),
        key=lambda name: name.count("::"),
    )
    for name in added:
        if name not in queues:
            queues[name] = _new_queue(name, queues.get(name.rpartition("::")[0]))

    # Settings in order of depth, so a sub-queue sees its parent's final values.
    for name in sorted(queues, key=lambda n: n.count("::")):
        queue = queues[name]
        data = overlay.queues.get(name, {})
        changes: dict[str, Any] = {
            key: _value(key, data[key]) for key in QUEUE_FIELDS if key in data
        }
        parent_name = queue.parent
        if parent_name is not None and parent_name in queues:
            parent = queues[parent_name]
            base_parent = base_by_name.get(_original(parent_name, renames))
            base_self = base_by_name.get(_original(name, renames))
            for key in _INHERITED:
                if key in changes:
                    continue
                own = getattr(queue, key)
                # what the file gave the sub-queue by inheritance follows the parent now
                if base_self is None or (
                    base_parent is not None and own == getattr(base_parent, key)
                ):
                    changes[key] = getattr(parent, key)
            if not queue.addresses and "addresses" not in changes:
                changes["reply_from"] = parent.reply_address
        if changes.get("addresses"):
            changes["reply_from"] = changes["addresses"][0]
        elif "addresses" in changes and parent_name is not None and parent_name in queues:
            changes["reply_from"] = queues[parent_name].reply_address
        queues[name] = dataclasses.replace(queue, **changes)

    for name, data in overlay.queues.items():
        if data.get("removed"):
            queues.pop(name, None)

    queues = {name: _with_access(queue, overlay.grants) for name, queue in queues.items()}
    for name, queue in list(queues.items()):
        if queue.closed_to is not None and queue.closed_to not in queues:
            problem = ConfigError(
                f"queue {queue.name}",
                f"is closed to new mail for queue {queue.closed_to!r}, which does not exist",
            )
            if strict:
                raise problem
            log.error("%s; it takes its own mail again", problem)
            queues[name] = dataclasses.replace(queue, closed_to=None)
    from bot.rules import parse_rules

    rule_tables = base.rule_tables
    if overlay.rules is not None:
        rule_tables = overlay.rules
    elif renames:
        rule_tables = tuple(rename_in_rule(t, renames) for t in rule_tables)
    if not strict:
        kept = tuple(t for t in rule_tables if t.get("queue") in (None, *queues))
        for table in rule_tables:
            if table not in kept:
                log.error("a stored rule names queue %r, which is gone: left out", table["queue"])
        rule_tables = kept
    try:
        rules = parse_rules(list(rule_tables), set(queues))
    except ConfigError as exc:
        if strict:
            raise
        log.error("the stored rules no longer fit (%s): using bot.toml's rules", exc)
        rule_tables = tuple(t for t in base.rule_tables if t.get("queue") in (None, *queues))
        rules = parse_rules(list(rule_tables), set(queues))
    if not any(q.default for q in queues.values()):
        if strict:
            raise ConfigError("queue", "no default queue is left")
        first = next(iter(queues))
        log.error("no default queue is left; mail to unknown addresses goes to %s", first)
        queues[first] = dataclasses.replace(queues[first], default=True)
    return dataclasses.replace(
        base,
        queues=tuple(queues.values()),
        rules=rules,
        rule_tables=tuple(rule_tables),
        admins=tuple(dict.fromkeys((*base.admins, *overlay.admins))),
    )


def rename_in_rule(table: Mapping[str, Any], renames: Mapping[str, str]) -> Mapping[str, Any]:
    """A rule table with its target queue renamed (rules follow a queue's rename)."""
    queue = table.get("queue")
    if isinstance(queue, str) and _renamed(queue, renames) != queue:
        return {**table, "queue": _renamed(queue, renames)}
    return table


def _renamed(name: str, renames: Mapping[str, str]) -> str:
    """``info::de`` after ``info`` became ``general`` is ``general::de``."""
    for old in sorted(renames, key=len, reverse=True):
        if name == old or name.startswith(old + "::"):
            return renames[old] + name[len(old) :]
    return name


def _original(name: str, renames: Mapping[str, str]) -> str:
    for old, new in sorted(renames.items(), key=lambda kv: len(kv[1]), reverse=True):
        if name == new or name.startswith(new + "::"):
            return old + name[len(new) :]
    return name


def _new_queue(name: str, parent: QueueConfig | None) -> QueueConfig:
    """A queue added by command starts with its parent's settings, or the defaults."""
    if parent is None:
        return QueueConfig(name=name, addresses=(), console=False)
    return dataclasses.replace(
        parent,
        name=name,
        addresses=(),
        default=False,
        closed_to=None,
        access={},
    )


def _value(key: str, value: Any) -> Any:
    if key == "addresses":
        return tuple(value)
    if key in ("salutation", "signature", "autoresponse_new", "autoresponse_reopen"):
        return dict(value)
    return value


def _with_access(queue: QueueConfig, grants: Sequence[Grant]) -> QueueConfig:
    """Lay the grants over the queue's file access: the most specific grant wins.

    A grant on ``info`` covers ``info::de`` unless it was made for ``info`` only; one
    made on ``info::de`` itself beats it.
    """
    best: dict[str, Grant] = {}
    for grant in grants:
        covers = grant.queue == queue.name or (
            grant.subqueues and queue.name.startswith(grant.queue + "::")
        )
        if not covers:
            continue
        held = best.get(grant.subject)
        if held is None or len(grant.queue) > len(held.queue):
            best[grant.subject] = grant
    if not best:
        return queue
    access = {**queue.access, **{subject: g.level for subject, g in best.items()}}
    volunteers = [v for v in queue.volunteers if access.get(v, "act") in ("act", "trainee")]
    volunteers += [
        s
        for s, level in access.items()
        if level in ("act", "trainee") and not s.startswith("discord-role:")
    ]
    return dataclasses.replace(queue, access=access, volunteers=tuple(dict.fromkeys(volunteers)))
