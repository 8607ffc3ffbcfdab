"""Capacity phase (issue 14): the floor and both gateway routes at N long streams each, the
routes once more on `serve --workers N` (`--capacity-workers`, default 2).

Per step and target, a server started for that step alone (so each idle reading is a fresh
process's, not what the previous step left in the allocator): warmed up with a few short streams,
its RSS read at idle, then N streams of ~10 s (`perf/paced-50-200`) started evenly over
`--capacity-spread` seconds, its RSS sampled while they are open, and the server stopped. Each
step starts with the same streams sent straight to the upstream: what the generator and the
machine manage with no proxy at all. The targets of one step run back to back, so they see the
same machine.
"""

from __future__ import annotations

import dataclasses
import time

from cli import say_measured
from endpoints import Target, request_for
from measure import Runner
from result import CapacityStep, HoldStep, Options
from services import (
    CAPACITY_CHUNKS,
    CAPACITY_MODEL,
    INSTANT,
    INSTANT_CHUNKS,
    Servers,
    direct_target,
    floor_target,
    gateway_targets,
)
from stack import PeakRss, tree_rss_mb

KEYS = ("direct", "floor", "gateway", "gateway_generate")
ROUTES = ("gateway", "gateway_generate")


def workers_key(route: str, workers: int) -> str:
    """The key of a gateway route's rows on `serve --workers <workers>`."""
    return f"{route}_workers{workers}"


def keys(options: Options) -> list[str]:
    """The targets of every step, in order: one worker's, then the several workers' rows."""
    workers = options.capacity_workers
    return [*KEYS, *(workers_key(r, workers) for r in ROUTES if workers > 1)]


def labels(options: Options, one_worker: dict[str, str]) -> dict[str, str]:
    """Report labels of the several-worker rows, from the one-worker routes' labels."""
    workers = options.capacity_workers
    if workers < 2:
        return {}
    return {workers_key(r, workers): f"{one_worker[r]}, {workers} workers" for r in ROUTES}


WARM_REQUESTS = 50


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _hold(runner: Runner, target: Target, streams: int, options: Options) -> HoldStep:
    return runner.hold(
        target,
        CAPACITY_MODEL,
        streams=streams,
        expect=CAPACITY_CHUNKS,
        timeout=options.capacity_timeout,
        spread=options.capacity_spread,
    )


def _on_fresh_server(
    runner: Runner, servers: Servers, key: str, streams: int, options: Options
) -> CapacityStep:
    name = f"capacity-{streams}-{key}"
    route = key.partition("_workers")[0]
    if key == "floor":
        service = servers.floor(name)
    elif route != key:  # a route on several workers
        workers = str(options.capacity_workers)
        service = servers.gateway(name, env={"GATEWAY_WORKERS": workers})
    else:
        service = servers.gateway(name)
    try:
        target = floor_target(service) if key == "floor" else gateway_targets(service)[route]
        target = dataclasses.replace(target, key=key)
        warm = runner.fixed(
            [request_for(target, INSTANT, stream=True, expect=INSTANT_CHUNKS)],
            count=WARM_REQUESTS,
            concurrency=8,
        )
        if warm.stats is None or warm.stats.errors:
            problem = warm.error if warm.stats is None else warm.stats.errors
            raise RuntimeError(f"{name} failed its warm-up streams: {problem}")
        time.sleep(1.0)  # let the warm-up's buffers drain before the idle reading
        idle = _mb(tree_rss_mb(service.pid))
        with PeakRss(service.pid) as peak:
            hold = _hold(runner, target, streams, options)
    finally:
        servers.stack.stop(service)
    return CapacityStep(
        target=key, streams=streams, hold=hold, rss_idle_mb=idle, rss_peak_mb=_mb(peak.peak_mb)
    )


def step(
    runner: Runner, servers: Servers, key: str, streams: int, options: Options
) -> CapacityStep:
    if key == "direct":
        # The upstream is the run's own, shared by every step: its memory says nothing here.
        hold = _hold(runner, direct_target(servers.upstream_api), streams, options)
        found = CapacityStep(
            target=key, streams=streams, hold=hold, rss_idle_mb=None, rss_peak_mb=None
        )
    else:
        found = _on_fresh_server(runner, servers, key, streams, options)
    say_measured(
        f"{key} {streams} streams",
        found.hold,
        lambda h: (
            f"ok {h.ok}, errors {h.errors or '-'}, TTFT p50 {h.ttft.p50_ms} ms p99 "
            f"{h.ttft.p99_ms} ms, wall {h.wall_s:.1f} s, "
            f"RSS {found.rss_idle_mb} -> {found.rss_peak_mb} MB"
        ),
    )
    return found


def run(
    runner: Runner,
    servers: Servers,
    options: Options,
    into: dict[int, dict[str, CapacityStep]],
) -> None:
    """Fill `into` (streams -> target key -> step) as it goes: an interrupted run keeps what it
    measured."""
    for n in options.capacity_steps:
        row = into.setdefault(n, {})
        for key in keys(options):
            row[key] = step(runner, servers, key, n, options)
