"""``queue ...``: admins add, rename, bind and tune queues while the desk runs."""

from __future__ import annotations

from typing import Any

from bot.admin.action import AdminAction, take_flag, take_option
from bot.admin.overlay import _original
from bot.config import ConfigError, QueueConfig, check_template
from bot.domain import TicketError
from bot.ports import RoomCheck

USAGE = """\
queue list
queue info NAME
queue add NAME --address ADDR            (a sub-queue: NAME is parent::child; address optional)
queue rename NAME NEWNAME
queue address add|remove NAME ADDR
queue bind NAME [--public-ok]            (run it in the room or channel to bind)
queue unbind NAME [matrix|discord|console]
queue set NAME signature|salutation [--lang CODE] TEXT|off
queue set NAME autoresponse new|reopen [--lang CODE] TEXT|off
queue set NAME reminders on|off
queue set NAME language CODE
queue reset NAME SETTING                 (back to bot.toml's value: signature, reminders, ...)
queue close NAME --to OTHER              (no new mail here: it goes to OTHER)
queue open NAME
queue remove NAME [--to OTHER]           (only without open tickets; closed ones go to OTHER)"""

_TEXT_SETTINGS = {
    "signature": "signature",
    "salutation": "salutation",
}


def run(act: AdminAction) -> str:
    words = act.words
    if not words:
        raise TicketError("Usage:\n" + USAGE)
    sub, rest = words[0].lower(), words[1:]
    act.words = rest
    handler = _HANDLERS.get(sub)
    if handler is None:
        raise TicketError(f"Unknown queue command {sub!r}. Usage:\n{USAGE}")
    return handler(act)


def _name(act: AdminAction, usage: str) -> QueueConfig:
    if not act.words:
        raise TicketError(f"Usage: {usage}")
    return act.queue(act.words.pop(0))


def list_queues(act: AdminAction) -> str:
    lines = []
    for queue in act.config.queues:
        rooms = ", ".join(f"{k} {v}" for k, v in queue.bindings(act.config).items()) or "no room"
        extra = ""
        if queue.closed_to:
            extra += f" · closed to new mail (goes to {queue.closed_to})"
        if queue.default:
            extra += " · default"
        addresses = ", ".join(queue.addresses) or f"(answers from {queue.reply_address})"
        lines.append(f"{queue.name}: {addresses} · {rooms}{extra}")
    return "Queues:\n" + "\n".join(lines)


def info(act: AdminAction) -> str:
    queue = _name(act, "queue info NAME")
    setting = act.queue_setting(queue.name)
    origin = "added by command" if setting.get("origin") == "command" else "from bot.toml"
    changed = sorted(k for k in setting if k not in ("origin", "renamed_from"))
    open_count, closed = act.repo.queue_ticket_counts(queue.name)
    access = _access_lines(act, queue)
    lines = [
        f"Queue {queue.name} ({origin}"
        + (f", renamed from {setting['renamed_from']}" if setting.get("renamed_from") else "")
        + ")",
        f"addresses: {', '.join(queue.addresses) or '-'} · replies from {queue.reply_address}",
        "rooms: "
        + (", ".join(f"{k} {v}" for k, v in queue.bindings(act.config).items()) or "none"),
        f"language: {queue.language} · reminders: {'on' if queue.reminders else 'off'}"
        + f" · pseudonyms: {'on' if queue.pseudonymize else 'off'}",
        f"tickets: {open_count} not closed, {closed} closed",
    ]
    if queue.closed_to:
        lines.append(f"closed to new mail: it goes to {queue.closed_to}")
    for key in ("salutation", "signature", "autoresponse_new", "autoresponse_reopen"):
        texts = getattr(queue, key)
        if texts:
            shown = "; ".join(f"{lang}: {_short(text)}" for lang, text in sorted(texts.items()))
            lines.append(f"{key}: {shown}")
    lines.append("access: " + (", ".join(access) or "nobody"))
    if changed:
        lines.append("changed by command (wins over bot.toml): " + ", ".join(changed))
    return "\n".join(lines)


