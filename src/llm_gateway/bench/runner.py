"""The benchmark runner: a typed config in, one record per request out.

- Interleaved: runs go round-robin over prompts and models, and the model order rotates from
  one prompt to the next, so drift over time (an upstream warming up, a neighbour's load)
  does not favour one model. A seed shuffles instead, and is recorded.
- Load (loads.py): bounded concurrency (closed loop), or arrivals at a rate, constant or
  Poisson (open loop: request i is released at its time; how late it actually went is its
  `queue_seconds`), and a sweep that steps the load up until an SLO breaks.
- Warm-up requests run first and are marked, not measured.
- Exact at high concurrency: the measuring runs on as many event loops as it needs, one per
  process (`processes`; workers.py), so no loop is too busy to stamp events when they arrive;
  the loops watch their own lag (lag.py); no full garbage collection runs while measuring
  (gcpolicy.py).
- Every record is handed to `on_record` the moment it reaches this process (the store queues
  it for disk), and kept in `records`, so an interrupted run loses nothing it measured.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from llm_gateway.bench import gcpolicy, loads
from llm_gateway.bench.documents import ClientLag, RunConfig
from llm_gateway.bench.lag import LoopLag, client_lag
from llm_gateway.bench.loads import Arrivals
from llm_gateway.bench.metrics import measure
from llm_gateway.bench.prompts import Prompt
from llm_gateway.bench.records import Job, RequestRecord
from llm_gateway.bench.stats import group_stats
from llm_gateway.bench.target import Target
from llm_gateway.upstream.client import UpstreamClient

# Requests in flight one event loop is given before another process is added (`processes`
# left to choose): at this many streams of ~40 events/s each, one loop still stamps them within
# about a millisecond (benchmarks/accuracy/LATEST.md).
PER_LOOP = 128

Record = Callable[[RequestRecord], None]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    models: tuple[str, ...]
    prompts: tuple[Prompt, ...]
    runs: int = 5
    concurrency: int = 1  # closed loop: in flight; open loop: the cap on requests in flight
    rate: float | None = None  # requests per second (open loop); None = closed loop
    # "closed" without a rate; "constant" (the default) or "poisson" with one
    arrivals: Arrivals | None = None
    arrival_seed: int | None = None  # Poisson arrivals: the seed of their gaps (recorded)
    max_tokens: int = 512
    temperature: float | None = None
    stream: bool = True  # streaming is what makes TTFT measurable
    warmup: int = 0  # warm-up requests per model, excluded from the statistics
    timeout: float = 120.0  # per request, whole answer
    shuffle_seed: int | None = None
    processes: int | None = None  # measuring processes; None = as many as the load needs
    retries: int | None = None  # retries per request; None = the target's policy
    sweep: tuple[float, ...] | None = None  # the loads of a sweep's steps, in order
    slo: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.arrivals is None:
            object.__setattr__(self, "arrivals", "closed" if self.rate is None else "constant")
        problem = self.problem()
        if problem is not None:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """Why this configuration cannot run, or None."""
        if (self.rate is None) != (self.arrivals == "closed"):
            return "arrivals: constant or poisson arrivals need a rate"
        if self.rate is not None and self.rate <= 0:
            return "rate: must be above 0"
        if self.slo and not self.sweep:
            return "slo: an SLO is what a sweep checks each step against; add --sweep"
        if not self.stream and any(key.startswith("ttft") for key in self.slo):
            return "slo: TTFT is only measured when streaming"
        if self.sweep is not None and (not self.sweep or min(self.sweep) <= 0):
            return "sweep: needs at least one load above 0"
        return None

    @property
    def steps(self) -> int:
        return len(self.sweep) if self.sweep else 1

    @property
    def requests(self) -> int:
        """Measured requests per step."""
        return self.runs * len(self.prompts) * len(self.models)

    @property
    def total(self) -> int:
        """Every request planned, warm-ups and every sweep step included."""
        return self.requests * self.steps + self.warmup * len(self.models)

    @property
    def peak_concurrency(self) -> int:
        """The most requests ever in flight."""
        if self.sweep and self.rate is None:
            return math.ceil(max(self.sweep))
        return self.concurrency

    def manifest(self) -> RunConfig:
        return RunConfig(
            runs=self.runs,
            concurrency=self.concurrency,
            rate=self.rate,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stream=self.stream,
            warmup=self.warmup,
            timeout=self.timeout,
            order="shuffled" if self.shuffle_seed is not None else "round-robin",
            shuffle_seed=self.shuffle_seed,
            arrivals=self.arrivals,
            arrival_seed=self.arrival_seed,
            processes=self.processes,
            retries=self.retries,
            sweep=list(self.sweep) if self.sweep else None,
            slo=dict(self.slo) or None,
        )


@dataclass(frozen=True, slots=True)
class Load:
    """How hard to push, as the command line and the form say it; `fields` turns it into the
    load fields of a `BenchConfig` (ValueError, readable, when it does not make sense)."""

    concurrency: int | None = None
    rate: float | None = None
    arrivals: str = "constant"
    arrival_seed: int | None = None
    sweep: bool = False
    sweep_start: float = 1.0
    slo: str | None = None

    def fields(self, *, rate_cap: int) -> dict[str, Any]:
        """`rate_cap`: the requests in flight an open-loop run allows when not told."""
        if self.arrivals not in ("constant", "poisson"):
            raise ValueError(f"arrivals: constant or poisson (got {self.arrivals!r})")
        if self.rate is None and self.arrivals == "poisson":
            raise ValueError("arrivals: poisson arrivals need a rate")
        concurrency = self.concurrency or (rate_cap if self.rate is not None else 1)
        sweep = None
        if self.sweep:
            top = self.rate if self.rate is not None else self.concurrency
            if top is None:
                raise ValueError("sweep: give its top load, a concurrency or a rate")
            if self.sweep_start > top:
                raise ValueError(f"sweep: its start ({self.sweep_start:g}) is above {top:g}")
            sweep = tuple(loads.sweep_loads(top, start=self.sweep_start, integer=self.rate is None))
        return {
            "concurrency": concurrency,
            "rate": self.rate,
            "arrivals": "closed" if self.rate is None else self.arrivals,
            "arrival_seed": self.arrival_seed,
            "sweep": sweep,
            "slo": loads.parse_slo(self.slo) if self.slo else {},
        }


def auto_processes(config: BenchConfig, *, cpus: int | None = None) -> int:
    """How many measuring processes the load needs: one per `PER_LOOP` requests in flight, at
    most one per CPU this process may use."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, math.ceil(config.peak_concurrency / PER_LOOP)))


