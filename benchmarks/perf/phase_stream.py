"""Streaming phase: TTFT and the gaps between events of short paced streams, per endpoint."""

from __future__ import annotations

import functools

from cli import say
from endpoints import Target
from measure import Runner, quietest
from result import Options, StreamCell
from services import STREAM_CHUNKS, STREAM_MODEL


def run(
    runner: Runner, targets: dict[str, Target], options: Options, into: dict[str, StreamCell]
) -> None:
    """Fill `into` (target key -> cell) as it goes: an interrupted run keeps what it measured."""
    for key, target in targets.items():
        cell = quietest(
            functools.partial(
                runner.stream_latency,
                target,
                STREAM_MODEL,
                expect=STREAM_CHUNKS,
                concurrency=options.stream_concurrency,
                duration=options.duration,
                warmup=options.warmup,
            ),
            options.retry_noisy,
        )
        into[key] = cell
        if cell.stats is None:
            say(f"  {key}: FAILED {(cell.error or '')[:200]}")
            continue
        say(
            f"  {key}: {cell.stats.ok}/{cell.stats.streams} ok, TTFT p50 "
            f"{cell.stats.ttft.p50_ms} ms, gap p50 {cell.stats.gap.p50_ms} ms, "
            f"p99 {cell.stats.gap.p99_ms} ms"
        )