def _access_lines(act: AdminAction, queue: QueueConfig) -> list[str]:
    found: dict[str, str] = {v: "act" for v in queue.volunteers}
    found.update({f"discord-role:{r}": "act" for r in queue.discord_roles})
    found.update(queue.access)
    return [f"{s} ({level})" for s, level in sorted(found.items()) if level != "none"]


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _check_address(act: AdminAction, address: str) -> str:
    address = address.strip().lower()
    if "@" not in address or " " in address or address.startswith("@"):
        raise TicketError(f"{address!r} is not an email address")
    for queue in act.config.queues:
        if address in queue.addresses:
            raise TicketError(f"{address} already belongs to queue {queue.name}")
    return address


def _check_name(act: AdminAction, name: str) -> str:
    if any(not part.strip() or part != part.strip() for part in name.split("::")):
        raise TicketError(f"{name!r} is not a queue name (sub-queues are written info::de)")
    if any(ch.isspace() for ch in name) or len(name) > 100:
        raise TicketError(f"{name!r} is not a queue name: one word, at most 100 characters")
    if act.config.find_queue(name) is not None:
        raise TicketError(f"There is already a queue {name}.")
    parent = name.rpartition("::")[0]
    if parent and act.config.find_queue(parent) is None:
        raise TicketError(f"Add the parent queue {parent} first.")
    return name


def add(act: AdminAction) -> str:
    addresses = []
    while (address := take_option(act.words, "--address")) is not None:
        addresses.append(_check_address(act, address))
    if len(act.words) != 1:
        raise TicketError("Usage: queue add NAME --address ADDR")
    name = _check_name(act, act.words[0])
    if not addresses and "::" not in name:
        raise TicketError("A queue needs an address: queue add NAME --address ADDR")
    act.save_queue_setting(name, {"origin": "command", "addresses": addresses})
    act.audit("queue.add", name, after=", ".join(addresses))
    act.check()
    return (
        f"Queue {name} added ({', '.join(addresses) or 'no address of its own'}). "
        f"It is shown nowhere yet: run `queue bind {name}` in its room, then "
        f"`access grant USER {name}`."
    )


def rename(act: AdminAction) -> str:
    queue = _name(act, "queue rename NAME NEWNAME")
    if len(act.words) != 1:
        raise TicketError("Usage: queue rename NAME NEWNAME")
    new = _check_name(act, act.words[0])
    if new.startswith(queue.name + "::"):
        raise TicketError("A queue cannot move inside itself.")
    if new.rpartition("::")[0] != queue.name.rpartition("::")[0]:
        raise TicketError("Rename keeps a queue at its level (use the same parent).")
    old = queue.name
    base_names = {q.name for q in act.base.queues}
    # the bot.toml name behind the current one, worked out before anything is renamed
    overlay = act.repo.load_overlay()
    renames = {
        str(d["renamed_from"]): n for n, d in overlay.queues.items() if d.get("renamed_from")
    }
    original = _original(old, renames)
    setting = act.queue_setting(old)
    try:
        act.repo.rename_queue(old, new)
    except ValueError as exc:
        raise TicketError(str(exc)) from None
    setting = act.queue_setting(new) or setting
    if setting.get("origin") != "command":
        if original in base_names and original != new:
            setting["renamed_from"] = original
        else:
            setting.pop("renamed_from", None)
    act.save_queue_setting(new, setting)
    rules = act.repo.desk_setting("rules")
    if isinstance(rules, list):
        from bot.admin.overlay import rename_in_rule

        act.repo.set_desk_setting(
            "rules",
            [dict(rename_in_rule(r, {old: new})) for r in rules],
            act.now,
            act.actor.user_id,
        )
    for other in act.config.queues:
        if other.closed_to and (other.closed_to == old or other.closed_to.startswith(old + "::")):
            name = other.name
            if name == old or name.startswith(old + "::"):
                name = new + name[len(old) :]
            value = act.queue_setting(name)
            value["closed_to"] = new + other.closed_to[len(old) :]
            act.save_queue_setting(name, value)
    act.audit("queue.rename", f"{old} -> {new}", before=old, after=new)
    act.check()
    return f"Queue {old} is now {new}; its tickets, sub-queues, access and rules follow."


