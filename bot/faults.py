"""Crash points for the fault-injection tests.

``TICKETBOT_CRASH_AT=stored:37`` makes the process kill itself with SIGKILL the 37th
time it reaches the ``stored`` point (several as ``fetched:3,posted:12``). The tests
use it to crash the real bot at each named stage of intake and posting and prove
that nothing is lost or doubled. Without the variable a checkpoint is one check of
an empty dict.

Stages: ``fetched`` (a message's bytes are in memory), ``parsed`` (parsed, not yet
stored), ``stored`` (its ticket committed, not yet flagged on the server),
``flagged`` (flagged on the server, not yet recorded as done), ``posted`` (a chat
platform accepted a post, not yet recorded), ``sent`` (the SMTP server accepted a
reply, not yet recorded).

``TICKETBOT_HANG_AT`` takes the same form and makes the thread that reaches the point
stop there for good instead (on the event loop: the whole process stands still with its
connections open), for the watchdog's tests (:mod:`bot.watchdog`).
"""

from __future__ import annotations

import os
import signal
import time

STAGES = ("fetched", "parsed", "stored", "flagged", "posted", "sent")


def _plan(text: str) -> dict[str, int]:
    plan: dict[str, int] = {}
    for part in text.split(","):
        stage, _, count = part.strip().partition(":")
        if stage in STAGES and count.isdigit() and int(count) > 0:
            plan[stage] = int(count)
    return plan


_PLAN = _plan(os.environ.get("TICKETBOT_CRASH_AT", ""))
_HANG = _plan(os.environ.get("TICKETBOT_HANG_AT", ""))
_SEEN: dict[str, int] = {}
_SEEN_HANG: dict[str, int] = {}


def checkpoint(stage: str) -> None:
    """Die here, at once and without cleanup, if the plan says this is the moment (or
    stand still here for good, if the hang plan says so)."""
    if _HANG and stage in _HANG:
        _SEEN_HANG[stage] = _SEEN_HANG.get(stage, 0) + 1
        if _SEEN_HANG[stage] == _HANG[stage]:
            while True:
                time.sleep(3600)
    if not _PLAN or stage not in _PLAN:
        return
    _SEEN[stage] = _SEEN.get(stage, 0) + 1
    if _SEEN[stage] == _PLAN[stage]:
        os.kill(os.getpid(), signal.SIGKILL)
