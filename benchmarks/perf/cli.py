"""The harness's command line: the options in (`parse_args`), progress out (`say`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from result import PHASES, Measured, Options
from stack import BUSY_CORES

DESCRIPTION = "The gateway's performance harness (benchmarks/perf/README.md)."


def say(message: str) -> None:
    # Progress goes to stdout as it happens: a run takes minutes.
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def say_measured(name: str, measured: Measured[Any], numbers: Callable[[Any], str]) -> None:
    """The progress line of one measurement: `numbers(stats)` and how noisy the machine was,
    or why it failed."""
    if measured.stats is None:
        say(f"  {name}: FAILED {(measured.error or '')[:200]}")
        return
    probe = "" if measured.probe_ms is None else f", probe {measured.probe_ms} ms"
    say(f"  {name}: {numbers(measured.stats)}, other load {measured.foreign_cores} cores{probe}")


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _odd(text: str) -> int:
    value = _positive(text)
    if value % 2 == 0:
        # An even count has no middle round: either neighbour would bias the kept one.
        raise argparse.ArgumentTypeError(f"expected an odd number, got {text!r}")
    return value


def _phases(text: str) -> list[str]:
    phases = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown phases: {', '.join(unknown)} (known: {','.join(PHASES)})"
        )
    return phases


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parser() -> argparse.ArgumentParser:
    defaults = Options()
    found = argparse.ArgumentParser(description=DESCRIPTION)
    add = found.add_argument
    add("--peer", choices=["", "none", "litellm"], default="")
    add("--duration", type=int, default=defaults.duration, help="measured seconds per cell")
    add("--warmup", type=int, default=defaults.warmup, help="warm-up seconds per cell")
    add("--concurrency", type=_ints, help="non-streaming concurrencies (default 1,16,64)")
    add("--stream-concurrency", type=int, default=defaults.stream_concurrency)
    add("--ramp", type=_ints, help="concurrent-stream steps (default 100,250,500,1000)")
    add("--ramp-timeout", type=float, default=defaults.ramp_timeout, help="seconds per step")
    add(
        "--capacity-steps",
        type=_ints,
        help="long-stream steps of the capacity phase (default 1000,2000,3000,5000; quick 1000)",
    )
    add(
        "--capacity-spread",
        type=float,
        default=defaults.capacity_spread,
        help="seconds over which a capacity step's streams start",
    )
    add(
        "--capacity-timeout",
        type=float,
        default=defaults.capacity_timeout,
        help="seconds per capacity step before open streams count as failed",
    )
    add(
        "--capacity-workers",
        type=_positive,
        help="also run each gateway route of the capacity phase on `serve --workers N` "
        f"(default {defaults.capacity_workers}, quick 1; 1 = one worker only)",
    )
    add(
        "--phases",
        type=_phases,
        default=list(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (a partial run writes no LATEST.md)",
    )
    add("--memory-requests", type=int, default=defaults.memory_requests, help="per batch")
    add(
        "--peer-memory-requests",
        type=int,
        default=defaults.peer_memory_requests,
        help="per batch for the peer (LiteLLM serves ~60 req/s: 10,000 would take minutes)",
    )
    add(
        "--gateway-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every gateway the run starts (repeatable), e.g. "
        "GATEWAY_UPSTREAM_POOL_SIZE=4096",
    )
    add("--quick", action="store_true", help="short smoke run; no LATEST.md")
    add("--profile", action="store_true", help="py-spy the gateway instead")
    add("--profile-seconds", type=int, default=defaults.profile_seconds)
    add("--whatif", action="store_true", help="price each part of the gateway instead (whatif.py)")
    add("--whatif-rounds", type=int, default=defaults.whatif_rounds)
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="wait up to this many seconds for other processes to go quiet before measuring",
    )
    add(
        "--retry-noisy",
        type=int,
        default=defaults.retry_noisy,
        help="re-measure a cell up to N times when other processes used more than "
        f"{BUSY_CORES} cores during it, keeping the quietest attempt",
    )
    add(
        "--rounds",
        type=_odd,
        help="interleaved passes of the non-streaming and streaming phases, each cell keeping "
        f"the median (odd; default {defaults.rounds}, quick 1)",
    )
    add("--no-install", action="store_true", help="never apt-get install wrk")
    return found


def parse_args(argv: list[str] | None) -> Options:
    args = parser().parse_args(argv)
    quick: dict[str, object] = {}
    if args.quick:
        quick = {
            "duration": 2,
            "warmup": 1,
            "memory_requests": 1_000,
            "peer_memory_requests": 200,
            "ramp": [100, 250],
            "capacity_steps": [1000],
            "rounds": 1,
            "capacity_workers": 1,
        }
    given = {k: v for k, v in vars(args).items() if v is not None}
    given["gateway_env"] = dict(args.gateway_env)
    # --quick sets the defaults it shortens; these options, given explicitly, still win.
    for name in ("ramp", "capacity_steps", "rounds", "capacity_workers"):
        if name in given:
            quick.pop(name, None)
    return Options.model_validate({**given, **quick})
