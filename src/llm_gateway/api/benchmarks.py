"""`POST /benchmark` (inline, HTML, or as a background job) and the stored runs under
`/benchmarks`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from llm_gateway.api.deps import RuntimeDep
from llm_gateway.api.responses import json_response
from llm_gateway.bench import pipeline
from llm_gateway.bench.documents import ACTIVE, RunEntry, RunResult
from llm_gateway.bench.jobs import JobSpec, cancellable
from llm_gateway.bench.prompts import load_prompts
from llm_gateway.bench.runner import BenchConfig, Load
from llm_gateway.bench.store import REPORT, RESULTS_CSV, RUN_ID, RunDir
from llm_gateway.errors import InvalidRequest, RunNotFound
from llm_gateway.runtime import Runtime
from llm_gateway.schemas.errors import ErrorResponse

router = APIRouter(tags=["benchmark"])

# The report is self-contained; forbid it from loading or sending anything anywhere.
_REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
}


def _models(values: list[str], *, limit: int) -> tuple[str, ...]:
    """`model` may repeat and/or hold comma-separated ids; order kept, duplicates dropped."""
    ids = [part.strip() for value in values for part in value.split(",")]
    models = tuple(dict.fromkeys(i for i in ids if i))
    if not models:
        raise InvalidRequest("model: give at least one model id (repeat `model` or comma-separate)")
    if len(models) > limit:
        raise InvalidRequest(
            f"model: at most {limit} models per benchmark (got {len(models)}; "
            "GATEWAY_BENCH_MAX_MODELS)"
        )
    if any(len(m) > 200 for m in models):
        raise InvalidRequest("model: a model id is longer than 200 characters")
    return models


_HOW = "send the file with `-F prompt_file=@path` (curl: the `@` uploads the file)"


async def _multipart_form(request: Request) -> None:
    """The body must be a multipart form carrying the prompt file. Said here, before the
    fields are validated, since the framework's words for a body sent as JSON ("Field
    required", twice) or for `-F prompt_file=path` without its `@` ("Expected UploadFile,
    received: <class 'str'>") do not say what to do."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise InvalidRequest(
            f"POST /benchmark takes multipart/form-data, not {kind or 'a body without a type'}: "
            "send the prompt file and the fields as a form, as "
            "`curl -F prompt_file=@prompts.txt -F model=<model id> <gateway>/benchmark` does"
        )
    upload = (await request.form()).get("prompt_file")
    if upload is None:
        raise InvalidRequest(f"prompt_file: missing; {_HOW}")
    if isinstance(upload, str):
        raise InvalidRequest(f"prompt_file: a text field, not a file; {_HOW}")


def _links(run_id: str) -> dict[str, str]:
    return {
        "status": f"/benchmarks/{run_id}",
        "report": f"/benchmarks/{run_id}/report",
        "results_csv": f"/benchmarks/{run_id}/results.csv",
    }


def _upstream(runtime: Runtime) -> pipeline.Upstream:
    return pipeline.Upstream(runtime.upstream_url, runtime.upstream)


