"""A worker told to stop in the same turn as it is woken stops (CPython gh-86296).

On Python 3.11 ``asyncio.wait_for`` returns the result when a cancellation arrives as the
awaited event is set, and the worker loops on. An outbox worker did that at a test's
shutdown, and the task group waiting for it hung the CI run for good. These tests make
that turn happen on purpose: the event is set, the wait finishes, then the task is
cancelled before it runs again.
"""

from __future__ import annotations

import asyncio

from bot.waiting import wait_set
from tests.core.conftest import Desk


async def _cancelled_in_time(task: asyncio.Task[None]) -> bool:
    try:
        async with asyncio.timeout(3):
            await task
    except asyncio.CancelledError:
        return True
    except TimeoutError:
        return False  # still running: the cancellation was swallowed
    return False


async def test_wait_set_passes_a_cancel_that_arrives_with_the_event() -> None:
    event = asyncio.Event()
    rounds = 0

    async def worker() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            event.clear()
            await wait_set(event, 5)

    task = asyncio.create_task(worker())
    await asyncio.sleep(0.05)
    event.set()
    await asyncio.sleep(0)  # the wait is over; the worker has not run yet
    task.cancel()
    assert await _cancelled_in_time(task), f"the worker went on (round {rounds})"


async def test_wait_set_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.05) is False
    event.set()
    assert await wait_set(event, 0.05) is True


async def test_an_outbox_worker_woken_and_cancelled_at_once_stops(desk: Desk) -> None:
    task = asyncio.create_task(desk.dispatcher.run_channel("matrix"))
    await asyncio.sleep(0.3)  # drained (nothing to do), now waiting to be woken
    desk.dispatcher.wake()
    await asyncio.sleep(0)
    task.cancel()
    assert await _cancelled_in_time(task), "the outbox worker swallowed its cancellation"


async def test_many_wake_ups_and_one_cancel(desk: Desk) -> None:
    """Wake-ups all the time (a busy desk) and a stop at any of them."""
    for _ in range(20):
        task = asyncio.create_task(desk.dispatcher.run_channel("matrix"))
        await asyncio.sleep(0.02)
        for _ in range(3):
            desk.dispatcher.wake()
            await asyncio.sleep(0)
        task.cancel()
        assert await _cancelled_in_time(task)
