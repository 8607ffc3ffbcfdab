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
  Messages are pickles, length-prefixed, over a socket pair driven by each side's event loop
  (asyncio streams): a large message never blocks either loop.
- Ctrl-C reaches the whole process group: workers ignore it and stop when the parent says so,
  after sending what they measured. A worker that dies fails the run (`InternalError`, which
  says so).

Messages, parent to worker: ("warm", jobs, concurrency, bench_start_ns), ("step", jobs,
concurrency, start_ns, bench_start_ns), ("stop",), ("close",). Worker to parent: ("ready",),
("records", [record, ...]), ("done", lag_samples), ("error", text).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import socket
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


@dataclass(frozen=True, slots=True)
class _Setup:
    target: Target
    stream: bool
    timeout: float
    concurrency: int  # the most this worker ever has in flight: the size of its pool


def _split(count: int, parts: int) -> list[int]:
    """`count` divided into `parts` nearly equal whole shares, the larger ones first."""
    return [count // parts + (1 if k < count % parts else 0) for k in range(parts)]


class _Channel:
    """Pickled messages, each prefixed with its length, over one end of a socket pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, conn: Connection) -> _Channel:
        """The channel on `conn`'s socket (a `multiprocessing.Pipe` end, which `spawn` knows
        how to hand to a child), taken over from it."""
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue a message; the loop writes it as the socket takes it (never blocks)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(len(data).to_bytes(8, "big") + data)

    async def drain(self) -> None:
        await self._writer.drain()

    async def recv(self) -> tuple[Any, ...]:
        """The next message (IncompleteReadError once the other end has closed)."""
        size = int.from_bytes(await self._reader.readexactly(8), "big")
        message: tuple[Any, ...] = pickle.loads(await self._reader.readexactly(size))
        return message

    async def close(self) -> None:
        self._writer.close()
        with suppress(OSError):
            await self._writer.wait_closed()


_CLOSED = (asyncio.IncompleteReadError, ConnectionError, OSError)


class _Worker:
    def __init__(self, process: Any, channel: _Channel) -> None:
        self.process = process
        self.channel = channel
        self.pending: asyncio.Future[Any] | None = None  # resolved by its next reply
        self.busy = False  # a command was sent and its "done" has not come back yet
        self.alive = True
        self.listening: asyncio.Task[None] | None = None


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
        shares = _split(self.config.peak_concurrency, self.processes)
        for k, share in enumerate(shares):
            parent, child = _SPAWN.Pipe()
            setup = _Setup(self.target, self.config.stream, self.config.timeout, share)
            process = _SPAWN.Process(
                target=_main, args=(child, setup), name=f"llm-gateway-bench-{k}", daemon=True
            )
            await asyncio.to_thread(process.start)
            child.close()
            worker = _Worker(process, await _Channel.open(parent))
            worker.busy = True  # until it says it is ready
            worker.listening = asyncio.create_task(self._listen(worker))
            self._workers.append(worker)
        await self._replies(self._workers)

    async def _replies(self, workers: list[_Worker]) -> list[Any]:
        """The next reply of each of `workers` (a worker that dies fails the wait)."""
        loop = asyncio.get_running_loop()
        futures = []
        for worker in workers:
            if not worker.alive:
                raise InternalError("A benchmark worker process ended before its part.")
            if worker.pending is None or worker.pending.done():
                worker.pending = loop.create_future()
            futures.append(worker.pending)
        return list(await asyncio.gather(*futures))

    async def _listen(self, worker: _Worker) -> None:
        while True:
            try:
                message = await worker.channel.recv()
            except _CLOSED:
                self._died(worker)
                return
            kind = message[0]
            if kind == "records":
                for record in message[1]:
                    self.on_record(record)
                continue
            worker.busy = False
            future, worker.pending = worker.pending, None
            if future is None or future.done():
                continue
            if kind == "error":
                future.set_exception(InternalError(f"A benchmark worker failed: {message[1]}"))
            else:
                future.set_result(message[1] if len(message) > 1 else None)

    def _died(self, worker: _Worker) -> None:
        worker.alive = worker.busy = False
        future, worker.pending = worker.pending, None
        if future is not None and not future.done():
            future.set_exception(
                InternalError(
                    f"A benchmark worker process ended (exit code {worker.process.exitcode})."
                )
            )

    def _active(self, concurrency: int) -> list[tuple[_Worker, int]]:
        """The workers a step at this concurrency uses, with their shares of it."""
        parts = min(len(self._workers), max(1, concurrency))
        return list(zip(self._workers[:parts], _split(concurrency, parts), strict=True))

    async def _run(self, kind: str, jobs: list[Job], concurrency: int, *times: int) -> None:
        active = self._active(concurrency)
        replies = self._replies([w for w, _ in active])  # expecting them before sending
        for k, (worker, share) in enumerate(active):
            worker.busy = True
            worker.channel.send((kind, jobs[k :: len(active)], share, *times))
        lags = await replies
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
            worker.channel.send(("stop",))
        if busy:  # their records arrive while we wait; their lag is the step's
            try:
                async with asyncio.timeout(STOP_WAIT_S):
                    lags = await self._replies(busy)
                self.lags.append([s for samples in lags for s in samples or ()])
            except (TimeoutError, InternalError):
                pass
        for worker in self._workers:
            if worker.alive:
                worker.channel.send(("close",))
                with suppress(*_CLOSED):
                    await worker.channel.drain()
        for worker in self._workers:
            await asyncio.to_thread(worker.process.join, STOP_WAIT_S)
            if worker.process.is_alive():
                worker.process.terminate()
            if worker.listening is not None:
                worker.listening.cancel()
            await worker.channel.close()


# --- the worker process -----------------------------------------------------------------------


def _main(conn: Connection, setup: _Setup) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    run_loop(_serve(conn, setup))


async def _serve(conn: Connection, setup: _Setup) -> None:
    channel = await _Channel.open(conn)
    try:
        await _work(channel, setup)
    except Exception as exc:
        channel.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        await channel.close()


async def _work(channel: _Channel, setup: _Setup) -> None:
    client = setup.target.client(concurrency=setup.concurrency)
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    batch: list[RequestRecord] = []
    current: asyncio.Task[None] | None = None

    async def listen() -> None:
        while True:
            try:
                message = await channel.recv()
            except _CLOSED:  # the parent is gone: stop
                message = ("close",)
            if message[0] in ("stop", "close") and current is not None:
                current.cancel()
            inbox.put_nowait(message)
            if message[0] == "close":
                return

    def flush() -> None:
        if batch:
            channel.send(("records", list(batch)))
            batch.clear()

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            flush()

    background = [asyncio.create_task(listen()), asyncio.create_task(flusher())]
    channel.send(("ready",))
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
                lag = LoopLag()
                if kind == "step":
                    start_ns, bench_start_ns = times
                    lag.start()
                else:
                    start_ns, bench_start_ns = time.perf_counter_ns(), times[0]
                current = asyncio.create_task(
                    drive(
                        client,
                        jobs,
                        concurrency=concurrency,
                        stream=setup.stream,
                        timeout=setup.timeout,
                        start_ns=start_ns,
                        bench_start_ns=bench_start_ns,
                        on_record=batch.append,
                    )
                )
                await asyncio.wait([current])
                lag.stop()
                ended, current = current, None
                flush()
                if not ended.cancelled() and ended.exception() is not None:
                    raise RuntimeError(f"a request raised instead of being recorded: {ended}")
                channel.send(("done", lag.take()))
                if kind == "warm":
                    gc_policy.enter_context(gcpolicy.measuring())
                else:
                    gcpolicy.between()
        finally:
            for task in background:
                task.cancel()
            await client.aclose()
            flush()
            with suppress(*_CLOSED):
                await channel.drain()
