"""Memory phase: RSS at idle and after two batches of mixed requests (issue 5's memory target).

It runs first, on processes that have served nothing yet, so the idle reading is truly idle.
"""

from __future__ import annotations

import time

from cli import say
from endpoints import Target, request_for
from measure import Runner
from result import Memory
from services import INSTANT, INSTANT_CHUNKS
from stack import Service, tree_rss_mb


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run(
    runner: Runner, service: Service, chat: Target, generate: Target | None, per_batch: int
) -> Memory:
    """RSS of `service`'s process tree at idle and 1 s after each of two batches of `per_batch`
    requests, cycling through the chat (and /generate, if given) JSON and SSE requests."""
    mix = [
        request_for(chat, INSTANT, stream=False),
        request_for(chat, INSTANT, stream=True, expect=INSTANT_CHUNKS),
    ]
    if generate is not None:
        mix += [
            request_for(generate, INSTANT, stream=False),
            request_for(generate, INSTANT, stream=True, expect=INSTANT_CHUNKS),
        ]
    time.sleep(1.0)
    idle = _mb(tree_rss_mb(service.pid))
    batches = []
    after: list[float | None] = []
    for i in (1, 2):
        batch = runner.fixed(mix, count=per_batch, concurrency=16)
        batches.append(batch)
        time.sleep(1.0)  # let in-flight buffers drain so the readings are comparable
        after.append(_mb(tree_rss_mb(service.pid)))
        outcome = (
            f"in {batch.stats.wall_s:.1f} s, errors {batch.stats.errors}"
            if batch.stats is not None
            else f"FAILED {batch.error}"
        )
        say(f"  memory {service.name}: batch {i} of {per_batch:,} {outcome}, RSS {after[-1]} MB")
    first, second = after
    return Memory(
        requests_per_batch=per_batch,
        idle_mb=idle,
        batches=batches,
        after_1_mb=first,
        after_2_mb=second,
        growth_mb=None if first is None or second is None else round(second - first, 2),
    )
