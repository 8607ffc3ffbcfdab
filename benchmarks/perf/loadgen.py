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

import httptools
import orjson
import uvloop

from h1client import Channel, request_bytes

# Far above any expected latency; a request that takes longer is a failure, not a sample. A job
# may set its own `request_timeout` (long streams that queue behind a connection pool).
_REQUEST_TIMEOUT_S = 60.0


@dataclass(slots=True)
class Spec:
    host: str
    port: int
    request: bytes  # the whole HTTP request
    kind: str  # "chat" or "generate": how a stream ends and where its text is
    stream: bool
    expect: int  # content chunks a correct stream has
    timeout: float


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


def read_spec(raw: dict[str, Any], job: dict[str, Any]) -> Spec:
    """A job's request as the client sends it (`job` may set `request_timeout`)."""
    headers = {"Content-Type": "application/json", **raw.get("headers", {})}
    host, port, request = request_bytes(raw["url"], orjson.dumps(raw["body"]), headers)
    return Spec(
        host=host,
        port=port,
        request=request,
        kind=raw.get("kind", "chat"),
        stream=bool(raw.get("stream", False)),
        expect=int(raw.get("expect", 0)),
        timeout=float(job.get("request_timeout", _REQUEST_TIMEOUT_S)),
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


class StreamCheck:
    """A `Sink` that reads Server-Sent Events as they arrive: the time of each content event and
    whether the contents are t0, t1, ... in order up to the end marker."""

    __slots__ = ("_event", "_kind", "_last", "_rest", "ended", "result")

    def __init__(self, kind: str, started: float) -> None:
        self._kind = kind
        self._event: str | None = None
        self._last: float | None = None
        self._rest = b""
        self.ended: str | None = None
        self.result = StreamResult(ok=False, error=None, started=started)

    def body(self, data: bytes, now: float) -> bool:
        if self.ended is not None:
            return True  # the rest of the answer (the chunked ending) is read, not checked
        lines = (self._rest + data).split(b"\n") if self._rest else data.split(b"\n")
        self._rest = lines.pop()
        result = self.result
        for raw_line in lines:
            line = raw_line.rstrip(b"\r")
            if not line:
                self._event = None
                continue
            if line.startswith(b"event:"):
                self._event = line[6:].strip().decode()
                continue
            if not line.startswith(b"data:"):
                continue  # comments (keep-alives) carry nothing to check
            try:
                text, self.ended = _content_of(self._kind, self._event, line[5:].lstrip())
            except orjson.JSONDecodeError:
                result.error = "JSONDecodeError"
                return False
            if self.ended is not None:
                result.ended_at = now
                return True
            if text is None:
                continue
            if text != f"t{result.contents} ":
                result.error = "reordered_or_lost"
                return False
            if self._last is None:
                result.ttft = now - result.started
                result.first_at = now
            else:
                result.gaps.append(now - self._last)
            self._last = now
            result.contents += 1
        return True


class WholeBody:
    """A `Sink` for a non-streaming answer: its body must be a JSON object."""

    __slots__ = ("json", "seen")

    def __init__(self) -> None:
        self.seen = False
        self.json = False

    def body(self, data: bytes, now: float) -> bool:
        if not self.seen:
            self.seen = True
            self.json = data.startswith(b"{")
        return True


async def one_stream(channel: Channel, spec: Spec) -> StreamResult:
    check = StreamCheck(spec.kind, time.perf_counter())
    result = check.result
    try:
        async with asyncio.timeout(spec.timeout):
            status = await channel.exchange(spec.request, check)
    except (OSError, TimeoutError, httptools.HttpParserError) as exc:
        result.error = result.error or type(exc).__name__
    else:
        if status != 200:
            result.error = f"http_{status}"
        elif result.error is None:
            if check.ended == "inband_error":
                result.error = "inband_error"
            elif check.ended != "done":
                result.error = "no_end"
            elif result.contents != spec.expect:
                result.error = "lost_events"
            else:
                result.ok = True
    if not result.ended_at:
        result.ended_at = time.perf_counter()
    return result


async def one_request(channel: Channel, spec: Spec) -> str | None:
    """A whole non-streaming request (or a stream read to its end); the error class or None."""
    if spec.stream:
        return (await one_stream(channel, spec)).error
    whole = WholeBody()
    try:
        async with asyncio.timeout(spec.timeout):
            status = await channel.exchange(spec.request, whole)
    except (OSError, TimeoutError, httptools.HttpParserError) as exc:
        return type(exc).__name__
    if status != 200:
        return f"http_{status}"
    return None if whole.json else "bad_body"


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
    spec = read_spec(job["request"], job)
    concurrency = int(job["concurrency"])
    results: list[StreamResult] = []
    await _wait_until(job.get("start_at"))
    warm_until = time.perf_counter() + float(job["warmup"])
    stop_at = warm_until + float(job["duration"])

    async def worker() -> None:
        channel = Channel(spec.host, spec.port)
        while time.perf_counter() < stop_at:
            result = await one_stream(channel, spec)
            if result.started >= warm_until:
                results.append(result)
        channel.close()

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


async def _delayed_stream(spec: Spec, delay: float) -> StreamResult:
    if delay > 0:
        await asyncio.sleep(delay)
    channel = Channel(spec.host, spec.port)  # a connection of its own, as every held stream has
    try:
        return await one_stream(channel, spec)
    finally:
        channel.close()


async def mode_hold(job: dict[str, Any]) -> dict[str, Any]:
    spec = read_spec(job["request"], job)
    streams = int(job["streams"])
    spread = float(job.get("spread", 0.0))
    phase = float(job.get("phase", 0.0))
    await _wait_until(job.get("start_at"))
    t0 = time.perf_counter()
    tasks = [
        asyncio.create_task(_delayed_stream(spec, spread * (i + phase) / streams))
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
    specs = [read_spec(raw, job) for raw in job["requests"]]
    count = int(job["count"])
    concurrency = int(job["concurrency"])
    errors: list[str | None] = []
    next_index = 0
    t0 = time.perf_counter()

    async def worker() -> None:
        nonlocal next_index
        channels: dict[tuple[str, int], Channel] = {}
        while next_index < count:
            spec = specs[next_index % len(specs)]
            next_index += 1
            channel = channels.get((spec.host, spec.port))
            if channel is None:
                channel = channels[spec.host, spec.port] = Channel(spec.host, spec.port)
            errors.append(await one_request(channel, spec))
        for channel in channels.values():
            channel.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"count": len(errors), "errors": _count_errors(errors), "wall_s": wall}


async def mode_load(job: dict[str, Any]) -> dict[str, Any]:
    spec = read_spec(job["request"], job)
    concurrency = int(job["concurrency"])
    latencies: list[float] = []
    errors: list[str | None] = []
    await _wait_until(job.get("start_at"))
    warm_until = time.perf_counter() + float(job["warmup"])
    stop_at = warm_until + float(job["duration"])

    async def worker() -> None:
        channel = Channel(spec.host, spec.port)
        while (started := time.perf_counter()) < stop_at:
            error = await one_request(channel, spec)
            if started >= warm_until:
                errors.append(error)
                if error is None:
                    latencies.append(time.perf_counter() - started)
        channel.close()

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