def resolve(config: BenchConfig, target: Target | None) -> BenchConfig:
    """`config` with what was left to choose chosen, so the manifest records it: the number
    of processes, the retries (the target's policy), the seed of Poisson arrivals."""
    # A ready client is measured on this loop as it is: one process.
    processes = (config.processes or auto_processes(config)) if target is not None else 1
    retries = config.retries
    if retries is None:
        retries = target.attempts - 1 if target is not None else None
    seed = config.arrival_seed
    if config.arrivals == "poisson" and seed is None:
        seed = random.SystemRandom().randrange(2**31)
    return replace(
        config,
        processes=min(processes, config.peak_concurrency),
        retries=retries,
        arrival_seed=seed,
    )


def _payload(config: BenchConfig, model: str, prompt: Prompt) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "messages": list(prompt.messages),
        "max_tokens": config.max_tokens,
    }
    if config.temperature is not None:
        payload["temperature"] = config.temperature
    return payload


def schedule(config: BenchConfig) -> tuple[list[Job], list[Job]]:
    """The warm-up jobs and one step's measured jobs, in the order they will be sent."""
    models = config.models
    warmups = [
        Job(model, 0, config.prompts[0].text, _payload(config, model, config.prompts[0]), 0, True)
        for _ in range(config.warmup)
        for model in models
    ]
    jobs: list[Job] = []
    slot = 0
    for run in range(1, config.runs + 1):
        for index, prompt in enumerate(config.prompts):
            for k in range(len(models)):
                model = models[(slot + k) % len(models)]
                jobs.append(Job(model, index, prompt.text, _payload(config, model, prompt), run))
            slot += 1
    if config.shuffle_seed is not None:
        random.Random(config.shuffle_seed).shuffle(jobs)
    return warmups, jobs


