"""Load runs against one target: wrk for non-streaming, the Python generator for the rest.

Each run is wrapped in `measured_noise`, so its result says how many cores other processes on
the machine used meanwhile (other engineers' test suites perturb the numbers; the report shows
it next to them).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from stack import Stack, measured_noise

HERE = Path(__file__).resolve().parent
PROMPT = "Say hello"
MAX_TOKENS = 64

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


@dataclass(frozen=True)
class Target:
    """One endpoint under test."""

    key: str  # stable id in the JSON: direct, floor, gateway, gateway_generate, litellm, ...
    label: str
    url: str
    kind: str  # "chat" (OpenAI chat completions) or "generate" (the gateway's /generate)
    headers: dict[str, str] = field(default_factory=dict)


def body_for(target: Target, model: str, *, stream: bool = False) -> dict[str, Any]:
    if target.kind == "generate":
        generate: dict[str, Any] = {"prompt": PROMPT, "model": model, "max_tokens": MAX_TOKENS}
        if stream:
            generate["stream"] = True
        return generate
    chat: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
    }
    if stream:
        chat["stream"] = True
    return chat


def request_for(target: Target, model: str, *, stream: bool, expect: int = 0) -> dict[str, Any]:
    """A request as the Python generator takes it."""
    return {
        "url": target.url,
        "body": body_for(target, model, stream=stream),
        "headers": target.headers,
        "kind": target.kind,
        "stream": stream,
        "expect": expect,
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


def summary_ms(values_s: list[float]) -> dict[str, float | int | None]:
    """n, mean, p50/p95/p99, max of seconds, in milliseconds."""
    ms = [v * 1000 for v in values_s]

    def rounded(value: float | None) -> float | None:
        return round(value, 4) if value is not None else None

    return {
        "n": len(ms),
        "mean_ms": rounded(sum(ms) / len(ms)) if ms else None,
        "p50_ms": rounded(percentile(ms, 50)),
        "p95_ms": rounded(percentile(ms, 95)),
        "p99_ms": rounded(percentile(ms, 99)),
        "max_ms": rounded(max(ms)) if ms else None,
    }


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
    ) -> dict[str, Any]:
        """Throughput and latency of non-streaming requests at a fixed concurrency."""
        result: dict[str, Any] = {"target": target.key, "concurrency": concurrency}
        with measured_noise(result):
            if self.wrk is not None:
                result.update(self._wrk(target, model, concurrency, duration, warmup))
            else:
                result.update(self._python_load(target, model, concurrency, duration, warmup))
        return result

    def wrk_script(self, target: Target, model: str) -> Path:
        """A wrk Lua script that POSTs the target's request body and prints JSON at the end."""
        lines = [
            'wrk.method = "POST"',
            f"wrk.body = [==[{orjson.dumps(body_for(target, model)).decode()}]==]",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items()]
        path = self._next(f"{target.key}.lua")
        path.write_text("\n".join(lines) + "\n" + _WRK_DONE, encoding="utf-8")
        return path

    def _wrk(
        self, target: Target, model: str, concurrency: int, duration: int, warmup: int
    ) -> dict[str, Any]:
        assert self.wrk is not None
        script = self.wrk_script(target, model)
        # One wrk thread: one core drives far more than a single-worker Python server can take
        # (the "direct" rows show it), and a second thread would only steal the servers' core.
        base = [self.wrk, "-t1", f"-c{concurrency}", "--timeout", "10s", "-s", str(script)]
        if warmup > 0:
            subprocess.run(
                [*base, f"-d{warmup}s", target.url],
                capture_output=True,
                timeout=warmup + 30,
                check=False,
            )
        done = subprocess.run(
            [*base, f"-d{duration}s", target.url],
            capture_output=True,
            text=True,
            timeout=duration + 30,
            check=False,
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("PERFJSON ")), None)
        if line is None:
            return {"error": f"wrk failed: {done.stdout[-300:]} {done.stderr[-300:]}"}
        raw = orjson.loads(line.removeprefix("PERFJSON "))
        seconds = raw["duration_us"] / 1e6
        errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
        return {
            "generator": "wrk",
            "requests": int(raw["requests"]),
            "errors": int(errors),
            "error_detail": {k: int(raw[k]) for k in ("connect", "read", "write", "status")}
            | {"timeout": int(raw["timeout"])},
            "duration_s": round(seconds, 3),
            "rps": round(raw["requests"] / seconds, 1) if seconds else None,
            "mean_ms": round(raw["mean_us"] / 1000, 4),
            "p50_ms": round(raw["p50_us"] / 1000, 4),
            "p95_ms": round(raw["p95_us"] / 1000, 4),
            "p99_ms": round(raw["p99_us"] / 1000, 4),
            "p999_ms": round(raw["p999_us"] / 1000, 4),
            "max_ms": round(raw["max_us"] / 1000, 4),
        }

    def _python_load(
        self, target: Target, model: str, concurrency: int, duration: int, warmup: int
    ) -> dict[str, Any]:
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
        outs = self.loadgen(jobs, timeout=duration + warmup + 60)
        if any("error" in out for out in outs):
            return {"error": "; ".join(str(out.get("error")) for out in outs if "error" in out)}
        latencies = [v for out in outs for v in out["latency_s"]]
        requests = sum(out["requests"] for out in outs)
        errors = sum(sum(out["errors"].values()) for out in outs)
        stats = summary_ms(latencies)
        return {
            "generator": f"python x{procs}",
            "requests": requests,
            "errors": errors,
            "duration_s": duration,
            "rps": round(requests / duration, 1),
            "mean_ms": stats["mean_ms"],
            "p50_ms": stats["p50_ms"],
            "p95_ms": stats["p95_ms"],
            "p99_ms": stats["p99_ms"],
            "max_ms": stats["max_ms"],
        }

    # the Python generator

    def loadgen(self, jobs: list[dict[str, Any]], *, timeout: float) -> list[dict[str, Any]]:
        """Run one generator process per job, in parallel; their JSON results, in job order."""
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
            )
            running.append((proc, out))
        deadline = time.monotonic() + timeout
        results: list[dict[str, Any]] = []
        for proc, out in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                results.append({"error": f"generator timed out after {timeout:g}s"})
                continue
            if proc.returncode != 0 or not out.exists():
                log = out.with_suffix(".log").read_text(errors="replace")[-400:]
                results.append({"error": f"generator exited {proc.returncode}: {log}"})
                continue
            results.append(orjson.loads(out.read_bytes()))
        return results

    def stream_latency(
        self,
        target: Target,
        model: str,
        *,
        expect: int,
        concurrency: int,
        duration: int,
        warmup: int,
    ) -> dict[str, Any]:
        """TTFT and inter-chunk gaps of paced streams at a small fixed concurrency."""
        result: dict[str, Any] = {"target": target.key, "concurrency": concurrency}
        job = {
            "mode": "stream",
            "request": request_for(target, model, stream=True, expect=expect),
            "concurrency": concurrency,
            "duration": duration,
            "warmup": warmup,
        }
        with measured_noise(result):
            (out,) = self.loadgen([job], timeout=duration + warmup + 60)
        if "error" in out:
            result["error"] = out["error"]
            return result
        result.update(
            streams=out["streams"],
            ok=out["ok"],
            errors=out["errors"],
            ttft=summary_ms(out["ttft_s"]),
            gap=summary_ms(out["gap_s"]),
            stream_duration=summary_ms(out["duration_s"]),
        )
        return result

    def hold(
        self,
        target: Target,
        model: str,
        *,
        streams: int,
        expect: int,
        timeout: float,
    ) -> dict[str, Any]:
        """`streams` streams opened together; complete-and-in-order count and the peak open."""
        # Large steps are split over two generator processes so the client keeps up.
        procs = 1 if streams < 500 else 2
        start_at = time.monotonic() + 1.0
        jobs = [
            {
                "mode": "hold",
                "request": request_for(target, model, stream=True, expect=expect),
                "streams": share,
                "timeout": timeout,
                "start_at": start_at,
            }
            for share in _split(streams, procs)
        ]
        result: dict[str, Any] = {"target": target.key, "streams": streams}
        with measured_noise(result):
            outs = self.loadgen(jobs, timeout=timeout + 60)
        failed = [out["error"] for out in outs if "error" in out]
        if failed:
            result["error"] = "; ".join(failed)
            result["ok"] = 0
            return result
        errors: dict[str, int] = {}
        for out in outs:
            for name, count in out["errors"].items():
                errors[name] = errors.get(name, 0) + count
        spans = [span for out in outs for span in out["spans"]]
        result.update(
            ok=sum(out["ok"] for out in outs),
            errors=errors,
            wall_s=round(max(out["wall_s"] for out in outs), 3),
            peak_open=_peak_overlap(spans),
            ttft=summary_ms([v for out in outs for v in out["ttft_s"]]),
            stream_duration=summary_ms([v for out in outs for v in out["duration_s"]]),
        )
        return result

    def fixed(
        self, requests: list[dict[str, Any]], *, count: int, concurrency: int
    ) -> dict[str, Any]:
        """Exactly `count` requests, cycling through `requests`."""
        job = {"mode": "fixed", "requests": requests, "count": count, "concurrency": concurrency}
        result: dict[str, Any] = {}
        with measured_noise(result):
            (out,) = self.loadgen([job], timeout=600)
        result.update(out)
        return result


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
