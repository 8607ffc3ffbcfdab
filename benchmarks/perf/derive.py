"""Numbers derived from what a run measured: deltas against direct, ratios against the floor,
the capacity phase's rates and memory per stream, and how noisy the machine was.

Pure functions of a `RunResult`. A number is absent only for a stated reason (its baseline was
not measured or failed, the cell itself failed, or it had no samples); anything else that goes
wrong here is a bug and raises.
"""

from __future__ import annotations

import statistics

from result import (
    CapacityDelta,
    Derived,
    LoadStats,
    Noise,
    NonstreamDelta,
    RunResult,
    StreamDelta,
)
from stack import BUSY_CORES


def derive(result: RunResult) -> Derived:
    return Derived(nonstream=_nonstream(result), stream=_stream(result), capacity=_capacity(result))


def _minus(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None else round(value - base, 4)


def _times(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None else round(value / base, 4)


def _nonstream(result: RunResult) -> dict[int, dict[str, NonstreamDelta]]:
    found: dict[int, dict[str, NonstreamDelta]] = {}
    for concurrency, cells in result.nonstream.items():
        direct = cells["direct"].stats if "direct" in cells else None
        floor = cells["floor"].stats if "floor" in cells else None
        found[concurrency] = {
            key: _against(cell.stats, direct, floor)
            for key, cell in cells.items()
            if cell.stats is not None
        }
    return found


def _against(stats: LoadStats, direct: LoadStats | None, floor: LoadStats | None) -> NonstreamDelta:
    if direct is None:
        added: list[float | None] = [None, None, None]
    else:
        added = [
            _minus(stats.p50_ms, direct.p50_ms),
            _minus(stats.p95_ms, direct.p95_ms),
            _minus(stats.p99_ms, direct.p99_ms),
        ]
    return NonstreamDelta(
        added_p50_ms=added[0],
        added_p95_ms=added[1],
        added_p99_ms=added[2],
        fraction_of_floor=None if floor is None else _times(stats.rps, floor.rps),
    )


def _stream(result: RunResult) -> dict[str, StreamDelta]:
    direct = result.stream["direct"].stats if "direct" in result.stream else None
    found: dict[str, StreamDelta] = {}
    for key, cell in result.stream.items():
        mine = cell.stats
        if mine is None:
            continue
        found[key] = StreamDelta(
            added_ttft_p50_ms=None
            if direct is None
            else _minus(mine.ttft.p50_ms, direct.ttft.p50_ms),
            added_ttft_p99_ms=None
            if direct is None
            else _minus(mine.ttft.p99_ms, direct.ttft.p99_ms),
            added_gap_p50_ms=None if direct is None else _minus(mine.gap.p50_ms, direct.gap.p50_ms),
            added_gap_p99_ms=None if direct is None else _minus(mine.gap.p99_ms, direct.gap.p99_ms),
        )
    return found


def _capacity(result: RunResult) -> dict[int, dict[str, CapacityDelta]]:
    found: dict[int, dict[str, CapacityDelta]] = {}
    for streams, steps in result.capacity.items():
        floor = steps["floor"].hold.stats if "floor" in steps else None
        row = found.setdefault(streams, {})
        for key, step in steps.items():
            stats = step.hold.stats
            if stats is None:
                continue
            grew = _minus(step.rss_peak_mb, step.rss_idle_mb)
            base = None if key == "floor" else floor  # the floor is not compared with itself
            row[key] = CapacityDelta(
                events_per_s=round(stats.events / stats.wall_s, 1),
                # MB and KB are 10^6 and 10^3 bytes: x 1,000 per MB.
                rss_per_stream_kb=None if grew is None else round(grew * 1000 / streams, 2),
                ttft_p99_x_floor=None
                if base is None
                else _times(stats.ttft.p99_ms, base.ttft.p99_ms),
                wall_x_floor=None if base is None else _times(stats.wall_s, base.wall_s),
            )
    return found


def summarize_noise(result: RunResult) -> Noise | None:
    """Other load over every measurement of the run; None when it measured nothing."""
    values = [cell.foreign_cores for cell in result.measured()]
    if not values:
        return None
    median = statistics.median(values)
    probes = [cell.probe_ms for cell in result.measured() if cell.probe_ms is not None]
    return Noise(
        max_foreign_cores=round(max(values), 2),
        median_foreign_cores=round(median, 2),
        cells_over_threshold=sum(v > BUSY_CORES for v in values),
        cells=len(values),
        busy=median > BUSY_CORES,
        probe_ms_min=min(probes) if probes else None,
        probe_ms_median=round(statistics.median(probes), 2) if probes else None,
        probe_ms_max=max(probes) if probes else None,
    )