@dataclass(frozen=True, slots=True)
class Step:
    """One batch of measured jobs at one load: the whole run, or one step of a sweep."""

    number: int | None  # the sweep step (1, 2, ...), None outside a sweep
    concurrency: int
    rate: float | None
    jobs: list[Job]


def plan(config: BenchConfig) -> tuple[list[Job], list[Step]]:
    """The warm-ups, and the steps with their jobs (each job knows its step and release time)."""
    warmups, base = schedule(config)
    loads_: Sequence[float | None] = config.sweep or (None,)
    steps: list[Step] = []
    for number, load in enumerate(loads_, start=1):
        step = number if config.sweep else None
        rate = config.rate if load is None or config.rate is None else load
        concurrency = config.concurrency if load is None or config.rate else math.ceil(load)
        seed = None if config.arrival_seed is None else config.arrival_seed + number - 1
        times = (
            loads.arrival_times(len(base), rate, config.arrivals or "constant", seed)
            if rate is not None
            else [None] * len(base)
        )
        jobs = [replace(job, step=step, at=at) for job, at in zip(base, times, strict=True)]
        steps.append(Step(step, concurrency, rate, jobs))
    return warmups, steps


async def drive(
    client: UpstreamClient,
    jobs: Sequence[Job],
    *,
    concurrency: int,
    stream: bool,
    timeout: float,
    start_ns: int,
    bench_start_ns: int,
    on_record: Record,
) -> None:
    """Send `jobs` on this loop, at most `concurrency` at once, from `start_ns` on (and each
    job with a release time at `start_ns` + its time); each record goes to `on_record`."""
    if not jobs:
        return
    delay = start_ns - time.perf_counter_ns()
    if delay > 0:
        await asyncio.sleep(delay / 1e9)
    queue = iter(jobs)

    async def worker() -> None:
        # Workers share one iterator; taking from it never awaits, so no job is taken twice.
        for job in queue:
            queue_ns = 0
            if job.at is not None:
                release = start_ns + round(job.at * 1e9)
                wait = release - time.perf_counter_ns()
                if wait > 0:
                    await asyncio.sleep(wait / 1e9)
                queue_ns = max(0, time.perf_counter_ns() - release)
            record = await measure(
                client,
                job,
                stream=stream,
                bench_start_ns=bench_start_ns,
                timeout=timeout,
                queue_ns=queue_ns,
            )
            # Yield between a request's bookkeeping and the next send: when many requests end
            # at once, the loop then polls its sockets between the pieces of work, and bytes
            # arriving meanwhile are stamped without waiting for all of it.
            await asyncio.sleep(0)
            on_record(record)
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(jobs))):
            group.create_task(worker())


class Executor(Protocol):
    """Where the requests are sent from: this event loop, or worker processes."""

    processes: int
    lead_ns: int  # how far ahead of now a step's start must be, so every loop starts on it
    lags: list[list[float]]  # loop-lag samples per step (all loops), filled as steps end

    async def open(self) -> None: ...

    async def warm(self, jobs: list[Job], concurrency: int, bench_start_ns: int) -> None: ...

    async def step(self, step: Step, start_ns: int, bench_start_ns: int) -> None: ...

    async def close(self) -> None: ...


