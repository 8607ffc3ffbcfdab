"""One benchmark from start to stored result: prompts -> runner -> records -> stats -> store
-> report. The HTTP endpoint, its background jobs and the CLI all run benchmarks through here,
so they write the same files with the same contents."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from llm_gateway.bench.documents import (
    ClientLag,
    Manifest,
    PromptFileInfo,
    RunFiles,
    RunResult,
    RunState,
    Summary,
    UpstreamInfo,
)
from llm_gateway.bench.lag import verdict
from llm_gateway.bench.prompts import PromptFile
from llm_gateway.bench.records import RequestRecord
from llm_gateway.bench.report import render_report
from llm_gateway.bench.runner import BenchConfig, Runner
from llm_gateway.bench.stats import summarize
from llm_gateway.bench.store import MANIFEST, REPORT, RESULTS_CSV, SUMMARY, RunDir
from llm_gateway.bench.target import Target
from llm_gateway.upstream.client import UpstreamClient

logger = logging.getLogger("llm_gateway.bench")

T = TypeVar("T")

_VERSIONED = ("llm-gateway", "aiohttp", "fastapi", "uvicorn", "pydantic")
FLUSH_S = 0.1  # measured rows reach the CSV at most this much later


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where the benchmark sends its requests (never with the key)."""

    url: str
    kind: str  # "openrouter" | "emulator" | "custom"


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def manifest(
    run: RunDir, config: BenchConfig, prompt_file: PromptFile, upstream: Upstream
) -> Manifest:
    return Manifest(
        id=run.id,
        created_at=_now(),
        status="running",
        upstream=UpstreamInfo(url=upstream.url, kind=upstream.kind),
        models=list(config.models),
        prompt_file=PromptFileInfo(
            name=prompt_file.name, sha256=prompt_file.sha256, prompts=len(prompt_file.prompts)
        ),
        config=config.manifest(),
        versions=_versions(),
    )


def files(run: RunDir) -> RunFiles:
    return RunFiles(
        results_csv=str(run.file(RESULTS_CSV)),
        summary=str(run.file(SUMMARY)),
        manifest=str(run.file(MANIFEST)),
        report=str(run.file(REPORT)),
    )


def result(run: RunDir, summary: Summary, status: RunState) -> RunResult:
    """What a caller gets for a finished run: the summary plus its id, status and files."""
    return RunResult(run_id=run.id, status=status, **dict(summary), files=files(run))


async def execute(
    run: RunDir,
    config: BenchConfig,
    prompt_file: PromptFile,
    source: Target | UpstreamClient,
    upstream: Upstream,
    *,
    on_progress: Callable[[int, int, RequestRecord], None] | None = None,
) -> RunResult:
    """Run the benchmark into `run`; the files are complete even if it is cancelled.

    `source` is where the requests go: a `Target` (the benchmark builds its own clients, in as
    many processes as the config says) or a ready client (measured on this loop as it is).
    Every file is written from a thread, never on the event loop: rows are queued as requests
    finish and written in batches (`_keep`), statistics and the report when the run ends.
    """
    runner = Runner(config, source)
    meta = manifest(run, runner.config, prompt_file, upstream)

    def record(item: RequestRecord) -> None:
        run.add(item)
        if on_progress is not None:
            on_progress(len(runner.records), runner.total, item)

    runner.on_record = record
    keeper = asyncio.create_task(_keep(run, runner))
    try:
        await asyncio.to_thread(_begin, run, meta, runner.total)
        await runner.run()
    except BaseException as exc:
        keeper.cancel()
        status: RunState = "interrupted" if isinstance(exc, asyncio.CancelledError) else "failed"
        # Interrupted or failed: write what was measured.
        await _to_the_end(finish, run, runner.records, meta, status, runner.lag())
        raise
    keeper.cancel()
    summary = await _to_the_end(finish, run, runner.records, meta, "done", runner.lag())
    return result(run, summary, "done")


async def _to_the_end(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in a thread, waited for to its end even if this task is cancelled meanwhile
    (the cancellation is raised after). A cancelled `to_thread` whose thread had not started
    yet never runs: a run cancelled as it ended (a server stopping) kept an open results file,
    no summary and a status stuck at "running"."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


def _begin(run: RunDir, meta: Manifest, total: int) -> None:
    run.write_manifest(meta)
    run.write_status("running", done=0, total=total)


async def _keep(run: RunDir, runner: Runner) -> None:
    """Every FLUSH_S, write the rows measured since the last time, and keep status.json fresh
    (progress, and a heartbeat while requests are slow, so the run is not taken for dead)."""
    while True:
        await asyncio.sleep(FLUSH_S)
        await asyncio.to_thread(run.checkpoint, len(runner.records), runner.total)


def finish(
    run: RunDir,
    records: list[RequestRecord],
    meta: Manifest,
    status: RunState,
    client_lag: ClientLag | None = None,
) -> Summary:
    """Write summary, manifest, report and final status for whatever was measured (blocking
    file I/O and CPU: async code runs it in a thread). The client's lag comes from the run
    (`client_lag`) or, re-rendering a stored run, from its manifest."""
    run.close()
    summary = summarize(records, meta.config)
    lag = verdict(client_lag or meta.client, summary)
    summary = _with_lag(summary, lag)
    meta = meta.model_copy(
        update={
            "status": status,
            "finished_at": meta.finished_at or _now(),  # re-rendered: when it really ended
            "models_served": _served(records),
            "client": lag,
        }
    )
    run.write_manifest(meta)
    run.write_summary(summary)
    run.write_report(render_report(summary, records, meta))
    measured = sum(1 for r in records if not r.warmup)
    steps = len(meta.config.sweep or ()) or 1
    planned = (meta.config.runs or 0) * meta.prompt_file.prompts * len(meta.models) * steps
    # A finished run did all it had to (a sweep that stopped early had no more to do).
    total = measured if status == "done" else planned or measured
    run.end(status, done=measured, total=total, summary=summary)
    logger.info(
        "benchmark %s %s: %d/%d requests measured, %d failed",
        run.id,
        status,
        measured,
        total,
        summary.failed,
    )
    return summary


def _with_lag(summary: Summary, lag: ClientLag) -> Summary:
    """The summary with the client's lag, run-wide and in each sweep step."""
    update: dict[str, object] = {"client": lag if lag.samples else None}
    per_step = lag.steps or [lag]  # a single step's lag is the run's
    if summary.sweep is not None and lag.samples:
        steps = [
            step.model_copy(update={"loop_lag_p99_s": per_step[step.step - 1].loop_lag_p99_s})
            if step.step - 1 < len(per_step)
            else step
            for step in summary.sweep.steps
        ]
        update["sweep"] = summary.sweep.model_copy(update={"steps": steps})
    return summary.model_copy(update=update)


def _served(records: list[RequestRecord]) -> dict[str, list[str]]:
    """Requested model -> the models that actually answered (they can differ)."""
    served: dict[str, set[str]] = {}
    for r in records:
        if r.model_served:
            served.setdefault(r.model, set()).add(r.model_served)
    return {model: sorted(names) for model, names in served.items()}
