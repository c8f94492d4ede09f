"""``access ...`` and ``admin ...``: who may work in which queue, and who runs the desk."""

from __future__ import annotations

from bot.admin.action import AdminAction, subject_of, take_flag
from bot.config import ACCESS_LEVELS, Config, QueueConfig
from bot.domain import Actor, TicketError

ACCESS_USAGE = """\
access grant USER|ROLE QUEUE [act|trainee|read] [--only]   (--only: not its sub-queues)
access revoke USER|ROLE QUEUE
access list [QUEUE|USER]"""

ADMIN_USAGE = """\
admin list
admin grant USER
admin revoke USER"""

_MEANING = {
    "act": "works the queue's tickets",
    "trainee": "claims and notes; replies wait for a volunteer's approval",
    "read": "sees and searches, changes nothing",
}


def run_access(act: AdminAction) -> str:
    if not act.words:
        raise TicketError("Usage:\n" + ACCESS_USAGE)
    sub = act.words.pop(0).lower()
    if sub == "grant":
        return _grant(act)
    if sub == "revoke":
        return _revoke(act)
    if sub == "list":
        return _list(act)
    raise TicketError(f"Unknown access command {sub!r}. Usage:\n{ACCESS_USAGE}")


def _level_for(act: AdminAction, subject: str, queue_name: str) -> str | None:
    return _level(act.config, subject, queue_name)


def _grant(act: AdminAction) -> str:
    only = take_flag(act.words, "--only")
    if len(act.words) not in (2, 3):
        raise TicketError("Usage: " + ACCESS_USAGE.splitlines()[0])
    subject = subject_of(act.words[0], act.platform)
    queue = act.queue(act.words[1])
    level = act.words[2].lower() if len(act.words) == 3 else "act"
    if level not in ACCESS_LEVELS or level == "none":
        raise TicketError(f"{level!r} is not an access level: act, trainee or read")
    before = _level_for(act, subject, queue.name) or "none"
    act.repo.set_access(subject, queue.name, level, not only, act.now, act.actor.user_id)
    scope = queue.name if only else f"{queue.name} and its sub-queues"
    act.audit("access.grant", f"{subject} on {scope}", before=before, after=level)
    act.check()
    return f"{subject} now has {level} access to {scope} ({_MEANING[level]})."


def _revoke(act: AdminAction) -> str:
    if len(act.words) != 2:
        raise TicketError("Usage: access revoke USER|ROLE QUEUE")
    subject = subject_of(act.words[0], act.platform)
    queue = act.queue(act.words[1])
    before = _level_for(act, subject, queue.name)
    if before is None:
        raise TicketError(f"{subject} has no access to {queue.name}.")
    family = [q.name for q in act.config.queues if q.is_within(queue.name)]
    for name in family:  # grants on the sub-queues themselves go too
        act.repo.set_access(subject, name, None, True, act.now, act.actor.user_id)
    config = act.check()
    # access from bot.toml or from a grant on a parent queue is still there: take it
    # away with an explicit "none" for this queue and its sub-queues
    if any(_level(config, subject, name) is not None for name in family):
        act.repo.set_access(subject, queue.name, "none", True, act.now, act.actor.user_id)
    act.audit("access.revoke", f"{subject} on {queue.name}", before=before, after="none")
    config = act.check()
    left = [name for name in family if _level(config, subject, name) is not None]
    if left:  # cannot happen: the explicit none covers the whole family
        raise TicketError(f"Access to {', '.join(left)} could not be taken away; nothing changed.")
    roles = ""
    if not subject.startswith("discord-role:"):
        via = sorted(
            r
            for q in config.queues
            if q.is_within(queue.name)
            for r in q.access
            if r.startswith("discord-role:") and q.access[r] != "none"
        )
        if via:
            roles = (
                f" Note: access given to roles ({', '.join(via)}) still counts for members "
                "of those roles."
            )
    return (
        f"{subject} no longer has access to {queue.name} or its sub-queues; "
        f"their next command there is refused.{roles}"
    )


def _level(config: Config, subject: str, queue_name: str) -> str | None:
    queue = config.queue(queue_name)
    if subject.startswith("discord-role:"):
        return queue.level(Actor("discord", "", roles=frozenset({subject})))
    return queue.level(Actor("", subject))


def _list(act: AdminAction) -> str:
    if not act.words:
        lines = []
        for queue in act.config.queues:
            lines.append(f"{queue.name}: " + (", ".join(_holders(queue)) or "nobody"))
        return "Access by queue:\n" + "\n".join(lines)
    target = act.words[0]
    found = act.config.find_queue(target)
    if found is not None:
        return f"Access to {found.name}: " + (", ".join(_holders(found)) or "nobody")
    subject = subject_of(target, act.platform)
    lines = []
    for queue in act.config.queues:
        level = _level(act.config, subject, queue.name)
        if level is not None and level != "none":
            lines.append(f"{queue.name}: {level}")
    admin = " (an admin)" if subject in act.config.admins else ""
    if not lines:
        return f"{subject}{admin} has no access to any queue."
    return f"{subject}{admin} works in:\n" + "\n".join(lines)


def _holders(queue: QueueConfig) -> list[str]:
    found: dict[str, str] = {v: "act" for v in queue.volunteers}
    found.update({f"discord-role:{r}": "act" for r in queue.discord_roles})
    found.update(queue.access)
    return [f"{s} ({level})" for s, level in sorted(found.items()) if level != "none"]


def run_admin(act: AdminAction) -> str:
    if not act.words:
        raise TicketError("Usage:\n" + ADMIN_USAGE)
    sub = act.words.pop(0).lower()
    if sub == "list":
        from_file = set(act.base.admins)
        lines = [
            f"{a} ({'bot.toml' if a in from_file else 'granted by command'})"
            for a in act.config.admins
        ]
        return "Admins:\n" + ("\n".join(lines) or "none")
    if sub not in ("grant", "revoke") or len(act.words) != 1:
        raise TicketError("Usage:\n" + ADMIN_USAGE)
    subject = subject_of(act.words[0], act.platform)
    if sub == "grant":
        if subject in act.config.admins:
            raise TicketError(f"{subject} is already an admin.")
        act.repo.set_admin(subject, True, act.now, act.actor.user_id)
        act.audit("admin.grant", subject, before="no", after="yes")
        act.check()
        return f"{subject} is now an admin."
    if subject in act.base.admins:
        raise TicketError(
            f"{subject} is an admin by bot.toml (admins = [...]); remove them there. "
            "Admins from the file cannot be taken away by command, so a desk never locks "
            "itself out."
        )
    if subject not in act.config.admins:
        raise TicketError(f"{subject} is not an admin.")
    act.repo.set_admin(subject, False, act.now, act.actor.user_id)
    act.audit("admin.revoke", subject, before="yes", after="no")
    act.check()
    return f"{subject} is no longer an admin."
