"""The self-contained HTML report of one benchmark run (`report.html`).

One file that opens offline: inline CSS, charts as inline SVG (see `charts`), no scripts, no
external references. Prompts, error messages, model ids and manifest values come from outside,
so the template is autoescaped and the charts escape their own text.

It renders the typed summary and manifest (`documents`), which read older runs with defaults
for what they lack; a missing value is shown as an em dash.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from llm_gateway.bench import charts, lag
from llm_gateway.bench.documents import (
    ClientLag,
    GroupStats,
    Manifest,
    RunConfig,
    StepStats,
    Summary,
    Sweep,
)
from llm_gateway.bench.records import RequestRecord

DASH = "—"
PROMPT_CHARS = 80
# The per-prompt table comes after the charts, folded when longer than this (200 prompts x 3
# models are 600 rows, 30,000 px of page).
PROMPT_ROWS_OPEN = 30
MAX_FAILURES = 50
ERROR_CHARS = 500
STATUS_NOTES = {
    "interrupted": "This run was interrupted: the numbers cover only the requests that finished.",
    "failed": "This run failed: the numbers cover only the requests that finished.",
    "running": "This run was still running when the report was written: the numbers are partial.",
}

Number = float | int | None


def _finite(value: Number) -> float | None:
    """The value, or None when it is missing or not a finite number (nan, inf)."""
    return None if value is None or not math.isfinite(value) else float(value)


def fmt_seconds(value: Number) -> str:
    """Seconds with millisecond precision; an em dash for a missing value."""
    number = _finite(value)
    return DASH if number is None else f"{number:.3f}"


def fmt_rate(value: Number) -> str:
    """Tokens (or requests) per second, one decimal."""
    number = _finite(value)
    return DASH if number is None else f"{number:,.1f}"


def fmt_cost(value: Number) -> str:
    """US dollars with up to 6 significant digits, never in exponent notation."""
    number = _finite(value)
    if number is None:
        return DASH
    return "$" + format(Decimal(f"{number:.6g}"), "f")


def fmt_percent(value: Number) -> str:
    """A fraction (0.25) as a percentage (25.0 %)."""
    number = _finite(value)
    return DASH if number is None else f"{number * 100:.1f} %"


def fmt_count(value: Number) -> str:
    """An integer with thousands separators."""
    number = _finite(value)
    return DASH if number is None else f"{round(number):,}"


def fmt_ms(value: Number) -> str:
    """Seconds shown in milliseconds, for small values such as event-loop lag."""
    number = _finite(value)
    return DASH if number is None else f"{number * 1000:,.1f} ms"


def _text(value: object) -> str:
    """A manifest value as display text (escaped later by the template)."""
    if value is None or value == "":
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or DASH
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items()) or DASH
    return str(value)


def _group_row(group: GroupStats) -> dict[str, Any]:
    """The numbers a table row shows for one group (a model, or a prompt x model)."""
    latency, ttft, speed = group.latency, group.ttft, group.tokens_per_s
    return {
        "requests": group.requests,
        "ok": group.ok,
        "failed": group.failed,
        "error_rate": group.error_rate,
        "errors": ", ".join(f"{name} \u00d7 {n}" for name, n in group.errors.items()) or DASH,
        "truncated": group.truncated,
        "lat_avg": latency.avg if latency else None,
        # Undefined for a single request (summary.json says 0): shown as a dash, and why.
        "lat_sd": latency.std_dev if latency and latency.n > 1 else None,
        "lat_p50": latency.p50 if latency else None,
        "lat_p95": latency.p95 if latency else None,
        "ttft_avg": ttft.avg if ttft else None,
        "ttft_p50": ttft.p50 if ttft else None,
        "tps_avg": speed.avg if speed else None,
        "output_tokens": group.output_tokens,
        "cost": group.cost_usd,
    }


def _mark_best(rows: list[dict[str, Any]]) -> None:
    """Flag the row(s) with the lowest mean latency, when there is more than one to compare."""
    means = [row["lat_avg"] for row in rows if row["lat_avg"] is not None]
    for row in rows:
        row["best"] = len(rows) > 1 and bool(means) and row["lat_avg"] == min(means)


def _model_rows(summary: Summary) -> list[dict[str, Any]]:
    rows = [
        {
            "model": model,
            **_group_row(group),
            "top_errors": group.top_errors,
            "no_success": bool(group.requests) and not group.ok,
        }
        for model, group in summary.models.items()
    ]
    _mark_best(rows)
    return rows


def _single(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether a row has a mean but no std dev: a single successful request."""
    return any(row["lat_avg"] is not None and row["lat_sd"] is None for row in rows)


