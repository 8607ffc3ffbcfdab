"""Streaming phase: TTFT and the gaps between events of short paced streams, per endpoint, in
`--rounds` interleaved passes of which each cell keeps the median by TTFT p50."""

from __future__ import annotations

from cli import say_measured
from endpoints import Target
from measure import Runner, interleaved
from result import Options, StreamCell, StreamStats
from services import STREAM_CHUNKS, STREAM_MODEL


def _ttft_p50(cell: StreamCell) -> float | None:
    return None if cell.stats is None else cell.stats.ttft.p50_ms


def run(
    runner: Runner, targets: dict[str, Target], options: Options, into: dict[str, StreamCell]
) -> None:
    """Fill `into` (target key -> the median of `options.rounds` cells, by TTFT p50) as it
    goes: an interrupted run keeps what it measured."""

    def measure(target: Target) -> StreamCell:
        return runner.stream_latency(
            target,
            STREAM_MODEL,
            expect=STREAM_CHUNKS,
            concurrency=options.stream_concurrency,
            duration=options.duration,
            warmup=options.warmup,
        )

    interleaved(targets, options, measure, _ttft_p50, into.__setitem__, _log)


def _log(name: str, cell: StreamCell) -> None:
    say_measured(name, cell, _numbers)


def _numbers(stats: StreamStats) -> str:
    return (
        f"{stats.ok}/{stats.streams} ok, TTFT p50 {stats.ttft.p50_ms} ms, "
        f"gap p50 {stats.gap.p50_ms} ms, p99 {stats.gap.p99_ms} ms"
    )
