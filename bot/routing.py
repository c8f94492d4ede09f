"""Which queue a new mail belongs to, and which ticket a follow-up belongs to."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import date

from bot.config import QueueConfig
from bot.mail import InboundEmail

TICKET_TAG = re.compile(r"\[Ticket#\s*(\d{10,20})\]", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|wg|tr|antw)\s*(\[\d+\])?\s*:\s*)+", re.I)


def route_queue(email: InboundEmail, queues: Sequence[QueueConfig]) -> QueueConfig:
    """The queue of the first recipient (To, then Cc, then Delivered-To) that a queue owns.

    Mail to no known address goes to the default queue, so nothing is dropped; mail to
    a queue closed to new mail goes where its admin sent it.
    """
    by_address = {address: queue for queue in queues for address in queue.addresses}
    for recipient in email.recipients:
        queue = by_address.get(recipient.email.lower())
        if queue is not None:
            return _open_for_mail(queue, queues)
    return _open_for_mail(next(q for q in queues if q.default), queues)


def _open_for_mail(queue: QueueConfig, queues: Sequence[QueueConfig]) -> QueueConfig:
    """A queue closed to new mail passes it on to the queue its admin named."""
    seen = {queue.name}
    while queue.closed_to is not None:
        target = next((q for q in queues if q.name == queue.closed_to), None)
        if target is None or target.name in seen:
            break
        seen.add(target.name)
        queue = target
    return queue


def ticket_number_in_subject(subject: str, hooks: Sequence[str] = ()) -> str | None:
    """The number of the first ``[Ticket#N]`` tag, else of the first ``[<hook>N]`` tag
    for these other hooks (an imported OTRS desk's, whose requesters still use it)."""
    match = TICKET_TAG.search(subject)
    if match is None and hooks:
        match = _hook_tag(tuple(hooks)).search(subject)
    return match.group(1) if match else None


@functools.lru_cache(maxsize=8)
def _hook_tag(hooks: tuple[str, ...]) -> re.Pattern[str]:
    """Tags of other hooks; their numbers may be short (OTRS's AutoIncrement numbers)."""
    either = "|".join(re.escape(hook) for hook in hooks)
    return re.compile(rf"\[(?:{either})\s*(\d{{4,20}})\]", re.IGNORECASE)


def format_ticket_number(day: date, system_id: int, counter: int) -> str:
    """OTRS-style date-based numbers: YYYYMMDD + two-digit system id + daily counter.

    Volunteers and requesters can read a ticket's day from its number, and two
    installations with different system ids never hand out the same number.
    """
    return f"{day:%Y%m%d}{system_id:02d}{counter:06d}"


def reply_subject(number: str, subject: str) -> str:
    """``Re: [Ticket#N] subject`` without piling up Re: prefixes or repeating the tag."""
    clean = TICKET_TAG.sub("", subject)
    clean = _REPLY_PREFIX.sub("", clean).strip() or "(no subject)"
    return f"Re: [Ticket#{number}] {clean}"
