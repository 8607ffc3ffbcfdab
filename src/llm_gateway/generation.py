"""Text generation as the gateway offers it: a prompt in, an answer (or a stream of deltas) out.

Shared by `POST /generate` and `llm-gateway generate`, so both send the same request upstream
and report the same numbers. It speaks in completions and seconds; how an answer is written
on the wire is the route's business (`api/generate.py`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from llm_gateway.schemas.generate import GenerateRequest
from llm_gateway.upstream.client import UpstreamClient
from llm_gateway.upstream.completions import Completion, StreamAccumulator, parse_completion
from llm_gateway.upstream.stream import ChatStream


def build_payload(request: GenerateRequest, *, max_tokens: int) -> dict[str, Any]:
    """The chat-completions body for a /generate request (absent sampling fields left out)."""
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    payload: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": max_tokens,
    }
    for name in ("temperature", "top_p", "stop", "seed"):
        value = getattr(request, name)
        if value is not None:
            payload[name] = value
    return payload


@dataclass(frozen=True, slots=True)
class Generated:
    """A finished generation: what the model produced, how long it took, what it cost."""

    completion: Completion
    latency: float  # seconds from `started` to the whole answer
    ttft: float | None  # seconds from `started` to the first content (streams only)
    attempts: int


async def generate(client: UpstreamClient, payload: dict[str, Any], *, started: float) -> Generated:
    """One non-streaming generation; `started` is the perf_counter() the latency counts from."""
    reply = await client.complete(payload)
    completion = parse_completion(reply.data)
    return Generated(completion, time.perf_counter() - started, None, reply.attempts)


@dataclass(slots=True)  # not frozen: built per event (see upstream/sse.py's SSEEvent)
class Delta:
    """A piece of generated text, as it arrived."""

    text: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """The upstream is alive but has nothing yet (a keep-alive)."""


@dataclass(frozen=True, slots=True)
class Done:
    """The stream finished; the same result a non-streaming call gives, plus TTFT."""

    generated: Generated


async def relay(stream: ChatStream, *, started: float) -> AsyncIterator[Delta | Waiting | Done]:
    """Turn an open upstream stream into deltas, keep-alives and a final Done.

    Upstream failures are raised from the iteration; the caller owns closing `stream`.
    Usage is read from the chunk after `finish_reason`, so iteration runs to `[DONE]`.
    """
    accumulator = StreamAccumulator()
    ttft: float | None = None
    chunk: dict[str, Any] | None = None
    # The upstream's blocks as `forward()` checks them (errors, the finish, secrets: byte
    # searches per read), then parsed here: cheaper per event than `next()`, whose per-event
    # arrival times only a benchmark needs.
    async for block in stream.forward():
        for chunk in stream.parsed(block):
            if chunk is None:
                yield Waiting()
                continue
            content, _reasoning = accumulator.feed(chunk)
            if content:
                if ttft is None:
                    ttft = time.perf_counter() - started
                yield Delta(content)
        # Not kept while the next event is awaited (seconds, by the thousand streams): the
        # parsed event is ~1 KB of objects.
        chunk = None
    latency = time.perf_counter() - started
    completion = accumulator.result()
    # Each chunk was scrubbed; a secret split across two chunks is whole only in the answer.
    completion = replace(completion, text=stream.redact.content(completion.text))
    yield Done(Generated(completion, latency, ttft, stream.attempts))
