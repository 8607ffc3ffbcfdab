"""A benchmark's summary in a terminal: the per-model table, its errors, the client's own
timing, and a sweep's steps.

It must read at 80 columns, the width of a small terminal and of a pipe (rich's default when
there is no terminal to ask). So the default table keeps the numbers the brief asks for (mean
latency and std_dev) and a few more, each column as wide as its widest number and never cut;
model ids fold onto more lines instead. `--wide` adds the other columns. Error messages are
sentences: they get a table of their own, below, where they can wrap.

Model ids and error messages come from outside: they go in as `Text`, never as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from llm_gateway.bench.documents import Distribution, ModelStats, Summary, Sweep


def _seconds(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _ms(value: float | None) -> str:
    return f"{value * 1000:.1f} ms" if value is not None else "-"


def _latency(group: ModelStats) -> Distribution:
    return group.latency or Distribution()


def _std_dev(group: ModelStats) -> str:
    # The sample standard deviation of a single value is undefined: a dash, not 0.000.
    latency = _latency(group)
    return _seconds(latency.std_dev) if latency.n > 1 else "-"


def _ok(group: ModelStats) -> Text:
    return Text(str(group.ok), style="" if group.ok else "bold red")


def _speed(group: ModelStats) -> str:
    speed = (group.tokens_per_s or Distribution()).avg
    return f"{speed:.1f}" if speed is not None else "-"


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    cell: Callable[[ModelStats], RenderableType]
    wide_only: bool = False


_COLUMNS = (
    _Column("ok", _ok),
    _Column("failed", lambda g: str(g.failed)),
    _Column("mean", lambda g: _seconds(_latency(g).avg)),
    _Column("std_dev", _std_dev),
    _Column("p50", lambda g: _seconds(_latency(g).p50), wide_only=True),
    _Column("p95", lambda g: _seconds(_latency(g).p95)),
    _Column("p99", lambda g: _seconds(_latency(g).p99), wide_only=True),
    _Column("TTFT", lambda g: _seconds((g.ttft or Distribution()).avg)),
    _Column("tokens/s", _speed, wide_only=True),
)


LEGEND = (
    "mean, std_dev, p95: latency of the successful requests; TTFT: their mean time to first "
    "token; -: not measured (std_dev needs two requests or more)"
)


def summary_table(summary: Summary, *, wide: bool = False) -> Table:
    """Per model: the brief's mean latency and std_dev first, then the tail and TTFT; with
    `wide`, also p50, p99, tokens/s and the failures by class."""
    table = Table(title="Latency per model (seconds)")
    table.add_column("model", overflow="fold")
    columns = [c for c in _COLUMNS if wide or not c.wide_only]
    for column in columns:
        table.add_column(column.name, justify="right", no_wrap=True)
    if wide:
        table.add_column("errors", overflow="fold")
    for model, group in summary.models.items():
        cells = [column.cell(group) for column in columns]
        if wide:
            cells.append(", ".join(f"{k} {v}" for k, v in group.errors.items()))
        table.add_row(Text(model), *cells)
    return table


def errors_table(summary: Summary) -> Table | None:
    """Each model's most frequent error messages; None when nothing failed."""
    table = Table(title="Most frequent errors")
    table.add_column("model", overflow="fold", ratio=1)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("class: message", overflow="fold", ratio=2)
    for model, group in summary.models.items():
        for i, error in enumerate(group.top_errors):
            message = Text.assemble((error.status, "red"), ": ", error.message or "-")
            table.add_row(Text(model if i == 0 else ""), str(error.count), message)
    return table if table.row_count else None


def failed_models(summary: Summary) -> list[str]:
    """The models none of whose requests succeeded: most likely a wrong id or key."""
    return [model for model, group in summary.models.items() if group.requests and not group.ok]


def client_lines(summary: Summary) -> list[str]:
    """What the client says about itself under the table: its loop lag (and a warning when
    the lag could have distorted the numbers) and what retries cost."""
    lines = []
    lag = summary.client
    if lag is not None:
        lines.append(
            f"client loop lag p50 {_ms(lag.loop_lag_p50_s)}, p99 {_ms(lag.loop_lag_p99_s)}, "
            f"max {_ms(lag.loop_lag_max_s)} ({lag.processes or 1} process"
            f"{'es' if (lag.processes or 1) > 1 else ''})"
        )
        if lag.warning:
            lines.append(f"[yellow]Warning:[/yellow] {lag.warning}")
    retries = summary.retries
    if retries.requests_retried:
        lines.append(
            f"retries: {retries.requests_retried} requests retried, {retries.attempts} upstream "
            f"calls for {summary.requests} requests ({retries.failed_attempts} failed), "
            f"{retries.retry_wait_s:.2f}s spent before final attempts"
        )
    return lines


def sweep_table(sweep: Sweep) -> Table:
    """One row per step: the load, what it achieved, its tails, and whether it met the SLO."""
    table = Table(title=f"Sweep ({sweep.load}; seconds)")
    for name in (sweep.load, "ok", "failed", "req/s", "goodput/s", "TTFT p99", "lat p99", "SLO"):
        table.add_column(name, justify="right")
    for step in sweep.steps:
        load = step.concurrency if sweep.load == "concurrency" else step.rate
        met = "-" if step.slo_met is None else "met" if step.slo_met else "broken"
        table.add_row(
            f"{load:g}" if load is not None else "-",
            str(step.ok),
            str(step.failed),
            f"{step.throughput.requests_per_s or 0:.2f}",
            f"{step.goodput_per_s:.2f}" if step.goodput_per_s is not None else "-",
            _seconds((step.ttft or Distribution()).p99),
            _seconds((step.latency or Distribution()).p99),
            met,
        )
    return table


def sweep_lines(sweep: Sweep) -> list[str]:
    lines = []
    if sweep.slo:
        bounds = ", ".join(f"{k}={v:g}" for k, v in sweep.slo.items())
        knees = "; ".join(
            f"{model}: {sweep.load} {knee:g}" if knee is not None else f"{model}: none"
            for model, knee in sweep.knee.items()
        )
        lines.append(f"knee (highest load meeting {bounds}): {knees}")
    if sweep.stopped:
        lines.append(f"stopped early: {sweep.stopped}")
    return lines


def print_summary(console: Console, summary: Summary, *, wide: bool = False) -> None:
    """The whole summary, as `bench` prints it after a run and `report` after re-rendering."""
    console.print(summary_table(summary, wide=wide))
    console.print(LEGEND)
    errors = errors_table(summary)
    if errors is not None:
        console.print(errors)
    throughput = summary.throughput
    console.print(
        f"{summary.ok} ok, {summary.failed} failed in {throughput.window_s:.2f}s "
        f"({throughput.requests_per_s or 0:.2f} req/s)"
    )
    for line in client_lines(summary):
        console.print(line)
    if summary.sweep is not None:
        console.print(sweep_table(summary.sweep))
        for line in sweep_lines(summary.sweep):
            console.print(line)
    failed = failed_models(summary)
    if failed:
        console.print(
            Text.assemble(
                ("No successful request", "bold red"),
                f" from {', '.join(failed)}: see the errors above (a wrong model id or key?).",
            )
        )