def _prompt_groups(summary: Summary, measured: Sequence[RequestRecord]) -> list[dict[str, Any]]:
    """Per-prompt rows grouped by prompt, in prompt order, for a table with a row per model,
    each with the first successful answer as a sample."""
    samples: dict[tuple[int, str], str] = {}
    for r in measured:
        if r.status == "ok" and r.output_preview:
            samples.setdefault((r.prompt_index, r.model), r.output_preview)
    groups: dict[int, dict[str, Any]] = {}
    for cell in summary.per_prompt:
        index = cell.prompt_index
        if index not in groups:
            prompt = cell.prompt
            short = prompt if len(prompt) <= PROMPT_CHARS else prompt[: PROMPT_CHARS - 1] + "…"
            groups[index] = {"index": index, "prompt": prompt, "short": short, "rows": []}
        sample = samples.get((index, cell.model))
        groups[index]["rows"].append({"model": cell.model, "sample": sample, **_group_row(cell)})
    for group in groups.values():
        _mark_best(group["rows"])
    return list(groups.values())


def _failures(measured: Sequence[RequestRecord]) -> list[dict[str, Any]]:
    rows = []
    for r in measured:
        if r.status == "ok":
            continue
        error = r.error or ""
        rows.append(
            {
                "model": r.model,
                "prompt_index": r.prompt_index,
                "run": r.run,
                "status": r.status,
                "http_status": r.http_status,
                "attempts": r.attempts,
                "offset": r.offset_seconds,
                "error": error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 1] + "…",
            }
        )
    return rows


def _when(value: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value or "")
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _window(manifest: Manifest) -> dict[str, str]:
    """Start and end in UTC (the end without its date when it is the same day), and duration."""
    start, end = _when(manifest.created_at), _when(manifest.finished_at)
    first = start.strftime("%Y-%m-%d %H:%M:%S UTC") if start else _text(manifest.created_at)
    last = _text(manifest.finished_at)
    duration = DASH
    if end is not None:
        same_day = start is not None and start.date() == end.date()
        last = end.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC")
        if start is not None:
            duration = f"{(end - start).total_seconds():,.1f} s"
    return {"start": first, "end": last, "duration": duration}


def _streamed(config: RunConfig, measured: Sequence[RequestRecord]) -> bool:
    if config.stream is not None:
        return config.stream
    return any(r.ttft_seconds is not None for r in measured)


def _load_text(config: RunConfig) -> str:
    """How the load was shaped, in words: the concurrency, or the rate, or the sweep."""
    if config.sweep:
        kind = "requests/s" if config.rate is not None else "in flight"
        return f"sweep {' → '.join(f'{v:g}' for v in config.sweep)} ({kind})"
    if config.rate is not None:
        return (
            f"{config.rate:g} requests/s, {config.arrivals or 'constant'} arrivals "
            f"(at most {_text(config.concurrency)} in flight)"
        )
    return _text(config.concurrency)


def _manifest_rows(manifest: Manifest) -> list[tuple[str, list[tuple[str, str]]]]:
    """The manifest as (section, [(key, value)]) for a readable table."""
    upstream, prompts, client = manifest.upstream, manifest.prompt_file, manifest.client
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "Run",
            [
                ("id", _text(manifest.id)),
                ("status", _text(manifest.status)),
                ("created at", _text(manifest.created_at)),
                ("finished at", _text(manifest.finished_at)),
                ("models requested", _text(manifest.models)),
                ("models served", _text(manifest.models_served)),
            ],
        ),
        ("Upstream", [("url", _text(upstream.url)), ("kind", _text(upstream.kind))]),
        (
            "Prompt file",
            [
                ("name", _text(prompts.name)),
                ("SHA-256", _text(prompts.sha256)),
                ("prompts", _text(prompts.prompts)),
            ],
        ),
        ("Config", [(k, _text(v)) for k, v in manifest.config.model_dump().items()]),
        ("Versions", [(k, _text(v)) for k, v in manifest.versions.items()]),
        (
            "Client event-loop lag",
            [
                ("p50", fmt_ms(client.loop_lag_p50_s)),
                ("p99", fmt_ms(client.loop_lag_p99_s)),
                ("max", fmt_ms(client.loop_lag_max_s)),
                ("samples", _text(client.samples or None)),
                ("sampled every", fmt_ms(client.interval_s)),
                ("measuring processes", _text(client.processes)),
                ("warning", _text(client.warning)),
            ],
        ),
    ]
    return [(name, rows) for name, rows in sections if rows]