@router.post(
    "/benchmark",
    dependencies=[Depends(_multipart_form)],
    responses={
        200: {
            "description": "The statistics (JSON), or with `visualize=true` the HTML report.",
            "content": {"text/html": {}},
        },
        202: {"description": "With `background=true`: the job's id and where to poll it."},
        400: {"model": ErrorResponse, "description": "The prompt file is unusable"},
        413: {"model": ErrorResponse, "description": "The prompt file is too large"},
        422: {"model": ErrorResponse, "description": "A form field is invalid or over a limit"},
        429: {
            "model": ErrorResponse,
            "description": "Every benchmark slot is taken (and, for a background job, the queue)",
        },
        507: {
            "model": ErrorResponse,
            "description": "Stored runs are at their retention limit and none can be removed",
        },
    },
)
async def run_benchmark(
    runtime: RuntimeDep,
    prompt_file: Annotated[
        UploadFile, File(description="Prompts: .txt (one per line), .jsonl or .csv.")
    ],
    model: Annotated[list[str], Form(description="Model id; repeat or comma-separate.")],
    runs: Annotated[int, Form(ge=1, description="Requests per prompt per model.")] = 5,
    concurrency: Annotated[
        int | None,
        Form(ge=1, description="Requests in flight at once (default 1; with `rate`, the cap)."),
    ] = None,
    rate: Annotated[
        float | None, Form(gt=0, description="Send this many requests per second (open loop).")
    ] = None,
    arrivals: Annotated[
        str, Form(description="With `rate`: `constant` or `poisson` arrivals.")
    ] = "constant",
    arrival_seed: Annotated[int | None, Form(description="Seed of Poisson arrivals.")] = None,
    sweep: Annotated[
        bool, Form(description="Step the load up, doubling to `concurrency` (or `rate`).")
    ] = False,
    sweep_start: Annotated[float, Form(gt=0, description="A sweep's first load.")] = 1.0,
    slo: Annotated[
        str | None, Form(description="A sweep's objective: `ttft_p99=0.5,latency_p99=5`.")
    ] = None,
    processes: Annotated[
        int, Form(ge=1, description="Measuring processes (GATEWAY_BENCH_MAX_PROCESSES).")
    ] = 1,
    retries: Annotated[
        int | None,
        Form(ge=0, le=19, description="Retries per request; 0 measures the upstream as is."),
    ] = None,
    max_tokens: Annotated[int | None, Form(ge=1)] = None,
    temperature: Annotated[float | None, Form(ge=0, le=2)] = None,
    stream: Annotated[bool, Form(description="Stream, to measure TTFT.")] = True,
    warmup: Annotated[int, Form(ge=0, le=10, description="Warm-up requests per model.")] = 0,
    visualize: Annotated[bool, Query(description="Answer with the HTML report.")] = False,
    background: Annotated[bool, Query(description="Run as a job; answer 202 at once.")] = False,
) -> Response:
    """Run every prompt `runs` times against each model and answer with the statistics."""
    settings = runtime.settings
    models = _models(model, limit=settings.bench_max_models)
    if runs > settings.bench_max_runs:
        raise InvalidRequest(f"runs: at most {settings.bench_max_runs} (got {runs})")
    if concurrency is not None and concurrency > settings.bench_max_concurrency:
        raise InvalidRequest(
            f"concurrency: at most {settings.bench_max_concurrency} (got {concurrency}); "
            "the gateway measures on its own event loop (GATEWAY_BENCH_MAX_CONCURRENCY)"
        )
    if processes > settings.bench_max_processes:
        raise InvalidRequest(
            f"processes: at most {settings.bench_max_processes} (got {processes}; "
            "GATEWAY_BENCH_MAX_PROCESSES)"
        )
    tokens = max_tokens or settings.max_tokens_default
    if tokens > settings.max_tokens_limit:
        raise InvalidRequest(f"max_tokens: at most {settings.max_tokens_limit} (got {tokens})")
    data = await prompt_file.read(settings.bench_max_file_bytes + 1)
    # In a thread: a megabyte of prompts takes a while to parse, and the loop serves others.
    prompts = await asyncio.to_thread(
        load_prompts,
        prompt_file.filename or "prompts.txt",
        data,
        max_bytes=settings.bench_max_file_bytes,
        max_prompts=settings.bench_max_prompts,
        max_prompt_chars=settings.max_prompt_chars,
    )
    load = Load(concurrency, rate, arrivals, arrival_seed, sweep, sweep_start, slo)
    try:
        config = BenchConfig(
            models=models,
            prompts=prompts.prompts,
            runs=runs,
            max_tokens=tokens,
            temperature=temperature,
            stream=stream,
            warmup=warmup,
            timeout=settings.bench_request_timeout,
            processes=processes,
            retries=retries,
            **load.fields(rate_cap=settings.bench_max_concurrency),
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if config.requests * config.steps > settings.bench_max_requests:
        steps = f" x {config.steps} steps" if config.steps > 1 else ""
        raise InvalidRequest(
            f"runs x prompts x models{' x steps' if steps else ''} = {runs} x "
            f"{len(prompts.prompts)} x {len(models)}{steps} = {config.requests * config.steps} "
            f"requests; the limit is {settings.bench_max_requests}"
        )
    store, upstream, target = runtime.runs, _upstream(runtime), runtime.bench_target
    if background:
        # A place in the queue (this process's, or the cluster's with Redis), then the run.
        async with runtime.jobs.admit() as place:
            run = await asyncio.to_thread(
                store.create, status="queued", models=models, total=config.total
            )
            await place.submit(run, JobSpec(config, prompts))
        return json_response(
            {"id": run.id, "status": "queued", "status_url": f"/benchmarks/{run.id}"},
            status=202,
            headers={"Location": f"/benchmarks/{run.id}"},
        )
    # Inline: it holds a slot like any job, or is refused at once (its client is waiting). If
    # the client leaves, this task is cancelled: the run ends as interrupted with what it
    # measured, and its slot is freed. Cancelled on request (from any replica), the client
    # gets what it measured, as interrupted.
    async with runtime.jobs.inline():
        run = await asyncio.to_thread(
            store.create, status="running", models=models, total=config.total
        )
        result = await cancellable(
            run, lambda: pipeline.execute(run, config, prompts, target, upstream)
        )
    if visualize:
        return _html(await asyncio.to_thread(run.file(REPORT).read_bytes))
    return json_response(await asyncio.to_thread(_answer, run, result))


# What the routes below and above read or write of a run, they do in a thread, never on the
# event loop: a slow disk, or a big run's statistics (10,000 requests are megabytes of JSON,
# 100 ms to encode), must not stall other requests.


def _answer(run: RunDir, result: RunResult | None) -> bytes:
    """The JSON answer of an inline run; None: it was interrupted, so read what it measured."""
    if result is None:
        summary = run.summary()
        assert summary is not None  # written when the run was interrupted
        result = pipeline.result(run, summary, "interrupted")
    return orjson.dumps({**result.model_dump(mode="json"), "links": _links(run.id)})


def _html(report: bytes) -> Response:
    return HTMLResponse(report, headers=_REPORT_HEADERS)


def _run(runtime: Runtime, run_id: str) -> RunDir:
    run = runtime.runs.get(run_id)
    if run is None:
        raise RunNotFound(f"No benchmark run with id {run_id!r}; GET /benchmarks lists them.")
    return run


def _entry(entry: RunEntry) -> dict[str, Any]:
    return {**entry.model_dump(mode="json"), "links": _links(entry.id)}


@router.get("/benchmarks")
async def list_benchmarks(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Runs per page.")] = 50,
    before: Annotated[
        str | None,
        Query(pattern=RUN_ID.pattern, description="Only runs older than this run id."),
    ] = None,
) -> Response:
    """Stored runs, newest first, a page at a time: `next` is the next page's URL (null on
    the last page)."""
    entries, last = await asyncio.to_thread(runtime.runs.page, limit=limit, before=before)
    following = f"/benchmarks?limit={limit}&before={last}" if last is not None else None
    return json_response({"runs": [_entry(e) for e in entries], "next": following})


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No run with this id (or no file yet)"}
}


