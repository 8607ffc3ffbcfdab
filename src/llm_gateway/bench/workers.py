"""Measuring from several processes: one event loop each, one clock.

One event loop can stamp only so many events a second on time: past a few hundred streams in
flight, a stream's bytes wait behind the others' callbacks before their arrival is stamped, and
every number grows a tail. So above that load the runner spreads its requests over worker
processes, each with its own loop, client and connection pool, and merges what they measure.

- One clock: `time.perf_counter_ns()` is CLOCK_MONOTONIC on Linux, the same in every process,
  so a worker's stamps and offsets need no translation; the parent picks each step's start a
  little ahead (`lead_ns`), and every worker begins it on that instant.
- The split: a step's jobs go to the workers in turn (job i to worker i mod n), keeping the
  interleaving of models in each; its concurrency is divided between them (the first ones get
  the remainder). With arrivals at a rate, each job keeps its release time on the shared clock,
  so the merged arrivals are exactly the planned ones.
- Workers are started with `spawn`: a fresh interpreter, never a fork of a process that has an
  event loop, threads and open sockets (the gateway, or the CLI with its emulator).
- Off the measuring path: a worker sends its finished records to the parent in batches every
  `FLUSH_S`, and the parent writes files and shows progress; a worker never writes a file.
- Ctrl-C reaches the whole process group: workers ignore it and stop when the parent says so,
  after sending what they measured. A worker that dies fails the run with `BenchWorkerDied`.

Messages, parent to worker: ("warm", jobs, concurrency, bench_start_ns), ("step", jobs,
concurrency, start_ns, bench_start_ns), ("stop",), ("close",). Worker to parent: ("ready",),
("records", [record, ...]), ("done", lag_samples), ("error", text).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from llm_gateway.bench import gcpolicy
from llm_gateway.bench.lag import LoopLag
from llm_gateway.bench.loops import run_loop
from llm_gateway.bench.records import Job, RequestRecord
from llm_gateway.bench.runner import BenchConfig, Step, drive
from llm_gateway.bench.target import Target
from llm_gateway.errors import InternalError

FLUSH_S = 0.1
LEAD_S = 0.05  # a step starts this long after it is sent: time for every worker to receive it
STOP_WAIT_S = 2.0

_SPAWN = multiprocessing.get_context("spawn")


class BenchWorkerDied(InternalError):
    """A benchmark worker process ended without finishing its part (see the log)."""

    code = "benchmark_worker_died"


@dataclass(frozen=True, slots=True)
class _Setup:
    target: Target
    stream: bool
    timeout: float
    concurrency: int  # the most this worker ever has in flight: the size of its pool


def _split(count: int, parts: int) -> list[int]:
    """`count` divided into `parts` nearly equal whole shares, the larger ones first."""
    return [count // parts + (1 if k < count % parts else 0) for k in range(parts)]


class _Worker:
    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.pending: asyncio.Future[Any] | None = None  # resolved by its next reply
        self.busy = False  # a command was sent and its "done" has not come back yet
        self.alive = True


class ProcessExecutor:
    """Runs each step on `config.processes` worker processes and merges their records."""

    def __init__(
        self, config: BenchConfig, target: Target, on_record: Callable[[RequestRecord], None]
    ) -> None:
        self.config = config
        self.target = target
        self.on_record = on_record
        self.processes = config.processes or 1
        self.lead_ns = round(LEAD_S * 1e9)
        self.lags: list[list[float]] = []
        self._workers: list[_Worker] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        shares = _split(self.config.peak_concurrency, self.processes)
        for k, share in enumerate(shares):
            parent, child = _SPAWN.Pipe()
            setup = _Setup(self.target, self.config.stream, self.config.timeout, share)
            process = _SPAWN.Process(
                target=_main, args=(child, setup), name=f"llm-gateway-bench-{k}", daemon=True
            )
            await asyncio.to_thread(process.start)
            child.close()
            worker = _Worker(process, parent)
            self._workers.append(worker)
            worker.busy = True  # until it says it is ready
            loop.add_reader(parent.fileno(), self._readable, worker)
        await self._replies(self._workers)

    async def _replies(self, workers: list[_Worker]) -> list[Any]:
        """The next reply of each of `workers` (a worker that dies fails the wait)."""
        loop = asyncio.get_running_loop()
        futures = []
        for worker in workers:
            if not worker.alive:
                raise BenchWorkerDied("A benchmark worker process ended before its part.")
            worker.pending = loop.create_future()
            futures.append(worker.pending)
        return list(await asyncio.gather(*futures))

    def _readable(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            self._died(worker)
            return
        kind = message[0]
        if kind == "records":
            for record in message[1]:
                self.on_record(record)
            return
        worker.busy = False
        future, worker.pending = worker.pending, None
        if future is None or future.done():
            return
        if kind == "error":
            future.set_exception(BenchWorkerDied(f"A benchmark worker failed: {message[1]}"))
        else:
            future.set_result(message[1] if len(message) > 1 else None)

    def _died(self, worker: _Worker) -> None:
        if not worker.alive:
            return
        worker.alive = worker.busy = False
        asyncio.get_running_loop().remove_reader(worker.conn.fileno())
        future, worker.pending = worker.pending, None
        if future is not None and not future.done():
            future.set_exception(
                BenchWorkerDied(
                    f"A benchmark worker process ended (exit code {worker.process.exitcode})."
                )
            )

    def _active(self, concurrency: int) -> list[tuple[_Worker, int]]:
        """The workers a step at this concurrency uses, with their shares of it."""
        parts = min(len(self._workers), max(1, concurrency))
        return list(zip(self._workers[:parts], _split(concurrency, parts), strict=True))

    async def _run(self, kind: str, jobs: list[Job], concurrency: int, *times: int) -> None:
        active = self._active(concurrency)
        for k, (worker, share) in enumerate(active):
            worker.busy = True
            worker.conn.send((kind, jobs[k :: len(active)], share, *times))
        lags = await self._replies([w for w, _ in active])
        if kind == "step":
            self.lags.append([s for samples in lags for s in samples or ()])

    async def warm(self, jobs: list[Job], concurrency: int, bench_start_ns: int) -> None:
        await self._run("warm", jobs, concurrency, bench_start_ns)

    async def step(self, step: Step, start_ns: int, bench_start_ns: int) -> None:
        await self._run("step", step.jobs, step.concurrency, start_ns, bench_start_ns)

    async def close(self) -> None:
        """Stop the workers (a step still running sends what it measured first) and end them."""
        busy = [w for w in self._workers if w.alive and w.busy]
        for worker in busy:
            try:
                worker.conn.send(("stop",))
            except OSError:
                self._died(worker)
        if busy:  # their records arrive while we wait; their lag is the step's
            try:
                async with asyncio.timeout(STOP_WAIT_S):
                    lags = await self._replies([w for w in busy if w.alive])
                self.lags.append([s for samples in lags for s in samples or ()])
            except (TimeoutError, BenchWorkerDied):
                pass
        for worker in self._workers:
            if worker.alive:
                with suppress(OSError):
                    worker.conn.send(("close",))
        for worker in self._workers:
            await asyncio.to_thread(worker.process.join, STOP_WAIT_S)
            if worker.process.is_alive():
                worker.process.terminate()
            if worker.alive:
                worker.alive = False
                asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            worker.conn.close()


# --- the worker process -----------------------------------------------------------------------


def _main(conn: Connection, setup: _Setup) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        run_loop(_serve(conn, setup))
    except BaseException as exc:
        with suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


async def _serve(conn: Connection, setup: _Setup) -> None:
    loop = asyncio.get_running_loop()
    client = setup.target.client(concurrency=setup.concurrency)
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    batch: list[RequestRecord] = []
    current: asyncio.Task[None] | None = None

    def readable() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone: stop
            message = ("close",)
            loop.remove_reader(conn.fileno())
        if message[0] in ("stop", "close") and current is not None:
            current.cancel()
        inbox.put_nowait(message)

    def flush() -> None:
        nonlocal batch
        if batch:
            sent, batch = batch, []
            conn.send(("records", sent))

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            flush()

    def record(item: RequestRecord) -> None:
        batch.append(item)

    loop.add_reader(conn.fileno(), readable)
    flushing = asyncio.create_task(flusher())
    conn.send(("ready",))
    with ExitStack() as gc_policy:
        try:
            while True:
                message = await inbox.get()
                kind = message[0]
                if kind == "close":
                    break
                if kind == "stop":
                    continue  # nothing is running: the step it was for has already ended
                jobs, concurrency, *times = message[1:]
                if kind == "step":
                    start_ns, bench_start_ns = times
                else:
                    start_ns, bench_start_ns = time.perf_counter_ns(), times[0]
                lag = LoopLag()
                if kind == "step":
                    lag.start()
                current = asyncio.create_task(
                    drive(
                        client,
                        jobs,
                        concurrency=concurrency,
                        stream=setup.stream,
                        timeout=setup.timeout,
                        start_ns=start_ns,
                        bench_start_ns=bench_start_ns,
                        on_record=record,
                    )
                )
                await asyncio.wait([current])
                lag.stop()
                ended, current = current, None
                flush()
                if not ended.cancelled() and ended.exception() is not None:
                    raise RuntimeError(f"a request raised instead of being recorded: {ended}")
                conn.send(("done", lag.take()))
                if kind == "warm":
                    gc_policy.enter_context(gcpolicy.measuring())
                else:
                    gcpolicy.between()
        finally:
            flushing.cancel()
            if conn.fileno() >= 0:
                loop.remove_reader(conn.fileno())
            await client.aclose()
            flush()
