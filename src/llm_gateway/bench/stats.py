"""Statistics over request records, exactly as benchmark-metrics.md defines them.

- `std_dev` is the sample standard deviation (ddof = 1), 0 when n = 1;
- percentiles use linear interpolation between closest ranks (NumPy's default "linear"
  method): p = values[(n - 1) * q] interpolated;
- distributions are computed over successful requests only; failures are counted by class,
  never dropped; warm-up requests are excluded from everything;
- retries are totalled, so failures a retry hid stay visible (`retries`);
- each model's most frequent error messages are kept (`top_errors`), since a class count
  (http_4xx 6) does not say why its requests failed;
- a sweep (`RunConfig.sweep`) is summarised per step, and per model in each step, against its
  SLO, with the knee: per model, the highest load at which it and every lower step met it.

Numbers are rounded to 6 decimals here, once, so a summary in memory equals the one on disk.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from llm_gateway.bench import loads
from llm_gateway.bench.documents import (
    Distribution,
    ErrorCount,
    GroupStats,
    ModelStats,
    PromptStats,
    RetryStats,
    RunConfig,
    StepStats,
    Summary,
    Sweep,
    SweepStep,
    Throughput,
)
from llm_gateway.bench.records import RequestRecord

PERCENTILES = (50, 90, 95, 99)
DIGITS = 6
TOP_ERRORS = 3  # messages kept per model
ERROR_CHARS = 300  # of each message


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def distribution(values: Iterable[float | None]) -> Distribution | None:
    """The distribution of the non-missing values, or None when there are none."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    return Distribution(
        n=len(data),
        avg=round(statistics.fmean(data), DIGITS),
        min=round(data[0], DIGITS),
        max=round(data[-1], DIGITS),
        std_dev=round(statistics.stdev(data), DIGITS) if len(data) > 1 else 0.0,
        **{f"p{q}": round(percentile(data, q), DIGITS) for q in PERCENTILES},
    )


