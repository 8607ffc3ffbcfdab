"""The `llm-gateway` command: serve | emulator | models | generate | bench | report.

A thin shell: it parses flags and calls the same code the HTTP routes use.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from llm_gateway.api.generate import answer_body
from llm_gateway.bench.prompts import load_prompts
from llm_gateway.config import Settings
from llm_gateway.errors import ConfigError, GatewayError
from llm_gateway.generation import Generated, Relay, build_payload, from_reply
from llm_gateway.runtime import Runtime, open_runtime
from llm_gateway.schemas.generate import GenerateRequest
from llm_gateway.security import is_loopback
from llm_gateway.upstream.catalog import select

EXIT_OK = 0
EXIT_UPSTREAM_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell expects after Ctrl-C

T = TypeVar("T")

app = typer.Typer(
    help="A fast, reliable gateway and benchmark for OpenRouter and OpenAI-compatible LLM APIs.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: flags without a `<bool>` type (which read as `--json true`), and readable
    # at 80 columns and in a pipe.
    rich_markup_mode=None,
)
out_console = Console()
err = Console(stderr=True, soft_wrap=True)

Host = Annotated[str, typer.Option(help="Interface to bind.")]
Wide = typer.Option(
    "--wide", help="Every column of the summary (default: the ones that fit 80 columns)."
)


def _settings() -> Settings:
    try:
        settings = Settings()
        settings.resolved_upstream()
    except (ConfigError, ValidationError) as exc:
        err.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    return settings


def _with_runtime(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open the runtime (starting the emulator when there is no key), run `work`, close it."""
    settings = _settings()

    async def main() -> T:
        async with open_runtime(settings) as runtime:
            if runtime.upstream == "emulator":
                err.print(
                    "[yellow]No OPENROUTER_API_KEY: using the built-in emulator "
                    "(synthetic answers).[/yellow]"
                )
            return await work(runtime)

    try:
        return asyncio.run(main())
    except GatewayError as exc:
        err.print(f"[red]{exc.code}[/red] ({exc.status}): {exc.message}")
        raise typer.Exit(EXIT_UPSTREAM_ERROR) from exc


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Worker processes sharing the port (default GATEWAY_WORKERS, 1)."
        ),
    ] = None,
) -> None:
    """Run the gateway (OpenRouter with OPENROUTER_API_KEY, else the built-in emulator)."""
    from llm_gateway.server import serve as run_server

    settings = _settings()
    try:
        keys = settings.inbound_keys()
    except ConfigError as exc:
        err.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    if not keys and not is_loopback(host) and not settings.allow_open:
        err.print(
            f"[red]Refusing to serve on {host} without inbound keys:[/red] anyone who can reach "
            "it could spend the upstream key's credits. Set GATEWAY_API_KEYS (clients then send "
            "`Authorization: Bearer <key>`), or GATEWAY_ALLOW_OPEN=true if something in front of "
            "the gateway already authenticates clients."
        )
        raise typer.Exit(EXIT_USAGE)
    run_server(settings, host=host, port=port, workers=workers or settings.workers)


@app.command()
def emulator(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9010,
    seed: Annotated[int, typer.Option(help="Seed for the generated text.")] = 0,
    time_scale: Annotated[
        float, typer.Option(help="Multiply every latency (0 = instant).", min=0)
    ] = 1.0,
    free_rpm: Annotated[
        int | None, typer.Option(help="Rate-limit ':free' models to N requests a minute.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Accept only this bearer token (default: any).")
    ] = None,
    keep_bodies: Annotated[
        bool, typer.Option(help="Keep request bodies in /_emulator/requests (within its bound).")
    ] = False,
) -> None:
    """Run the OpenRouter emulator alone; point GATEWAY_UPSTREAM_URL at http://HOST:PORT/api/v1."""
    from llm_gateway.emulator import Emulator, EmulatorConfig

    config = EmulatorConfig(
        seed=seed,
        time_scale=time_scale,
        free_rpm=free_rpm,
        api_key=api_key,
        keep_bodies=keep_bodies,
    )
    err.print(f"OpenRouter emulator (not OpenRouter) at http://{host}:{port}/api/v1")
    uvicorn.run(Emulator(config).app, host=host, port=port, log_level="info")


