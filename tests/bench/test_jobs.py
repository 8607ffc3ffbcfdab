"""Background jobs: bounded, queued jobs kept alive, cancelled ones accounted for."""

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
    jobs.submit("first", release.wait)
    jobs.submit(
        "second",
        release.wait,
        on_waiting=lambda: beats.append("queued"),
        on_cancel_queued=lambda: cancelled.append("second"),
    )
    with pytest.raises(TooManyJobs):
        jobs.submit("third", release.wait)
    await asyncio.sleep(0.1)
    assert (jobs.running, jobs.queued) == (1, 1)
    # A waiting job keeps saying it is alive, so its status is not taken for a dead process's.
    assert len(beats) >= 2
    await jobs.shutdown()
    assert cancelled == ["second"] and len(jobs) == 0