def address(act: AdminAction) -> str:
    usage = "queue address add|remove NAME ADDR"
    if len(act.words) != 3 or act.words[0] not in ("add", "remove"):
        raise TicketError(f"Usage: {usage}")
    verb = act.words.pop(0)
    queue = _name(act, usage)
    setting = act.queue_setting(queue.name)
    before = list(queue.addresses)
    if verb == "add":
        after = [*before, _check_address(act, act.words[0])]
    else:
        gone = act.words[0].strip().lower()
        if gone not in before:
            raise TicketError(f"{gone} is not an address of queue {queue.name}")
        after = [a for a in before if a != gone]
        if not after and queue.parent is None:
            raise TicketError(
                f"{gone} is the last address of queue {queue.name}; add another first."
            )
    setting["addresses"] = after
    act.save_queue_setting(queue.name, setting)
    act.audit(
        f"queue.address_{verb}",
        queue.name,
        before=", ".join(before),
        after=", ".join(after),
    )
    act.check()
    return f"Queue {queue.name} now receives mail at: {', '.join(after) or '(none of its own)'}."


def bind(act: AdminAction) -> str:
    public_ok = take_flag(act.words, "--public-ok")
    queue = _name(act, "queue bind NAME [--public-ok] (in the room to bind)")
    room = act.room or ""
    if act.platform != "console" and not room:
        raise TicketError("Run queue bind inside the room or channel the queue should use.")
    check = act.room_checks.get((act.platform, room), RoomCheck(False))
    setting = act.queue_setting(queue.name)
    before = queue.bindings(act.config).get(act.platform, "")
    if act.platform == "matrix":
        setting["matrix_room"] = room
    elif act.platform == "discord":
        setting["discord_channel"] = int(room)
    elif act.platform == "console":
        setting["console"] = True
    else:
        raise TicketError(f"Queues cannot be bound on {act.platform}.")
    if check.public:
        if not public_ok:
            raise TicketError(
                f"Refused: this room is public ({check.reason}). Tickets hold personal data; "
                "make the room private, or if you really mean it, "
                f"`queue bind {queue.name} --public-ok` (it is logged)."
            )
        setting["public_ok"] = True
        act.audit(
            "privacy.override",
            f"{queue.name} bound to public {act.platform} room {act.room}",
            after=check.reason,
        )
    act.save_queue_setting(queue.name, setting)
    act.audit("queue.bind", f"{queue.name} on {act.platform}", before=before, after=room or "yes")
    act.check()
    where = "channel" if act.platform == "discord" else "room"
    return f"Queue {queue.name} is bound to this {where}; new tickets appear here."


def unbind(act: AdminAction) -> str:
    queue = _name(act, "queue unbind NAME [matrix|discord|console]")
    platform = act.words[0].lower() if act.words else act.platform
    setting = act.queue_setting(queue.name)
    before = queue.bindings(act.config).get(platform)
    if before is None:
        raise TicketError(f"Queue {queue.name} is not bound on {platform}.")
    if platform == "matrix":
        setting["matrix_room"] = None
    elif platform == "discord":
        setting["discord_channel"] = None
    elif platform == "console":
        setting["console"] = False
    else:
        raise TicketError("Usage: queue unbind NAME [matrix|discord|console]")
    act.save_queue_setting(queue.name, setting)
    act.audit("queue.unbind", f"{queue.name} on {platform}", before=before)
    config = act.check()
    left = config.queue(queue.name).bindings(config)
    warning = "" if left else " It is shown nowhere now: its new tickets wait until you bind it."
    return f"Queue {queue.name} is no longer shown on {platform}.{warning}"


