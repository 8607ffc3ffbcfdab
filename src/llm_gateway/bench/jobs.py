"""Every benchmark the process runs, inline or in the background, counts against one limit.

At most `max_running` benchmarks measure at once (GATEWAY_BENCH_MAX_JOBS), and at most
`max_waiting` more background jobs wait for a slot as "queued". An inline run has a client
waiting for its answer, so it never queues: it takes a free slot at once or is refused
(TooManyJobs, 429), also when background jobs are already waiting, so they keep their turn.
Both kinds are counted in `running` and `queued` (the `llm_gateway_benchmark_jobs` metric).

Status and progress live in each run's folder (store.py), so any worker can answer for a run;
this object owns the slots, and the tasks of this process's background jobs. On shutdown those
are cancelled, which writes their partial results and marks them interrupted. An inline run
is its request's own task, cancelled when its client leaves (disconnect.py), to the same end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from llm_gateway.errors import TooManyJobs

logger = logging.getLogger("llm_gateway.bench")

WAITING_BEAT_S = 5.0
_HINT = "wait for one to finish (GATEWAY_BENCH_MAX_JOBS)"


class Jobs:
    def __init__(self, *, max_running: int, max_waiting: int | None = None) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._max_jobs = max_running + (max_running if max_waiting is None else max_waiting)
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.running = 0  # benchmarks holding a slot, inline or background
        self.queued = 0  # background jobs admitted and not yet holding a slot

    def __len__(self) -> int:
        return self.running + self.queued

    @asynccontextmanager
    async def inline(self) -> AsyncIterator[None]:
        """Hold a slot while the block runs an inline benchmark; TooManyJobs at once if none
        is free (or background jobs are waiting for one)."""
        if self._slots.locked():
            raise TooManyJobs(
                f"{self.running} benchmark(s) running and {self.queued} queued use every slot; "
                f"run this one with ?background=true to queue it, or {_HINT}"
            )
        await self._slots.acquire()  # free, so this does not wait
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()

    def reserve(self) -> Reservation:
        """A queue place for one background job, taken now (before anything awaits, so two
        requests cannot both take the last one), or TooManyJobs. Use it as a `with` block and
        `start` the job in it; a place not started by the end of the block is given back."""
        if len(self) >= self._max_jobs:
            raise TooManyJobs(
                f"{self.running} benchmark(s) running and {self.queued} queued; {_HINT}"
            )
        self.queued += 1
        return Reservation(self)

    def _start(
        self,
        job_id: str,
        work: Callable[[], Awaitable[Any]],
        on_waiting: Callable[[], Awaitable[None]] | None,
        on_cancel_queued: Callable[[], Awaitable[None]] | None,
    ) -> None:
        async def run() -> None:
            started = False
            try:
                while True:
                    # asyncio.timeout, not wait_for: on 3.11, wait_for can swallow a cancel that
                    # arrives as the slot is granted, and the job would then never stop.
                    try:
                        async with asyncio.timeout(WAITING_BEAT_S):
                            await self._slots.acquire()
                        break
                    except TimeoutError:
                        if on_waiting is not None:
                            await on_waiting()
                started = True
                self.queued -= 1
                self.running += 1
                try:
                    await work()
                finally:
                    self.running -= 1
                    self._slots.release()
            except asyncio.CancelledError:
                if not started and on_cancel_queued is not None:
                    await on_cancel_queued()
                raise
            finally:
                if not started:
                    self.queued -= 1

        task = asyncio.create_task(run(), name=f"benchmark-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda t: self._done(job_id, t))

    def _done(self, job_id: str, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("benchmark job %s failed", job_id, exc_info=task.exception())

    async def shutdown(self) -> None:
        """Cancel every background job and wait until each has written its partial results."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Reservation:
    """A background job's place in the queue, from admission until its task takes it over."""

    def __init__(self, jobs: Jobs) -> None:
        self._jobs = jobs
        self._held = True

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._held:  # never started (its run folder could not be made, say)
            self._held = False
            self._jobs.queued -= 1

    def start(
        self,
        job_id: str,
        work: Callable[[], Awaitable[Any]],
        *,
        on_waiting: Callable[[], Awaitable[None]] | None = None,
        on_cancel_queued: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run `work` once a slot is free. `on_waiting` runs every few seconds while the job
        waits (a heartbeat, so a queued job is not taken for dead); `on_cancel_queued` runs if
        it is cancelled before it ever started."""
        if not self._held:
            raise RuntimeError("this reservation was already used or given back")
        self._held = False
        self._jobs._start(job_id, work, on_waiting, on_cancel_queued)
