"""The gateway's performance harness (issue 5): `make perf`, `make perf PEER=litellm`.

Starts, each as its own process on a loopback port: the perf upstream (instant, OpenRouter
shaped), the emulator (measured alone, to show why it is not the upstream), the floor (a bare
aiohttp passthrough proxy), the gateway (`llm-gateway serve`, one worker) and optionally
LiteLLM's proxy; drives them with wrk and the Python stream client, each in their own processes;
writes results/<UTC time>.json and .md, and LATEST.md. Everything it starts is stopped at the end,
on Ctrl-C and on errors too. `--profile` instead records the gateway with py-spy under load.

Run from the repository root with the project's virtualenv: `.venv/bin/python
benchmarks/perf/run.py [--peer litellm] [--quick] [--profile]`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import peer
import profiling
import report
import whatif
from measure import Runner, Target, find_wrk, request_for
from stack import (
    Service,
    Stack,
    StartError,
    cpu_sample,
    foreign_cores,
    free_port,
    rss_mb,
    tree_rss_mb,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent

UPSTREAM_KEY = "perf-key"
INSTANT = "perf/instant"
INSTANT_CHUNKS = 20
# TTFT/gap streams: short, so a few seconds give hundreds of streams.
STREAM_CHUNKS, STREAM_GAP_MS = 20, 5
# Ramp streams: long enough (~1.2 s) that the streams of one step overlap.
RAMP_CHUNKS, RAMP_GAP_MS = 40, 30
STREAM_MODEL = f"perf/paced-{STREAM_CHUNKS}-{STREAM_GAP_MS}"
RAMP_MODEL = f"perf/paced-{RAMP_CHUNKS}-{RAMP_GAP_MS}"
QUIET_CORES = report.BUSY_CORES
PHASES = ("memory", "emulator", "nonstream", "stream", "ramp")
# Upstream pool for the second gateway ramp: above the largest step, so no stream queues.
BIG_POOL = 2048
PACKAGES = (
    "llm-gateway",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "orjson",
    "pydantic",
    "pydantic-core",
    "prometheus-client",
)


def say(message: str) -> None:
    # Progress goes to stdout as it happens: a run takes minutes.
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# set-up


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=["", "none", "litellm"], default="")
    parser.add_argument("--duration", type=int, default=5, help="measured seconds per cell")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per cell")
    parser.add_argument("--concurrency", default="1,16,64", help="non-streaming concurrencies")
    parser.add_argument("--stream-concurrency", type=int, default=4)
    parser.add_argument("--ramp", default=None, help="concurrent-stream steps (100,250,500,1000)")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (a partial run writes no LATEST.md)",
    )
    parser.add_argument("--ramp-timeout", type=float, default=60.0, help="seconds per step")
    parser.add_argument("--memory-requests", type=int, default=10_000, help="per batch")
    parser.add_argument(
        "--peer-memory-requests",
        type=int,
        default=2_000,
        help="per batch for the peer (LiteLLM serves ~60 req/s: 10,000 would take minutes)",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run; no LATEST.md")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway instead")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument(
        "--whatif", action="store_true", help="price each part of the gateway instead (whatif.py)"
    )
    parser.add_argument("--whatif-rounds", type=int, default=3)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="wait up to this many seconds for other processes to go quiet before measuring",
    )
    parser.add_argument(
        "--retry-noisy",
        type=int,
        default=1,
        help="re-measure a cell up to N times when other processes used more than "
        f"{QUIET_CORES} cores during it, keeping the quietest attempt",
    )
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2, 1
        args.memory_requests, args.peer_memory_requests = 1_000, 200
    if args.ramp is None:
        args.ramp = "100,250" if args.quick else "100,250,500,1000"
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


def ensure_wrk(*, install: bool) -> str | None:
    """wrk's path; on a fresh Debian machine (as root) it is installed from Debian's archive."""
    found = find_wrk()
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    say("wrk not found: installing it with apt-get (Debian package `wrk`) ...")
    for argv in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"]):
        subprocess.run(argv, capture_output=True, timeout=600, check=False)
        if found := find_wrk():
            return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, timeout=600)
    return find_wrk()


def wait_quiet(max_wait: float) -> dict[str, Any]:
    """How busy other processes keep the machine; waits (bounded) for it to calm down."""
    started = time.monotonic()
    while True:
        before = cpu_sample()
        time.sleep(2.0)
        busy = foreign_cores(before, cpu_sample())
        waited = time.monotonic() - started
        if busy < QUIET_CORES or waited >= max_wait:
            break
        say(f"machine busy: {busy:.2f} cores used by other processes; waiting ({waited:.0f} s)")
        time.sleep(min(10.0, max(0.0, max_wait - waited)))
    return {
        "foreign_cores": round(busy, 3),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "waited_s": round(time.monotonic() - started, 1),
        "busy": busy >= QUIET_CORES,
    }


def machine_info(wrk: str | None) -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((x.split(":", 1)[1].strip() for x in info if x.startswith("model name")), "?")
    memory_gb: float | str = "?"
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as mem:
        memory_gb = round(int(mem.readline().split()[1]) / 1024 / 1024, 1)
    packages: dict[str, str] = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            packages[name] = importlib.metadata.version(name)
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        packages["wrk"] = (out.stdout or out.stderr).split()[1] if out.stdout else "?"
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git": _git_version(),
        "packages": packages,
    }


def _git_version() -> str:
    # Read-only git: which commit was measured, and whether the tree had local changes.
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "(no git)"
    return f"{commit}{' + local changes' if dirty else ''}"


def clean_env() -> dict[str, str]:
    """The environment without any gateway settings of the person running the harness."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OPENROUTER_"))}


