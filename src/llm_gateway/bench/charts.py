"""Inline SVG charts for the benchmark report: generated here, no JavaScript, no external files.

Charts are built as markup strings and inserted into the (autoescaped) template as-is, so every
string that reaches them (model ids, error classes) is escaped by `_tag`, which escapes each
attribute value and each child that is not already markup. Only `_tag` produces markup.

Each chart's root is `<svg class="chart" data-chart="...">`; data marks carry the class `mark`
(`<circle class="mark point">` per successful request, `<rect class="mark box">` per box,
`<path class="mark fail">` per failed request), so a test can count them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from llm_gateway.bench.records import RequestRecord
from llm_gateway.bench.stats import percentile

# Distinguishable on screen and in print; red is kept out of it because it marks failures.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
)
FAIL_COLOR = "#d62728"
# A style attribute, not `fill`: the page's CSS for chart text would override a presentation
# attribute.
FAIL_TEXT = f"fill:{FAIL_COLOR}"
WIDTH = 960
FONT = "12"
LABEL_CHARS = 38


def model_colors(models: Iterable[str]) -> dict[str, str]:
    """A fixed colour per model, in the order given (the palette repeats after 10 models)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(models))}


def _attr(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _tag(name: str, attrs: Mapping[str, object] | None = None, *children: object) -> Markup:
    attributes = "".join(
        f' {key}="{escape(_attr(value))}"'
        for key, value in (attrs or {}).items()
        if value is not None
    )
    if not children:
        return Markup(f"<{name}{attributes}/>")
    body = "".join(str(escape(child)) for child in children)
    return Markup(f"<{name}{attributes}>{body}</{name}>")


def _vertical_label(top: float, bottom: float, text: str) -> Markup:
    """A y-axis title, turned to read bottom to top, centred between `top` and `bottom`."""
    middle = (top + bottom) / 2
    return _tag(
        "text",
        {
            "x": 16,
            "y": middle,
            "class": "axis",
            "text-anchor": "middle",
            "transform": f"rotate(-90 16 {middle:.1f})",
        },
        text,
    )


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    """Cut in the middle: model ids often differ only at the end (`...-8b`, `...:free`)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def _tick_label(value: float) -> str:
    return f"{round(value, 9):g}"


@dataclass(frozen=True, slots=True)
class _Scale:
    """Maps [0, hi] onto pixels [start, end]; hi > 0 always, so there is no division by zero."""

    hi: float
    start: float
    end: float
    ticks: tuple[float, ...]

    def __call__(self, value: float) -> float:
        return self.start + value / self.hi * (self.end - self.start)


def _scale(max_value: float, start: float, end: float, count: int = 6) -> _Scale:
    """A zero-based scale with round ticks; durations are compared from zero, never cropped."""
    # Headroom, so the largest value is not drawn on the frame.
    top = max_value * 1.04 if math.isfinite(max_value) and max_value > 0 else 1.0
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    steps = max(1, math.ceil(top / step - 1e-9))
    return _Scale(steps * step, start, end, tuple(i * step for i in range(steps + 1)))


def _frame(kind: str, title: str, height: float, *parts: Markup) -> Markup:
    return _tag(
        "svg",
        {
            "class": "chart",
            "data-chart": kind,
            "viewBox": f"0 0 {WIDTH} {height:.0f}",
            "width": WIDTH,
            "height": f"{height:.0f}",
            "role": "img",
            "aria-label": title,
            "font-size": FONT,
        },
        _tag("title", None, title),
        _tag("text", {"x": 10, "y": 22, "class": "chart-title"}, title),
        *parts,
    )


def _x_axis(scale: _Scale, top: float, bottom: float, label: str) -> Markup:
    """Vertical grid lines with tick labels below the plot, and the axis title."""
    parts = []
    for tick in scale.ticks:
        x = scale(tick)
        parts.append(_tag("line", {"x1": x, "x2": x, "y1": top, "y2": bottom, "class": "grid"}))
        parts.append(
            _tag("text", {"x": x, "y": bottom + 16, "text-anchor": "middle"}, _tick_label(tick))
        )
    middle = (scale.start + scale.end) / 2
    parts.append(
        _tag(
            "text", {"x": middle, "y": bottom + 36, "text-anchor": "middle", "class": "axis"}, label
        )
    )
    return Markup("").join(parts)


def _stripe(text: str, x: float, y: float) -> Markup:
    return _tag("text", {"x": x, "y": y, "class": "note", "dominant-baseline": "middle"}, text)


def _jitter(index: int) -> float:
    """Deterministic spread in [-1, 1] (golden-ratio sequence), so reports are reproducible."""
    return ((index * 0.6180339887) % 1.0) * 2 - 1


def distribution_chart(
    kind: str,
    title: str,
    axis_label: str,
    points: Mapping[str, Sequence[tuple[float, str]]],
    colors: Mapping[str, str],
) -> Markup:
    """Horizontal box plot per model with every value drawn as a dot.

    `points` maps each model (rows, in order) to its (value, tooltip) pairs. Box: p25 to p75 with
    a line at the median; whiskers: p5 to p95; diamond: mean. A model without values gets a note.
    """
    models = list(points)
    longest = max((len(_short(m)) for m in models), default=10)
    left = min(270.0, max(110.0, 14 + longest * 6.6))
    row, top = 44.0, 44.0
    bottom = top + row * max(1, len(models))
    finite = [v for values in points.values() for v, _ in values if math.isfinite(v)]
    scale = _scale(max(finite, default=0.0), left, WIDTH - 30)
    parts = [_x_axis(scale, top, bottom, axis_label)]
    for i, model in enumerate(models):
        mid = top + row * i + row / 2
        color = colors.get(model, PALETTE[0])
        parts.append(
            _tag(
                "text",
                {"x": left - 10, "y": mid, "text-anchor": "end", "dominant-baseline": "middle"},
                _tag("title", None, model),
                _short(model),
            )
        )
        values = sorted(v for v, _ in points[model] if math.isfinite(v))
        if not values:
            parts.append(_stripe("no successful requests", left + 8, mid))
            continue
        q = {p: scale(percentile(values, p)) for p in (5, 25, 50, 75, 95)}
        mean = scale(sum(values) / len(values))
        box_h = row * 0.42
        parts.append(_tag("line", {"x1": q[5], "x2": q[95], "y1": mid, "y2": mid, "stroke": color}))
        for end in (q[5], q[95]):
            parts.append(
                _tag("line", {"x1": end, "x2": end, "y1": mid - 6, "y2": mid + 6, "stroke": color})
            )
        parts.append(
            _tag(
                "rect",
                {
                    "class": "mark box",
                    "x": q[25],
                    "y": mid - box_h / 2,
                    "width": max(q[75] - q[25], 1.5),
                    "height": box_h,
                    "fill": color,
                    "fill-opacity": "0.18",
                    "stroke": color,
                },
                _tag("title", None, f"{model}: {len(values)} values"),
            )
        )
        for j, (value, tip) in enumerate(points[model]):
            if not math.isfinite(value):
                continue
            parts.append(
                _tag(
                    "circle",
                    {
                        "class": "mark point",
                        "cx": scale(value),
                        "cy": mid + _jitter(j) * row * 0.32,
                        "r": 2.8,
                        "fill": color,
                        "fill-opacity": "0.6",
                    },
                    _tag("title", None, tip),
                )
            )
        parts.append(
            _tag(
                "line",
                {
                    "x1": q[50],
                    "x2": q[50],
                    "y1": mid - box_h / 2,
                    "y2": mid + box_h / 2,
                    "class": "median",
                },
            )
        )
        diamond = f"{mean:.1f},{mid - 5:.1f} {mean + 5:.1f},{mid:.1f} {mean:.1f},{mid + 5:.1f} "
        diamond += f"{mean - 5:.1f},{mid:.1f}"
        parts.append(_tag("polygon", {"points": diamond, "class": "mean"}))
    return _frame(kind, title, bottom + 48, *parts)


def _legend(items: Sequence[tuple[str, str]], top: float) -> tuple[Markup, float]:
    """Swatch + label per model, wrapped into rows; returns the markup and its height."""
    parts, x, y = [], 20.0, top
    for label, color in items:
        text = _short(label, 44)
        width = 30 + len(text) * 6.6
        if x + width > WIDTH - 10 and x > 20:
            x, y = 20.0, y + 20
        if color == FAIL_COLOR:
            parts.append(_tag("text", {"x": x, "y": y + 5, "style": FAIL_TEXT}, "✕"))
        else:
            parts.append(
                _tag(
                    "rect",
                    {
                        "class": "swatch",
                        "x": x,
                        "y": y - 5,
                        "width": 10,
                        "height": 10,
                        "rx": 2,
                        "fill": color,
                    },
                )
            )
        parts.append(_tag("text", {"x": x + 16, "y": y + 4}, _tag("title", None, label), text))
        x += width
    return Markup("").join(parts), y - top + 20


def timeline_chart(records: Sequence[RequestRecord], colors: Mapping[str, str]) -> Markup:
    """Latency of each successful request against its start time; failures as red crosses."""
    left, top, height = 70.0, 70.0, 260.0
    bottom = top + height
    ok = [r for r in records if r.status == "ok" and r.latency_seconds is not None]
    failed = [r for r in records if not (r.status == "ok" and r.latency_seconds is not None)]
    x = _scale(max((r.offset_seconds for r in records), default=0.0), left, WIDTH - 30)
    y = _scale(max((r.latency_seconds or 0.0 for r in ok), default=0.0), bottom, top)
    parts = [_x_axis(x, top, bottom, "request start, seconds since the run began")]
    for tick in y.ticks:
        parts.append(
            _tag(
                "line",
                {"x1": left, "x2": WIDTH - 30, "y1": y(tick), "y2": y(tick), "class": "grid"},
            )
        )
        parts.append(
            _tag("text", {"x": left - 8, "y": y(tick) + 4, "text-anchor": "end"}, _tick_label(tick))
        )
    parts.append(_vertical_label(top, bottom, "latency (s)"))
    band = top - 16
    if failed:
        parts.append(
            _tag(
                "text",
                {"x": left - 8, "y": band + 4, "text-anchor": "end", "style": FAIL_TEXT},
                "failed",
            )
        )
    if not ok:
        parts.append(_stripe("no successful requests", left + 10, (top + bottom) / 2))
    for r in ok:
        latency = r.latency_seconds or 0.0
        parts.append(
            _tag(
                "circle",
                {
                    "class": "mark point",
                    "cx": x(r.offset_seconds),
                    "cy": y(latency),
                    "r": 3.2,
                    "fill": colors.get(r.model, PALETTE[0]),
                    "fill-opacity": "0.75",
                },
                _tag(
                    "title",
                    None,
                    f"{r.model} · prompt {r.prompt_index} · run {r.run} · "
                    f"start {r.offset_seconds:.3f} s · {latency:.3f} s",
                ),
            )
        )
    for r in failed:
        cx = x(r.offset_seconds)
        cross = f"M{cx - 4:.1f},{band - 4:.1f}L{cx + 4:.1f},{band + 4:.1f}"
        cross += f"M{cx - 4:.1f},{band + 4:.1f}L{cx + 4:.1f},{band - 4:.1f}"
        parts.append(
            _tag(
                "path",
                {"class": "mark fail", "d": cross, "stroke": FAIL_COLOR, "stroke-width": 2},
                _tag(
                    "title",
                    None,
                    f"{r.model} · prompt {r.prompt_index} · run {r.run} · "
                    f"{r.status} at {r.offset_seconds:.3f} s",
                ),
            )
        )
    shown = list(dict.fromkeys(r.model for r in records))
    items = [(m, colors.get(m, PALETTE[0])) for m in shown]
    if failed:
        items.append(("failed request", FAIL_COLOR))
    legend, legend_h = _legend(items, bottom + 64)
    parts.append(legend)
    return _frame("timeline", "Latency over the run", bottom + 64 + legend_h, *parts)


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a sweep chart: a value per step (None where there is none)."""

    label: str
    color: str
    values: Sequence[float | None]
    dashed: bool = False


def sweep_chart(
    kind: str,
    title: str,
    axis_label: str,
    loads: Sequence[str],
    series: Sequence[Series],
    *,
    bounds: Sequence[tuple[float, str]] = (),
    knee: int | None = None,
) -> Markup:
    """A line per series against the sweep's steps (evenly spaced: the loads double), from
    zero; `bounds` are the SLO's limits (red dashed lines), `knee` the index of the step the
    knee is at (a vertical line)."""
    left, top, height = 70.0, 50.0, 240.0
    bottom, right = top + height, WIDTH - 30.0
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    y = _scale(max([*values, *(b for b, _ in bounds)], default=0.0), bottom, top)
    count = max(1, len(loads))
    step_w = (right - left) / count

    def x(index: int) -> float:
        return left + step_w * (index + 0.5)

    parts: list[Markup] = []
    for tick in y.ticks:
        parts.append(
            _tag("line", {"x1": left, "x2": right, "y1": y(tick), "y2": y(tick), "class": "grid"})
        )
        parts.append(
            _tag("text", {"x": left - 8, "y": y(tick) + 4, "text-anchor": "end"}, _tick_label(tick))
        )
    for i, load in enumerate(loads):
        parts.append(_tag("text", {"x": x(i), "y": bottom + 16, "text-anchor": "middle"}, load))
    parts.append(
        _tag(
            "text",
            {"x": (left + right) / 2, "y": bottom + 36, "text-anchor": "middle", "class": "axis"},
            "load (each step doubles it)",
        )
    )
    parts.append(_vertical_label(top, bottom, axis_label))
    for bound, label in bounds:
        parts.append(
            _tag(
                "line",
                {
                    "class": "bound",
                    "x1": left,
                    "x2": right,
                    "y1": y(bound),
                    "y2": y(bound),
                    "stroke": FAIL_COLOR,
                    "stroke-dasharray": "6 4",
                },
                _tag("title", None, f"SLO: {label} {bound:g}"),
            )
        )
        parts.append(
            _tag(
                "text",
                {"x": right - 4, "y": y(bound) - 5, "text-anchor": "end", "style": FAIL_TEXT},
                f"SLO {label}",
            )
        )
    if knee is not None:
        parts.append(
            _tag(
                "line",
                {
                    "class": "knee",
                    "x1": x(knee),
                    "x2": x(knee),
                    "y1": top,
                    "y2": bottom,
                    "stroke": "#1d2330",
                    "stroke-dasharray": "2 3",
                },
            )
        )
        parts.append(_tag("text", {"x": x(knee) + 4, "y": top + 12, "class": "note"}, "knee"))
    for s in series:
        points = [(x(i), y(v)) for i, v in enumerate(s.values) if v is not None]
        if len(points) > 1:
            path = "M" + "L".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                _tag(
                    "path",
                    {
                        "class": "mark line",
                        "d": path,
                        "fill": "none",
                        "stroke": s.color,
                        "stroke-width": 2,
                        "stroke-dasharray": "5 3" if s.dashed else None,
                    },
                )
            )
        for i, v in enumerate(s.values):
            if v is None:
                continue
            parts.append(
                _tag(
                    "circle",
                    {"class": "mark point", "cx": x(i), "cy": y(v), "r": 3.2, "fill": s.color},
                    _tag("title", None, f"{s.label} at {loads[i]}: {v:.4g}"),
                )
            )
    legend, legend_h = _legend([(s.label, s.color) for s in series], bottom + 60)
    parts.append(legend)
    return _frame(kind, title, bottom + 60 + legend_h, *parts)
