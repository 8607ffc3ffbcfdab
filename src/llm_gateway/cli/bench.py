"""`llm-gateway bench` and `report` in a terminal: a live progress bar, the summary (tables.py),
the paths written. The benchmark itself is `bench.pipeline`'s, the same the HTTP endpoint
runs."""

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

from llm_gateway.bench import pipeline
from llm_gateway.bench.documents import ACTIVE, RunResult
from llm_gateway.bench.loops import run_loop
from llm_gateway.bench.prompts import PromptFile
from llm_gateway.bench.records import RequestRecord
from llm_gateway.bench.runner import BenchConfig, Load
from llm_gateway.bench.store import REPORT, RESULTS_CSV, RunDir, RunStore
from llm_gateway.bench.target import Target
from llm_gateway.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_UPSTREAM_ERROR, EXIT_USAGE
from llm_gateway.cli.tables import failed_models, print_summary
from llm_gateway.config import EMULATOR_KEY, Settings
from llm_gateway.errors import GatewayError
from llm_gateway.runtime import Runtime, display_url, open_runtime

# With --rate and no --concurrency, the most requests in flight at once.
RATE_CAP = 256


def build_config(*, load: Load, **fields: Any) -> BenchConfig:
    """The benchmark the command line describes (ValueError, readable, when it cannot run)."""
    return BenchConfig(**fields, **load.fields(rate_cap=RATE_CAP))


def run_bench(
    settings: Settings,
    config: BenchConfig,
    prompts: PromptFile,
    *,
    base_url: str | None,
    api_key: str | None,
    out: Path,
    console: Console,
    wide: bool = False,
) -> int:
    """Run a benchmark with a progress bar; return the process exit code: 1 when a model had
    no successful request (its id or key is most likely wrong), else 0."""
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
    print_summary(console, result, wide=wide)
    for name, path in result.files.model_dump().items():
        console.print(f"  {name}: {path}")
    return EXIT_UPSTREAM_ERROR if failed_models(result) else EXIT_OK


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


def rerender(run_dir: Path, *, console: Console, wide: bool = False) -> int:
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
    print_summary(console, summary, wide=wide)
    console.print(f"report: {run.file(REPORT)}")
    return EXIT_OK
