"""Background benchmark jobs: a few run at once, the rest wait their turn as "queued".

Status and progress live in each run's folder (store.py), so any worker can answer for a job;
this object only owns the asyncio tasks of the jobs this process started. On shutdown they
are cancelled, which writes their partial results and marks them interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from llm_gateway.errors import TooManyJobs

logger = logging.getLogger("llm_gateway.bench")

WAITING_BEAT_S = 5.0


class Jobs:
    def __init__(self, *, max_running: int, max_waiting: int | None = None) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._max_jobs = max_running + (max_waiting if max_waiting is not None else max_running)
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.running = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def check_room(self) -> None:
        """Raise TooManyJobs unless one more job may be submitted."""
        if len(self._tasks) >= self._max_jobs:
            raise TooManyJobs(
                f"{len(self._tasks)} benchmark jobs are already running or queued; wait for one "
                "to finish (GATEWAY_BENCH_MAX_JOBS)"
            )

    @property
    def queued(self) -> int:
        return len(self._tasks) - self.running

    def submit(
        self,
        job_id: str,
        work: Callable[[], Awaitable[Any]],
        *,
        on_waiting: Callable[[], None] | None = None,
        on_cancel_queued: Callable[[], None] | None = None,
    ) -> None:
        """Start `work` when a slot is free; raise TooManyJobs when the queue is full.
        `on_waiting` runs every few seconds while the job waits for a slot (a heartbeat, so
        a queued job is not taken for dead); `on_cancel_queued` runs if the job is cancelled
        before it ever started."""
        self.check_room()

        async def run() -> None:
            started = False
            try:
                while True:
                    try:
                        await asyncio.wait_for(self._slots.acquire(), timeout=WAITING_BEAT_S)
                        break
                    except TimeoutError:
                        if on_waiting is not None:
                            on_waiting()
                try:
                    started = True
                    self.running += 1
                    try:
                        await work()
                    finally:
                        self.running -= 1
                finally:
                    self._slots.release()
            except asyncio.CancelledError:
                if not started and on_cancel_queued is not None:
                    on_cancel_queued()
                raise

        task = asyncio.create_task(run(), name=f"benchmark-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda t: self._done(job_id, t))

    def _done(self, job_id: str, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("benchmark job %s failed", job_id, exc_info=task.exception())

    async def shutdown(self) -> None:
        """Cancel every job and wait until each has written its partial results."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