class LocalExecutor:
    """Measures on the running event loop, with one client (given, or built from a target)."""

    processes = 1
    lead_ns = 0

    def __init__(self, config: BenchConfig, client: UpstreamClient, on_record: Record) -> None:
        self.config = config
        self.client = client
        self.on_record = on_record
        self.lags: list[list[float]] = []
        self._gc = ExitStack()

    async def open(self) -> None:
        return None

    async def warm(self, jobs: list[Job], concurrency: int, bench_start_ns: int) -> None:
        await self._drive(jobs, concurrency, time.perf_counter_ns(), bench_start_ns)
        self._gc.enter_context(gcpolicy.measuring())

    async def step(self, step: Step, start_ns: int, bench_start_ns: int) -> None:
        lag = LoopLag()
        lag.start()
        try:
            await self._drive(step.jobs, step.concurrency, start_ns, bench_start_ns)
        finally:
            lag.stop()
            self.lags.append(lag.take())
        gcpolicy.between()

    async def _drive(
        self, jobs: Sequence[Job], concurrency: int, start_ns: int, bench_start_ns: int
    ) -> None:
        await drive(
            self.client,
            jobs,
            concurrency=concurrency,
            stream=self.config.stream,
            timeout=self.config.timeout,
            start_ns=start_ns,
            bench_start_ns=bench_start_ns,
            on_record=self.on_record,
        )

    async def close(self) -> None:
        self._gc.close()


class Runner:
    """Runs one benchmark; `records` holds every finished request so far.

    `source` is a `Target` (the runner builds its own clients, in this process or in worker
    processes, as `config.processes` says) or a ready client (measured on this loop as it is).
    """

    def __init__(
        self,
        config: BenchConfig,
        source: UpstreamClient | Target,
        *,
        on_record: Record | None = None,
    ) -> None:
        self.target = source if isinstance(source, Target) else None
        if self.target is not None and config.retries is not None:
            self.target = replace(self.target, attempts=config.retries + 1)
        self.config = resolve(config, self.target)
        self.client = source if isinstance(source, UpstreamClient) else None
        self.on_record = on_record
        self.warmups, self.steps = plan(self.config)
        self.records: list[RequestRecord] = []
        self.started_ns = 0
        self._executor: Executor | None = None

    @property
    def total(self) -> int:
        return self.config.total

    def _record(self, record: RequestRecord) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    def lag(self) -> ClientLag:
        """The client's loop lag so far, over every measuring loop, per step too."""
        steps = self._executor.lags if self._executor is not None else []
        return client_lag(
            [s for step in steps for s in step],
            processes=self.config.processes or 1,
            steps=steps,
        )

    async def run(self) -> list[RequestRecord]:
        self.started_ns = time.perf_counter_ns()
        executor = self._executor = self._make_executor()
        owned = self.client is None
        try:
            await executor.open()
            # Warm-ups finish before measuring starts, so they cannot overlap measured requests.
            await executor.warm(self.warmups, self.config.peak_concurrency, self.started_ns)
            for step in self.steps:
                start = time.perf_counter_ns() + executor.lead_ns
                await executor.step(step, start, self.started_ns)
                if self._slo_broken_everywhere(step):
                    break
        finally:
            await executor.close()
            if owned and isinstance(executor, LocalExecutor):
                await executor.client.aclose()
        return self.records

    def _make_executor(self) -> Executor:
        if self.client is not None:
            return LocalExecutor(self.config, self.client, self._record)
        assert self.target is not None
        if (self.config.processes or 1) == 1:
            client = self.target.client(concurrency=self.config.peak_concurrency)
            return LocalExecutor(self.config, client, self._record)
        from llm_gateway.bench.workers import ProcessExecutor  # spawns processes: only if asked

        return ProcessExecutor(self.config, self.target, self._record)

    def _slo_broken_everywhere(self, step: Step) -> bool:
        """A sweep stops at the first step where no model met its SLO any more."""
        if step.number is None or not self.config.slo:
            return False
        done = [r for r in self.records if r.step == step.number and not r.warmup]
        models = dict.fromkeys(r.model for r in done)
        return bool(models) and all(
            loads.breaches(group_stats([r for r in done if r.model == m]), self.config.slo)
            for m in models
        )
