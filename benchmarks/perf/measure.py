"""Load runs against one target: wrk for non-streaming, the Python generator for the rest.

Each run returns a typed cell (result.py) that says how many cores other processes on the
machine used meanwhile (other engineers' test suites perturb the numbers; the report shows it
next to them), and either its numbers or why it failed.
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import orjson

from cli import say
from endpoints import Target, body_for, request_for
from result import (
    Batch,
    BatchStats,
    HoldStats,
    HoldStep,
    Latency,
    LoadCell,
    LoadStats,
    Options,
    StreamCell,
    StreamStats,
)
from stack import BUSY_CORES, NoiseMeter, Stack

HERE = Path(__file__).resolve().parent
# One generator process keeps up with about this many open streams (a hold step is split).
STREAMS_PER_GENERATOR = 1000

# wrk's own summary is text; this prints the numbers as one JSON line instead (microseconds).
_WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'PERFJSON {"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f,"mean_us":%.1f,"max_us":%.1f,' ..
    '"p50_us":%.1f,"p95_us":%.1f,"p99_us":%.1f,"p999_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def wrk_summary(stdout: str) -> dict[str, Any] | None:
    """What the harness's wrk script printed at the end (`_WRK_DONE`), or None if it did not."""
    line = next((x for x in stdout.splitlines() if x.startswith("PERFJSON ")), None)
    return None if line is None else dict(orjson.loads(line.removeprefix("PERFJSON ")))


def wrk_errors(summary: dict[str, Any]) -> dict[str, int]:
    """wrk's error counts by kind (`status` counts answers that were not 2xx or 3xx)."""
    return {k: int(summary[k]) for k in ("connect", "read", "write", "status", "timeout")}


def wrk_argv(wrk: str, script: Path, concurrency: int, seconds: float, url: str) -> list[str]:
    """wrk's command line as the harness runs it. One thread: one core drives far more than a
    single-worker Python server can take (the "direct" rows show it), and a second thread would
    only steal the servers' core."""
    duration = f"-d{seconds:g}s"
    return [wrk, "-t1", f"-c{concurrency}", "--timeout", "10s", "-s", str(script), duration, url]


def hold_job(
    target: Target,
    model: str,
    *,
    streams: int,
    expect: int,
    timeout: float,
    spread: float,
    start_at: float,
    phase: float = 0.0,
) -> dict[str, Any]:
    """A generator's `hold` job: `streams` streams of `model` started over `spread` s from
    `start_at` (time.monotonic()), each allowed `timeout` s."""
    return {
        "mode": "hold",
        "request": request_for(target, model, stream=True, expect=expect),
        "streams": streams,
        "timeout": timeout,
        "request_timeout": timeout,
        "start_at": start_at,
        "spread": spread,
        "phase": phase,
    }


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def latency(values_s: list[float]) -> Latency:
    """n, mean, p50/p95/p99, max of seconds, in milliseconds."""
    ms = [v * 1000 for v in values_s]
    return Latency(
        n=len(ms),
        mean_ms=_rounded(sum(ms) / len(ms)) if ms else None,
        p50_ms=_rounded(percentile(ms, 50)),
        p95_ms=_rounded(percentile(ms, 95)),
        p99_ms=_rounded(percentile(ms, 99)),
        max_ms=_rounded(max(ms)) if ms else None,
    )


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count


Repeatable = TypeVar("Repeatable", LoadCell, StreamCell)


def quietest(measure: Callable[[], Repeatable], retries: int) -> Repeatable:
    """Run a measurement; while other processes perturbed it, run it again (bounded) and keep
    the attempt with the least foreign load. Every attempt's foreign load is recorded."""
    result = measure()
    attempts = [result.foreign_cores]
    for _ in range(retries):
        if result.foreign_cores <= BUSY_CORES:
            break
        say(f"    (other load {result.foreign_cores} cores: measuring again)")
        again = measure()
        attempts.append(again.foreign_cores)
        if again.foreign_cores < result.foreign_cores:
            result = again
    result.foreign_cores_attempts = attempts
    return result


