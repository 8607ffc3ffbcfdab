"""Ramp phase: the most concurrent streams each endpoint holds (100, 250, 500, 1000 at once).

A step passes when every stream got every event in order and ended properly, and the streams
were really concurrent (at least 90% of them open at one instant). A step that delivered
everything with fewer open at once (streams waited for a connection pool, or the server started
them more slowly than they ended) does not pass, but the ramp goes on to
show whether delivery stays correct; it stops at the first step that lost or broke a stream.
"""

from __future__ import annotations

import functools

from cli import say_measured
from endpoints import Target
from measure import Runner
from result import HoldStats, Ramp
from services import RAMP_CHUNKS, RAMP_MODEL

# Share of a step's streams that must be open at one instant for it to count as held.
CONCURRENT_SHARE = 0.9


def run(runner: Runner, target: Target, steps: list[int], timeout: float) -> Ramp:
    done = []
    max_held = max_delivered = 0
    held_so_far = True
    for n in steps:
        step = runner.hold(target, RAMP_MODEL, streams=n, expect=RAMP_CHUNKS, timeout=timeout)
        done.append(step)
        stats = step.stats
        concurrent = stats is not None and stats.peak_open >= CONCURRENT_SHARE * n
        step.queued = step.complete and not concurrent
        say_measured(f"{target.key} {n} streams", step, functools.partial(_numbers, step.queued))
        if not step.complete:
            break
        max_delivered = n
        held_so_far = held_so_far and concurrent
        if held_so_far:
            max_held = n
    return Ramp(steps=done, max_held=max_held, max_delivered=max_delivered)


def _numbers(queued: bool, stats: HoldStats) -> str:
    return (
        f"ok {stats.ok}, errors {stats.errors or '-'}, peak open {stats.peak_open}, "
        f"wall {stats.wall_s:.2f} s" + (" (not all open at once)" if queued else "")
    )
