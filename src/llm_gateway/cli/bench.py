"""`llm-gateway bench` and `report` in a terminal: a live progress bar, a summary table, the
paths written. The benchmark itself is `bench.pipeline`'s, the same the HTTP endpoint runs."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

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
from llm_gateway.bench.documents import ACTIVE, Distribution, RunResult, Summary
from llm_gateway.bench.prompts import PromptFile
from llm_gateway.bench.records import RequestRecord
from llm_gateway.bench.runner import BenchConfig
from llm_gateway.bench.store import REPORT, RESULTS_CSV, RunDir, RunStore
from llm_gateway.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_UPSTREAM_ERROR, EXIT_USAGE
from llm_gateway.config import Settings
from llm_gateway.errors import GatewayError
from llm_gateway.runtime import build_client, display_url, open_runtime


def _seconds(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


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
    console.print(f"Run [bold]{run.id}[/bold]: {config.requests} requests -> {run.path}")
    try:
        result = asyncio.run(_run(settings, config, prompts, run, base_url, api_key, console))
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
            client = build_client(settings, base_url=base_url, api_key=api_key or "none")
            stack.push_async_callback(client.aclose)
            upstream = pipeline.Upstream(display_url(base_url.rstrip("/")), "custom")
        else:
            runtime = await stack.enter_async_context(open_runtime(settings))
            client = runtime.client
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
                run, config, prompts, client, upstream, on_progress=advance
            )
    return result


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
    console.print(f"report: {run.file(REPORT)}")
    return EXIT_OK
