"""The self-contained HTML report of one benchmark run (`report.html`).

One file that opens offline: inline CSS, charts as inline SVG (see `charts`), no scripts, no
external references. Prompts, error messages, model ids and manifest values come from outside,
so the template is autoescaped and the charts escape their own text.

Old runs may lack manifest or summary keys: everything is read defensively and a missing value
is shown as an em dash rather than failing the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from llm_gateway.bench import charts
from llm_gateway.bench.records import RequestRecord

DASH = "—"
PROMPT_CHARS = 80
MAX_FAILURES = 50
ERROR_CHARS = 500
STATUS_NOTES = {
    "interrupted": "This run was interrupted: the numbers cover only the requests that finished.",
    "failed": "This run failed: the numbers cover only the requests that finished.",
    "running": "This run was still running when the report was written: the numbers are partial.",
}


def fmt_seconds(value: object) -> str:
    """Seconds with millisecond precision; an em dash for a missing value."""
    number = _number(value)
    return DASH if number is None else f"{number:.3f}"


def fmt_rate(value: object) -> str:
    """Tokens (or requests) per second, one decimal."""
    number = _number(value)
    return DASH if number is None else f"{number:,.1f}"


def fmt_cost(value: object) -> str:
    """US dollars with up to 6 significant digits, never in exponent notation."""
    number = _number(value)
    if number is None:
        return DASH
    return "$" + format(Decimal(f"{number:.6g}"), "f")


def fmt_percent(value: object) -> str:
    """A fraction (0.25) as a percentage (25.0 %)."""
    number = _number(value)
    return DASH if number is None else f"{number * 100:.1f} %"


def fmt_count(value: object) -> str:
    """An integer with thousands separators."""
    number = _number(value)
    return DASH if number is None else f"{round(number):,}"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dist(group: Mapping[str, Any], metric: str, key: str) -> float | None:
    return _number(_dict(group.get(metric)).get(key))


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


def _errors(group: Mapping[str, Any]) -> str:
    errors = _dict(group.get("errors"))
    return ", ".join(f"{name} \u00d7 {count}" for name, count in errors.items()) or DASH


def _group_row(group: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers a table row shows for one group (a model, or a prompt x model)."""
    return {
        "requests": group.get("requests"),
        "ok": group.get("ok"),
        "failed": group.get("failed"),
        "error_rate": group.get("error_rate"),
        "errors": _errors(group),
        "truncated": group.get("truncated") or 0,
        "lat_avg": _dist(group, "latency", "avg"),
        "lat_sd": _dist(group, "latency", "std_dev"),
        "lat_p50": _dist(group, "latency", "p50"),
        "lat_p95": _dist(group, "latency", "p95"),
        "ttft_avg": _dist(group, "ttft", "avg"),
        "ttft_p50": _dist(group, "ttft", "p50"),
        "tps_avg": _dist(group, "tokens_per_s", "avg"),
        "output_tokens": group.get("output_tokens"),
        "cost": group.get("cost_usd"),
    }


def _mark_best(rows: list[dict[str, Any]]) -> None:
    """Flag the row(s) with the lowest mean latency, when there is more than one to compare."""
    means = [row["lat_avg"] for row in rows if row["lat_avg"] is not None]
    for row in rows:
        row["best"] = len(rows) > 1 and bool(means) and row["lat_avg"] == min(means)


def _model_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = [
        {"model": str(model), **_group_row(_dict(group))}
        for model, group in _dict(summary.get("models")).items()
    ]
    _mark_best(rows)
    return rows


def _prompt_groups(
    summary: Mapping[str, Any], measured: Sequence[RequestRecord]
) -> list[dict[str, Any]]:
    """Per-prompt rows grouped by prompt, in prompt order, for a table with a row per model,
    each with the first successful answer as a sample."""
    samples: dict[tuple[object, str], str] = {}
    for r in measured:
        if r.status == "ok" and r.output_preview:
            samples.setdefault((r.prompt_index, r.model), r.output_preview)
    groups: dict[object, dict[str, Any]] = {}
    cells = summary.get("per_prompt")
    for cell in cells if isinstance(cells, list) else []:
        cell = _dict(cell)
        index = cell.get("prompt_index")
        if index not in groups:
            prompt = str(cell.get("prompt") or "")
            short = prompt if len(prompt) <= PROMPT_CHARS else prompt[: PROMPT_CHARS - 1] + "…"
            groups[index] = {"index": index, "prompt": prompt, "short": short, "rows": []}
        model = str(cell.get("model"))
        sample = samples.get((index, model))
        groups[index]["rows"].append({"model": model, "sample": sample, **_group_row(cell)})
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


