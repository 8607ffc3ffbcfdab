"""Streaming phase: TTFT and the gaps between events of short paced streams, per endpoint, in
`--rounds` interleaved passes of which each cell keeps the median by TTFT p50."""

from __future__ import annotations

from cli import say
from endpoints import Target
from measure import Runner, interleaved
from result import Options, StreamCell
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
    if cell.stats is None:
        say(f"  {name}: FAILED {(cell.error or '')[:200]}")
        return
    say(
        f"  {name}: {cell.stats.ok}/{cell.stats.streams} ok, TTFT p50 "
        f"{cell.stats.ttft.p50_ms} ms, gap p50 {cell.stats.gap.p50_ms} ms, "
        f"p99 {cell.stats.gap.p99_ms} ms"
    )
