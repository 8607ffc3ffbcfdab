"""Text generation as the gateway offers it: a prompt in, an answer (or a stream of deltas) out.

Shared by `POST /generate` and `llm-gateway generate`, so both send the same request upstream
and report the same numbers. It speaks in completions and seconds; how an answer is written
on the wire is the route's business (`api/generate.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from llm_gateway.schemas.generate import GenerateRequest
from llm_gateway.upstream.client import Reply
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


@dataclass(slots=True)  # not frozen: built per call (see upstream/sse.py SSEEvent)
class Generated:
    """A finished generation: what the model produced, how long it took, what it cost."""

    completion: Completion
    latency: float  # seconds from `started` to the whole answer
    ttft: float | None  # seconds from `started` to the first content (streams only)
    attempts: int


def from_reply(reply: Reply, *, started: float) -> Generated:
    """A non-streaming generation, once `UpstreamClient.complete` has answered; `started` is
    the perf_counter() the latency counts from. (Not a coroutine around the call: each await
    level is passed through again every time the call resumes.)"""
    completion = parse_completion(reply.data)
    return Generated(completion, time.perf_counter() - started, None, reply.attempts)


class Relay:
    """An open upstream stream read for its text: each block `ChatStream.forward()` gives goes
    through `pieces()` in turn, and `finish()` gives the whole answer once the blocks end.

    Not an async generator around `forward()`: the caller iterates `forward()` itself, so each
    event is one generator hop fewer, and each open stream holds this small object rather than
    a suspended generator (by the thousand streams, that is memory). Upstream failures are
    raised by `forward()`; the caller owns closing the stream.
    """

    __slots__ = ("_accumulator", "_started", "stream", "ttft")

    def __init__(self, stream: ChatStream, *, started: float) -> None:
        self.stream = stream
        self._started = started
        self._accumulator = StreamAccumulator()
        self.ttft: float | None = None

    def pieces(self, block: bytes) -> list[str | None]:
        """The new text in `block`, a piece per event that has some, in order; None for a
        keep-alive (the upstream is alive but has nothing yet)."""
        out: list[str | None] = []
        # Parsed here rather than read with `next()`, whose per-event arrival times only a
        # benchmark needs: `forward()` has checked the block (errors, the finish, secrets).
        for chunk in self.stream.parsed(block):
            if chunk is None:
                out.append(None)
                continue
            content, _reasoning = self._accumulator.feed(chunk)
            if content:
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self._started
                out.append(content)
        return out

    def finish(self) -> Generated:
        """The answer, once `forward()` has ended (usage comes in the chunk after the finish,
        so the blocks are read to `[DONE]`)."""
        latency = time.perf_counter() - self._started
        completion = self._accumulator.result()
        # Each chunk was scrubbed; a secret split across two chunks is whole only in the answer.
        completion.text = self.stream.redact.content(completion.text)
        return Generated(completion, latency, self.ttft, self.stream.attempts)
