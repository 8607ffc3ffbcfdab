"""The gateway's performance harness (issues 5 and 14): `make perf`, `make perf PEER=litellm`.

Starts, each as its own process on a loopback port: the perf upstream (instant, OpenRouter
shaped), the emulator (measured alone, to show why it is not the upstream), the floor (a bare
aiohttp passthrough proxy), the gateway (`llm-gateway serve`, one worker) and optionally
LiteLLM's proxy; drives them with wrk and the Python stream client, each in their own processes;
writes results/<UTC time>.json and .md, and LATEST.md. Everything it starts is stopped at the end,
on Ctrl-C and on errors too. `--profile` records the gateway with py-spy under load instead, and
`--whatif` prices its parts.

This file runs the phases in order over one typed `RunResult` (result.py), completes it with the
derived numbers and the targets, and writes it. Run from the repository root with the project's
virtualenv: `.venv/bin/python benchmarks/perf/run.py [--peer litellm] [--quick] [--profile]`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import checks
import derive
import peer
import phase_capacity
import phase_memory
import phase_nonstream
import phase_ramp
import phase_stream
import profiling
import report
import whatif
from cli import parse_args, say
from endpoints import Target, request_for
from machine import ensure_wrk, machine_info, wait_quiet
from measure import Runner
from result import PHASES, Options, RunInfo, RunResult, ServiceInfo
from services import (
    INSTANT,
    INSTANT_CHUNKS,
    SETUP,
    STREAM_CHUNKS,
    STREAM_MODEL,
    Servers,
    endpoints,
)
from stack import Service, Stack, StartError, raise_fd_limit, rss_mb, tree_rss_mb

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# Endpoints without which a run means nothing: a failed sanity request stops it.
ESSENTIAL = ("direct", "floor", "gateway")


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _service_info(service: Service, run_dir: Path) -> ServiceInfo:
    if service.startup_s is None:
        raise RuntimeError(f"{service.name} is not up")
    return ServiceInfo(
        startup_s=round(service.startup_s, 2),
        rss_idle_mb=_mb(tree_rss_mb(service.pid)),
        log=str(service.log.relative_to(run_dir)),
    )


def sanity(runner: Runner, target: Target) -> str | None:
    """One request of each kind the run will send; what went wrong, if anything."""
    requests = [
        request_for(target, INSTANT, stream=False),
        request_for(target, INSTANT, stream=True, expect=INSTANT_CHUNKS),
        request_for(target, STREAM_MODEL, stream=True, expect=STREAM_CHUNKS),
    ]
    batch = runner.fixed(requests, count=len(requests), concurrency=1)
    if batch.stats is None:
        return batch.error
    return str(batch.stats.errors) if batch.stats.errors else None


def start_litellm(servers: Servers, result: RunResult) -> Service | None:
    say("peer: LiteLLM (installing into benchmarks/perf/.venv-litellm on first use) ...")
    binary, version, error = peer.ensure_litellm(servers.run_dir / "litellm-install.log")
    if error is None and binary is not None:
        result.machine.packages["litellm"] = version or "?"
        try:
            return servers.litellm(binary)
        except StartError as exc:
            error = f"did not start: {exc}"
    result.run.errors.append(f"LiteLLM unavailable, continuing without it: {error}")
    say(f"LiteLLM unavailable, continuing without it: {error}")
    return None


def run_phases(options: Options, result: RunResult, runner: Runner, servers: Servers) -> None:
    run_dir = servers.run_dir
    say("starting: perf upstream, gateway, floor, emulator ...")
    services = {"upstream": servers.start_upstream(), "gateway": servers.gateway()}
    services["floor"] = servers.floor()
    services["emulator"] = servers.emulator()
    if options.peer == "litellm" and (litellm := start_litellm(servers, result)) is not None:
        services["litellm"] = litellm
    for name, service in services.items():
        result.services[name] = _service_info(service, run_dir)
        say(f"  {name}: up in {result.services[name].startup_s:.2f} s on {service.url}")

    targets = endpoints(services, servers.upstream_api)
    result.labels = {key: target.label for key, target in targets.items()}
    result.labels.update(upstream="perf upstream", emulator="emulator (`--time-scale 0`)")
    if "litellm" in targets:
        version = result.machine.packages.get("litellm", "")
        result.labels["litellm"] = f"LiteLLM proxy {version}, one worker"
    result.labels.update(phase_capacity.labels(options, result.labels))

    phases = set(options.phases)
    # Memory first, on processes that have served nothing yet: the idle reading is truly idle.
    if "memory" in phases:
        say("memory: RSS at idle and after two batches of mixed requests ...")
        result.memory["gateway"] = phase_memory.run(
            runner,
            services["gateway"],
            targets["gateway"],
            targets["gateway_generate"],
            options.memory_requests,
        )
        if "litellm" in targets:
            result.memory["litellm"] = phase_memory.run(
                runner, services["litellm"], targets["litellm"], None, options.peer_memory_requests
            )

    say("sanity: one request of each kind per target ...")
    for key in list(targets):
        error = sanity(runner, targets[key])
        if error is None:
            continue
        result.run.errors.append(f"{key} failed its sanity requests: {error}")
        say(f"  {key}: FAILED sanity requests: {error}")
        if key in ESSENTIAL:
            raise RuntimeError(f"{key} is not answering correctly: {error}")
        del targets[key]
    result.target_order = list(targets)

    if "emulator" in phases:
        say("emulator alone (why it is not the upstream here) ...")
        phase_nonstream.emulator_alone(runner, services["emulator"], options, result.emulator_alone)
    # It served its purpose; stopping it gives its memory and timers back to the run.
    result.services["emulator"].rss_end_mb = _mb(rss_mb(services["emulator"].pid))
    servers.stack.stop(services.pop("emulator"))

    if "nonstream" in phases:
        say("non-streaming: throughput and latency ...")
        phase_nonstream.run(runner, targets, options, result.nonstream)
    if "stream" in phases:
        say(f"streaming: TTFT and gaps at concurrency {options.stream_concurrency} ...")
        phase_stream.run(runner, targets, options, result.stream)
    if "ramp" in phases:
        say("streaming: most concurrent streams held ...")
        for key, target in targets.items():
            result.ramp[key] = phase_ramp.run(runner, target, options.ramp, options.ramp_timeout)
    if "capacity" in phases:
        say("capacity: long streams by the thousand, a fresh server per step ...")
        phase_capacity.run(runner, servers, options, result.capacity)

    for name, service in services.items():
        result.services[name].rss_end_mb = _mb(tree_rss_mb(service.pid))
    log = run_dir / "gateway" / "logs" / "server_logs.txt"
    if log.exists():
        result.services["gateway"].access_log_bytes = log.stat().st_size


def complete(result: RunResult) -> None:
    """Add the derived numbers, the targets and the noise summary. Raises on a bug: a missing
    number is either typed as absent or an error, never skipped."""
    result.derived = derive.derive(result)
    result.targets = checks.check_targets(result, result.derived)
    result.noise = derive.summarize_noise(result)


def run_mode(options: Options, result: RunResult, runner: Runner, servers: Servers) -> None:
    stem = result.run.id
    if options.profile:
        result.profile = profiling.run(
            runner, servers, options, out_prefix=RESULTS / f"{stem}-profile"
        )
        text = profiling.profile_markdown(result.profile, seconds=options.profile_seconds)
        (RESULTS / f"{stem}-profile.md").write_text(text, encoding="utf-8")
        say(text)
    elif options.whatif:
        servers.start_upstream()
        result.whatif = whatif.run(runner, servers, options)
        text = whatif.markdown(result.whatif)
        (RESULTS / f"{stem}-whatif.md").write_text(text, encoding="utf-8")
        say(text)
    else:
        run_phases(options, result, runner, servers)


def trim_logs(run_dir: Path, keep: int = 1_000_000) -> None:
    """Keep the last `keep` bytes of each big log of the run: the gateway's access log gets a line
    per request (~50 MB a run with the stderr copy) and only its end is ever read."""
    for path in [*run_dir.rglob("*.log"), *run_dir.rglob("server_logs.txt*")]:
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            if size <= 2 * keep:
                continue
            with path.open("rb") as log:
                log.seek(size - keep)
                tail = log.read()
            note = f"[... {size - keep} bytes cut by run.py; the last {keep} follow ...]\n"
            path.write_bytes(note.encode() + tail)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the run through the cleanup. SIGINT is set explicitly:
    a shell starting the harness in the background leaves it ignored, and then it would be the
    one signal that neither stops the run nor cleans up."""
    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, _raise_interrupt)
    try:
        yield
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, handler)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    stem = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = RESULTS / stem
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    say(f"open-file limit: {raise_fd_limit()} (servers and generators inherit it)")
    wrk = ensure_wrk(install=not options.no_install)
    if wrk is None:
        say("wrk unavailable: falling back to the Python load generator for non-streaming loads")
    result = RunResult(
        run=RunInfo(
            id=stem,
            mode=options.mode,
            options=options,
            started_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
        machine=machine_info(wrk),
        setup=SETUP.model_copy(update={"wrk": wrk}),
    )
    measuring = options.mode in ("full", "quick")
    started = time.monotonic()
    code = 0
    with signals_interrupt():
        say(f"run {stem}: checking how busy the machine is ...")
        result.quiet = wait_quiet(options.wait_quiet)
        if result.quiet.busy:
            say(
                f"WARNING: other processes use {result.quiet.foreign_cores} cores; numbers "
                "will be perturbed (see --wait-quiet)"
            )
        try:
            with Stack(run_dir / "logs") as stack:
                runner = Runner(run_dir, stack, sys.executable, wrk)
                run_mode(options, result, runner, Servers(stack, run_dir, options.gateway_env))
        except KeyboardInterrupt:
            result.run.interrupted = True
            say("interrupted: every process started was stopped; writing what was measured")
            code = 130
        except (StartError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            result.run.errors.append(f"{type(exc).__name__}: {exc}")
            say(f"ERROR: {exc}")
            code = 1
        finally:
            result.run.wall_s = round(time.monotonic() - started, 1)
            result.run.finished_utc = datetime.now(UTC).isoformat(timespec="seconds")
            trim_logs(run_dir)
            try:
                if measuring:
                    complete(result)
            finally:
                # Written even when completing it failed: the measurements are not lost.
                json_path = RESULTS / f"{stem}.json"
                json_path.write_text(result.model_dump_json(indent=2), encoding="utf-8")
                say(f"wrote {json_path}")
    if measuring:
        text = report.render(result)
        md_path = RESULTS / f"{stem}.md"
        md_path.write_text(text, encoding="utf-8")
        say(f"wrote {md_path}")
        if options.mode == "full" and code == 0 and set(options.phases) == set(PHASES):
            (HERE / "LATEST.md").write_text(text, encoding="utf-8")
            say(f"wrote {HERE / 'LATEST.md'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
