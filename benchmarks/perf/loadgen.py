"""The harness's Python load generator: streams, fixed request counts, and a wrk fallback.

Runs in its own process (the driver starts one or more), so its CPU is never the measured
server's. Non-streaming throughput and latency use wrk when it is installed; this client covers
what wrk cannot: reading Server-Sent Events with a timestamp per event, checking every stream's
events arrived complete and in order, and sending an exact number of mixed requests.

Modes (a JSON job on the command line, a JSON result in --out):
- `stream`: closed loop at `concurrency` for `duration` s after `warmup` s; per stream the time to
  the first content event (TTFT) and the gaps between content events.
- `hold`: `streams` streams started together, or evenly over `spread` s; how many ended complete
  and in order, how many lost or reordered events, the peak number open at once, the events.
  Several generator processes share a large step: `phase` (0 <= phase < 1) offsets this
  process's start times so the processes' streams interleave rather than start in bursts.
- `fixed`: exactly `count` requests at `concurrency`, cycling through `requests`.
- `load`: non-streaming closed loop (used only when wrk is missing): latency of each request.

Stream check: the perf upstream's content chunk i is `t<i> `, so a stream is correct when its
content events are exactly t0..t<expect-1> and it ends properly (`data: [DONE]` for chat
completions, `event: done` with the whole text for /generate).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import uvloop

# Far above any expected latency; a request that takes longer is a failure, not a sample. A job
# may set its own `request_timeout` (long streams that queue behind a connection pool).
_REQUEST_TIMEOUT_S = 60.0


@dataclass(slots=True)
class Spec:
    url: str
    body: bytes
    headers: dict[str, str]
    kind: str  # "chat" or "generate": how a stream ends and where its text is
    stream: bool
    expect: int  # content chunks a correct stream has


@dataclass(slots=True)
class StreamResult:
    ok: bool
    error: str | None
    started: float
    ttft: float | None = None
    first_at: float | None = None
    ended_at: float = 0.0
    gaps: list[float] = field(default_factory=list)
    contents: int = 0


def _spec(raw: dict[str, Any]) -> Spec:
    return Spec(
        url=raw["url"],
        body=orjson.dumps(raw["body"]),
        headers={"Content-Type": "application/json", **raw.get("headers", {})},
        kind=raw.get("kind", "chat"),
        stream=bool(raw.get("stream", False)),
        expect=int(raw.get("expect", 0)),
    )


def _content_of(kind: str, event: str | None, data: bytes) -> tuple[str | None, str | None]:
    """(content text or None, end marker or None) of one SSE event."""
    if kind == "chat":
        if data == b"[DONE]":
            return None, "done"
        obj = orjson.loads(data)
        if "error" in obj:
            return None, "inband_error"
        text = ""
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
        return (text or None), None
    if event == "done":
        return None, "done"
    if event == "error":
        return None, "inband_error"
    obj = orjson.loads(data)
    delta = obj.get("delta")
    return (delta if isinstance(delta, str) and delta else None), None


async def one_stream(session: aiohttp.ClientSession, spec: Spec) -> StreamResult:
    started = time.perf_counter()
    result = StreamResult(ok=False, error=None, started=started)
    last: float | None = None
    ended: str | None = None
    event: str | None = None
    try:
        async with session.post(spec.url, data=spec.body, headers=spec.headers) as resp:
            if resp.status != 200:
                await resp.read()
                result.error = f"http_{resp.status}"
                return result
            async for raw_line in resp.content:
                now = time.perf_counter()
                line = raw_line.rstrip(b"\r\n")
                if not line:
                    event = None
                    continue
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                    continue
                if not line.startswith(b"data:"):
                    continue  # comments (keep-alives) carry nothing to check
                text, ended = _content_of(spec.kind, event, line[5:].lstrip())
                if ended is not None:
                    break
                if text is None:
                    continue
                if text != f"t{result.contents} ":
                    result.error = "reordered_or_lost"
                    return result
                if last is None:
                    result.ttft = now - started
                    result.first_at = now
                else:
                    result.gaps.append(now - last)
                last = now
                result.contents += 1
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        result.error = type(exc).__name__
        return result
    finally:
        result.ended_at = time.perf_counter()
    if ended == "inband_error":
        result.error = "inband_error"
    elif ended != "done":
        result.error = "no_end"
    elif result.contents != spec.expect:
        result.error = "lost_events"
    else:
        result.ok = True
    return result


async def one_request(session: aiohttp.ClientSession, spec: Spec) -> str | None:
    """A whole non-streaming request (or a stream read to its end); the error class or None."""
    if spec.stream:
        return (await one_stream(session, spec)).error
    try:
        async with session.post(spec.url, data=spec.body, headers=spec.headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                return f"http_{resp.status}"
            if not body.startswith(b"{"):
                return "bad_body"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__
    return None


def _session(job: dict[str, Any]) -> aiohttp.ClientSession:
    # One keep-alive connection per concurrent request, as wrk holds them.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=False),
        timeout=aiohttp.ClientTimeout(total=float(job.get("request_timeout", _REQUEST_TIMEOUT_S))),
    )


def _count_errors(errors: list[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for error in errors:
        if error is not None:
            counts[error] = counts.get(error, 0) + 1
    return counts


async def _wait_until(start_at: float | None) -> None:
    # CLOCK_MONOTONIC is system-wide on Linux, so several generator processes can start together.
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))


async def mode_stream(job: dict[str, Any]) -> dict[str, Any]:
    spec = _spec(job["request"])
    concurrency = int(job["concurrency"])
    results: list[StreamResult] = []
    async with _session(job) as session:
        await _wait_until(job.get("start_at"))
        warm_until = time.perf_counter() + float(job["warmup"])
        stop_at = warm_until + float(job["duration"])

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                result = await one_stream(session, spec)
                if result.started >= warm_until:
                    results.append(result)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    ok = [r for r in results if r.ok]
    return {
        "streams": len(results),
        "ok": len(ok),
        "errors": _count_errors([r.error for r in results]),
        "ttft_s": [r.ttft for r in ok if r.ttft is not None],
        "gap_s": [g for r in ok for g in r.gaps],
        "duration_s": [r.ended_at - r.started for r in ok],
    }


async def _delayed_stream(session: aiohttp.ClientSession, spec: Spec, delay: float) -> StreamResult:
    if delay > 0:
        await asyncio.sleep(delay)
    return await one_stream(session, spec)


async def mode_hold(job: dict[str, Any]) -> dict[str, Any]:
    spec = _spec(job["request"])
    streams = int(job["streams"])
    spread = float(job.get("spread", 0.0))
    phase = float(job.get("phase", 0.0))
    async with _session(job) as session:
        await _wait_until(job.get("start_at"))
        t0 = time.perf_counter()
        tasks = [
            asyncio.create_task(_delayed_stream(session, spec, spread * (i + phase) / streams))
            for i in range(streams)
        ]
        done, pending = await asyncio.wait(tasks, timeout=float(job["timeout"]))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - t0
    results = [task.result() for task in done]
    ok = [r for r in results if r.ok]
    errors = _count_errors([r.error for r in results])
    if pending:
        # Streams still open when the step's time ran out count as failed, not as missing.
        errors["step_timeout"] = len(pending)
    return {
        "streams": streams,
        "ok": len(ok),
        "errors": errors,
        "wall_s": wall,
        "events": sum(r.contents for r in results),
        "ttft_s": [r.ttft for r in ok if r.ttft is not None],
        "duration_s": [r.ended_at - r.started for r in ok],
        # perf_counter() is CLOCK_MONOTONIC on Linux too, so the driver can merge the spans of
        # several generator processes to find the peak number of streams open at once.
        "spans": [[r.first_at, r.ended_at] for r in ok if r.first_at is not None],
    }


async def mode_fixed(job: dict[str, Any]) -> dict[str, Any]:
    specs = [_spec(raw) for raw in job["requests"]]
    count = int(job["count"])
    concurrency = int(job["concurrency"])
    errors: list[str | None] = []
    next_index = 0
    async with _session(job) as session:
        t0 = time.perf_counter()

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                spec = specs[next_index % len(specs)]
                next_index += 1
                errors.append(await one_request(session, spec))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"count": len(errors), "errors": _count_errors(errors), "wall_s": wall}


async def mode_load(job: dict[str, Any]) -> dict[str, Any]:
    spec = _spec(job["request"])
    concurrency = int(job["concurrency"])
    latencies: list[float] = []
    errors: list[str | None] = []
    async with _session(job) as session:
        await _wait_until(job.get("start_at"))
        warm_until = time.perf_counter() + float(job["warmup"])
        stop_at = warm_until + float(job["duration"])

        async def worker() -> None:
            while (started := time.perf_counter()) < stop_at:
                error = await one_request(session, spec)
                if started >= warm_until:
                    errors.append(error)
                    if error is None:
                        latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "requests": len(errors),
        "errors": _count_errors(errors),
        "duration_s": float(job["duration"]),
        "latency_s": latencies,
    }


MODES = {"stream": mode_stream, "hold": mode_hold, "fixed": mode_fixed, "load": mode_load}


def main() -> None:
    parser = argparse.ArgumentParser(description="Load generator for the perf harness.")
    parser.add_argument("job", help="the job as JSON")
    parser.add_argument("--out", required=True, help="file to write the JSON result to")
    args = parser.parse_args()
    job: dict[str, Any] = orjson.loads(args.job)
    result = uvloop.run(MODES[job["mode"]](job))
    with open(args.out, "wb") as out:
        out.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
