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

Any process can ask a run to stop (`cancel`: a `cancel` file in the run folder); the process
that runs it, inline or in the background, sees it within `CANCEL_POLL_S` (`cancellable`) and
stops it the same way, so the run ends as interrupted with what it measured.

This is the in-process queue: one process, no extra service. With GATEWAY_REDIS_URL the same
interface (`JobQueue`) is served by `bench/queue.py` for the whole cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Protocol, TypeVar

from llm_gateway.bench.prompts import Prompt, PromptFile
from llm_gateway.bench.runner import BenchConfig
from llm_gateway.bench.store import RunDir
from llm_gateway.errors import TooManyJobs

logger = logging.getLogger("llm_gateway.bench")

T = TypeVar("T")

WAITING_BEAT_S = 5.0
CANCEL_POLL_S = 0.25
HINT = "wait for one to finish (GATEWAY_BENCH_MAX_JOBS)"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a background job runs, as plain data (a job may run in another replica)."""

    config: BenchConfig
    prompts: PromptFile

    def to_json(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "prompts": asdict(self.prompts)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        def prompts(items: list[dict[str, Any]]) -> tuple[Prompt, ...]:
            return tuple(
                Prompt(p["text"], tuple(p["messages"]), int(p.get("line", 0))) for p in items
            )

        config = dict(data["config"])
        config["models"] = tuple(config["models"])
        config["prompts"] = prompts(config["prompts"])
        file = data["prompts"]
        return cls(
            BenchConfig(**config),
            PromptFile(file["name"], file["sha256"], prompts(file["prompts"])),
        )


# Runs one job's benchmark into its run folder (the runtime's pipeline, with its client).
Execute = Callable[[RunDir, JobSpec], Awaitable[Any]]


class Admission(Protocol):
    async def submit(self, run: RunDir, spec: JobSpec) -> None: ...


class JobQueue(Protocol):
    """The benchmark slots and the background jobs: this process's (`Jobs`) or the
    cluster's (`bench/queue.py`). `running` and `queued` count this process's benchmarks."""

    running: int
    queued: int

    def inline(self) -> AbstractAsyncContextManager[None]: ...

    def admit(self) -> AbstractAsyncContextManager[Admission]: ...

    async def cancel(self, run: RunDir) -> None: ...

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


async def cancellable(run: RunDir, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run `work` in this task, cancelling it when someone asks the run to stop; None then
    (the run has ended as interrupted), else what `work` returned."""
    current = asyncio.current_task()
    assert current is not None
    issued = 0

    async def watch() -> None:
        nonlocal issued
        while not await asyncio.to_thread(run.cancel_requested):
            await asyncio.sleep(CANCEL_POLL_S)
        # Again until it lands: on Python 3.11 `asyncio.wait_for` (redis-py uses it to send a
        # command) drops a cancellation that arrives as the awaited thing completes.
        while True:
            issued += 1
            current.cancel()
            await asyncio.sleep(CANCEL_POLL_S)

    watcher = asyncio.create_task(watch(), name=f"cancel-watch-{run.id}")
    try:
        return await work()
    except asyncio.CancelledError:
        if issued:
            for _ in range(issued):
                current.uncancel()
            if current.cancelling() == 0:  # no one else (a shutdown, say) asked as well
                logger.info("benchmark %s stopped: cancelled on request", run.id)
                return None
        raise
    finally:
        watcher.cancel()


class Jobs:
    """The in-process job queue: slots in this process, background jobs as its tasks."""

    def __init__(
        self,
        *,
        max_running: int,
        max_waiting: int | None = None,
        execute: Execute | None = None,
        on_change: Callable[[int, int], None] | None = None,
        waiting_beat: float | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._max_jobs = max_running + (max_running if max_waiting is None else max_waiting)
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._execute = execute
        self._on_change = on_change
        self._beat = waiting_beat
        self._running = 0  # benchmarks holding a slot, inline or background
        self._queued = 0  # background jobs admitted and not yet holding a slot

    @property
    def running(self) -> int:
        return self._running

    @running.setter
    def running(self, value: int) -> None:
        self._running = value
        if self._on_change is not None:
            self._on_change(self._running, self._queued)

    @property
    def queued(self) -> int:
        return self._queued

    @queued.setter
    def queued(self, value: int) -> None:
        self._queued = value
        if self._on_change is not None:
            self._on_change(self._running, self._queued)

    async def start(self) -> None:
        return None

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[Admission]:
        """A queue place for one background job (TooManyJobs when there is none): make its
        run folder in the block, then `submit` it."""
        with self.reserve() as place:
            yield _LocalAdmission(self, place)

    async def cancel(self, run: RunDir) -> None:
        """Ask the run to stop, wherever it runs; at once when it is this process's job."""
        await asyncio.to_thread(run.request_cancel)
        task = self._tasks.get(run.id)
        if task is not None:
            task.cancel()

    def __len__(self) -> int:
        return self.running + self.queued

    @asynccontextmanager
    async def inline(self) -> AsyncIterator[None]:
        """Hold a slot while the block runs an inline benchmark; TooManyJobs at once if none
        is free (or background jobs are waiting for one)."""
        if self._slots.locked():
            raise TooManyJobs(
                f"{self.running} benchmark(s) running and {self.queued} queued use every slot; "
                f"run this one with ?background=true to queue it, or {HINT}"
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
                f"{self.running} benchmark(s) running and {self.queued} queued; {HINT}"
            )
        self.queued += 1
        return Reservation(self)

    def _start(
        self,
        job_id: str,
        work: Callable[[], Awaitable[Any]],
        on_waiting: Callable[[], Awaitable[None]] | None,
        on_cancel_queued: Callable[[], Awaitable[None]] | None,
        run_dir: RunDir | None = None,
    ) -> None:
        async def run() -> None:
            started = False
            try:
                while True:
                    # asyncio.timeout, not wait_for: on 3.11, wait_for can swallow a cancel that
                    # arrives as the slot is granted, and the job would then never stop.
                    try:
                        async with asyncio.timeout(self._beat or WAITING_BEAT_S):
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

        async def watched() -> None:
            if run_dir is None:
                await run()
            else:
                await cancellable(run_dir, run)

        task = asyncio.create_task(watched(), name=f"benchmark-{job_id}")
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
        run: RunDir | None = None,
    ) -> None:
        """Run `work` once a slot is free. `on_waiting` runs every few seconds while the job
        waits (a heartbeat, so a queued job is not taken for dead); `on_cancel_queued` runs if
        it is cancelled before it ever started. With `run`, a request to stop the run (from
        any process) cancels the job, queued or running."""
        if not self._held:
            raise RuntimeError("this reservation was already used or given back")
        self._held = False
        self._jobs._start(job_id, work, on_waiting, on_cancel_queued, run)


class _LocalAdmission:
    def __init__(self, jobs: Jobs, place: Reservation) -> None:
        self._jobs = jobs
        self._place = place

    async def submit(self, run: RunDir, spec: JobSpec) -> None:
        execute = self._jobs._execute
        if execute is None:
            raise RuntimeError("these Jobs were made without `execute`")
        total = spec.config.total

        async def work() -> None:
            await execute(run, spec)

        def queued() -> Awaitable[None]:  # a heartbeat while it waits for a slot
            return asyncio.to_thread(run.write_status, "queued", done=0, total=total)

        def never_started() -> Awaitable[None]:
            return asyncio.to_thread(run.write_status, "interrupted", done=0, total=total)

        self._place.start(
            run.id,
            work,
            on_waiting=queued,
            on_cancel_queued=never_started,
            run=run,
        )
