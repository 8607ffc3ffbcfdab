"""Benchmark jobs for a cluster: one queue and one limit for every worker and replica, in Redis.

The job queue is SAQ (docs/scale-out.md says why): `POST /benchmark?background=true` enqueues
a job (its key is the run id; its arguments the config and the prompts), and every replica
runs a SAQ worker that takes jobs from the queue. What SAQ gives us: the queue itself,
aborting a queued job, a heartbeat per job (`job.update()`), and the sweep that finds jobs
whose heartbeat stopped (their replica died) and ends them as aborted.

What SAQ does not have is a limit for the whole cluster (its concurrency is per worker), so
the GATEWAY_BENCH_MAX_JOBS slots are Redis locks (redis-py's `Lock`), `<prefix>:bench:slot:<i>`:
a benchmark, inline or background, runs while it holds one. A job a worker has taken waits
for a free slot as "queued"; a slot not renewed for GATEWAY_BENCH_STALE_AFTER seconds (its
replica died) is free again. Admission (the queue's length limit) is decided under a short
lock, `<prefix>:bench:admit`, so two replicas cannot both take the last place.

Status and progress stay in the run folder, which every replica shares (store.py): any
replica answers for any run. A job whose replica dies mid-run is `interrupted` within
GATEWAY_BENCH_STALE_AFTER (its heartbeat stops), never resumed: a benchmark measures, and a
second half run by another process at another time would not measure the same thing.

When Redis cannot be reached, no benchmark starts (503 `shared_state_unavailable`: the one
limit cannot be checked); running ones go on, and the status routes keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio.lock import Lock
from redis.exceptions import LockError
from saq import Queue, Worker
from saq.job import Status
from saq.queue.redis import RedisQueue

from llm_gateway.bench.documents import ACTIVE
from llm_gateway.bench.jobs import HINT, Admission, Execute, JobSpec, cancellable
from llm_gateway.bench.store import RunDir, RunStore
from llm_gateway.errors import SharedStateUnavailable, TooManyJobs
from llm_gateway.shared.redis import REDIS_FAILURES, RedisLink

logger = logging.getLogger("llm_gateway.bench")
# SAQ's own INFO and WARNING lines (each job processed, tasks cancelled on shutdown) would go
# to stderr outside the gateway's log; its errors still do.
logging.getLogger("saq").setLevel(logging.ERROR)

JOB = "benchmark"
SLOT_POLL_S = 0.5
_DEQUEUE_WAIT_S = 1.0
_LOCK_FAILURES: tuple[type[Exception], ...] = (LockError, *REDIS_FAILURES)
_UNAVAILABLE = (
    "Benchmarks count against one limit for the whole cluster, kept in Redis "
    "(GATEWAY_REDIS_URL), which cannot be reached now; try again shortly."
)


class _Queue(RedisQueue):
    """SAQ's Redis queue, quiet while Redis is down (the link logs that once): its worker's
    loops would otherwise spin and log a traceback a second. Waiting on a job's status polls
    (SAQ's generic way) instead of a pub/sub connection whose reader loops, logging, when
    Redis goes away."""

    def __init__(self, link: RedisLink, name: str) -> None:
        super().__init__(link.make_client(_DEQUEUE_WAIT_S + 2 * link.timeout), name=name)
        self.link = link

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Any:
        if self.link.healthy:
            try:
                return await super().dequeue(timeout, poll_interval)
            except REDIS_FAILURES as exc:
                self.link.failed(exc, "taking a benchmark job")
        await asyncio.sleep(SLOT_POLL_S)
        return None

    async def schedule(self, lock: int = 1) -> list[str]:
        return []  # nothing is scheduled for later

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        if not self.link.healthy:
            return []
        try:
            return await super().sweep(lock, abort)
        except REDIS_FAILURES as exc:
            self.link.failed(exc, "sweeping dead benchmark jobs")
            return []

    async def write_worker_info(self, worker_id: str, info: Any, ttl: int) -> None:
        if self.link.healthy:
            with contextlib.suppress(*REDIS_FAILURES):
                await super().write_worker_info(worker_id, info, ttl)

    async def listen(
        self,
        job_keys: Any,
        callback: Any,
        timeout: float | None = 10,
        poll_interval: float = 0.5,
    ) -> None:
        await Queue.listen(self, job_keys, callback, timeout, poll_interval)

    async def jobs(self, job_keys: Any) -> list[Any]:
        if not self.link.healthy:
            return []
        try:
            return await super().jobs(job_keys)
        except REDIS_FAILURES as exc:
            self.link.failed(exc, "reading benchmark jobs")
            return []


class _Worker(Worker):  # type: ignore[type-arg]
    SIGNALS = []  # noqa: RUF012 (uvicorn's signal handlers stay in charge of the process)


class RedisJobs:
    """The `JobQueue` of a cluster (see the module). `running` and `queued` count this
    process's benchmarks (the metrics of each process add up)."""

    def __init__(
        self,
        link: RedisLink,
        *,
        runs: RunStore,
        execute: Execute,
        max_running: int,
        max_waiting: int | None = None,
        stale_after: float = 30.0,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        self._link = link
        self._runs = runs
        self._execute = execute
        self._max_jobs = max_running + (max_running if max_waiting is None else max_waiting)
        self._ttl = stale_after
        self._slot_names = [link.key("bench", "slot", str(i)) for i in range(max_running)]
        self._admit_name = link.key("bench", "admit")
        self._queue = _Queue(link, name=link.key("bench"))
        heartbeat = max(1, round(stale_after))
        self._heartbeat = heartbeat
        self._worker = _Worker(
            self._queue,
            functions=[(JOB, self._job)],
            concurrency=max_running,
            dequeue_timeout=_DEQUEUE_WAIT_S,
            timers={"schedule": 3600, "worker_info": 10, "sweep": heartbeat, "abort": 1},
            cancellation_hard_deadline_s=30.0,
        )
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self.running = 0
        self.queued = 0

    def _changed(self, running: int = 0, queued: int = 0) -> None:
        self.running += running
        self.queued += queued
        if self._on_change is not None:
            self._on_change(self.running, self.queued)

    async def start(self) -> None:
        await self._queue.connect()
        self._task = asyncio.create_task(self._worker.start(), name="benchmark-worker")

    async def shutdown(self) -> None:
        """Stop taking jobs; this process's running jobs are cancelled and write what they
        measured (interrupted)."""
        await self._worker.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*REDIS_FAILURES):
            await self._queue.disconnect()

    # --- the limit --------------------------------------------------------------------------

    def _require_redis(self) -> None:
        if not self._link.healthy:
            raise SharedStateUnavailable(_UNAVAILABLE)

    async def _counts(self) -> tuple[int, int]:
        """Benchmarks running in the cluster (holding a slot), and jobs waiting (queued, or
        taken by a worker and waiting for a slot)."""
        try:
            async with asyncio.timeout(self._link.timeout * 4):
                holders = await self._link.client.mget(self._slot_names)
                active = await self._queue.count("active")
                queued = await self._queue.count("queued")
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "counting benchmarks")
            raise SharedStateUnavailable(_UNAVAILABLE) from None
        inline = sum(1 for h in holders if h is not None and h.startswith(b"inline:"))
        jobs = sum(1 for h in holders if h is not None and h.startswith(b"job:"))
        return inline + jobs, queued + max(0, active - jobs)

    async def _take_slot(self, token: str) -> Lock | None:
        for name in self._slot_names:
            lock = self._link.client.lock(
                name, timeout=self._ttl, blocking=False, thread_local=False
            )
            try:
                async with asyncio.timeout(self._link.timeout):
                    if await lock.acquire(token=token):
                        return lock
            except REDIS_FAILURES as exc:
                self._link.failed(exc, "taking a benchmark slot")
                return None
        return None

    async def _keep(self, slot: Lock, beat: Callable[[], Any] | None = None) -> None:
        """Renew a held slot (and the job's heartbeat) until cancelled."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                async with asyncio.timeout(self._link.timeout * 4):
                    await slot.extend(self._ttl, replace_ttl=True)
                    if beat is not None:
                        await beat()
            except _LOCK_FAILURES as exc:
                self._link.failed(exc, "renewing a benchmark slot")

    async def _give_back(self, slot: Lock) -> None:
        with contextlib.suppress(*_LOCK_FAILURES):
            async with asyncio.timeout(self._link.timeout * 4):
                await slot.release()

    @contextlib.asynccontextmanager
    async def inline(self) -> AsyncIterator[None]:
        """A slot for an inline run, or at once TooManyJobs (also when jobs are waiting for
        one: they keep their turn)."""
        self._require_redis()
        running, waiting = await self._counts()
        if waiting:
            raise TooManyJobs(
                f"{running} benchmark(s) running and {waiting} waiting in the cluster; run "
                f"this one with ?background=true to queue it, or {HINT}"
            )
        slot = await self._take_slot(f"inline:{os.urandom(8).hex()}")
        if slot is None:
            self._require_redis()
            raise TooManyJobs(
                f"{running} benchmark(s) running in the cluster use every slot; run this one "
                f"with ?background=true to queue it, or {HINT}"
            )
        self._changed(running=1)
        keeper = asyncio.create_task(self._keep(slot))
        try:
            yield
        finally:
            keeper.cancel()
            self._changed(running=-1)
            await self._give_back(slot)

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[Admission]:
        self._require_redis()
        lock = self._link.client.lock(
            self._admit_name, timeout=10, blocking_timeout=2, thread_local=False
        )
        try:
            async with asyncio.timeout(2 + self._link.timeout):
                held = await lock.acquire()
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "admitting a benchmark job")
            raise SharedStateUnavailable(_UNAVAILABLE) from None
        if not held:
            raise SharedStateUnavailable("The benchmark queue is busy; try again shortly.")
        try:
            running, waiting = await self._counts()
            if running + waiting >= self._max_jobs:
                raise TooManyJobs(
                    f"{running} benchmark(s) running and {waiting} queued in the cluster; {HINT}"
                )
            yield _Admission(self)
        finally:
            with contextlib.suppress(*_LOCK_FAILURES):
                async with asyncio.timeout(self._link.timeout):
                    await lock.release()

    async def _enqueue(self, run: RunDir, spec: JobSpec) -> None:
        try:
            async with asyncio.timeout(self._link.timeout * 4):
                await self._queue.enqueue(
                    JOB,
                    key=run.id,
                    run_id=run.id,
                    spec=spec.to_json(),
                    timeout=0,  # a benchmark takes as long as it takes; its heartbeat is the bound
                    heartbeat=self._heartbeat,
                    retries=1,
                    ttl=86_400,
                )
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "queueing a benchmark job")
            await asyncio.to_thread(
                run.write_status, "failed", done=0, total=spec.config.total, error=_UNAVAILABLE
            )
            raise SharedStateUnavailable(_UNAVAILABLE) from None

    # --- cancelling -------------------------------------------------------------------------

    async def cancel(self, run: RunDir) -> None:
        """Ask the run to stop: whoever runs it sees the request within a second; a job still
        in the queue is taken out of it (SAQ's abort) and ends as interrupted at once."""
        await asyncio.to_thread(run.request_cancel)
        if not self._link.healthy:
            return  # a worker taking it later sees the request before it starts
        try:
            async with asyncio.timeout(self._link.timeout * 4):
                job = await self._queue.job(run.id)
                if job is None or job.status != Status.QUEUED:
                    return
                await self._queue.abort(job, "cancelled")
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "cancelling a benchmark job")
            return
        status = await asyncio.to_thread(run.status)
        total = status.progress.total if status.progress else 0
        await asyncio.to_thread(run.write_status, "interrupted", done=0, total=total)

    # --- running a job (in whichever replica's worker took it) ------------------------------

    async def _job(self, ctx: dict[str, Any], *, run_id: str, spec: dict[str, Any]) -> None:
        job = ctx["job"]
        run = self._runs.get(run_id)
        if run is None:
            return  # removed (retention) before it ran
        status = await asyncio.to_thread(run.status)
        if status.status not in ACTIVE:
            return  # it has ended already (cancelled, or interrupted and then re-queued)
        job_spec = JobSpec.from_json(spec)
        total = job_spec.config.total
        started = False
        self._changed(queued=1)

        async def beat() -> None:
            await job.update()

        async def body() -> None:
            nonlocal started
            token = f"job:{run_id}:{os.urandom(4).hex()}"
            last_beat = time.monotonic()
            while (slot := await self._take_slot(token)) is None:
                if time.monotonic() - last_beat >= self._ttl / 3:
                    last_beat = time.monotonic()
                    await asyncio.to_thread(run.write_status, "queued", done=0, total=total)
                    with contextlib.suppress(*REDIS_FAILURES):
                        await beat()
                await asyncio.sleep(SLOT_POLL_S)
            started = True
            self._changed(running=1, queued=-1)
            logger.info("benchmark %s running in process %d", run_id, os.getpid())
            keeper = asyncio.create_task(self._keep(slot, beat))
            try:
                await self._execute(run, job_spec)
            finally:
                keeper.cancel()
                self._changed(running=-1)
                await self._give_back(slot)

        try:
            await cancellable(run, body)
        finally:
            if not started:
                self._changed(queued=-1)
                await asyncio.to_thread(run.write_status, "interrupted", done=0, total=total)


class _Admission:
    def __init__(self, jobs: RedisJobs) -> None:
        self._jobs = jobs

    async def submit(self, run: RunDir, spec: JobSpec) -> None:
        await self._jobs._enqueue(run, spec)