def _group(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """The fields of `GroupStats` for these records (shared by every kind of group)."""
    ok = [r for r in records if r.status == "ok"]
    costs = [r.cost_usd for r in ok if r.cost_usd is not None]
    failed = len(records) - len(ok)
    return {
        "requests": len(records),
        "ok": len(ok),
        "failed": failed,
        "error_rate": round(failed / len(records), DIGITS) if records else 0.0,
        "errors": dict(sorted(Counter(r.status for r in records if r.status != "ok").items())),
        "truncated": sum(1 for r in ok if r.finish_reason == "length"),
        "latency": distribution(r.latency_seconds for r in ok),
        "ttft": distribution(r.ttft_seconds for r in ok),
        "tokens_per_s": distribution(r.tokens_per_second for r in ok),
        "output_tokens": sum(r.completion_tokens or 0 for r in ok),
        "cost_usd": round(sum(costs), 10) if costs else None,
        "retries": _retries(records, len(ok)),
    }


def _retries(records: Sequence[RequestRecord], ok: int) -> RetryStats:
    attempts = sum(r.attempts for r in records)
    return RetryStats(
        requests_retried=sum(1 for r in records if r.attempts > 1),
        attempts=attempts,
        failed_attempts=attempts - ok,
        retry_wait_s=round(sum(r.retry_wait_seconds for r in records), DIGITS),
    )


def _throughput(records: Sequence[RequestRecord], ok: int, output_tokens: int) -> Throughput:
    window = _window(records)
    return Throughput(
        window_s=round(window, DIGITS),
        requests_per_s=round(ok / window, DIGITS) if window > 0 else None,
        output_tokens_per_s=round(output_tokens / window, DIGITS) if window > 0 else None,
    )


def group_stats(records: Sequence[RequestRecord]) -> GroupStats:
    return GroupStats(**_group(records))


def top_errors(records: Sequence[RequestRecord]) -> list[ErrorCount]:
    """The most frequent error messages of failed requests (ties in the order first seen)."""
    counts = Counter(
        (r.status, _cut(r.error or "", ERROR_CHARS)) for r in records if r.status != "ok"
    )
    return [
        ErrorCount(status=status, message=message, count=count)
        for (status, message), count in counts.most_common(TOP_ERRORS)
    ]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(records: Sequence[RequestRecord], config: RunConfig | None = None) -> Summary:
    """The summary of a run: overall, per model, per prompt x model, and run throughput (and
    the sweep, when `config` plans one).

    The run window D runs from the first send to the last completion of measured requests;
    `requests_per_s = ok / D` and `output_tokens_per_s = sum(output tokens of ok) / D`.
    """
    measured = [r for r in records if not r.warmup]
    overall = _group(measured)
    by_model: dict[str, list[RequestRecord]] = defaultdict(list)
    by_cell: dict[tuple[int, str], list[RequestRecord]] = defaultdict(list)
    for record in measured:  # models keep the order they were first run in
        by_model[record.model].append(record)
        by_cell[(record.prompt_index, record.model)].append(record)
    order = {model: i for i, model in enumerate(by_model)}
    return Summary(
        runs=max((r.run for r in measured), default=0),
        prompts=len({index for index, _ in by_cell}),
        **overall,
        throughput=_throughput(measured, overall["ok"], overall["output_tokens"]),
        models={
            model: ModelStats(**_group(group), top_errors=top_errors(group))
            for model, group in by_model.items()
        },
        per_prompt=[
            PromptStats(
                prompt_index=index,
                prompt=by_cell[(index, model)][0].prompt,
                model=model,
                **_group(by_cell[(index, model)]),
            )
            for index, model in sorted(by_cell, key=lambda cell: (cell[0], order[cell[1]]))
        ],
        sweep=sweep(measured, config) if config is not None and config.sweep else None,
    )


def _step(records: Sequence[RequestRecord], slo: dict[str, float]) -> dict[str, Any]:
    """The fields of `StepStats` for one step (or one model in it)."""
    fields = _group(records)
    window = _window(records)
    good = sum(1 for r in records if loads.good(r, slo)) if slo else None
    broken = loads.breaches(GroupStats(**fields), slo) if slo else []
    return {
        **fields,
        "throughput": _throughput(records, fields["ok"], fields["output_tokens"]),
        "goodput_per_s": (
            round(good / window, DIGITS) if good is not None and window > 0 else None
        ),
        "slo_met": not broken if slo else None,
        "breaches": broken,
    }


def sweep(measured: Sequence[RequestRecord], config: RunConfig) -> Sweep:
    """Each step of the sweep `config` planned that has requests, against its SLO; the knee of
    each model; and why it stopped early, when it did."""
    slo = dict(config.slo or {})
    kind: Literal["concurrency", "rate"] = (
        "rate" if config.arrivals in ("constant", "poisson") else "concurrency"
    )
    by_step: dict[int, list[RequestRecord]] = defaultdict(list)
    for record in measured:
        if record.step is not None:
            by_step[record.step].append(record)
    models = list(dict.fromkeys(r.model for r in measured))
    steps: list[SweepStep] = []
    for number, load in enumerate(config.sweep or [], start=1):
        group = by_step.get(number)
        if not group:
            continue
        per_model = {
            model: StepStats(**_step([r for r in group if r.model == model], slo))
            for model in models
            if any(r.model == model for r in group)
        }
        steps.append(
            SweepStep(
                step=number,
                concurrency=round(load) if kind == "concurrency" else None,
                rate=load if kind == "rate" else None,
                **_step(group, slo),
                models=per_model,
            )
        )
    knee: dict[str, float | None] = {}
    if slo:
        for model in models:
            knee[model] = None
            for step in steps:
                stats = step.models.get(model)
                if stats is None or not stats.slo_met:
                    break
                knee[model] = step.concurrency if kind == "concurrency" else step.rate
    stopped = None
    planned = len(config.sweep or [])
    if slo and steps and steps[-1].step < planned:
        last = steps[-1]
        if all(not stats.slo_met for stats in last.models.values()):
            load_text = f"{last.concurrency if kind == 'concurrency' else last.rate:g}"
            stopped = f"every model broke the SLO at {kind} {load_text}"
    return Sweep(load=kind, slo=slo, steps=steps, knee=knee, stopped=stopped)


def _window(records: Sequence[RequestRecord]) -> float:
    """Seconds from the first send to the last completion."""
    starts = [r.offset_seconds for r in records]
    ends = [r.offset_seconds + (r.done_seconds or r.latency_seconds or 0.0) for r in records]
    return max(ends) - min(starts) if records else 0.0