def _details(runtime: Runtime, run_id: str) -> bytes:
    """A run's status, and its statistics once it has ended, as JSON."""
    run = _run(runtime, run_id)
    status = run.status()
    state = status.status
    # The summary is written before the report and the final status: until the status says
    # the run has ended, it is not the run's last word.
    summary = None if state in ACTIVE else run.summary()
    result = pipeline.result(run, summary, state) if summary is not None else None
    return orjson.dumps(
        {
            "id": run.id,
            "status": state,
            "progress": status.progress.model_dump() if status.progress else None,
            "error": status.error,
            "summary": result.model_dump(mode="json") if result is not None else None,
            "links": _links(run.id),
        }
    )


@router.get("/benchmarks/{run_id}", responses=_NOT_FOUND)
async def get_benchmark(runtime: RuntimeDep, run_id: str) -> Response:
    """A run's status and progress, and its statistics once it has finished."""
    return json_response(await asyncio.to_thread(_details, runtime, run_id))


# How long a cancel waits for the run to end before answering 202 (it is stopping).
_CANCEL_WAIT_S = 3.0


async def cancel_benchmark(runtime: RuntimeDep, run_id: str) -> Response:
    """Stop a queued or running benchmark, whichever worker or replica runs it: it ends as
    `interrupted` with what it measured. 200 with its status once it has ended (at once for
    a run that had already ended), 202 if it is still stopping."""
    run = await asyncio.to_thread(_run, runtime, run_id)
    if (await asyncio.to_thread(run.status)).status in ACTIVE:
        await runtime.jobs.cancel(run)
        deadline = asyncio.get_running_loop().time() + _CANCEL_WAIT_S
        while (await asyncio.to_thread(run.status)).status in ACTIVE:
            if asyncio.get_running_loop().time() > deadline:
                return json_response(await asyncio.to_thread(_details, runtime, run_id), status=202)
            await asyncio.sleep(0.1)
    return json_response(await asyncio.to_thread(_details, runtime, run_id))


_CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    200: {"description": "The run has ended (interrupted if it was stopped): its status"},
    202: {"description": "The run is stopping: its status so far"},
}
router.add_api_route(
    "/benchmarks/{run_id}",
    cancel_benchmark,
    methods=["DELETE"],
    responses=_CANCEL_RESPONSES,
    summary="Cancel a benchmark",
)
router.add_api_route(
    "/benchmarks/{run_id}/cancel",
    cancel_benchmark,
    methods=["POST"],
    responses=_CANCEL_RESPONSES,
    summary="Cancel a benchmark (the same as DELETE /benchmarks/{run_id})",
    operation_id="cancel_benchmark_post",
)


def _report(runtime: Runtime, run_id: str) -> bytes:
    try:
        return _run(runtime, run_id).file(REPORT).read_bytes()
    except FileNotFoundError:
        raise RunNotFound(
            f"Run {run_id} has no report yet; it is written when the run ends."
        ) from None


@router.get(
    "/benchmarks/{run_id}/report",
    responses={**_NOT_FOUND, 200: {"content": {"text/html": {}}, "description": "The report"}},
)
async def get_report(runtime: RuntimeDep, run_id: str) -> Response:
    """The run's self-contained HTML report."""
    return _html(await asyncio.to_thread(_report, runtime, run_id))


def _results(runtime: Runtime, run_id: str) -> Path:
    path = _run(runtime, run_id).file(RESULTS_CSV)
    if not path.exists():
        raise RunNotFound(f"Run {run_id} has no results yet.")
    return path


class _WholeFile(FileResponse):
    """A file sent whole, whatever a `Range` header asks. Starlette answers a malformed or
    unsatisfiable range with a plain-text 400 or 416, outside the error shape; and a results
    file that grows while its run goes on is not one to fetch in pieces."""

    def __init__(self, path: Path, *, media_type: str, filename: str) -> None:
        super().__init__(path, media_type=media_type, filename=filename)
        del self.headers["accept-ranges"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]
        await super().__call__({**scope, "headers": headers}, receive, send)


@router.get(
    "/benchmarks/{run_id}/results.csv",
    responses={**_NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "The CSV"}},
)
async def get_results(runtime: RuntimeDep, run_id: str) -> Response:
    """One row per request (rows appear as requests finish), always the whole file (a
    `Range` header is ignored)."""
    path = await asyncio.to_thread(_results, runtime, run_id)
    # FileResponse reads the file in a thread too.
    return _WholeFile(path, media_type="text/csv", filename=f"{run_id}-{RESULTS_CSV}")