def set_(act: AdminAction) -> str:
    queue = _name(act, "queue set NAME KEY ...")
    if not act.words:
        raise TicketError("Usage:\n" + "\n".join(u for u in USAGE.splitlines() if " set " in u))
    key = act.words.pop(0).lower()
    setting = act.queue_setting(queue.name)
    if key in ("signature", "salutation"):
        field, value = _texts(act, queue, key, key)
    elif key == "autoresponse":
        if not act.words or act.words[0] not in ("new", "reopen"):
            raise TicketError(
                "Usage: queue set NAME autoresponse new|reopen [--lang CODE] TEXT|off"
            )
        field = "autoresponse_" + act.words.pop(0)
        field, value = _texts(act, queue, field, f"autoresponse {field[13:]}")
    elif key == "reminders":
        if act.words not in (["on"], ["off"]):
            raise TicketError("Usage: queue set NAME reminders on|off")
        field, value = "reminders", act.words[0] == "on"
    elif key == "language":
        if len(act.words) != 1 or not act.words[0].isalpha() or len(act.words[0]) > 3:
            raise TicketError("Usage: queue set NAME language CODE (like de)")
        field, value = "language", act.words[0].lower()
    else:
        raise TicketError(
            f"Unknown setting {key!r}: signature, salutation, autoresponse, reminders, language"
        )
    before = getattr(queue, field)
    setting[field] = value
    act.save_queue_setting(queue.name, setting)
    act.audit(f"queue.set.{field}", queue.name, before=_show(before), after=_show(value))
    act.check()
    return f"Queue {queue.name}: {field} is now {_show(value)}."


def _texts(act: AdminAction, queue: QueueConfig, field: str, what: str) -> tuple[str, Any]:
    words = act.words
    if not words:
        raise TicketError(f"Usage: queue set NAME {what} [--lang CODE] TEXT|off")
    language = (take_option(words, "--lang") or "*").lower()
    if language != "*" and not (language.isalpha() and len(language) <= 3):
        raise TicketError(f"--lang {language!r} is not a language code (like de)")
    if not words:
        raise TicketError(f"Usage: queue set NAME {what} [--lang CODE] TEXT|off")
    text = " ".join(words).replace("\\n", "\n")
    texts = dict(getattr(queue, field))
    if text.strip().lower() == "off":
        texts.pop(language, None)
    else:
        try:
            check_template(text, f"{field}.{language}")
        except ConfigError as exc:
            raise TicketError(str(exc)) from None
        texts[language] = text
    return field, texts


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_short(v)}" for k, v in sorted(value.items())) or "(none)"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


_RESETTABLE = {
    "signature": "signature",
    "salutation": "salutation",
    "autoresponse": "autoresponse_new",
    "autoresponse-new": "autoresponse_new",
    "autoresponse-reopen": "autoresponse_reopen",
    "reminders": "reminders",
    "language": "language",
    "addresses": "addresses",
    "rooms": "rooms",
    "pseudonymize": "pseudonymize",
}


def reset(act: AdminAction) -> str:
    """Forget what was set by command for one setting: ``bot.toml`` (or the parent) speaks
    again."""
    queue = _name(act, "queue reset NAME SETTING")
    if len(act.words) != 1 or act.words[0].lower() not in _RESETTABLE:
        raise TicketError(f"Usage: queue reset NAME {'|'.join(sorted(_RESETTABLE))}")
    setting = act.queue_setting(queue.name)
    if setting.get("origin") == "command":
        raise TicketError(
            f"Queue {queue.name} was added by command; it has no bot.toml values to go back to."
        )
    word = act.words[0].lower()
    keys = (
        ["matrix_room", "discord_channel", "console", "public_ok"]
        if word == "rooms"
        else ["autoresponse_new", "autoresponse_reopen"]
        if word == "autoresponse"
        else [_RESETTABLE[word]]
    )
    gone = [k for k in keys if k in setting]
    if not gone:
        raise TicketError(f"Queue {queue.name}: {word} was not changed by command.")
    before = {k: setting.pop(k) for k in gone}
    act.save_queue_setting(queue.name, setting or None)
    act.audit("queue.reset", f"{queue.name} {word}", before=str(before), after="bot.toml")
    act.check()
    return f"Queue {queue.name}: {word} is back to what bot.toml says."