def _charts(
    measured: Sequence[RequestRecord], models: list[str], streamed: bool
) -> dict[str, Markup | None]:
    colors = charts.model_colors(models)

    def points(attr: str) -> dict[str, list[tuple[float, str]]]:
        values: dict[str, list[tuple[float, str]]] = {m: [] for m in models}
        for r in measured:
            value = getattr(r, attr)
            if r.status == "ok" and value is not None:
                tip = f"{r.model} · prompt {r.prompt_index} · run {r.run} · {value:.3f} s"
                values.setdefault(r.model, []).append((value, tip))
        return values

    latency, ttft = points("latency_seconds"), points("ttft_seconds")
    return {
        "latency": charts.distribution_chart(
            "latency", "Latency per model", "end-to-end latency (s)", latency, colors
        )
        if any(latency.values())
        else None,
        "ttft": charts.distribution_chart(
            "ttft", "Time to first token per model", "time to first token (s)", ttft, colors
        )
        if streamed and any(ttft.values())
        else None,
        "timeline": charts.timeline_chart(measured, colors) if measured else None,
    }


def _load_label(sweep: Sweep, load: float | None) -> str:
    if load is None:
        return DASH
    return f"{load:g}" if sweep.load == "concurrency" else f"{load:g}/s"


def _step_row(stats: StepStats) -> dict[str, Any]:
    latency, ttft = stats.latency, stats.ttft
    return {
        "requests": stats.requests,
        "ok": stats.ok,
        "failed": stats.failed,
        "rps": stats.throughput.requests_per_s,
        "tps": stats.throughput.output_tokens_per_s,
        "goodput": stats.goodput_per_s,
        "ttft_p50": ttft.p50 if ttft else None,
        "ttft_p99": ttft.p99 if ttft else None,
        "lat_p50": latency.p50 if latency else None,
        "lat_p99": latency.p99 if latency else None,
        "met": stats.slo_met,
        "breaches": "; ".join(stats.breaches),
    }


def _sweep(sweep: Sweep | None, models: list[str], streamed: bool) -> dict[str, Any] | None:
    """The sweep section: a row per step and model, the knees, and the charts against load."""
    if sweep is None or not sweep.steps:
        return None
    colors = charts.model_colors(models)
    loads = [
        _load_label(sweep, step.concurrency if sweep.load == "concurrency" else step.rate)
        for step in sweep.steps
    ]
    rows = []
    for step, load in zip(sweep.steps, loads, strict=True):
        for i, (model, stats) in enumerate(step.models.items()):
            rows.append(
                {
                    "load": load,
                    "first": i == 0,
                    "span": len(step.models),
                    "lag_p99": step.loop_lag_p99_s,
                    "model": model,
                    **_step_row(stats),
                }
            )

    def per_model(metric: str, stat: str, label: str, dashed: bool) -> list[charts.Series]:
        series = []
        for model in models:
            values = []
            for step in sweep.steps:
                stats = step.models.get(model)
                distribution = getattr(stats, metric) if stats is not None else None
                values.append(getattr(distribution, stat) if distribution is not None else None)
            if any(v is not None for v in values):
                series.append(charts.Series(f"{model} {label}", colors[model], values, dashed))
        return series

    def bounds(metric: str) -> list[tuple[float, str]]:
        return [(v, k) for k, v in sweep.slo.items() if k.startswith(metric + "_")]

    knees = [sweep.knee.get(m) for m in models]
    knee_index = None
    if len(models) == 1 and knees[0] is not None:
        for i, step in enumerate(sweep.steps):
            if (step.concurrency if sweep.load == "concurrency" else step.rate) == knees[0]:
                knee_index = i
    throughput = []
    for model in models:
        rps = [
            s.models[model].throughput.requests_per_s if model in s.models else None
            for s in sweep.steps
        ]
        throughput.append(charts.Series(f"{model} requests/s", colors[model], rps))
        if sweep.slo:
            good = [
                s.models[model].goodput_per_s if model in s.models else None for s in sweep.steps
            ]
            throughput.append(charts.Series(f"{model} goodput/s", colors[model], good, True))
    latency = per_model("latency", "p50", "p50", False) + per_model("latency", "p99", "p99", True)
    ttft = per_model("ttft", "p50", "p50", False) + per_model("ttft", "p99", "p99", True)
    return {
        "load": sweep.load,
        "slo": ", ".join(f"{k} = {v:g}" for k, v in sweep.slo.items()),
        "knees": [
            {"model": m, "knee": _load_label(sweep, k)} for m, k in zip(models, knees, strict=True)
        ]
        if sweep.slo
        else [],
        "stopped": sweep.stopped,
        "rows": rows,
        "charts": {
            "latency": charts.sweep_chart(
                "sweep-latency",
                "Latency against load (p50 solid, p99 dashed)",
                "latency (s)",
                loads,
                latency,
                bounds=bounds("latency"),
                knee=knee_index,
            )
            if latency
            else None,
            "ttft": charts.sweep_chart(
                "sweep-ttft",
                "Time to first token against load (p50 solid, p99 dashed)",
                "TTFT (s)",
                loads,
                ttft,
                bounds=bounds("ttft"),
                knee=knee_index,
            )
            if streamed and ttft
            else None,
            "throughput": charts.sweep_chart(
                "sweep-throughput",
                "Throughput against load (requests/s solid, goodput dashed)",
                "requests per second",
                loads,
                throughput,
                knee=knee_index,
            ),
        },
    }