# services


def start_core(stack: Stack, run_dir: Path, *, with_gateway: bool = True) -> dict[str, Service]:
    python = sys.executable
    services: dict[str, Service] = {}
    up_port = free_port()
    services["upstream"] = stack.start(
        "upstream",
        [python, str(HERE / "upstream.py"), "--port", str(up_port), "--chunks", "20"],
        port=up_port,
        health_path="/health",
    )
    if with_gateway:
        services["gateway"] = start_gateway(stack, run_dir, services["upstream"])
    return services


def upstream_api(upstream: Service) -> str:
    return f"{upstream.url}/api/v1"


def start_gateway(
    stack: Stack,
    run_dir: Path,
    upstream: Service,
    *,
    name: str = "gateway",
    extra: dict[str, str] | None = None,
    whatif: str | None = None,
) -> Service:
    home = run_dir / name
    home.mkdir(parents=True, exist_ok=True)
    env = clean_env()
    env.update(
        OPENROUTER_API_KEY=UPSTREAM_KEY,
        GATEWAY_UPSTREAM="openrouter",
        GATEWAY_UPSTREAM_URL=upstream_api(upstream),
        # INFO is the default and what users run: it is the level of the access log.
        GATEWAY_LOG_LEVEL="INFO",
        GATEWAY_LOG_DIR=str(home / "logs"),
        GATEWAY_BENCHMARKS_DIR=str(home / "benchmarks"),
    )
    env.update(extra or {})
    port = free_port()
    # cwd is an empty folder so no `.env` of the person running this changes the settings.
    argv = [str(BIN / "llm-gateway"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if whatif is not None:
        argv = [sys.executable, str(HERE / "whatif.py"), "--port", str(port), "--off", whatif]
    return stack.start(
        name,
        argv,
        port=port,
        health_path="/health",
        env=env,
        cwd=home,
    )


def targets_for(services: dict[str, Service]) -> dict[str, Target]:
    up_auth = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
    found = {
        "direct": Target(
            "direct",
            "direct to the upstream",
            f"{upstream_api(services['upstream'])}/chat/completions",
            "chat",
            up_auth,
        )
    }
    if "floor" in services:
        found["floor"] = Target(
            "floor",
            "bare Python ASGI proxy, aiohttp client (the floor)",
            f"{services['floor'].url}/v1/chat/completions",
            "chat",
        )
    if "gateway" in services:
        gateway = services["gateway"].url
        found["gateway"] = Target(
            "gateway",
            "llm-gateway `/v1/chat/completions`",
            f"{gateway}/v1/chat/completions",
            "chat",
        )
        found["gateway_generate"] = Target(
            "gateway_generate", "llm-gateway `/generate`", f"{gateway}/generate", "generate"
        )
    if "litellm" in services:
        found["litellm"] = Target(
            "litellm",
            "LiteLLM proxy, one worker",
            f"{services['litellm'].url}/v1/chat/completions",
            "chat",
            {"Authorization": f"Bearer {peer.MASTER_KEY}"},
        )
    return found


def start_litellm(
    stack: Stack, run_dir: Path, upstream: Service, data: dict[str, Any]
) -> Service | None:
    say("peer: LiteLLM (installing into benchmarks/perf/.venv-litellm on first use) ...")
    binary, version, error = peer.ensure_litellm(run_dir / "litellm-install.log")
    if error is not None or binary is None:
        data["run"]["errors"].append(f"LiteLLM unavailable, continuing without it: {error}")
        say(f"LiteLLM unavailable, continuing without it: {error}")
        return None
    data["machine"]["packages"]["litellm"] = version or "?"
    config = run_dir / "litellm.yaml"
    peer.write_config(
        config,
        upstream_url=upstream_api(upstream),
        api_key=UPSTREAM_KEY,
        models=[INSTANT, STREAM_MODEL, RAMP_MODEL],
    )
    port = free_port()
    try:
        return stack.start(
            "litellm",
            peer.argv(binary, config, port),
            port=port,
            health_path="/health/liveliness",
            env=peer.environment(clean_env()),
            cwd=run_dir,
            timeout=180,
        )
    except StartError as exc:
        data["run"]["errors"].append(f"LiteLLM did not start, continuing without it: {exc}")
        say(f"LiteLLM did not start, continuing without it: {exc}")
        return None


def sanity(runner: Runner, target: Target) -> str | None:
    """One request of each kind the run will send; the error, if any."""
    requests = [
        request_for(target, INSTANT, stream=False),
        request_for(target, INSTANT, stream=True, expect=INSTANT_CHUNKS),
        request_for(target, STREAM_MODEL, stream=True, expect=STREAM_CHUNKS),
    ]
    out = runner.fixed(requests, count=len(requests), concurrency=1)
    if "error" in out:
        return str(out["error"])
    return str(out["errors"]) if out.get("errors") else None


# phases


def memory_phase(
    runner: Runner, service: Service, chat: Target, generate: Target | None, per_batch: int
) -> dict[str, Any]:
    mix = [
        request_for(chat, INSTANT, stream=False),
        request_for(chat, INSTANT, stream=True, expect=INSTANT_CHUNKS),
    ]
    if generate is not None:
        mix += [
            request_for(generate, INSTANT, stream=False),
            request_for(generate, INSTANT, stream=True, expect=INSTANT_CHUNKS),
        ]
    result: dict[str, Any] = {"requests_per_batch": per_batch, "batches": []}
    time.sleep(1.0)
    result["idle_mb"] = _round(tree_rss_mb(service.pid))
    for i in (1, 2):
        batch = runner.fixed(mix, count=per_batch, concurrency=16)
        result["batches"].append(batch)
        time.sleep(1.0)  # let in-flight buffers drain so the readings are comparable
        result[f"after_{i}_mb"] = _round(tree_rss_mb(service.pid))
        say(
            f"  memory {service.name}: batch {i} of {per_batch:,} in {batch.get('wall_s', 0):.1f}"
            f" s, errors {batch.get('errors')}, RSS {result[f'after_{i}_mb']} MB"
        )
    if result.get("after_1_mb") is not None and result.get("after_2_mb") is not None:
        result["growth_mb"] = round(result["after_2_mb"] - result["after_1_mb"], 2)
    return result


def ramp(runner: Runner, target: Target, steps: list[int], timeout: float) -> dict[str, Any]:
    """Steps of N streams opened at once. A step passes when every stream got every event in
    order and ended properly, and the streams were really concurrent (at least 90% of them open
    at one instant); a step that delivered everything but queued streams (e.g. on a connection
    pool) does not pass, but the ramp goes on to show whether delivery stays correct."""
    result: dict[str, Any] = {"steps": [], "max_held": 0, "max_delivered": 0}
    held_so_far = True
    for n in steps:
        step = runner.hold(target, RAMP_MODEL, streams=n, expect=RAMP_CHUNKS, timeout=timeout)
        result["steps"].append(step)
        delivered = "error" not in step and step["ok"] == n and not step.get("errors")
        concurrent = step.get("peak_open", 0) >= 0.9 * n
        step["queued"] = delivered and not concurrent
        say(
            f"  {target.key} {n} streams: ok {step.get('ok')}, errors "
            f"{step.get('errors') or step.get('error')}, peak open {step.get('peak_open')}, "
            f"wall {step.get('wall_s', 0):.2f} s{' (queued)' if step['queued'] else ''}"
        )
        if not delivered:
            break
        result["max_delivered"] = n
        held_so_far = held_so_far and concurrent
        if held_so_far:
            result["max_held"] = n
    return result


def quietest(measure: Callable[[], dict[str, Any]], retries: int) -> dict[str, Any]:
    """Run a measurement; while other processes perturbed it, run it again (bounded) and keep
    the attempt with the least foreign load. Every attempt's foreign load is recorded."""
    result = measure()
    attempts = [result.get("foreign_cores")]
    for _ in range(retries):
        if (result.get("foreign_cores") or 0.0) <= QUIET_CORES:
            break
        say(f"    (other load {result.get('foreign_cores')} cores: measuring again)")
        again = measure()
        attempts.append(again.get("foreign_cores"))
        if (again.get("foreign_cores") or 0.0) < (result.get("foreign_cores") or 0.0):
            result = again
    result["foreign_cores_attempts"] = attempts
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def log_cell(prefix: str, result: dict[str, Any]) -> None:
    if "error" in result:
        say(f"  {prefix}: FAILED {result['error'][:200]}")
        return
    say(
        f"  {prefix}: {result.get('rps', 0):,.0f} req/s, p50 {result.get('p50_ms')} ms, "
        f"p99 {result.get('p99_ms')} ms, errors {result.get('errors')}, "
        f"other load {result.get('foreign_cores')} cores"
    )


def derive(data: dict[str, Any]) -> None:
    """Deltas against direct, ratios against the floor, and the issue's targets."""
    out: dict[str, Any] = {"nonstream": {}, "stream": {}}
    for conc, by_target in data["nonstream"].items():
        direct = by_target.get("direct", {})
        floor_rps = by_target.get("floor", {}).get("rps")
        cells: dict[str, Any] = {}
        for key, result in by_target.items():
            if "error" in result or "p50_ms" not in direct:
                continue
            cell = {
                f"added_{p}_ms": round(result[f"{p}_ms"] - direct[f"{p}_ms"], 4)
                for p in ("p50", "p95", "p99")
            }
            if floor_rps:
                cell["fraction_of_floor"] = round(result["rps"] / floor_rps, 4)
            cells[key] = cell
        out["nonstream"][conc] = cells
    direct_stream = data["stream"].get("direct", {})
    for key, result in data["stream"].items():
        if "error" in result or "error" in direct_stream or not direct_stream:
            continue
        cell = {}
        for what in ("ttft", "gap"):
            for p in ("p50", "p99"):
                mine, base = result[what][f"{p}_ms"], direct_stream[what][f"{p}_ms"]
                if mine is not None and base is not None:
                    cell[f"added_{what}_{p}_ms"] = round(mine - base, 4)
        out["stream"][key] = cell
    data["derived"] = out
    data["targets"] = check_targets(data)


def check_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    ns = data["derived"]["nonstream"]
    rs = data["nonstream"]

    def add(what: str, measured: str, met: bool | None) -> None:
        checks.append({"what": what, "measured": measured, "met": met})

    for key in ("gateway", "gateway_generate"):
        label = data["labels"].get(key, key)
        c1 = ns.get("1", {}).get(key)
        if c1:
            add(
                f"{label}: added latency at c=1, p50 <= 0.5 ms and p99 <= 2 ms",
                f"p50 {report.ms(c1['added_p50_ms'], signed=True)}, "
                f"p99 {report.ms(c1['added_p99_ms'], signed=True)}",
                c1["added_p50_ms"] <= 0.5 and c1["added_p99_ms"] <= 2.0,
            )
        c64 = ns.get("64", {}).get(key)
        if c64 and "fraction_of_floor" in c64:
            add(
                f"{label}: throughput at c=64 >= 0.5x the floor",
                f"{c64['fraction_of_floor']:.2f}x ({report.rps(rs['64'][key]['rps'])})",
                c64["fraction_of_floor"] >= 0.5,
            )
        litellm = rs.get("64", {}).get("litellm", {})
        if c64 and litellm.get("rps"):
            times = rs["64"][key]["rps"] / litellm["rps"]
            add(f"{label}: throughput at c=64 >= 30x LiteLLM's", f"{times:.1f}x", times >= 30)
        stream = data["derived"]["stream"].get(key, {})
        if "added_ttft_p50_ms" in stream:
            added = stream["added_ttft_p50_ms"]
            add(
                f"{label}: streaming added TTFT p50 <= 1 ms",
                report.ms(added, signed=True),
                added <= 1.0,
            )
        ramp_result = data["ramp"].get(key)
        if ramp_result:
            held = ramp_result.get("max_held", 0)
            measured = f"most held at once: {held}"
            if ramp_result.get("max_delivered", 0) > held:
                peak = max(step.get("peak_open", 0) for step in ramp_result["steps"])
                measured += (
                    f" (up to {ramp_result['max_delivered']} every event arrived in order, but "
                    f"at most {peak} were open at once: the rest queued)"
                )
            bigger = data["ramp"].get("gateway_pool")
            if bigger and key == "gateway":
                measured += (
                    f"; with GATEWAY_UPSTREAM_POOL_SIZE={BIG_POOL}: {bigger.get('max_held', 0)} "
                    "held at once"
                )
            add(
                f"{label}: 500 concurrent streams, no event lost or reordered",
                measured,
                held >= 500,
            )
    mem = data["memory"].get("gateway")
    if mem and mem.get("after_2_mb") is not None:
        total = 2 * mem["requests_per_batch"]
        add(
            f"gateway RSS < 120 MB after {total:,} requests",
            report.mb(mem["after_2_mb"]),
            None if total < 20_000 else mem["after_2_mb"] < 120,
        )
        # Noise: allocator and GC jitter of a process this size is ~1-2 MB between readings.
        noise = max(2.0, 0.02 * mem["after_1_mb"])
        add(
            f"gateway RSS growth between 2nd and 3rd reading within noise (<= {noise:.1f} MB)",
            report.mb(mem.get("growth_mb")),
            mem.get("growth_mb", 0) <= noise,
        )
    start = data["services"].get("gateway", {}).get("startup_s")
    if start is not None:
        add("gateway start-up < 2 s (to first 200 on /health)", f"{start:.2f} s", start < 2.0)
    return checks


def summarize_noise(data: dict[str, Any]) -> None:
    values: list[float] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("foreign_cores"), int | float) and node is not data["quiet"]:
                values.append(float(node["foreign_cores"]))
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    for key in ("nonstream", "stream", "ramp", "memory", "emulator_alone"):
        collect(data.get(key))
    if values:
        data["noise"] = {
            "max_foreign_cores": round(max(values), 2),
            "median_foreign_cores": round(statistics.median(values), 2),
            "cells_over_threshold": sum(v > QUIET_CORES for v in values),
            "cells": len(values),
            "busy": statistics.median(values) > QUIET_CORES,
        }


def run_all(args: argparse.Namespace, data: dict[str, Any], stack: Stack, run_dir: Path) -> None:
    wrk = data["setup"]["wrk"]
    runner = Runner(run_dir, stack, sys.executable, wrk)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]

    say("starting: perf upstream, gateway, floor, emulator ...")
    services = start_core(stack, run_dir)
    upstream, gateway = services["upstream"], services["gateway"]
    port = free_port()
    services["floor"] = stack.start(
        "floor",
        [
            sys.executable,
            str(HERE / "floor.py"),
            "--port",
            str(port),
            "--upstream",
            upstream_api(upstream),
            "--api-key",
            UPSTREAM_KEY,
        ],
        port=port,
        health_path="/health",
    )
    port = free_port()
    services["emulator"] = stack.start(
        "emulator",
        [str(BIN / "llm-gateway"), "emulator", "--port", str(port), "--time-scale", "0"],
        port=port,
        health_path="/",
    )
    if args.peer == "litellm":
        litellm = start_litellm(stack, run_dir, upstream, data)
        if litellm is not None:
            services["litellm"] = litellm
    for name, service in services.items():
        data["services"][name] = {
            "startup_s": _round(service.startup_s),
            "rss_idle_mb": _round(tree_rss_mb(service.pid)),
            "log": str(service.log.relative_to(run_dir)),
        }
        say(f"  {name}: up in {service.startup_s:.2f} s on {service.url}")

    targets = targets_for(services)
    data["target_order"] = list(targets)
    data["labels"] = {key: t.label for key, t in targets.items()}
    data["labels"].update(upstream="perf upstream", emulator="emulator (`--time-scale 0`)")
    if "litellm" in targets:
        version = data["machine"]["packages"].get("litellm", "")
        data["labels"]["litellm"] = f"LiteLLM proxy {version}, one worker"

    # Memory first, on processes that have served nothing yet: the idle reading is truly idle.
    if "memory" in args.phases:
        say("memory: RSS at idle and after two batches of mixed requests ...")
        data["memory"]["gateway"] = memory_phase(
            runner, gateway, targets["gateway"], targets["gateway_generate"], args.memory_requests
        )
    if "memory" in args.phases and "litellm" in targets:
        data["memory"]["litellm"] = memory_phase(
            runner, services["litellm"], targets["litellm"], None, args.peer_memory_requests
        )

    say("sanity: one request of each kind per target ...")
    for key in list(targets):
        error = sanity(runner, targets[key])
        if error is None:
            continue
        data["run"]["errors"].append(f"{key} failed its sanity requests: {error}")
        say(f"  {key}: FAILED sanity requests: {error}")
        if key in ("direct", "floor", "gateway"):
            raise RuntimeError(f"{key} is not answering correctly: {error}")
        del targets[key]
        data["target_order"].remove(key)

    if "emulator" in args.phases:
        say("emulator alone (why it is not the upstream here) ...")
    emulator = Target(
        "emulator",
        "emulator",
        f"{services['emulator'].url}/api/v1/chat/completions",
        "chat",
        {"Authorization": f"Bearer {UPSTREAM_KEY}"},
    )
    for conc in concurrencies if "emulator" in args.phases else []:
        result = runner.nonstream(
            emulator,
            "emulator/instant",
            concurrency=conc,
            duration=args.duration,
            warmup=args.warmup,
        )
        data["emulator_alone"].append(result)
        log_cell(f"c={conc} emulator", result)
    # It served its purpose; stopping it gives its memory and timers back to the run.
    data["services"]["emulator"]["rss_end_mb"] = _round(rss_mb(services["emulator"].pid))
    stack.stop(services.pop("emulator"))

    if "nonstream" in args.phases:
        say("non-streaming: throughput and latency ...")
    for conc in concurrencies if "nonstream" in args.phases else []:
        cells = data["nonstream"].setdefault(str(conc), {})
        for key, target in targets.items():
            cells[key] = quietest(
                functools.partial(
                    runner.nonstream,
                    target,
                    INSTANT,
                    concurrency=conc,
                    duration=args.duration,
                    warmup=args.warmup,
                ),
                args.retry_noisy,
            )
            log_cell(f"c={conc} {key}", cells[key])

    if "stream" in args.phases:
        say(f"streaming: TTFT and gaps at concurrency {args.stream_concurrency} ...")
    for key, target in targets.items() if "stream" in args.phases else []:
        result = quietest(
            functools.partial(
                runner.stream_latency,
                target,
                STREAM_MODEL,
                expect=STREAM_CHUNKS,
                concurrency=args.stream_concurrency,
                duration=args.duration,
                warmup=args.warmup,
            ),
            args.retry_noisy,
        )
        data["stream"][key] = result
        if "error" in result:
            say(f"  {key}: FAILED {result['error'][:200]}")
        else:
            say(
                f"  {key}: {result['ok']}/{result['streams']} ok, TTFT p50 "
                f"{result['ttft']['p50_ms']} ms, gap p50 {result['gap']['p50_ms']} ms, "
                f"p99 {result['gap']['p99_ms']} ms"
            )

    if "ramp" in args.phases:
        say("streaming: most concurrent streams held ...")
    steps = [int(n) for n in args.ramp.split(",") if n.strip()] if "ramp" in args.phases else []
    for key, target in targets.items() if steps else []:
        data["ramp"][key] = ramp(runner, target, steps, args.ramp_timeout)
    if any(step.get("queued") for step in data["ramp"].get("gateway", {}).get("steps", [])):
        # Streams past the upstream pool wait for a connection: is that the default setting or
        # the gateway's capacity? The same ramp with a pool larger than the largest step says.
        say(f"gateway streams queued on its upstream pool; again with pool {BIG_POOL} ...")
        services["gateway_pool"] = start_gateway(
            stack,
            run_dir,
            upstream,
            name="gateway_pool",
            extra={"GATEWAY_UPSTREAM_POOL_SIZE": str(BIG_POOL)},
        )
        target = Target(
            "gateway_pool",
            f"llm-gateway `/v1/chat/completions`, GATEWAY_UPSTREAM_POOL_SIZE={BIG_POOL}",
            f"{services['gateway_pool'].url}/v1/chat/completions",
            "chat",
        )
        data["labels"][target.key] = target.label
        data["services"]["gateway_pool"] = {"startup_s": _round(services["gateway_pool"].startup_s)}
        data["ramp"][target.key] = ramp(runner, target, steps, args.ramp_timeout)

    for name, service in services.items():
        data["services"][name]["rss_end_mb"] = _round(tree_rss_mb(service.pid))
    log = run_dir / "gateway" / "logs" / "server_logs.txt"
    if log.exists():
        data["services"]["gateway"]["access_log_bytes"] = log.stat().st_size