@app.command()
def models(
    free: Annotated[bool, typer.Option(help="Only free models.")] = False,
    search: Annotated[str | None, typer.Option("--search", "-q", help="Filter by text.")] = None,
    details: Annotated[bool, typer.Option(help="Show names, context and prices.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the upstream's models."""

    async def work(runtime: Runtime) -> None:
        found = select(await runtime.catalog.models(), free=free, query=search)
        if as_json:
            data = [m.to_json() for m in found] if details else [m.id for m in found]
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif details:
            table = Table("id", "context", "$/M prompt", "$/M completion", "free")
            for m in found:
                prices = m.to_json()["pricing"]
                table.add_row(
                    m.id,
                    str(m.context_length or "-"),
                    str(prices["prompt_per_million"]),
                    str(prices["completion_per_million"]),
                    "yes" if m.free else "",
                )
            out_console.print(table)
        else:
            for m in found:
                sys.stdout.write(m.id + "\n")

    _with_runtime(work)


@app.command(name="generate")
def generate_command(
    prompt: Annotated[str, typer.Argument(help="The prompt.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model id.")],
    max_tokens: Annotated[int, typer.Option(min=1, help="Completion length limit.")] = 512,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    temperature: Annotated[float | None, typer.Option(min=0, max=2)] = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it arrives.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full JSON answer.")] = False,
) -> None:
    """Send one prompt to one model and print the answer."""
    try:
        request = GenerateRequest(
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            system=system,
            temperature=temperature,
        )
    except ValidationError as exc:
        err.print(f"[red]Invalid input:[/red] {exc.errors()[0]['msg']}")
        raise typer.Exit(EXIT_USAGE) from exc
    payload = build_payload(request, max_tokens=max_tokens)

    async def work(runtime: Runtime) -> None:
        started = time.perf_counter()
        if stream:
            generated = await _print_stream(runtime, payload, started, echo=not as_json)
        else:
            generated = from_reply(await runtime.client.complete(payload), started=started)
            if not as_json:
                sys.stdout.write(generated.completion.text + "\n")
        if as_json:
            body = answer_body(generated, with_ttft=stream)
            sys.stdout.write(orjson.dumps(body).decode() + "\n")
        else:
            completion, usage = generated.completion, generated.completion.usage
            ttft = f", ttft {generated.ttft:.3f}s" if generated.ttft is not None else ""
            err.print(
                f"[dim]{completion.model} · {usage.total_tokens if usage else '?'} tokens · "
                f"{generated.latency:.3f}s{ttft} · finish {completion.finish_reason}[/dim]"
            )

    _with_runtime(work)


async def _print_stream(
    runtime: Runtime, payload: dict[str, Any], started: float, *, echo: bool
) -> Generated:
    """Stream a generation, printing text as it arrives; return the final answer."""
    async with await runtime.client.stream(payload) as upstream:
        relay = Relay(upstream, started=started)
        async for block in upstream.forward():
            for piece in relay.pieces(block):
                if piece and echo:
                    sys.stdout.write(piece)
                    sys.stdout.flush()
        if echo:
            sys.stdout.write("\n")
        return relay.finish()


@app.command()
def bench(
    prompt_file: Annotated[
        Path, typer.Argument(help="Prompts: .txt (one per line), .jsonl or .csv.", exists=True)
    ],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model id; repeat for several.")
    ],
    runs: Annotated[int, typer.Option(min=1, help="Requests per prompt per model.")] = 5,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Requests in flight at once (default 1; with --rate, the cap: 256)."
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Send N requests per second (open loop).")
    ] = None,
    arrivals: Annotated[
        str, typer.Option(help="With --rate: constant (1/N s apart) or poisson.")
    ] = "constant",
    arrival_seed: Annotated[
        int | None, typer.Option(help="Seed of Poisson arrivals (default: random, recorded).")
    ] = None,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Step the load up, doubling from --sweep-start to --concurrency (or --rate), "
            "until the SLO breaks.",
        ),
    ] = False,
    sweep_start: Annotated[float, typer.Option(min=0.001, help="A sweep's first load.")] = 1.0,
    slo: Annotated[
        str | None,
        typer.Option(help="A sweep's objective, e.g. ttft_p99=0.5,latency_p99=5,error_rate=0.01"),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(min=1, help="Measuring processes (default: one per 128 in flight)."),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(min=0, max=19, help="Retries per request (0: none; default: the gateway's)."),
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 512,
    temperature: Annotated[float | None, typer.Option(min=0, max=2)] = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Whole answers (no TTFT measured).")
    ] = False,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up requests per model.")] = 0,
    timeout: Annotated[float, typer.Option(min=0.001, help="Per-request timeout, s.")] = 120.0,
    shuffle_seed: Annotated[
        int | None, typer.Option(help="Shuffle the request order with this seed.")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="Any OpenAI-compatible base URL (default: the configured upstream)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="BENCH_API_KEY", help="Key for --base-url (default: none)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for runs (default GATEWAY_BENCHMARKS_DIR).")
    ] = None,
    wide: Annotated[bool, Wide] = False,
) -> None:
    """Benchmark models on a prompt file: live progress, a summary table, stored results.
    Exits 1 when a model had no successful request."""
    from llm_gateway.bench.runner import Load
    from llm_gateway.cli.bench import build_config, run_bench

    settings = _settings()
    try:
        prompts = load_prompts(
            prompt_file.name,
            prompt_file.read_bytes(),
            max_bytes=settings.bench_max_file_bytes,
            max_prompts=settings.bench_max_prompts,
            max_prompt_chars=settings.max_prompt_chars,
        )
    except GatewayError as exc:
        err.print(f"[red]{prompt_file}:[/red] {exc.message}")
        raise typer.Exit(EXIT_USAGE) from exc
    try:
        config = build_config(
            models=tuple(dict.fromkeys(m.strip() for m in model if m.strip())),
            prompts=prompts.prompts,
            runs=runs,
            load=Load(concurrency, rate, arrivals, arrival_seed, sweep, sweep_start, slo),
            max_tokens=max_tokens,
            temperature=temperature,
            stream=not no_stream,
            warmup=warmup,
            timeout=timeout,
            shuffle_seed=shuffle_seed,
            processes=processes,
            retries=retries,
        )
    except ValueError as exc:
        err.print(f"[red]Invalid options:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    code = run_bench(
        settings,
        config,
        prompts,
        base_url=base_url,
        api_key=api_key,
        out=out or settings.benchmarks_dir,
        console=out_console,
        wide=wide,
    )
    raise typer.Exit(code)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder under benchmarks/.")],
    wide: Annotated[bool, Wide] = False,
) -> None:
    """Re-render a run's summary.json and report.html from its stored results."""
    from llm_gateway.cli.bench import rerender

    raise typer.Exit(rerender(run_dir, console=out_console, wide=wide))


def main() -> None:
    app()