def _when(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _window(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Start and end in UTC (the end without its date when it is the same day), and duration."""
    start, end = _when(manifest.get("created_at")), _when(manifest.get("finished_at"))
    first = start.strftime("%Y-%m-%d %H:%M:%S UTC") if start else _text(manifest.get("created_at"))
    last = _text(manifest.get("finished_at"))
    duration = DASH
    if end is not None:
        same_day = start is not None and start.date() == end.date()
        last = end.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC")
        if start is not None:
            duration = f"{(end - start).total_seconds():,.1f} s"
    return {"start": first, "end": last, "duration": duration}


def fmt_ms(value: object) -> str:
    """Seconds shown in milliseconds, for small values such as event-loop lag."""
    number = _number(value)
    return DASH if number is None else f"{number * 1000:,.1f} ms"


def _streamed(config: Mapping[str, Any], measured: Sequence[RequestRecord]) -> bool:
    if isinstance(config.get("stream"), bool):
        return bool(config["stream"])
    return any(r.ttft_seconds is not None for r in measured)


def _manifest_rows(manifest: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The manifest as (section, [(key, value)]) for a readable table; unknown keys kept too."""
    upstream, prompts = _dict(manifest.get("upstream")), _dict(manifest.get("prompt_file"))
    client = _dict(manifest.get("client"))
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "Run",
            [
                ("id", _text(manifest.get("id"))),
                ("status", _text(manifest.get("status"))),
                ("created at", _text(manifest.get("created_at"))),
                ("finished at", _text(manifest.get("finished_at"))),
                ("models requested", _text(manifest.get("models"))),
            ],
        ),
        ("Upstream", [("url", _text(upstream.get("url"))), ("kind", _text(upstream.get("kind")))]),
        (
            "Prompt file",
            [
                ("name", _text(prompts.get("name"))),
                ("SHA-256", _text(prompts.get("sha256"))),
                ("prompts", _text(prompts.get("prompts"))),
            ],
        ),
        ("Config", [(str(k), _text(v)) for k, v in _dict(manifest.get("config")).items()]),
        ("Versions", [(str(k), _text(v)) for k, v in _dict(manifest.get("versions")).items()]),
        (
            "Client event-loop lag",
            [
                ("max", fmt_ms(client.get("loop_lag_max_s"))),
                ("p99", fmt_ms(client.get("loop_lag_p99_s"))),
            ],
        ),
    ]
    known = {"id", "status", "created_at", "finished_at", "models", "upstream", "prompt_file"}
    known |= {"config", "versions", "client"}
    other = [(str(k), _text(v)) for k, v in manifest.items() if k not in known]
    if other:
        sections.append(("Other", other))
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


def render_report(
    summary: dict[str, Any], records: Sequence[RequestRecord], manifest: dict[str, Any]
) -> str:
    """The self-contained HTML report of one benchmark run."""
    summary, manifest = _dict(summary), _dict(manifest)
    measured = [r for r in records if not r.warmup]
    config, upstream = _dict(manifest.get("config")), _dict(manifest.get("upstream"))
    models = list(_dict(summary.get("models")))
    models += [m for m in dict.fromkeys(r.model for r in measured) if m not in models]
    streamed = _streamed(config, measured)
    failures = _failures(measured)
    status = str(manifest.get("status") or "")
    prompt_count = _dict(manifest.get("prompt_file")).get("prompts", summary.get("prompts"))
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            run_id=_text(manifest.get("id")),
            status=status or "unknown",
            status_note=STATUS_NOTES.get(status),
            window=_window(manifest),
            upstream_url=_text(upstream.get("url")),
            upstream_kind=_text(upstream.get("kind")),
            emulator=upstream.get("kind") == "emulator",
            models_requested=_text(manifest.get("models") or models),
            prompt_count=_text(prompt_count),
            runs=_text(config.get("runs", summary.get("runs"))),
            concurrency=_text(config.get("concurrency")),
            streamed=streamed,
            warmup_excluded=len(records) - len(measured),
            overall=_group_row(summary),
            throughput=_dict(summary.get("throughput")),
            model_rows=_model_rows(summary),
            prompt_groups=_prompt_groups(summary, measured),
            charts=_charts(measured, models, streamed),
            failures=failures[:MAX_FAILURES],
            failures_hidden=max(0, len(failures) - MAX_FAILURES),
            manifest_sections=_manifest_rows(manifest),
            client=_dict(manifest.get("client")),
        )
    )