def run_profile(
    args: argparse.Namespace, data: dict[str, Any], stack: Stack, run_dir: Path, stem: str
) -> None:
    wrk = data["setup"]["wrk"]
    if wrk is None:
        raise RuntimeError("--profile needs wrk (apt-get install wrk)")
    pyspy, error = profiling.ensure_pyspy(run_dir / "tools-install.log")
    if pyspy is None:
        raise RuntimeError(f"py-spy unavailable: {error}")
    runner = Runner(run_dir, stack, sys.executable, wrk)
    services = start_core(stack, run_dir)
    targets = targets_for(services)
    say("warming the gateway up ...")
    for key in ("gateway", "gateway_generate"):
        runner.nonstream(targets[key], INSTANT, concurrency=64, duration=2, warmup=0)
    say(f"profiling: py-spy for {args.profile_seconds} s per recording under c=64 load ...")
    results = profiling.profile_gateway(
        runner,
        stack,
        pyspy=pyspy,
        gateway_pid=services["gateway"].pid,
        targets=[targets["gateway"], targets["gateway_generate"]],
        model=INSTANT,
        seconds=args.profile_seconds,
        out_prefix=RESULTS / f"{stem}-profile",
    )
    data["profile"] = results
    text = profiling.profile_markdown(results, seconds=args.profile_seconds)
    (RESULTS / f"{stem}-profile.md").write_text(text, encoding="utf-8")
    say(text)


