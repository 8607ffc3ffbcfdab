"""Load shapes: when requests are sent, the steps of a sweep, and the service-level objective
(SLO) a sweep checks each step against.

- Closed loop (`--concurrency N`): N requests in flight, the next sent when one finishes.
- Open loop (`--rate R`): request i is released at a fixed time, whatever the answers do;
  `constant` spaces them 1/R apart, `poisson` draws exponential gaps of mean 1/R (a Poisson
  process, as independent users arrive), from a recorded seed. `--concurrency` then only caps
  the requests in flight; a request held back by the cap is sent late, and how late is its
  `queue_seconds`.
- A sweep steps the load (concurrency or rate) up by doubling, from `start` to the top, e.g.
  1, 2, 4, 8, 12 for a top of 12.
- An SLO is a set of bounds, `ttft_p99=0.5,latency_p99=5`: a statistic of `latency`, `ttft`
  (seconds, upper bounds) or `tokens_per_s` (a lower bound), one of avg, p50, p90, p95, p99,
  max; and `error_rate` (an upper bound, 0-1).
"""

from __future__ import annotations

import math
import random
from typing import Literal

from llm_gateway.bench.documents import Distribution, GroupStats
from llm_gateway.bench.records import RequestRecord

Arrivals = Literal["closed", "constant", "poisson"]
ARRIVALS: tuple[Arrivals, ...] = ("closed", "constant", "poisson")
METRICS = ("latency", "ttft", "tokens_per_s")
STATS = ("avg", "p50", "p90", "p95", "p99", "max")
MAX_STEPS = 32

_RECORD_FIELD = {
    "latency": "latency_seconds",
    "ttft": "ttft_seconds",
    "tokens_per_s": "tokens_per_second",
}


def arrival_times(count: int, rate: float, arrivals: Arrivals, seed: int | None) -> list[float]:
    """Seconds from the start at which each of `count` requests is released (the first at 0)."""
    if arrivals == "constant":
        return [i / rate for i in range(count)]
    rng = random.Random(seed)
    times, at = [], 0.0
    for _ in range(count):
        times.append(at)
        at += rng.expovariate(rate)
    return times


def sweep_loads(top: float, *, start: float = 1.0, integer: bool = True) -> list[float]:
    """The loads of a sweep: doubling from `start`, ending exactly at `top`."""
    if not 0 < start <= top:
        raise ValueError(f"the sweep must start above 0 and at most at its top ({top:g})")
    loads: list[float] = []
    load = start
    while load < top and len(loads) < MAX_STEPS - 1:
        loads.append(float(math.floor(load)) if integer else round(load, 6))
        load *= 2
    loads.append(top)
    return sorted(set(loads))


def parse_slo(text: str) -> dict[str, float]:
    """`ttft_p99=0.5,latency_p99=5` -> {"ttft_p99": 0.5, "latency_p99": 5.0}."""
    slo: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not sep or not math.isfinite(value) or value < 0:
            raise ValueError(f"{part!r} is not name=number (e.g. ttft_p99=0.5)")
        if not _known(key):
            raise ValueError(
                f"{key!r} is not a bound the sweep knows: error_rate, or one of "
                f"{', '.join(METRICS)} with _{'/_'.join(STATS)} (e.g. latency_p99)"
            )
        slo[key] = value
    if not slo:
        raise ValueError("give at least one bound, e.g. ttft_p99=0.5,latency_p99=5")
    return slo


def _known(key: str) -> bool:
    if key == "error_rate":
        return True
    metric, _, stat = key.rpartition("_")
    return metric in METRICS and stat in STATS


def _split(key: str) -> tuple[str, str]:
    metric, _, stat = key.rpartition("_")
    return metric, stat


def breaches(stats: GroupStats, slo: dict[str, float]) -> list[str]:
    """The bounds of `slo` these statistics break, readable ("ttft_p99 0.612 > 0.5")."""
    broken: list[str] = []
    for key, bound in slo.items():
        if key == "error_rate":
            if stats.error_rate > bound:
                broken.append(f"error_rate {stats.error_rate:.3g} > {bound:g}")
            continue
        metric, stat = _split(key)
        distribution: Distribution | None = getattr(stats, metric)
        value = getattr(distribution, stat) if distribution is not None else None
        if value is None:
            broken.append(f"{key} not measured")
        elif metric == "tokens_per_s" and value < bound:
            broken.append(f"{key} {value:.4g} < {bound:g}")
        elif metric != "tokens_per_s" and value > bound:
            broken.append(f"{key} {value:.4g} > {bound:g}")
    return broken


def good(record: RequestRecord, slo: dict[str, float]) -> bool:
    """Whether one request met every bound of the SLO on its own (goodput counts these): ok,
    and each of its latency, TTFT and tokens/s within the bounds set on that metric."""
    if record.status != "ok":
        return False
    for key, bound in slo.items():
        if key == "error_rate":
            continue
        metric, _ = _split(key)
        value = getattr(record, _RECORD_FIELD[metric])
        if value is None:
            return False
        if value < bound if metric == "tokens_per_s" else value > bound:
            return False
    return True