def close(act: AdminAction) -> str:
    target_name = take_option(act.words, "--to")
    queue = _name(act, "queue close NAME --to OTHER")
    if target_name is None:
        raise TicketError("Say where its new mail goes: queue close NAME --to OTHER")
    target = act.queue(target_name)
    if target.name == queue.name:
        raise TicketError("A queue cannot pass its mail to itself.")
    if target.closed_to:
        raise TicketError(f"Queue {target.name} is itself closed to new mail.")
    setting = act.queue_setting(queue.name)
    setting["closed_to"] = target.name
    act.save_queue_setting(queue.name, setting)
    act.audit("queue.close", queue.name, before=queue.closed_to or "", after=target.name)
    act.check()
    return (
        f"Queue {queue.name} is closed to new mail: mail to {', '.join(queue.addresses)} "
        f"now opens tickets in {target.name}. Its tickets stay; follow-ups still reach them."
    )


def open_(act: AdminAction) -> str:
    queue = _name(act, "queue open NAME")
    setting = act.queue_setting(queue.name)
    setting["closed_to"] = None
    act.save_queue_setting(queue.name, setting)
    act.audit("queue.open", queue.name, before=queue.closed_to or "")
    act.check()
    return f"Queue {queue.name} takes new mail again."


def remove(act: AdminAction) -> str:
    target_name = take_option(act.words, "--to")
    queue = _name(act, "queue remove NAME [--to OTHER]")
    if queue.default:
        raise TicketError(f"Queue {queue.name} is the default queue; it cannot be removed.")
    subs = [q.name for q in act.config.queues if q.name.startswith(queue.name + "::")]
    if subs:
        raise TicketError(f"Remove its sub-queues first: {', '.join(subs)}.")
    open_count, closed = act.repo.queue_ticket_counts(queue.name)
    if open_count:
        raise TicketError(
            f"Queue {queue.name} has {open_count} ticket(s) not closed, so it cannot be removed. "
            f"Close it to new mail instead: queue close {queue.name} --to OTHER"
        )
    users = [r.title for r in act.config.rules if r.queue == queue.name]
    if users:
        raise TicketError(
            f"Rules send mail to {queue.name}: {', '.join(users)}. Change them first."
        )
    pointing = [q.name for q in act.config.queues if q.closed_to == queue.name]
    if pointing:
        raise TicketError(f"Closed queues pass their mail to {queue.name}: {', '.join(pointing)}.")
    moved = 0
    if closed:
        if target_name is None:
            raise TicketError(
                f"Queue {queue.name} has {closed} closed ticket(s); say which queue keeps them: "
                f"queue remove {queue.name} --to OTHER"
            )
        target = act.queue(target_name)
        if target.name == queue.name:
            raise TicketError("Name another queue to keep its closed tickets.")
        moved = act.repo.move_closed_tickets(queue.name, target.name)
    setting = act.queue_setting(queue.name)
    if setting.get("origin") == "command":
        act.save_queue_setting(queue.name, None)
    else:
        act.save_queue_setting(queue.name, {**setting, "removed": True})
    for subject in list(queue.access):
        act.repo.set_access(subject, queue.name, None, True, act.now, act.actor.user_id)
    act.audit(
        "queue.remove",
        queue.name + (f"; {moved} closed ticket(s) kept in {target_name}" if moved else ""),
        before=", ".join(queue.addresses),
    )
    act.check()
    note = (
        " It is still in bot.toml: remove it there too, or it stays removed by this command."
        if setting.get("origin") != "command"
        else ""
    )
    return (
        f"Queue {queue.name} removed."
        + (f" {moved} closed ticket(s) moved to {target_name}." if moved else "")
        + note
    )


_HANDLERS = {
    "list": list_queues,
    "info": info,
    "add": add,
    "rename": rename,
    "address": address,
    "bind": bind,
    "unbind": unbind,
    "set": set_,
    "reset": reset,
    "close": close,
    "open": open_,
    "remove": remove,
}
