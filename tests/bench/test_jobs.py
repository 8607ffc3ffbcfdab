"""Benchmark slots: inline and background runs share one limit; queued jobs are kept alive,
cancelled ones accounted for, and every place is given back."""

from __future__ import annotations

import asyncio

import pytest

from llm_gateway.bench import jobs as jobs_module
from llm_gateway.bench.jobs import Jobs
from llm_gateway.errors import TooManyJobs

pytestmark = pytest.mark.anyio


async def test_queued_jobs_beat_and_cancelled_ones_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "WAITING_BEAT_S", 0.02)
    jobs = Jobs(max_running=1, max_waiting=1)
    release = asyncio.Event()
    beats: list[str] = []
    cancelled: list[str] = []

    async def beat() -> None:
        beats.append("queued")

    async def cancel() -> None:
        cancelled.append("second")

    with jobs.reserve() as place:
        place.start("first", release.wait)
    await asyncio.sleep(0)  # the first takes the free slot
    with jobs.reserve() as place:
        place.start("second", release.wait, on_waiting=beat, on_cancel_queued=cancel)
    with pytest.raises(TooManyJobs):
        jobs.reserve()
    await asyncio.sleep(0.1)
    assert (jobs.running, jobs.queued) == (1, 1)
    # A waiting job keeps saying it is alive, so its status is not taken for a dead process's.
    assert len(beats) >= 2
    await jobs.shutdown()
    assert cancelled == ["second"] and len(jobs) == 0


async def test_inline_runs_hold_a_slot_and_are_refused_rather_than_queued() -> None:
    jobs = Jobs(max_running=1, max_waiting=1)
    async with jobs.inline():
        assert (jobs.running, jobs.queued) == (1, 0)
        with pytest.raises(TooManyJobs, match="background=true"):
            async with jobs.inline():
                pass
        with jobs.reserve() as place:  # a background job may still queue behind it
            place.start("queued", asyncio.Event().wait)
        await asyncio.sleep(0.01)
        assert (jobs.running, jobs.queued) == (1, 1)
    # The slot is the waiting job's: an inline run arriving now does not jump the queue.
    with pytest.raises(TooManyJobs):
        async with jobs.inline():
            pass
    await asyncio.sleep(0.01)
    assert (jobs.running, jobs.queued) == (1, 0)
    await jobs.shutdown()
    assert len(jobs) == 0


async def test_a_reservation_never_started_gives_its_place_back() -> None:
    jobs = Jobs(max_running=1, max_waiting=1)
    with pytest.raises(OSError, match="folder"), jobs.reserve():
        assert jobs.queued == 1
        raise OSError("the run folder could not be made")
    assert len(jobs) == 0
    jobs.reserve().__exit__(None, None, None)  # the place was free again
    assert len(jobs) == 0