WHATIF_VARIANTS = (
    ("as served (everything on)", ""),
    ("access log off (GATEWAY_LOG_LEVEL=WARNING)", "accesslog"),
    ("metrics middleware off", "metrics"),
    ("body-limit middleware off", "bodylimit"),
    ("retry loop off (one plain upstream call)", "retry"),
    ("FastAPI native telemetry check off", "telemetry"),
    ("hot routes through FastAPI (no DirectRoutes)", "direct"),
    (
        "all of the above off but DirectRoutes, access-log middleware too",
        "+".join(x for x in whatif.SWITCHES if x != "direct"),
    ),
)


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of all of a process's threads so far."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as status:
                total += sum(int(x.split()[1]) for x in status if "ctxt_switches" in x)
    return total


def run_whatif(
    args: argparse.Namespace, data: dict[str, Any], stack: Stack, run_dir: Path, stem: str
) -> None:
    if data["setup"]["wrk"] is None:
        raise RuntimeError("--whatif needs wrk (apt-get install wrk)")
    runner = Runner(run_dir, stack, sys.executable, data["setup"]["wrk"])
    upstream = start_core(stack, run_dir, with_gateway=False)["upstream"]
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in WHATIF_VARIANTS}
    # Rounds interleave the variants, so drift on the machine spreads over all of them; the
    # report takes the median of the rounds.
    for round_no in range(1, args.whatif_rounds + 1):
        for i, (label, off) in enumerate(WHATIF_VARIANTS):
            extra = {"GATEWAY_LOG_LEVEL": "WARNING"} if "accesslog" in off.split("+") else {}
            service = start_gateway(
                stack, run_dir, upstream, name=f"whatif{i}", extra=extra, whatif=off
            )
            target = Target("whatif", label, f"{service.url}/v1/chat/completions", "chat")
            before = context_switches(service.pid)
            c64 = runner.nonstream(target, INSTANT, concurrency=64, duration=4, warmup=1)
            switches = context_switches(service.pid) - before
            c1 = runner.nonstream(target, INSTANT, concurrency=1, duration=3, warmup=1)
            stack.stop(service)
            row = {
                "round": round_no,
                "c64_rps": c64.get("rps"),
                "c64_p50_ms": c64.get("p50_ms"),
                "c1_p50_ms": c1.get("p50_ms"),
                "c1_mean_ms": c1.get("mean_ms"),
                "switches_per_request": round(switches / c64["requests"], 2)
                if c64.get("requests")
                else None,
                "foreign_cores": max(c64.get("foreign_cores", 0), c1.get("foreign_cores", 0)),
            }
            rows[label].append(row)
            say(
                f"  round {round_no} {label}: {row['c64_rps']} req/s at c=64, c=1 p50 "
                f"{row['c1_p50_ms']} ms, {row['switches_per_request']} context switches/request"
            )
    data["whatif"] = rows
    text = whatif_markdown(rows)
    (RESULTS / f"{stem}-whatif.md").write_text(text, encoding="utf-8")
    say(text)


