"""`Deadlines`: asyncio.timeout's behaviour for many blocks with one timer."""

from __future__ import annotations

import asyncio

import pytest

from llm_gateway.upstream.deadlines import Deadlines

pytestmark = pytest.mark.anyio


async def test_a_block_past_its_deadline_raises_timeout_and_the_task_goes_on() -> None:
    deadlines = Deadlines(0.02)
    with pytest.raises(TimeoutError), deadlines():
        await asyncio.Event().wait()
    await asyncio.sleep(0)  # the cancellation was the block's alone: the task is not cancelled
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_that_ends_in_time_is_left_alone_afterwards() -> None:
    deadlines = Deadlines(0.05)
    with deadlines():
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # past the departed block's deadline: nothing is cancelled


async def test_a_block_entered_again_and_again_is_cut_only_when_one_entry_waits_too_long() -> None:
    """A stream's reads: one block, entered for every read; reads that keep coming in time
    are never cut, however long the stream lasts."""
    read = Deadlines(0.05)()
    for _ in range(20):  # 20 reads of 10 ms: 200 ms in all, four deadlines' worth
        with read:
            await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError), read:
        await asyncio.sleep(1.0)
    with read:  # and again after a timeout
        await asyncio.sleep(0)


async def test_only_the_overdue_blocks_are_cancelled() -> None:
    """A block entered later has a later deadline: the timer, armed for the oldest, is armed
    again for it, and it may run past the first one's deadline."""
    deadlines = Deadlines(0.3)
    first_timed_out = asyncio.Event()

    async def first() -> None:
        try:
            with deadlines():
                await asyncio.Event().wait()
        except TimeoutError:
            first_timed_out.set()

    async def second() -> str:
        await asyncio.sleep(0.15)
        with deadlines():
            await first_timed_out.wait()  # until after the first one's deadline
        return "finished"

    results = await asyncio.gather(first(), second())
    assert results[1] == "finished"


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(10)

    async def blocked() -> None:
        with deadlines():
            await asyncio.Event().wait()

    task = asyncio.create_task(blocked())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_one_deadlines_serves_a_new_event_loop() -> None:
    """A client can outlive an event loop (one `asyncio.run` after another)."""
    deadlines = Deadlines(0.02)

    async def overdue() -> None:
        with pytest.raises(TimeoutError), deadlines():
            await asyncio.sleep(1)

    asyncio.run(overdue())
    asyncio.run(overdue())