def median_round(
    rounds: list[Repeatable], value: Callable[[Repeatable], float | None]
) -> Repeatable:
    """Of the same cell measured in several rounds, the one whose `value` is the median, with
    every round's value recorded on it (`rounds`). Rounds without a value (failed) do not
    count; when none has one, the last round is kept.

    Targets are measured in turn within each round, so a change in the machine's speed (this
    class of VM drifts by a factor of two within minutes) falls on every target alike, and the
    median drops a round the host slowed rather than letting one target's single cell carry it.
    """
    measured = [(v, i) for i, r in enumerate(rounds) if (v := value(r)) is not None]
    if not measured:
        return rounds[-1]
    kept = rounds[sorted(measured)[(len(measured) - 1) // 2][1]]
    kept.rounds = [round(v, 4) for v, _ in measured]
    return kept


def interleaved(
    targets: dict[str, Target],
    options: Options,
    measure: Callable[[Target], Repeatable],
    value: Callable[[Repeatable], float | None],
    keep: Callable[[str, Repeatable], None],
    log: Callable[[str, Repeatable], None],
) -> None:
    """Measure every target `options.rounds` times, in turn within each round (a perturbed
    measurement again, `quietest`); after each one, `keep(key, cell)` gets the target's median
    round so far (`median_round` by `value`), so an interrupted run keeps what it measured, and
    `log(name, cell)` the measurement itself."""
    rounds: dict[str, list[Repeatable]] = {key: [] for key in targets}
    for number in range(1, options.rounds + 1):
        suffix = f" (round {number}/{options.rounds})" if options.rounds > 1 else ""
        for key, target in targets.items():
            cell = quietest(functools.partial(measure, target), options.retry_noisy)
            log(f"{key}{suffix}", cell)
            rounds[key].append(cell)
            keep(key, median_round(rounds[key], value))


class Runner:
    """Runs loads; the only place that starts wrk or the Python generator."""

    def __init__(self, run_dir: Path, stack: Stack, python: str, wrk: str | None) -> None:
        self.run_dir = run_dir
        self.stack = stack
        self.python = python
        self.wrk = wrk
        self._seq = 0
        (run_dir / "work").mkdir(parents=True, exist_ok=True)

    def _next(self, stem: str) -> Path:
        self._seq += 1
        return self.run_dir / "work" / f"{self._seq:03d}-{stem}"

    # non-streaming

    def nonstream(
        self, target: Target, model: str, *, concurrency: int, duration: int, warmup: int
    ) -> LoadCell:
        """Throughput and latency of non-streaming requests at a fixed concurrency."""
        with NoiseMeter() as noise:
            if self.wrk is not None:
                stats, error = self._wrk(self.wrk, target, model, concurrency, duration, warmup)
            else:
                stats, error = self._python_load(target, model, concurrency, duration, warmup)
        return LoadCell(
            target=target.key,
            concurrency=concurrency,
            foreign_cores=noise.cores,
            probe_ms=noise.probe_ms,
            stats=stats,
            error=error,
        )

    def wrk_script(self, target: Target, model: str, *, stream: bool = False) -> Path:
        """A wrk Lua script that POSTs the target's request body and prints JSON at the end."""
        body = orjson.dumps(body_for(target, model, stream=stream)).decode()
        lines = [
            'wrk.method = "POST"',
            f"wrk.body = [==[{body}]==]",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items()]
        path = self._next(f"{target.key}.lua")
        path.write_text("\n".join(lines) + "\n" + _WRK_DONE, encoding="utf-8")
        return path

    def _wrk(
        self, wrk: str, target: Target, model: str, concurrency: int, duration: int, warmup: int
    ) -> tuple[LoadStats | None, str | None]:
        script = self.wrk_script(target, model)
        if warmup > 0:
            subprocess.run(
                wrk_argv(wrk, script, concurrency, warmup, target.url),
                capture_output=True,
                timeout=warmup + 30,
                check=False,
            )
        done = subprocess.run(
            wrk_argv(wrk, script, concurrency, duration, target.url),
            capture_output=True,
            text=True,
            timeout=duration + 30,
            check=False,
        )
        raw = wrk_summary(done.stdout)
        if raw is None:
            return None, f"wrk failed: {done.stdout[-300:]} {done.stderr[-300:]}"
        seconds = raw["duration_us"] / 1e6
        detail = wrk_errors(raw)
        if raw["requests"] == 0:
            return None, f"no request answered ({detail})"
        return LoadStats(
            generator="wrk",
            requests=int(raw["requests"]),
            errors=sum(detail.values()),
            error_detail=detail,
            duration_s=round(seconds, 3),
            rps=round(raw["requests"] / seconds, 1),
            mean_ms=round(raw["mean_us"] / 1000, 4),
            p50_ms=round(raw["p50_us"] / 1000, 4),
            p95_ms=round(raw["p95_us"] / 1000, 4),
            p99_ms=round(raw["p99_us"] / 1000, 4),
            p999_ms=round(raw["p999_us"] / 1000, 4),
            max_ms=round(raw["max_us"] / 1000, 4),
        ), None

    def _python_load(
        self, target: Target, model: str, concurrency: int, duration: int, warmup: int
    ) -> tuple[LoadStats | None, str | None]:
        # Two generator processes once there is concurrency to split: one Python client tops
        # out near the floor's rate.
        procs = 1 if concurrency < 2 else 2
        start_at = time.monotonic() + 1.0
        jobs = [
            {
                "mode": "load",
                "request": request_for(target, model, stream=False),
                "concurrency": share,
                "duration": duration,
                "warmup": warmup,
                "start_at": start_at,
            }
            for share in _split(concurrency, procs)
        ]
        outs, error = self.loadgen(jobs, timeout=duration + warmup + 60)
        if error is not None:
            return None, error
        stats = latency([v for out in outs for v in out["latency_s"]])
        requests = sum(out["requests"] for out in outs)
        errors: dict[str, int] = {}
        for out in outs:
            _add_counts(errors, out["errors"])
        if stats.n == 0:
            return None, f"no request answered ({errors})"
        return LoadStats(
            generator=f"python x{procs}",
            requests=requests,
            errors=sum(errors.values()),
            error_detail=errors,
            duration_s=duration,
            rps=round(requests / duration, 1),
            # With samples every field is a number (the model refuses None).
            **stats.model_dump(include={"mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"}),
        ), None

    # the Python generator

    def loadgen(
        self,
        jobs: list[dict[str, Any]],
        *,
        timeout: float,
        cpus: Collection[int] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Run one generator process per job, in parallel (on `cpus` when given): their JSON
        results in job order, or what went wrong with any of them."""
        running = []
        for job in jobs:
            out = self._next(f"{job['mode']}.json")
            proc = self.stack.spawn_helper(
                [
                    self.python,
                    str(HERE / "loadgen.py"),
                    orjson.dumps(job).decode(),
                    "--out",
                    str(out),
                ],
                out.with_suffix(".log"),
                cpus=cpus,
            )
            running.append((proc, out))
        deadline = time.monotonic() + timeout
        results: list[dict[str, Any]] = []
        failures: list[str] = []
        for proc, out in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                failures.append(f"generator timed out after {timeout:g}s")
                continue
            if proc.returncode != 0 or not out.exists():
                log = out.with_suffix(".log").read_text(errors="replace")[-400:]
                failures.append(f"generator exited {proc.returncode}: {log}")
                continue
            results.append(orjson.loads(out.read_bytes()))
        return results, ("; ".join(failures) if failures else None)

    def stream_latency(
        self,
        target: Target,
        model: str,
        *,
        expect: int,
        concurrency: int,
        duration: int,
        warmup: int,
    ) -> StreamCell:
        """TTFT and inter-chunk gaps of paced streams at a small fixed concurrency."""
        job = {
            "mode": "stream",
            "request": request_for(target, model, stream=True, expect=expect),
            "concurrency": concurrency,
            "duration": duration,
            "warmup": warmup,
        }
        with NoiseMeter() as noise:
            outs, error = self.loadgen([job], timeout=duration + warmup + 60)
        if error is not None:
            return StreamCell(
                target=target.key,
                concurrency=concurrency,
                foreign_cores=noise.cores,
                probe_ms=noise.probe_ms,
                error=error,
            )
        (out,) = outs
        return StreamCell(
            target=target.key,
            concurrency=concurrency,
            foreign_cores=noise.cores,
            probe_ms=noise.probe_ms,
            stats=StreamStats(
                streams=out["streams"],
                ok=out["ok"],
                errors=out["errors"],
                ttft=latency(out["ttft_s"]),
                gap=latency(out["gap_s"]),
                stream_duration=latency(out["duration_s"]),
            ),
        )

    def hold(
        self,
        target: Target,
        model: str,
        *,
        streams: int,
        expect: int,
        timeout: float,
        spread: float = 0.0,
    ) -> HoldStep:
        """`streams` streams opened together, or evenly over `spread` s: how many were complete
        and in order, the peak open at once, TTFT, the events received."""
        # Large steps are split over generator processes so the client keeps up.
        procs = max(1 if streams < 500 else 2, math.ceil(streams / STREAMS_PER_GENERATOR))
        # Each generator imports httptools and uvloop first: they all start streams together.
        start_at = time.monotonic() + 1.0 + 0.3 * procs
        jobs = [
            hold_job(
                target,
                model,
                streams=share,
                expect=expect,
                timeout=timeout,
                spread=spread,
                start_at=start_at,
                phase=index / procs,
            )
            for index, share in enumerate(_split(streams, procs))
        ]
        with NoiseMeter() as noise:
            outs, error = self.loadgen(jobs, timeout=timeout + 60)
        if error is not None:
            return HoldStep(
                target=target.key,
                streams=streams,
                foreign_cores=noise.cores,
                probe_ms=noise.probe_ms,
                error=error,
            )
        errors: dict[str, int] = {}
        for out in outs:
            _add_counts(errors, out["errors"])
        return HoldStep(
            target=target.key,
            streams=streams,
            foreign_cores=noise.cores,
            probe_ms=noise.probe_ms,
            stats=HoldStats(
                ok=sum(out["ok"] for out in outs),
                errors=errors,
                wall_s=round(max(out["wall_s"] for out in outs), 3),
                peak_open=_peak_overlap([span for out in outs for span in out["spans"]]),
                events=sum(out["events"] for out in outs),
                ttft=latency([v for out in outs for v in out["ttft_s"]]),
                stream_duration=latency([v for out in outs for v in out["duration_s"]]),
            ),
        )

    def fixed(self, requests: list[dict[str, Any]], *, count: int, concurrency: int) -> Batch:
        """Exactly `count` requests, cycling through `requests`."""
        job = {"mode": "fixed", "requests": requests, "count": count, "concurrency": concurrency}
        with NoiseMeter() as noise:
            outs, error = self.loadgen([job], timeout=600)
        if error is not None:
            return Batch(foreign_cores=noise.cores, probe_ms=noise.probe_ms, error=error)
        (out,) = outs
        stats = BatchStats(count=out["count"], errors=out["errors"], wall_s=out["wall_s"])
        return Batch(foreign_cores=noise.cores, probe_ms=noise.probe_ms, stats=stats)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _peak_overlap(spans: list[list[float]]) -> int:
    """Most intervals open at one instant (first content event to end of stream)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def find_wrk() -> str | None:
    return shutil.which("wrk")
