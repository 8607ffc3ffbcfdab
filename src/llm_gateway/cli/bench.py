"""`llm-gateway bench` and `report` in a terminal: a live progress bar, a summary table, the
paths written. The benchmark itself is `bench.pipeline`'s, the same the HTTP endpoint runs."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from llm_gateway.bench import pipeline
from llm_gateway.bench.documents import ACTIVE, Distribution, RunResult, Summary, Sweep
from llm_gateway.bench.loops import run_loop
from llm_gateway.bench.prompts import PromptFile
from llm_gateway.bench.records import RequestRecord
from llm_gateway.bench.runner import BenchConfig, Load
from llm_gateway.bench.store import REPORT, RESULTS_CSV, RunDir, RunStore
from llm_gateway.bench.target import Target
from llm_gateway.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_UPSTREAM_ERROR, EXIT_USAGE
from llm_gateway.config import EMULATOR_KEY, Settings
from llm_gateway.errors import GatewayError
from llm_gateway.runtime import Runtime, display_url, open_runtime

# With --rate and no --concurrency, the most requests in flight at once.
RATE_CAP = 256


def _seconds(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def build_config(*, load: Load, **fields: Any) -> BenchConfig:
    """The benchmark the command line describes (ValueError, readable, when it cannot run)."""
    return BenchConfig(**fields, **load.fields(rate_cap=RATE_CAP))


def _ms(value: float | None) -> str:
    return f"{value * 1000:.1f} ms" if value is not None else "-"


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


def summary_table(summary: Summary) -> Table:
    """Per model: the brief's mean latency and std_dev first, then the rest."""
    table = Table(title="Benchmark summary (seconds)")
    table.add_column("model", no_wrap=True)  # ids must stay readable; numbers can wrap
    for name in ("ok", "failed", "mean latency", "std_dev", "p50", "p95", "mean TTFT"):
        table.add_column(name, justify="right")
    table.add_column("tokens/s", justify="right")
    table.add_column("errors")
    for model, group in summary.models.items():
        latency = group.latency or Distribution()
        speed = (group.tokens_per_s or Distribution()).avg
        table.add_row(
            model,
            str(group.ok),
            str(group.failed),
            _seconds(latency.avg),
            _seconds(latency.std_dev),
            _seconds(latency.p50),
            _seconds(latency.p95),
            _seconds((group.ttft or Distribution()).avg),
            f"{speed:.1f}" if speed is not None else "-",
            ", ".join(f"{k} {v}" for k, v in group.errors.items()),
        )
    return table


def run_bench(
    settings: Settings,
    config: BenchConfig,
    prompts: PromptFile,
    *,
    base_url: str | None,
    api_key: str | None,
    out: Path,
    console: Console,
) -> int:
    """Run a benchmark with a progress bar; return the process exit code."""
    store = RunStore(out, keep_runs=settings.bench_keep_runs, max_bytes=settings.bench_max_bytes)
    try:
        run = store.create(status="running", models=config.models, total=config.total)
    except GatewayError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        return EXIT_USAGE
    console.print(
        f"Run [bold]{run.id}[/bold]: {config.requests * config.steps} requests -> {run.path}"
    )
    try:
        result = run_loop(_run(settings, config, prompts, run, base_url, api_key, console))
    except KeyboardInterrupt:
        kept = len([r for r in run.records() if not r.warmup])
        console.print(f"[yellow]Interrupted.[/yellow] Kept {kept} measured requests in {run.path}")
        return EXIT_INTERRUPTED
    except GatewayError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        return EXIT_UPSTREAM_ERROR
    console.print(summary_table(result))
    throughput = result.throughput
    console.print(
        f"{result.ok} ok, {result.failed} failed in {throughput.window_s:.2f}s "
        f"({throughput.requests_per_s or 0:.2f} req/s)"
    )
    for line in client_lines(result):
        console.print(line)
    if result.sweep is not None:
        console.print(sweep_table(result.sweep))
        for line in sweep_lines(result.sweep):
            console.print(line)
    for name, path in result.files.model_dump().items():
        console.print(f"  {name}: {path}")
    return EXIT_OK


async def _run(
    settings: Settings,
    config: BenchConfig,
    prompts: PromptFile,
    run: RunDir,
    base_url: str | None,
    api_key: str | None,
    console: Console,
) -> RunResult:
    async with AsyncExitStack() as stack:
        if base_url is not None:
            url = base_url.rstrip("/")
            target = Target.from_settings(settings, base_url=url, api_key=api_key or "none")
            upstream = pipeline.Upstream(display_url(url), "custom")
        else:
            runtime = await stack.enter_async_context(open_runtime(settings))
            target = runtime_target(runtime)
            upstream = pipeline.Upstream(runtime.upstream_url, runtime.upstream)
            if runtime.upstream == "emulator":
                console.print("[yellow]No OPENROUTER_API_KEY: benchmarking the built-in emulator.")
        failed = 0
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("benchmark", total=config.total, failed=0)

            def advance(done: int, _total: int, record: RequestRecord) -> None:
                nonlocal failed
                failed += record.status != "ok"
                progress.update(task, completed=done, failed=failed)

            result = await pipeline.execute(
                run, config, prompts, target, upstream, on_progress=advance
            )
    return result


def runtime_target(runtime: Runtime) -> Target:
    """The runtime's upstream as a benchmark target (the benchmark builds its own clients)."""
    settings = runtime.settings
    key = settings.openrouter_api_key
    secret = EMULATOR_KEY if runtime.upstream == "emulator" or key is None else key
    return Target.from_settings(
        settings,
        base_url=runtime.client.base_url,
        api_key=secret if isinstance(secret, str) else secret.get_secret_value(),
    )


def rerender(run_dir: Path, *, console: Console) -> int:
    """Rebuild summary.json and report.html of a stored run from its CSV."""
    run = RunDir(run_dir)
    records = run.records()
    if not records:
        console.print(f"[red]No results in {run_dir}[/red] (expected {run.file(RESULTS_CSV)})")
        return EXIT_USAGE
    manifest = run.manifest()
    status = "done" if manifest.status == "unknown" else manifest.status
    if status in ACTIVE:  # its process died before it could say so
        status = "interrupted"
    summary = pipeline.finish(run, records, manifest, status)
    console.print(summary_table(summary))
    for line in client_lines(summary):
        console.print(line)
    if summary.sweep is not None:
        console.print(sweep_table(summary.sweep))
    console.print(f"report: {run.file(REPORT)}")
    return EXIT_OK