def _two(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def whatif_markdown(rows: dict[str, list[dict[str, Any]]]) -> str:
    def median(label: str, key: str) -> float | None:
        values = [r[key] for r in rows[label] if r.get(key) is not None]
        return statistics.median(values) if values else None

    base_label = WHATIF_VARIANTS[0][0]
    base_rps = median(base_label, "c64_rps")
    base_p50 = median(base_label, "c1_p50_ms")
    lines = [
        "# What each part of the gateway costs (run.py --whatif)",
        "",
        "The real app from `create_app()`, served as `llm-gateway serve` serves it, with one part "
        "switched off at a time (`benchmarks/perf/whatif.py`), against the perf upstream; "
        "`POST /v1/chat/completions` non-streaming, wrk. Medians of "
        f"{len(rows[base_label])} interleaved rounds (4 s at c=64, 3 s at c=1 each). Round to "
        "round spread is often 10-20%: only differences larger than the rounds' range mean "
        "something.",
        "",
        "| variant | c=64 req/s | rounds (min-max) | vs as served | c=1 p50 | c=1 p50 saved "
        "| c=1 mean | context switches / request | other load (max, cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, _ in WHATIF_VARIANTS:
        rps_value = median(label, "c64_rps")
        p50 = median(label, "c1_p50_ms")
        gain = f"{rps_value / base_rps - 1:+.0%}" if rps_value and base_rps else "-"
        saved = report.ms(base_p50 - p50, signed=True) if p50 and base_p50 else "-"
        noise = max((r.get("foreign_cores") or 0.0) for r in rows[label])
        spread = [r["c64_rps"] for r in rows[label] if r.get("c64_rps") is not None]
        span = f"{min(spread):,.0f}-{max(spread):,.0f}" if spread else "-"
        lines.append(
            f"| {label} | {report.rps(rps_value)} | {span} | {gain} | {report.ms(p50)} | {saved} "
            f"| {report.ms(median(label, 'c1_mean_ms'))} "
            f"| {_two(median(label, 'switches_per_request'))} | {noise:.2f} |"
        )
    return "\n".join(lines) + "\n"


def base_data(args: argparse.Namespace, stem: str, wrk: str | None) -> dict[str, Any]:
    return {
        "run": {
            "id": stem,
            "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "profile"
            if args.profile
            else "whatif"
            if args.whatif
            else ("quick" if args.quick else "full"),
            "args": vars(args),
            "interrupted": False,
            "errors": [],
        },
        "machine": machine_info(wrk),
        "quiet": {},
        "setup": setup_notes(args, wrk),
        "services": {},
        "emulator_alone": [],
        "nonstream": {},
        "stream": {},
        "ramp": {},
        "memory": {},
        "target_order": [],
        "labels": {},
    }


def setup_notes(args: argparse.Namespace, wrk: str | None) -> dict[str, Any]:
    generator = (
        "wrk (one thread, one connection per concurrent request, Lua script for the POST body)"
        if wrk
        else "the Python client (wrk not installed): two aiohttp processes"
    )
    return {
        "wrk": wrk,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "stream_model": STREAM_MODEL,
        "stream_gap_ms": STREAM_GAP_MS,
        "stream_concurrency": args.stream_concurrency,
        "ramp_model": RAMP_MODEL,
        "ramp_chunks": RAMP_CHUNKS,
        "ramp_gap_ms": RAMP_GAP_MS,
        "memory_mix": "chat completions JSON, chat completions SSE, /generate JSON, /generate SSE"
        " (LiteLLM: the two chat kinds)",
        "upstream_choice": (
            "The measured upstream is `benchmarks/perf/upstream.py`, a raw asyncio protocol on "
            "uvloop with httptools and pre-encoded OpenRouter-shaped replies (JSON, and SSE with "
            "role, content, finish and usage chunks and [DONE]). The emulator is measured alone "
            "below: at every concurrency it answers at about the floor's rate or less, so "
            "behind it the floor, and at high concurrency the gateway, would be measuring the "
            "emulator. The perf upstream is several times faster than the floor (direct rows)."
        ),
        "notes": [
            f"Load generator: {generator}; streams and fixed-count batches: "
            "`benchmarks/perf/loadgen.py` (aiohttp, uvloop) in its own process(es). The direct "
            "rows are the generator driving the upstream with nothing in between: far above "
            "every proxy, so the generator is not what limits them.",
            "Every server is its own process on 127.0.0.1: perf upstream, floor "
            "(`benchmarks/perf/floor.py`: uvicorn, one worker, uvloop + httptools, no access "
            "log, one aiohttp ClientSession without a connection limit, bytes passed through, "
            "streams forwarded read by read), the gateway and LiteLLM. All share the machine's "
            "cores with the generator, as in the issue's measurements.",
            "Gateway: `llm-gateway serve` (uvicorn, one worker), GATEWAY_UPSTREAM=openrouter "
            "pointed at the perf upstream, default settings otherwise (upstream pool 1024, "
            "retries on), "
            "GATEWAY_LOG_LEVEL=INFO (the default) so its access log is on, as users run it: "
            "one line per request to logs/server_logs.txt and to stderr (a file here).",
            "LiteLLM (with PEER=litellm): its own virtualenv, `litellm --num_workers 1`, one "
            "OpenAI-compatible model entry per model id pointing at the perf upstream, retries "
            "0 (router and OpenAI SDK), no callbacks, no cache, local model-cost map, "
            "LITELLM_MASTER_KEY set; its default (uvicorn) access log left on.",
            "Model ids: perf/instant answers at once (20 content chunks when streamed); "
            "perf/paced-N-D streams N content chunks D ms apart.",
            "Percentiles: wrk's (non-streaming) or linear interpolation over all samples "
            "(streams). Latency percentiles are closed-loop: each connection sends its next "
            "request when the previous answer arrives.",
        ],
    }


def write_outputs(data: dict[str, Any], stem: str, *, latest: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{stem}.json"
    json_path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    if data["run"]["mode"] in ("profile", "whatif"):
        say(f"wrote {json_path}")
        return
    text = report.render(data)
    md_path = RESULTS / f"{stem}.md"
    md_path.write_text(text, encoding="utf-8")
    say(f"wrote {json_path} and {md_path}")
    if latest:
        (HERE / "LATEST.md").write_text(text, encoding="utf-8")
        say(f"wrote {HERE / 'LATEST.md'}")


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
    args = parse_args(argv)
    stem = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = RESULTS / stem
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    wrk = ensure_wrk(install=not args.no_install)
    if wrk is None:
        say("wrk unavailable: falling back to the Python load generator for non-streaming loads")
    data = base_data(args, stem, wrk)
    started = time.monotonic()
    code = 0
    with signals_interrupt():
        say(f"run {stem}: checking how busy the machine is ...")
        data["quiet"] = wait_quiet(args.wait_quiet)
        if data["quiet"]["busy"]:
            say(
                f"WARNING: other processes use {data['quiet']['foreign_cores']} cores; numbers "
                "will be perturbed (see --wait-quiet)"
            )
        try:
            with Stack(run_dir / "logs") as stack:
                if args.profile:
                    run_profile(args, data, stack, run_dir, stem)
                elif args.whatif:
                    run_whatif(args, data, stack, run_dir, stem)
                else:
                    run_all(args, data, stack, run_dir)
        except KeyboardInterrupt:
            data["run"]["interrupted"] = True
            say("interrupted: every process started was stopped; writing what was measured")
            code = 130
        except (StartError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            data["run"]["errors"].append(f"{type(exc).__name__}: {exc}")
            say(f"ERROR: {exc}")
            code = 1
        finally:
            data["run"]["wall_s"] = round(time.monotonic() - started, 1)
            data["run"]["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
            if data["run"]["mode"] not in ("profile", "whatif"):
                with contextlib.suppress(KeyError, TypeError, ZeroDivisionError):
                    derive(data)
                summarize_noise(data)
            trim_logs(run_dir)
            full = data["run"]["mode"] == "full" and code == 0 and len(args.phases) == len(PHASES)
            write_outputs(data, stem, latest=full)
    return code


if __name__ == "__main__":
    sys.exit(main())
