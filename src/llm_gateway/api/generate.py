"""`POST /generate`: a prompt in, the model's answer out, as JSON or as Server-Sent Events.

A hot route (`hot.py`): declared once below, served by the dispatcher, documented from
`GenerateRequest` / `GenerateResponse`. The answer is built as a plain dict in that schema's
shape rather than through a pydantic object per call (`tests/api/test_generate.py` holds every
answer to the schema).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Scope

from llm_gateway.api.hot import HotRoute, QueryFlag, parse_json_body, query_flag
from llm_gateway.api.responses import json_response
from llm_gateway.api.streaming import SSE_KEEPALIVE, EventStreamResponse, sse_event
from llm_gateway.context import record_attempts
from llm_gateway.errors import GatewayError, InvalidRequest
from llm_gateway.generation import Generated, Relay, build_payload, from_reply
from llm_gateway.prompt_size import prompt_chars
from llm_gateway.rendering import error_body
from llm_gateway.runtime import Runtime
from llm_gateway.schemas.errors import ErrorResponse
from llm_gateway.schemas.generate import GenerateRequest, GenerateResponse


async def generate(runtime: Runtime, body: bytes, scope: Scope) -> Response:
    """JSON, or a stream with `?stream=true` or `"stream": true`."""
    request = parse_json_body(GenerateRequest, body, scope)
    stream = query_flag(scope, "stream") or request.stream
    started = time.perf_counter()
    settings = runtime.settings
    max_tokens = request.max_tokens or settings.max_tokens_default
    if max_tokens > settings.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens must be at most {settings.max_tokens_limit} (got {max_tokens})",
            param="max_tokens",
        )
    payload = build_payload(request, max_tokens=max_tokens)
    chars = prompt_chars(payload["messages"], stop=payload.get("stop"))
    if chars > settings.max_prompt_chars:
        raise InvalidRequest(
            f"prompt (with system and stop strings) is {chars} characters; the limit is "
            f"{settings.max_prompt_chars} (GATEWAY_MAX_PROMPT_CHARS)",
            param="prompt",
        )
    if stream:
        upstream = await runtime.client.stream(payload)
        record_attempts(upstream.attempts)
        frames = _Frames(Relay(upstream, started=started))
        return EventStreamResponse(
            upstream.forward(),
            render=frames.render,
            end=frames.end,
            render_error=_error_event,
            headers={"X-Upstream-Attempts": str(upstream.attempts)},
            on_close=upstream.aclose,
        )
    generated = from_reply(await runtime.client.complete(payload), started=started)
    record_attempts(generated.attempts)
    return json_response(
        answer_body(generated), headers={"X-Upstream-Attempts": str(generated.attempts)}
    )


def answer_body(generated: Generated, *, with_ttft: bool = False) -> dict[str, Any]:
    """The answer in `GenerateResponse`'s shape (`ttft_seconds` only in a stream's `done`)."""
    completion, usage = generated.completion, generated.completion.usage
    body: dict[str, Any] = {
        "response": completion.text,
        "tokens_used": usage.total_tokens if usage is not None else None,
        "latency_seconds": round(generated.latency, 6),
        "model": completion.model,
        "id": completion.id,
        "finish_reason": completion.finish_reason,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "cost": usage.cost,
        }
        if usage is not None
        else None,
        "cost": usage.cost if usage is not None else None,
    }
    if with_ttft:
        body["ttft_seconds"] = round(generated.ttft, 6) if generated.ttft is not None else None
    return body


_DELTA = b'data: {"delta":'


class _Frames:
    """A stream's events as `/generate` writes them: `data: {"delta"}` per piece of text and a
    keep-alive for each of the upstream's, the events of one read written together; then the
    closing `event: done`."""

    __slots__ = ("_relay",)

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def render(self, block: bytes) -> bytes:
        pieces = self._relay.pieces(block)
        if len(pieces) == 1 and pieces[0] is not None:  # nearly every read: one event
            return _delta(pieces[0])
        return b"".join(SSE_KEEPALIVE if piece is None else _delta(piece) for piece in pieces)

    def end(self) -> bytes:
        generated = self._relay.finish()
        return sse_event(answer_body(generated, with_ttft=True), event="done")


def _delta(text: str) -> bytes:
    # The frame around the text is fixed: only the text needs encoding.
    return _DELTA + orjson.dumps(text) + b"}\n\n"


def _error_event(error: GatewayError) -> bytes:
    return sse_event(error_body(error, openai=False), event="error")


ROUTE = HotRoute(
    path="/generate",
    handler=generate,
    summary="Send `prompt` to `model`; answer with the text, token usage and latency.",
    tags=("generate",),
    request_model=GenerateRequest,
    response_model=GenerateResponse,
    error_model=ErrorResponse,
    success="The answer; with `?stream=true`, Server-Sent Events: `data: "
    '{"delta": "..."}` per piece of text, then `event: done` with this same JSON '
    "(plus `ttft_seconds`), or `event: error` with the error shape.",
    query=(QueryFlag("stream", "Answer as Server-Sent Events."),),
    errors={
        400: "Invalid JSON, or the upstream rejected the request (e.g. unknown model)",
        401: "The upstream rejected the gateway's API key",
        402: "The upstream account is out of credits",
        404: "The upstream has no endpoint for this model",
        405: "Only POST is served here",
        422: "The request body does not validate",
        429: "Rate limited upstream beyond the retry budget (see Retry-After)",
        502: "The upstream failed or answered with an error",
        504: "The upstream timed out",
    },
)
