"""The benchmark client watches its own event loop, and says when it may have been too busy
to time exactly.

Every stamp the client takes (a request written, an event read) is taken by a callback of its
event loop; when the loop is busy with other callbacks (many streams at once), starved of CPU
(another process on the core), or paused (a garbage collection), that callback runs late, and
the stamp with it. `LoopLag` measures exactly that delay, every `INTERVAL_S`:

- a timer is due; how late it fired beyond the loop's 1 ms timer grid (both asyncio's epoll
  wait and uvloop's timers round to the millisecond, so a timer up to 1 ms late is on time);
- then a callback is scheduled and the time until it runs is added: the wait of a task that
  has just become ready (a stream that has just received bytes) behind the loop's queue.

The two together are the lag of one sample. A quiet loop shows tens of microseconds.

`verdict` turns the distribution into a warning when the lag could have moved the reported
numbers visibly (docs/metrics.md, "The client's own health"): its p99 above `WARN_FLOOR_S`
*and* above `WARN_FRACTION` of the fastest median the run reports (TTFT p50 when streamed,
else latency p50). A stamp is late by about the lag at that moment, so the lag's p99 is about
the error it adds to a p99. Below 2 ms that cannot show in numbers read to the millisecond;
above 5 % of a typical value a tail is off by more than run-to-run noise would explain (10 ms
for a 200 ms TTFT, the error allowed at c=256 in issue 12). Against the known-timing upstream
(benchmarks/accuracy) it stays silent in quiet runs and fires with CPU hogs alongside.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

from llm_gateway.bench.documents import ClientLag, LagStats, Summary
from llm_gateway.bench.stats import percentile

INTERVAL_S = 0.005
TIMER_GRID_NS = 1_000_000
WARN_FLOOR_S = 0.002
WARN_FRACTION = 0.05


class LoopLag:
    """Samples the running loop's lag every `interval` seconds, from `start()` to `stop()`."""

    def __init__(self, interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._interval_ns = round(interval * 1e9)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._due = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None

    def _arm(self) -> None:
        assert self._loop is not None
        self._due = time.perf_counter_ns() + self._interval_ns
        self._handle = self._loop.call_later(self.interval, self._fired)

    def _fired(self) -> None:
        if self._loop is None:
            return
        fired = time.perf_counter_ns()
        late = max(0, fired - self._due - TIMER_GRID_NS)
        self._handle = self._loop.call_soon(self._ran, fired, late)

    def _ran(self, fired: int, late: int) -> None:
        if self._loop is None:
            return
        self.samples.append((late + time.perf_counter_ns() - fired) / 1e9)
        self._arm()

    def take(self) -> list[float]:
        """The samples so far, handed over and cleared (per sweep step)."""
        taken, self.samples = self.samples, []
        return taken


def lag_stats(samples: Iterable[float]) -> LagStats:
    ordered = sorted(samples)
    if not ordered:
        return LagStats()
    return LagStats(
        loop_lag_p50_s=round(percentile(ordered, 50), 6),
        loop_lag_p99_s=round(percentile(ordered, 99), 6),
        loop_lag_max_s=round(ordered[-1], 6),
        samples=len(ordered),
    )


def client_lag(
    samples: Sequence[float], *, processes: int, steps: Sequence[Sequence[float]] = ()
) -> ClientLag:
    """The run's lag, over the samples of all its measuring loops (and per sweep step)."""
    return ClientLag(
        **dict(lag_stats(samples)),
        interval_s=INTERVAL_S,
        processes=processes,
        steps=[lag_stats(step) for step in steps] if len(steps) > 1 else [],
    )


def verdict(lag: ClientLag, summary: Summary) -> ClientLag:
    """`lag` with its warning set (or cleared) for the numbers of `summary`."""
    p99 = lag.loop_lag_p99_s
    medians = [
        stats.p50
        for group in summary.models.values()
        for stats in (group.ttft or group.latency,)
        if stats is not None and stats.p50
    ]
    warning = None
    if p99 is not None and p99 > WARN_FLOOR_S:
        fastest = min(medians) if medians else None
        if fastest is None or p99 > WARN_FRACTION * fastest:
            what = "TTFT" if any(g.ttft for g in summary.models.values()) else "latency"
            against = (
                f" ({p99 / fastest:.0%} of the fastest {what} p50, {fastest * 1000:.0f} ms)"
                if fastest
                else ""
            )
            warning = (
                f"The client's event loop ran {p99 * 1000:.1f} ms late at p99{against}: "
                "times it measured may be that much too long, most of all in the tails. "
                "Measure with less load per process (--processes), on a quieter machine, "
                "or read the tails with that margin."
            )
    return lag.model_copy(update={"warning": warning})
