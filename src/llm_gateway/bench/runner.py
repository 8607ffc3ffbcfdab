"""The benchmark runner: a typed config in, one record per request out.

- Interleaved: runs go round-robin over prompts and models, and the model order rotates from
  one prompt to the next, so drift over time (an upstream warming up, a neighbour's load)
  does not favour one model. A seed shuffles instead, and is recorded.
- Bounded concurrency (closed loop), optionally paced to a request rate (open loop: request i
  is released at i / rate seconds; how late it actually went is its `queue_seconds`).
- Warm-up requests run first and are marked, not measured.
- Every record is handed to `on_record` the moment it exists (the store appends it to disk),
  and kept in `records`, so an interrupted run loses nothing it measured.
- The runner's own event-loop lag is sampled, so a report can show the client kept up.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_gateway.bench.documents import ClientLag, RunConfig
from llm_gateway.bench.metrics import measure
from llm_gateway.bench.prompts import Prompt
from llm_gateway.bench.records import Job, RequestRecord
from llm_gateway.bench.stats import percentile
from llm_gateway.upstream.client import UpstreamClient


@dataclass(frozen=True, slots=True)
class BenchConfig:
    models: tuple[str, ...]
    prompts: tuple[Prompt, ...]
    runs: int = 5
    concurrency: int = 1
    rate: float | None = None  # requests per second; None = as fast as concurrency allows
    max_tokens: int = 512
    temperature: float | None = None
    stream: bool = True  # streaming is what makes TTFT measurable
    warmup: int = 0  # warm-up requests per model, excluded from the statistics
    timeout: float = 120.0  # per request, whole answer
    shuffle_seed: int | None = None

    @property
    def requests(self) -> int:
        """Measured requests."""
        return self.runs * len(self.prompts) * len(self.models)

    @property
    def total(self) -> int:
        """Every request sent, warm-ups included."""
        return self.requests + self.warmup * len(self.models)

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
    """The warm-up jobs and the measured jobs, in the order they will be sent."""
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


@dataclass(slots=True)
class LoopLag:
    """Samples how late the event loop wakes a sleeping task: the client's own overhead."""

    interval: float = 0.05
    samples: list[float] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - started - self.interval))

    def summary(self) -> ClientLag:
        ordered = sorted(self.samples)
        return ClientLag(
            loop_lag_max_s=round(ordered[-1], 6) if ordered else None,
            loop_lag_p99_s=round(percentile(ordered, 99), 6) if ordered else None,
        )


class Runner:
    """Runs one benchmark with a client; `records` holds every finished request so far."""

    def __init__(
        self,
        config: BenchConfig,
        client: UpstreamClient,
        *,
        on_record: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.on_record = on_record
        self.warmups, self.jobs = schedule(config)
        self.records: list[RequestRecord] = []
        self.lag = LoopLag()
        self.started_ns = 0

    @property
    def total(self) -> int:
        return self.config.total

    async def run(self) -> list[RequestRecord]:
        self.started_ns = time.perf_counter_ns()
        lag_task = asyncio.create_task(self.lag.run())
        try:
            # Warm-ups finish before measuring starts, so they cannot overlap measured requests.
            await self._drain(self.warmups, paced=False)
            await self._drain(self.jobs, paced=self.config.rate is not None)
        finally:
            lag_task.cancel()
        return self.records

    async def _drain(self, jobs: Sequence[Job], *, paced: bool) -> None:
        if not jobs:
            return
        queue: Iterator[tuple[int, Job]] = iter(enumerate(jobs))
        began = time.perf_counter_ns()

        async def worker() -> None:
            # Workers share one iterator; taking from it never awaits, so no job is taken twice.
            for index, job in queue:
                queue_ns = 0
                if paced and self.config.rate:
                    release = began + int(index / self.config.rate * 1e9)
                    delay = release - time.perf_counter_ns()
                    if delay > 0:
                        await asyncio.sleep(delay / 1e9)
                    queue_ns = max(0, time.perf_counter_ns() - release)
                record = await measure(
                    self.client,
                    job,
                    stream=self.config.stream,
                    bench_start_ns=self.started_ns,
                    timeout=self.config.timeout,
                    queue_ns=queue_ns,
                )
                self.records.append(record)
                if self.on_record is not None:
                    self.on_record(record)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.config.concurrency, len(jobs))):
                group.create_task(worker())
