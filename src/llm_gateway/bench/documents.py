"""The JSON documents of a benchmark run, typed: `summary.json`, `manifest.json`, `status.json`,
an entry of the runs index, and the answer of `POST /benchmark`.

Statistics flow runner -> stats -> store -> report -> API as these models, and each serialises
(`model_dump(mode="json")`) to the keys the README documents. Files written by older versions,
or cut short, still read: a missing key takes its default, an unknown key is ignored, and a
value of the wrong type is dropped (so it takes its default too) instead of failing the whole
document.

Pydantic orders fields base first along the MRO, so a mixin listed after the main base puts its
fields first: that keeps each document's keys in the order the README shows (`run_id` first).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.functional_validators import ModelWrapValidatorHandler

RunState = Literal["queued", "running", "done", "failed", "interrupted", "unknown"]
ACTIVE: tuple[RunState, ...] = ("queued", "running")


class Document(BaseModel):
    """Base of every stored document: immutable, and tolerant when reading (see the module)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="wrap")
    @classmethod
    def _drop_invalid(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        try:
            return handler(data)
        except ValidationError as exc:
            if not isinstance(data, dict):
                raise  # the parent document drops this whole value instead
            bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
            return handler({key: value for key, value in data.items() if key not in bad})


# --- summary.json -----------------------------------------------------------------------------


class Distribution(Document):
    """One metric over the successful requests of a group (seconds, or tokens/s)."""

    n: int = 0
    avg: float | None = None
    min: float | None = None
    max: float | None = None
    std_dev: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class RetryStats(Document):
    """What retrying cost a group: a request that needed several upstream calls counts once in
    `requests_retried`; `attempts` counts every call, `failed_attempts` those that failed (the
    upstream's own failure rate is failed_attempts / attempts, even when retries hid it from
    `error_rate`), and `retry_wait_s` sums the time spent before the final attempts."""

    requests_retried: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    retry_wait_s: float = 0.0


class GroupStats(Document):
    """Counts and distributions for one group of requests: a run, a model, a prompt x model."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    error_rate: float = 0.0
    errors: dict[str, int] = Field(default_factory=dict)  # failures by class
    truncated: int = 0  # ok, but cut by max_tokens
    latency: Distribution | None = None
    ttft: Distribution | None = None
    tokens_per_s: Distribution | None = None
    output_tokens: int = 0
    cost_usd: float | None = None
    retries: RetryStats = Field(default_factory=RetryStats)


class ErrorCount(Document):
    """One error message, and how many failed requests of a group ended with it."""

    status: str = ""  # its class: http_4xx, timeout, ...
    message: str = ""
    count: int = 0


class ModelStats(GroupStats):
    """One model's statistics, and its most frequent error messages: `errors` counts how its
    requests failed (http_4xx 6), these say why ("foo/bar is not a valid model ID")."""

    top_errors: list[ErrorCount] = Field(default_factory=list)  # most frequent first


class _Cell(Document):
    prompt_index: int = 0
    prompt: str = ""
    model: str = ""


class PromptStats(GroupStats, _Cell):
    """The statistics of one prompt against one model."""


class Throughput(Document):
    """The run's wall window D (first send to last completion) and what it achieved in it."""

    window_s: float = 0.0
    requests_per_s: float | None = None  # ok / D
    output_tokens_per_s: float | None = None  # output tokens of ok requests / D


class _Shape(Document):
    runs: int = 0
    prompts: int = 0


class LagStats(Document):
    """How late an event loop of the benchmark client ran callbacks that were due (seconds):
    every `interval_s`, the wait of a callback beyond the timer's 1 ms grid (docs/metrics.md)."""

    loop_lag_p50_s: float | None = None
    loop_lag_p99_s: float | None = None
    loop_lag_max_s: float | None = None
    samples: int = 0


class ClientLag(LagStats):
    """The client's own timing health over the whole run (all its measuring loops together),
    per sweep step, and the warning when it may have distorted the numbers."""

    interval_s: float | None = None
    processes: int | None = None  # event loops (one per process) that measured
    warning: str | None = None
    steps: list[LagStats] = Field(default_factory=list)  # per sweep step, in order


class StepStats(GroupStats):
    """One model (or all of them) at one step of a sweep."""

    throughput: Throughput = Field(default_factory=Throughput)
    goodput_per_s: float | None = None  # ok requests meeting every SLO bound, per second
    slo_met: bool | None = None  # None when the sweep has no SLO
    breaches: list[str] = Field(default_factory=list)  # the SLO bounds it broke, readable


class SweepStep(StepStats):
    """One step of a sweep: its load, the whole step, and each model."""

    step: int = 0
    concurrency: int | None = None  # closed loop: requests in flight
    rate: float | None = None  # open loop: requests per second
    loop_lag_p99_s: float | None = None
    models: dict[str, StepStats] = Field(default_factory=dict)


class Sweep(Document):
    """`llm-gateway bench --sweep`: the load stepped up until the SLO broke, and the knee, the
    highest load each model met the SLO at (every lower step met it too)."""

    load: Literal["concurrency", "rate"] = "concurrency"
    slo: dict[str, float] = Field(default_factory=dict)
    steps: list[SweepStep] = Field(default_factory=list)
    knee: dict[str, float | None] = Field(default_factory=dict)  # model -> load, None: never
    stopped: str | None = None  # why it stopped before its last planned step


class Summary(GroupStats, _Shape):
    """`summary.json`: the whole run (flattened in), then per model and per prompt x model."""

    throughput: Throughput = Field(default_factory=Throughput)
    models: dict[str, ModelStats] = Field(default_factory=dict)  # in the order first run
    per_prompt: list[PromptStats] = Field(default_factory=list)
    client: ClientLag | None = None
    sweep: Sweep | None = None


class RunFiles(Document):
    """Where a run's files are."""

    results_csv: str = ""
    summary: str = ""
    manifest: str = ""
    report: str = ""


class _Head(Document):
    run_id: str = ""
    status: RunState = "unknown"


class RunResult(Summary, _Head):
    """A finished run as `POST /benchmark` answers it: id, how it ended, summary, files."""

    files: RunFiles = Field(default_factory=RunFiles)


# --- manifest.json ----------------------------------------------------------------------------


class UpstreamInfo(Document):
    """Where the requests went (the URL without credentials; never the key)."""

    url: str = ""
    kind: str = ""  # "openrouter" | "emulator" | "custom"


class PromptFileInfo(Document):
    name: str = ""
    sha256: str = ""
    prompts: int = 0


class RunConfig(Document):
    """How the benchmark was run; None where an older manifest did not record it."""

    runs: int | None = None
    concurrency: int | None = None
    rate: float | None = None  # requests per second; None = as fast as concurrency allows
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool | None = None
    warmup: int | None = None
    timeout: float | None = None
    order: str | None = None  # "round-robin" | "shuffled"
    shuffle_seed: int | None = None
    arrivals: str | None = None  # "closed" (concurrency) | "constant" | "poisson" (rate)
    arrival_seed: int | None = None  # Poisson arrivals: the seed of their random gaps
    processes: int | None = None  # measuring processes (1: one event loop)
    retries: int | None = None  # retries per request (0: the upstream measured as it is)
    sweep: list[float] | None = None  # the loads planned, in order (concurrency or rate)
    slo: dict[str, float] | None = None


class Manifest(Document):
    """`manifest.json`: what was run, against what, with which versions, and when."""

    id: str = ""
    created_at: str | None = None  # ISO 8601, UTC
    finished_at: str | None = None
    status: RunState = "unknown"
    upstream: UpstreamInfo = Field(default_factory=UpstreamInfo)
    models: list[str] = Field(default_factory=list)
    models_served: dict[str, list[str]] = Field(default_factory=dict)  # requested -> answered
    prompt_file: PromptFileInfo = Field(default_factory=PromptFileInfo)
    config: RunConfig = Field(default_factory=RunConfig)
    versions: dict[str, str] = Field(default_factory=dict)
    client: ClientLag = Field(default_factory=ClientLag)


# --- status.json and the index ----------------------------------------------------------------


class Progress(Document):
    done: int = 0
    total: int = 0


class RunStatus(Document):
    """`status.json`: rewritten as the run goes, so any worker can answer for the run."""

    id: str = ""
    status: RunState = "unknown"
    progress: Progress | None = None
    error: str | None = None
    updated_at: float = 0.0  # epoch seconds: the heartbeat


class RunEntry(Document):
    """One run in the runs index (and in `GET /benchmarks`)."""

    id: str = ""
    status: RunState = "unknown"
    progress: Progress | None = None
    created_at: str | None = None
    models: list[str] = Field(default_factory=list)
    requests: int | None = None  # the counts and size are known once the run has ended
    ok: int | None = None
    failed: int | None = None
    bytes: int | None = None
