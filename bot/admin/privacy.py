"""``privacy ...``: check no queue is shown where the public can read, and pseudonyms."""

from __future__ import annotations

from bot.admin.action import AdminAction
from bot.domain import TicketError

USAGE = """\
privacy check                            (every queue's rooms: none may be public)
privacy pseudonymize QUEUE on|off        (chat shows requesters as pseudonyms)"""


def run(act: AdminAction) -> str:
    if not act.words:
        raise TicketError("Usage:\n" + USAGE)
    sub = act.words.pop(0).lower()
    if sub == "check":
        return check(act)
    if sub in ("pseudonymize", "pseudonymise"):
        return pseudonymize(act)
    raise TicketError(f"Unknown privacy command {sub!r}. Usage:\n{USAGE}")


def check(act: AdminAction) -> str:
    """Uses the room checks run before the transaction (see CommandService._admin)."""
    problems: list[str] = []
    fine = 0
    for queue in act.config.queues:
        for platform, room in queue.bindings(act.config).items():
            result = act.room_checks.get((platform, room))
            if result is None or not result.public:
                fine += 1
                continue
            allowed = " (allowed by an admin: --public-ok)" if queue.public_ok else ""
            problems.append(
                f"⚠ {queue.name}: {platform} room {room} is public: {result.reason}{allowed}"
            )
    act.audit("privacy.check", f"{fine} private, {len(problems)} public")
    if not problems:
        return f"Privacy check: all {fine} queue room(s) are private."
    return "Privacy check:\n" + "\n".join(problems) + f"\n{fine} other room(s) are private."


def pseudonymize(act: AdminAction) -> str:
    words = act.words
    if len(words) == 1 and words[0].lower() in ("on", "off") and act.room is not None:
        names = [
            q.name
            for q in act.config.queues
            if q.bindings(act.config).get(act.platform) == act.room
        ]
        if len(names) != 1:
            raise TicketError("Usage: privacy pseudonymize QUEUE on|off")
        words.insert(0, names[0])
    if len(words) != 2 or words[1].lower() not in ("on", "off"):
        raise TicketError("Usage: privacy pseudonymize QUEUE on|off")
    queue = act.queue(words[0])
    on = words[1].lower() == "on"
    setting = act.queue_setting(queue.name)
    setting["pseudonymize"] = on
    act.save_queue_setting(queue.name, setting)
    act.audit(
        "privacy.pseudonymize",
        queue.name,
        before="on" if queue.pseudonymize else "off",
        after="on" if on else "off",
    )
    act.check()
    if on:
        return (
            f"Queue {queue.name}: chat now shows requesters as pseudonyms and masks addresses "
            "and phone numbers in new posts. reveal shows one address to you alone."
        )
    return f"Queue {queue.name}: chat shows requesters' names and addresses again."