def _client(summary: Summary, manifest: Manifest) -> ClientLag:
    """The client's lag: the summary's (with its warning), else what the manifest recorded."""
    return summary.client or manifest.client


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llm_gateway.bench", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        seconds=fmt_seconds,
        ms=fmt_ms,
        rate=fmt_rate,
        cost=fmt_cost,
        percent=fmt_percent,
        count=fmt_count,
    )
    return env


def render_report(summary: Summary, records: Sequence[RequestRecord], manifest: Manifest) -> str:
    """The self-contained HTML report of one benchmark run."""
    measured = [r for r in records if not r.warmup]
    config, upstream = manifest.config, manifest.upstream
    models = list(summary.models)
    models += [m for m in dict.fromkeys(r.model for r in measured) if m not in models]
    streamed = _streamed(config, measured)
    failures = _failures(measured)
    status = manifest.status
    model_rows = _model_rows(summary)
    prompt_groups = _prompt_groups(summary, measured)
    prompt_rows = [row for group in prompt_groups for row in group["rows"]]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            run_id=_text(manifest.id),
            status=status,
            status_note=STATUS_NOTES.get(status),
            window=_window(manifest),
            upstream_url=_text(upstream.url),
            upstream_kind=_text(upstream.kind),
            emulator=upstream.kind == "emulator",
            models_requested=_text(manifest.models or models),
            prompt_count=_text(manifest.prompt_file.prompts or summary.prompts),
            runs=_text(config.runs if config.runs is not None else summary.runs),
            load=_load_text(config),
            streamed=streamed,
            warmup_excluded=len(records) - len(measured),
            overall=_group_row(summary),
            throughput=summary.throughput,
            model_rows=model_rows,
            no_success=[row for row in model_rows if row["no_success"]],
            single_models=_single(model_rows),
            prompt_groups=prompt_groups,
            prompt_rows=len(prompt_rows),
            prompt_open=len(prompt_rows) <= PROMPT_ROWS_OPEN,
            single_prompts=_single(prompt_rows),
            charts=_charts(measured, models, streamed),
            failures=failures[:MAX_FAILURES],
            failures_hidden=max(0, len(failures) - MAX_FAILURES),
            manifest_sections=_manifest_rows(manifest),
            client=_client(summary, manifest),
            retries=summary.retries,
            sweep=_sweep(summary.sweep, models, streamed),
            lag_interval=lag.INTERVAL_S,
            lag_floor=lag.WARN_FLOOR_S,
            lag_fraction=lag.WARN_FRACTION,
        )
    )
