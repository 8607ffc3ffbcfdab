"""The typed result of one run: what each phase measured, what is derived from it, the checks.

The phases fill a `RunResult` as they go; `derive.py` and `checks.py` add the derived numbers and
the targets; `report.py` renders it; `results/<time>.json` is `RunResult.model_dump_json()` and
`RunResult.model_validate_json()` reads one back (the tests do, on a recorded run).

Unknown keys and wrong types are errors (`extra="forbid"`), so a renamed field fails loudly
instead of leaving an empty column. A measurement that failed carries its `error` and no numbers
(`stats` is None); a number that can legitimately be missing is `None` and is shown as "-".
"""

from __future__ import annotations

from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

Phase = Literal["memory", "emulator", "nonstream", "stream", "ramp", "capacity"]
PHASES: tuple[Phase, ...] = ("memory", "emulator", "nonstream", "stream", "ramp", "capacity")
Mode = Literal["full", "quick", "profile", "whatif"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Options(Model):
    """What the run was asked to do (the command line, after `--quick` adjusted it)."""

    peer: Literal["", "none", "litellm"] = ""
    duration: int = 5  # measured seconds per cell
    warmup: int = 1
    concurrency: list[int] = [1, 16, 64]
    stream_concurrency: int = 4
    ramp: list[int] = [100, 250, 500, 1000]
    ramp_timeout: float = 60.0
    capacity_steps: list[int] = [1000, 2000, 3000, 5000]
    capacity_spread: float = 3.0  # seconds over which a capacity step's streams start
    capacity_timeout: float = 120.0
    capacity_workers: int = 2  # each gateway route again on `serve --workers N` (1: not)
    phases: list[Phase] = list(PHASES)
    memory_requests: int = 10_000
    peer_memory_requests: int = 2_000
    gateway_env: dict[str, str] = {}
    quick: bool = False
    profile: bool = False
    profile_seconds: int = 10
    whatif: bool = False
    whatif_rounds: int = 3
    wait_quiet: float = 0.0
    retry_noisy: int = 1
    rounds: int = 3  # interleaved passes of the non-streaming and streaming phases (odd)
    no_install: bool = False

    @property
    def mode(self) -> Mode:
        if self.profile:
            return "profile"
        if self.whatif:
            return "whatif"
        return "quick" if self.quick else "full"


class Latency(Model):
    """Milliseconds over `n` samples; without samples the other fields are None."""

    n: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


S = TypeVar("S", bound=Model)


class Measured(Model, Generic[S]):
    """One load run: how busy the rest of the machine was meanwhile (cores used by processes
    that are not the harness's), and either its numbers or why it failed."""

    foreign_cores: float
    # The speed probe around it (stack.speed_probe_ms; absent in runs before it existed).
    probe_ms: float | None = None
    error: str | None = None
    stats: S | None = None

    @model_validator(mode="after")
    def _error_or_stats(self) -> Self:
        if (self.error is None) == (self.stats is None):
            raise ValueError("a measurement has either an error or its numbers")
        return self


class LoadStats(Model):
    generator: str  # "wrk" or "python xN" (wrk missing)
    requests: int
    errors: int
    error_detail: dict[str, int] = {}
    duration_s: float
    rps: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float | None = None  # wrk's; the Python fallback does not report it
    max_ms: float


class LoadCell(Measured[LoadStats]):
    """Non-streaming closed-loop load at one concurrency: the median of the run's rounds."""

    target: str
    concurrency: int
    foreign_cores_attempts: list[float] = []  # every attempt's, when a noisy cell was re-run
    rounds: list[float] = []  # every round's req/s, in the order measured


class StreamStats(Model):
    streams: int
    ok: int
    errors: dict[str, int]
    ttft: Latency
    gap: Latency
    stream_duration: Latency


class StreamCell(Measured[StreamStats]):
    """Paced streams at a small fixed concurrency: TTFT and the gaps between events; the median
    of the run's rounds."""

    target: str
    concurrency: int
    foreign_cores_attempts: list[float] = []
    rounds: list[float] = []  # every round's TTFT p50 in ms, in the order measured


class HoldStats(Model):
    ok: int  # streams that got every content event in order and ended properly
    errors: dict[str, int]
    wall_s: float  # first stream started to last stream ended
    peak_open: int  # most streams between first content event and end at one instant
    events: int  # content events received, over all streams
    ttft: Latency
    stream_duration: Latency


class HoldStep(Measured[HoldStats]):
    """`streams` streams opened together (or spread over a few seconds)."""

    target: str
    streams: int
    # Every event arrived but fewer than 90% of the streams were open at once (kept as `queued` in
    # stored runs): they waited for a connection, or the server started them slower than they ended.
    queued: bool = False

    @property
    def complete(self) -> bool:
        """Every stream got every event in order and ended properly."""
        return self.stats is not None and self.stats.ok == self.streams and not self.stats.errors


class Ramp(Model):
    steps: list[HoldStep]
    max_held: int  # the largest step held truly concurrently, with every step below it
    max_delivered: int  # the largest step that delivered every event, queued or not


class BatchStats(Model):
    count: int
    errors: dict[str, int]
    wall_s: float


class Batch(Measured[BatchStats]):
    """An exact number of requests (the memory phase's batches, the sanity requests)."""


class Memory(Model):
    requests_per_batch: int
    idle_mb: float | None  # None: the process was gone
    batches: list[Batch]
    after_1_mb: float | None
    after_2_mb: float | None
    growth_mb: float | None


class CapacityStep(Model):
    """One target at N long streams, on a server started for this step alone."""

    target: str
    streams: int
    hold: HoldStep
    rss_idle_mb: float | None  # the server's process tree, warmed up, before the streams
    rss_peak_mb: float | None  # the most it used while they were open


class ServiceInfo(Model):
    startup_s: float  # process spawned to the first 200 on its health route
    rss_idle_mb: float | None = None
    rss_end_mb: float | None = None
    log: str | None = None
    access_log_bytes: int | None = None


class Machine(Model):
    cpu_model: str
    cores: int | None
    memory_gb: float | None
    kernel: str
    python: str
    git: str
    packages: dict[str, str]


class Quiet(Model):
    """How busy other processes kept the machine just before the run."""

    foreign_cores: float
    loadavg: list[float]
    waited_s: float
    busy: bool


class Setup(Model):
    """Fixed facts of the harness the report quotes (the options are in `run.options`)."""

    wrk: str | None
    stream_model: str
    stream_gap_ms: int
    ramp_model: str
    ramp_chunks: int
    ramp_gap_ms: int
    capacity_model: str
    capacity_chunks: int
    capacity_gap_ms: int


class RunInfo(Model):
    id: str
    mode: Mode
    options: Options
    started_utc: str
    finished_utc: str | None = None
    wall_s: float | None = None
    interrupted: bool = False
    errors: list[str] = []


class NonstreamDelta(Model):
    """A target against direct (added) and the floor (fraction) at the same concurrency; None
    where that baseline was not measured at this concurrency, or failed."""

    added_p50_ms: float | None
    added_p95_ms: float | None
    added_p99_ms: float | None
    fraction_of_floor: float | None


class StreamDelta(Model):
    """A target's stream latencies minus direct's; None where either side had no samples."""

    added_ttft_p50_ms: float | None
    added_ttft_p99_ms: float | None
    added_gap_p50_ms: float | None
    added_gap_p99_ms: float | None


class CapacityDelta(Model):
    events_per_s: float
    rss_per_stream_kb: float | None  # (peak - idle) / streams, KB = 1,000 bytes
    ttft_p99_x_floor: float | None  # None for the floor itself, or without a floor step
    wall_x_floor: float | None


class Derived(Model):
    nonstream: dict[int, dict[str, NonstreamDelta]] = {}
    stream: dict[str, StreamDelta] = {}
    capacity: dict[int, dict[str, CapacityDelta]] = {}


class Check(Model):
    issue: int  # the issue that set the target
    what: str
    measured: str
    met: bool | None  # None: not applicable to this run (e.g. too few requests)


class Noise(Model):
    """Other load during the measurements themselves (every cell's `foreign_cores`)."""

    max_foreign_cores: float
    median_foreign_cores: float
    cells_over_threshold: int
    cells: int
    busy: bool
    # The speed probe over every measurement: how much the machine's own speed moved.
    probe_ms_min: float | None = None
    probe_ms_median: float | None = None
    probe_ms_max: float | None = None


class WhatifRow(Model):
    round: int
    c64_rps: float | None
    c64_p50_ms: float | None
    c1_p50_ms: float | None
    c1_mean_ms: float | None
    switches_per_request: float | None
    foreign_cores: float


class RunResult(Model):
    run: RunInfo
    machine: Machine
    setup: Setup
    quiet: Quiet | None = None
    services: dict[str, ServiceInfo] = {}
    target_order: list[str] = []  # the endpoints measured, in report order
    labels: dict[str, str] = {}
    emulator_alone: list[LoadCell] = []
    nonstream: dict[int, dict[str, LoadCell]] = {}  # concurrency -> target -> cell
    stream: dict[str, StreamCell] = {}
    ramp: dict[str, Ramp] = {}
    memory: dict[str, Memory] = {}
    capacity: dict[int, dict[str, CapacityStep]] = {}  # streams -> target -> step
    # Filled at the end of a measuring run (derive.py, checks.py):
    derived: Derived | None = None
    targets: list[Check] = []
    noise: Noise | None = None
    # --profile and --whatif runs:
    profile: dict[str, Any] | None = None  # profiling.py's summaries, as it makes them
    whatif: dict[str, list[WhatifRow]] | None = None

    def label(self, key: str) -> str:
        return self.labels.get(key, key)

    def measured(self) -> list[Measured[Any]]:
        """Every load run of this result (for the noise summary)."""
        found: list[Measured[Any]] = [*self.emulator_alone, *self.stream.values()]
        found += [cell for cells in self.nonstream.values() for cell in cells.values()]
        found += [step for ramp in self.ramp.values() for step in ramp.steps]
        found += [batch for memory in self.memory.values() for batch in memory.batches]
        found += [step.hold for steps in self.capacity.values() for step in steps.values()]
        return found
