"""Waiting with a time limit without losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives in the same
turn of the event loop as the awaited thing finishing (CPython gh-86296, fixed in 3.12):
it returns the result and the task carries on as if never cancelled. A worker looping
on ``wait_for(event.wait(), ...)`` then never ends, and the task group waiting for it
at shutdown waits for ever. That hung an outbox worker in a test run (found with a dump
of the tasks of the stuck process). ``asyncio.timeout`` does not have the flaw: use it,
through :func:`wait_set` for events, in every loop that may be cancelled.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """True once ``event`` is set, False after ``timeout`` seconds; a cancellation always
    propagates."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
