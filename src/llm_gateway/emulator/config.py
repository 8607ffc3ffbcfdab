"""Configuration value objects of the emulator: per-model latency profiles and server settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

UsageChunkStyle = Literal["dummy", "empty", "alternate"]


@dataclass(frozen=True)
class ModelProfile:
    """Latency and length profile of one emulated model.

    Latency of a completion of n tokens is `ttft_s + n / tokens_per_s` (times the emulator's
    `time_scale`). `jitter` spreads every interval uniformly over +-jitter of its nominal value, so
    the mean stays the nominal profile: the benchmark's ground truth.
    `tokens_per_s=math.inf` means no decode time at all.

    >>> ModelProfile(ttft_s=0.3, tokens_per_s=60.0, jitter=0.1, output_tokens=(20, 60))
    ModelProfile(ttft_s=0.3, tokens_per_s=60.0, jitter=0.1, output_tokens=(20, 60))
    """

    ttft_s: float
    tokens_per_s: float
    jitter: float = 0.0
    output_tokens: tuple[int, int] = (20, 60)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ttft_s) and self.ttft_s >= 0):
            raise ValueError(f"ttft_s must be a finite number >= 0, got {self.ttft_s!r}")
        if not self.tokens_per_s > 0:
            raise ValueError(f"tokens_per_s must be > 0, got {self.tokens_per_s!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        low, high = self.output_tokens
        if not 0 <= low <= high:
            raise ValueError(
                f"output_tokens must be (low, high) with 0 <= low <= high, got {low, high}"
            )


@dataclass
class EmulatorConfig:
    """Server-wide settings of an `Emulator`.

    Latencies of the model profiles are multiplied by `time_scale` (0 = answer instantly, with no
    sleeping at all); the durations named in fault steps (`hang:2`, `stall:1`, ...) and the
    keep-alive cadence are wall-clock and never scaled, because timeout tests depend on them.

    Request records (`Emulator.records`, `GET /_emulator/requests`) are bounded by
    `records_max_bytes`: the oldest go first. They keep each chat request's JSON body only with
    `keep_bodies`, since prompts can be megabytes.

    Fields may be changed on a running emulator (tests do): each request reads them afresh,
    except `models`, read once when the `Emulator` is built, and `seed` for latency jitter,
    which restarts from it on `Emulator.reset()`. Validation only runs at construction.
    """

    seed: int = 0
    time_scale: float = 1.0
    api_key: str | None = None
    free_rpm: int | None = None
    keepalive_interval_s: float = 0.5
    keepalive_every_n_chunks: int = 8
    usage_chunk_style: UsageChunkStyle = "alternate"
    generation_lag_s: float = 0.3
    models: dict[str, ModelProfile] | None = None
    keep_bodies: bool = False
    records_max_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_scale) and self.time_scale >= 0):
            raise ValueError(f"time_scale must be a finite number >= 0, got {self.time_scale!r}")
        if not self.keepalive_interval_s > 0:
            raise ValueError(f"keepalive_interval_s must be > 0, got {self.keepalive_interval_s!r}")
        if self.keepalive_every_n_chunks < 0:
            raise ValueError("keepalive_every_n_chunks must be >= 0")
        if self.free_rpm is not None and self.free_rpm < 1:
            raise ValueError("free_rpm must be >= 1 (or None for no limit)")
        if self.usage_chunk_style not in ("dummy", "empty", "alternate"):
            raise ValueError(f"unknown usage_chunk_style {self.usage_chunk_style!r}")
        if self.generation_lag_s < 0:
            raise ValueError("generation_lag_s must be >= 0")
        if self.records_max_bytes < 0:
            raise ValueError("records_max_bytes must be >= 0")
        if self.models is not None and not self.models:
            raise ValueError("models must name at least one model (or be None for the built-ins)")
