"""Statistics over request records, exactly as benchmark-metrics.md defines them.

- `std_dev` is the sample standard deviation (ddof = 1), 0 when n = 1;
- percentiles use linear interpolation between closest ranks (NumPy's default "linear"
  method): p = values[(n - 1) * q] interpolated;
- distributions are computed over successful requests only; failures are counted by class,
  never dropped; warm-up requests are excluded from everything.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llm_gateway.bench.records import RequestRecord

PERCENTILES = (50, 90, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Distribution:
    n: int
    avg: float
    min: float
    max: float
    std_dev: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Distribution | None:
        """The distribution of the non-missing values, or None when there are none."""
        data = sorted(v for v in values if v is not None)
        if not data:
            return None
        return cls(
            n=len(data),
            avg=statistics.fmean(data),
            min=data[0],
            max=data[-1],
            std_dev=statistics.stdev(data) if len(data) > 1 else 0.0,
            p50=percentile(data, 50),
            p90=percentile(data, 90),
            p95=percentile(data, 95),
            p99=percentile(data, 99),
        )

    def rounded(self, digits: int = 6) -> dict[str, Any]:
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _json(dist: Distribution | None) -> dict[str, Any] | None:
    return dist.rounded() if dist is not None else None


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Counts and distributions for one group of requests (a run, a model, a prompt x model)."""

    requests: int
    ok: int
    failed: int
    errors: dict[str, int]
    truncated: int
    latency: Distribution | None
    ttft: Distribution | None
    tokens_per_s: Distribution | None
    output_tokens: int
    cost_usd: float | None

    @classmethod
    def of(cls, records: Sequence[RequestRecord]) -> GroupStats:
        ok = [r for r in records if r.status == "ok"]
        costs = [r.cost_usd for r in ok if r.cost_usd is not None]
        return cls(
            requests=len(records),
            ok=len(ok),
            failed=len(records) - len(ok),
            errors=dict(sorted(Counter(r.status for r in records if r.status != "ok").items())),
            truncated=sum(1 for r in ok if r.finish_reason == "length"),
            latency=Distribution.of(r.latency_seconds for r in ok),
            ttft=Distribution.of(r.ttft_seconds for r in ok),
            tokens_per_s=Distribution.of(r.tokens_per_second for r in ok),
            output_tokens=sum(r.completion_tokens or 0 for r in ok),
            cost_usd=round(sum(costs), 10) if costs else None,
        )

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "error_rate": round(self.error_rate, 6),
            "errors": self.errors,
            "truncated": self.truncated,
            "latency": _json(self.latency),
            "ttft": _json(self.ttft),
            "tokens_per_s": _json(self.tokens_per_s),
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }


def summarize(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """The summary of a run: overall, per model, per prompt x model, and run throughput.

    The run window D runs from the first send to the last completion of measured requests;
    `requests_per_s = ok / D` and `output_tokens_per_s = sum(output tokens of ok) / D`.
    """
    measured = [r for r in records if not r.warmup]
    overall = GroupStats.of(measured)
    by_model: dict[str, list[RequestRecord]] = defaultdict(list)
    by_cell: dict[tuple[int, str], list[RequestRecord]] = defaultdict(list)
    for record in measured:  # models keep the order they were first run in
        by_model[record.model].append(record)
        by_cell[(record.prompt_index, record.model)].append(record)
    window = _window(measured)
    summary: dict[str, Any] = {
        "runs": max((r.run for r in measured), default=0),
        "prompts": len({index for index, _ in by_cell}),
        **overall.to_json(),
        "throughput": {
            "window_s": round(window, 6),
            "requests_per_s": round(overall.ok / window, 6) if window > 0 else None,
            "output_tokens_per_s": round(overall.output_tokens / window, 6) if window > 0 else None,
        },
        "models": {model: GroupStats.of(group).to_json() for model, group in by_model.items()},
        "per_prompt": [
            {
                "prompt_index": index,
                "prompt": by_cell[(index, model)][0].prompt,
                "model": model,
                **GroupStats.of(by_cell[(index, model)]).to_json(),
            }
            for index, model in sorted(
                by_cell, key=lambda cell: (cell[0], list(by_model).index(cell[1]))
            )
        ],
    }
    return summary


def _window(records: Sequence[RequestRecord]) -> float:
    """Seconds from the first send to the last completion."""
    starts = [r.offset_seconds for r in records]
    ends = [r.offset_seconds + (r.done_seconds or r.latency_seconds or 0.0) for r in records]
    return max(ends) - min(starts) if records else 0.0
