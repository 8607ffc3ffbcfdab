"""One benchmark request, measured exactly as docs/metrics.md defines it.

Clock: `time.perf_counter_ns()`. `t0` is when the final (successful or last) attempt was
written to its connection, as the client's send-time trace saw it (`WireLog`): waiting for a
pooled or new connection is not latency. Time spent on earlier attempts and their waits is
`retry_wait_seconds`, so a model's latency is not inflated by our rate-limit luck, and the
retries stay visible. Event times are taken when the bytes were read (a stream's events by the
stream, a whole answer by the trace), not when the runner got round to them.

A failed request keeps the same reference: its `done_seconds` runs from its final attempt's t0,
its `http_status` is the upstream's status for that attempt (None when no answer came), and a
failure after a 2xx answer is a `midstream_error` even before the first token.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from llm_gateway.bench.records import ErrorClass, Job, RequestRecord
from llm_gateway.bench.stats import percentile
from llm_gateway.errors import (
    GatewayError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from llm_gateway.upstream.client import WIRE_LOG, UpstreamClient, WireLog
from llm_gateway.upstream.completions import (
    Completion,
    StreamAccumulator,
    Usage,
    parse_completion,
)
from llm_gateway.upstream.stream import Chunk

STALL_THRESHOLD_S = 1.0
OUTPUT_PREVIEW_CHARS = 200


def classify(error: GatewayError, *, streaming_started: bool) -> ErrorClass:
    """The error class of a failed request (benchmark-metrics.md `status`)."""
    if isinstance(error, UpstreamTimeout):
        return "timeout"  # also when it struck mid-stream: the answer was too slow, not broken
    if streaming_started or isinstance(error, UpstreamBadResponse):
        return "midstream_error"
    if isinstance(error, UpstreamRateLimited):
        return "http_429"
    if isinstance(error, UpstreamUnreachable):
        return "connect"
    if isinstance(error, UpstreamStatusError) and error.upstream_status is not None:
        if error.upstream_status == 408:
            return "timeout"
        return "http_4xx" if error.upstream_status < 500 else "http_5xx"
    return "http_5xx"


def _seconds(ns: int) -> float:
    return round(ns / 1e9, 6)


@dataclass(slots=True)
class _Timing:
    """When the final attempt was sent (`t0`, absolute ns), and token-bearing event times and
    the end (`done`), in ns since t0."""

    t0: int
    opened: bool = False  # the final attempt's 2xx answer arrived (a stream or a whole body)
    done: int = 0
    first_token: int | None = None
    first_content: int | None = None
    last_token: int | None = None
    events: int = 0
    gaps: list[float] = field(default_factory=list)

    def see(self, received_ns: int, *, content: bool) -> None:
        at = received_ns - self.t0
        if self.first_token is None:
            self.first_token = at
        if content and self.first_content is None:
            self.first_content = at
        if self.last_token is not None:
            self.gaps.append((at - self.last_token) / 1e9)
        self.last_token = at
        self.events += 1


async def measure(
    client: UpstreamClient,
    job: Job,
    *,
    stream: bool,
    bench_start_ns: int,
    timeout: float,
    queue_ns: int = 0,
) -> RequestRecord:
    """Send one request and return its record; failures are records too, never exceptions."""
    began = time.perf_counter_ns()
    wall = datetime.now(UTC).isoformat(timespec="milliseconds")
    base: dict[str, Any] = {
        "model": job.model,
        "prompt_index": job.prompt_index,
        "prompt": job.prompt,
        "run": job.run,
        "step": job.step,
        "warmup": job.warmup,
        "started_at": wall,
        "queue_seconds": _seconds(queue_ns),
    }
    timing = _Timing(t0=began)
    wire = WireLog()
    token = WIRE_LOG.set(wire)
    try:
        async with asyncio.timeout(timeout):
            if stream:
                completion, attempts = await _streamed(client, job.payload, timing, wire)
            else:
                completion, attempts = await _whole(client, job.payload, timing)
    except (GatewayError, TimeoutError) as exc:
        ended = time.perf_counter_ns()
        error = (
            exc
            if isinstance(exc, GatewayError)
            else UpstreamTimeout(f"no complete answer within the {timeout:g}s per-request timeout")
        )
        return _failed(base, error, timing, wire, began=began, ended=ended, bench=bench_start_ns)
    finally:
        WIRE_LOG.reset(token)
    t0, done_ns = timing.t0, timing.done
    usage = completion.usage
    # Streams: the last token-bearing event; whole answers: the body fully read.
    latency_ns = timing.last_token
    output_tokens, source = _output_tokens(usage, timing.events, completion.text, stream=stream)
    latency = _seconds(latency_ns) if latency_ns is not None else None
    ttft = _seconds(timing.first_token) if timing.first_token is not None else None
    gaps = sorted(timing.gaps)
    has_output = bool(completion.text or completion.reasoning or completion.tool_calls)
    decode = (
        (output_tokens - 1) / (latency - ttft)
        if ttft is not None and latency is not None and output_tokens > 1 and latency > ttft
        else None
    )
    return RequestRecord(
        **base,
        status="ok" if has_output else "empty",
        error=None if has_output else "the model returned no content",
        http_status=200,
        finish_reason=completion.finish_reason,
        offset_seconds=_seconds(t0 - bench_start_ns),
        ttft_seconds=ttft,
        ttfc_seconds=_seconds(timing.first_content) if timing.first_content is not None else None,
        latency_seconds=latency,
        done_seconds=_seconds(done_ns),
        tokens_used=usage.total_tokens if usage is not None else None,
        prompt_tokens=usage.prompt_tokens if usage is not None else None,
        completion_tokens=output_tokens,
        tokens_source=source,
        chunks=timing.events,
        tokens_per_second=round(output_tokens / latency, 6) if latency else None,
        decode_tokens_per_second=round(decode, 6) if decode is not None else None,
        decode_seconds_per_token=round(1 / decode, 6) if decode else None,
        inter_chunk_p50_seconds=round(percentile(gaps, 50), 6) if gaps else None,
        inter_chunk_p95_seconds=round(percentile(gaps, 95), 6) if gaps else None,
        inter_chunk_max_seconds=round(max(gaps), 6) if gaps else None,
        stalls=sum(1 for gap in gaps if gap > STALL_THRESHOLD_S),
        cost_usd=usage.cost if usage is not None else None,
        attempts=attempts,
        retry_wait_seconds=_seconds(t0 - began),
        provider=completion.provider,
        model_served=completion.model,
        generation_id=completion.id,
        output_preview=completion.text[:OUTPUT_PREVIEW_CHARS] or None,
    )


def _has_tool_calls(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    delta = choices[0].get("delta")
    return isinstance(delta, dict) and bool(delta.get("tool_calls"))


def _output_tokens(usage: Usage | None, events: int, text: str, *, stream: bool) -> tuple[int, str]:
    """Completion tokens from usage when given, else an estimate flagged as such."""
    if usage is not None and usage.completion_tokens:
        return usage.completion_tokens, "usage"
    estimate = events if stream else max(1, round(len(text) / 4)) if text else 0
    return estimate, "estimated"


def _arrival(item: Chunk, wire: WireLog) -> int:
    """When the event's bytes arrived: the stream stamps each event when its read returned;
    the wire log knows when the bytes of the latest read had arrived, which is this event's
    read if it was not earlier (the read returns just before the stream takes its stamp)."""
    if wire.batch_arrived_ns and item.received_ns >= wire.batch_read_ns:
        return min(wire.batch_arrived_ns, item.received_ns)
    return item.received_ns


async def _streamed(
    client: UpstreamClient, payload: dict[str, Any], timing: _Timing, wire: WireLog
) -> tuple[Completion, int]:
    accumulator = StreamAccumulator()
    async with await client.stream(payload) as upstream:
        timing.t0, timing.opened = upstream.started_ns, True
        async for item in upstream:
            if not isinstance(item, Chunk):
                continue
            content, reasoning = accumulator.feed(item.data)
            if content or reasoning or _has_tool_calls(item.data):
                timing.see(_arrival(item, wire), content=bool(content))
        timing.done = time.perf_counter_ns() - timing.t0
    completion = accumulator.result()
    # Each chunk was scrubbed; a secret split across two chunks is whole only in the answer.
    return replace(completion, text=client.redact.content(completion.text)), upstream.attempts


async def _whole(
    client: UpstreamClient, payload: dict[str, Any], timing: _Timing
) -> tuple[Completion, int]:
    reply = await client.complete(payload)
    timing.t0, timing.opened = reply.started_ns, True
    timing.done = reply.finished_ns - reply.started_ns
    timing.last_token = timing.done
    return parse_completion(reply.data), reply.attempts


def _failed(
    base: dict[str, Any],
    error: GatewayError,
    timing: _Timing,
    wire: WireLog,
    *,
    began: int,
    ended: int,
    bench: int,
) -> RequestRecord:
    """The record of a request that failed; what was measured before the failure is kept.

    Its t0 is the final attempt's, as for a success: from the stream or answer when one was
    opened, else from the wire log (the request written), else when the request began (no
    request could be written, or the client does not trace send times).
    """
    sent = wire.sent_ns if wire.sent_ns >= began else began
    t0 = timing.t0 if timing.opened else sent
    status = wire.status
    if status is None and timing.opened:
        status = 200
    if status is None and wire.requests == 0 and isinstance(error, UpstreamError):
        status = error.upstream_status  # a client without the trace: the error's word for it
    answered = status is not None and 200 <= status < 300
    return RequestRecord(
        **base,
        status=classify(error, streaming_started=answered or timing.first_token is not None),
        error=f"{error.code}: {error.message}"[:500],
        http_status=status,
        finish_reason=None,
        offset_seconds=_seconds(t0 - bench),
        ttft_seconds=_seconds(timing.first_token) if timing.first_token is not None else None,
        ttfc_seconds=_seconds(timing.first_content) if timing.first_content is not None else None,
        latency_seconds=None,
        done_seconds=_seconds(ended - t0),
        tokens_used=None,
        prompt_tokens=None,
        completion_tokens=None,
        tokens_source=None,
        chunks=timing.events,
        tokens_per_second=None,
        decode_tokens_per_second=None,
        decode_seconds_per_token=None,
        inter_chunk_p50_seconds=None,
        inter_chunk_p95_seconds=None,
        inter_chunk_max_seconds=None,
        stalls=0,
        cost_usd=None,
        attempts=max(error.attempts, wire.requests, 1),
        retry_wait_seconds=_seconds(t0 - began),
        provider=None,
        model_served=None,
        generation_id=None,
        output_preview=None,
    )
