"""The per-request record of a benchmark (one CSV row) and the job that produces it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from llm_gateway.bench.csvcells import protect, restore

ErrorClass = Literal[
    "http_4xx", "http_429", "http_5xx", "timeout", "connect", "midstream_error", "empty"
]
ERROR_CLASSES: tuple[ErrorClass, ...] = (
    "http_4xx",
    "http_429",
    "http_5xx",
    "timeout",
    "connect",
    "midstream_error",
    "empty",
)


@dataclass(slots=True)
class RequestRecord:
    """One row of `benchmark_results.csv`. Times in seconds from `t0`; None when not reached."""

    model: str
    prompt_index: int
    prompt: str
    run: int
    step: int | None  # the sweep step (1, 2, ...) it belongs to; None outside a sweep
    warmup: bool
    status: str  # "ok" or an ErrorClass
    error: str | None
    http_status: int | None  # the upstream's status of the final attempt; None without one
    finish_reason: str | None
    started_at: str  # wall clock (UTC, ISO 8601), only to correlate with logs
    offset_seconds: float  # t0 relative to the benchmark's start (the timeline)
    queue_seconds: float  # how late it was sent: its release time (rate) or slot, to the call
    ttft_seconds: float | None
    ttfc_seconds: float | None
    latency_seconds: float | None
    done_seconds: float | None
    tokens_used: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_source: str | None  # "usage" (from the upstream) or "estimated"
    chunks: int
    tokens_per_second: float | None
    decode_tokens_per_second: float | None
    decode_seconds_per_token: float | None
    inter_chunk_p50_seconds: float | None
    inter_chunk_p95_seconds: float | None
    inter_chunk_max_seconds: float | None
    stalls: int
    cost_usd: float | None
    attempts: int
    retry_wait_seconds: float
    provider: str | None
    model_served: str | None
    generation_id: str | None
    output_preview: str | None  # the start of the answer (untrusted text: escape it)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def row(self) -> dict[str, Any]:
        """The CSV row: text cells protected from spreadsheets (csvcells), numbers as they are."""
        values = {name: getattr(self, name) for name in self.columns()}
        return {k: protect(v) if isinstance(v, str) else v for k, v in values.items()}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> RequestRecord:
        """Read a CSV row back (every value arrives as a string)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = row.get(f.name, "")
            kind = str(f.type)
            if raw == "" and "None" in kind:
                values[f.name] = None
            elif kind.startswith("int"):
                values[f.name] = int(raw)
            elif kind.startswith("float"):
                values[f.name] = float(raw)
            elif kind == "bool":
                values[f.name] = raw == "True"
            else:
                values[f.name] = restore(raw)
        return cls(**values)


@dataclass(slots=True)
class Job:
    """What to send, and where the request sits in the benchmark. `at`: when to send it, in
    seconds from the start of its step (open-loop arrivals); None: as soon as a slot is free."""

    model: str
    prompt_index: int
    prompt: str
    payload: dict[str, Any]
    run: int
    warmup: bool = False
    at: float | None = None
    step: int | None = None
