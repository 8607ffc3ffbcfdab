"""`POST /generate`: a prompt in, the model's answer out, as JSON or as Server-Sent Events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query
from starlette.responses import Response
from starlette.types import Scope

from llm_gateway.api.deps import RuntimeDep
from llm_gateway.api.direct import parse_body, query_flag
from llm_gateway.api.responses import json_response
from llm_gateway.api.streaming import SSE_KEEPALIVE, EventStreamResponse, guard_stream, sse_event
from llm_gateway.context import record_attempts, request_context
from llm_gateway.errors import GatewayError, InvalidRequest
from llm_gateway.generation import Delta, Done, Waiting, build_payload, generate, relay
from llm_gateway.runtime import Runtime
from llm_gateway.schemas.errors import ErrorResponse
from llm_gateway.schemas.generate import GenerateRequest, GenerateResponse
from llm_gateway.upstream.stream import ChatStream

router = APIRouter(tags=["generate"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid JSON, or the upstream rejected the request (e.g. unknown model)",
        401: "The upstream rejected the gateway's API key",
        402: "The upstream account is out of credits",
        404: "The upstream has no endpoint for this model",
        422: "The request body does not validate",
        429: "Rate limited upstream beyond the retry budget (see Retry-After)",
        502: "The upstream failed or answered with an error",
        504: "The upstream timed out",
    }.items()
}


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        200: {
            "description": "The answer; with `?stream=true`, Server-Sent Events: `data: "
            '{"delta": "..."}` per piece of text, then `event: done` with this same JSON '
            "(plus `ttft_seconds`), or `event: error` with the error shape.",
            "content": {"text/event-stream": {}},
        },
        **_ERRORS,
    },
)
async def generate_text(
    body: GenerateRequest,
    runtime: RuntimeDep,
    stream: bool = Query(default=False, description="Answer as Server-Sent Events."),
) -> Response:
    """Send `prompt` to `model`; answer with the text, token usage and latency."""
    return await answer(runtime, body, stream=stream)


async def serve_generate(runtime: Runtime, raw: bytes, scope: Scope) -> Response:
    """The same route for `api/direct.py`: the body and `?stream` parsed and checked here."""
    body = parse_body(GenerateRequest, raw, scope)
    return await answer(runtime, body, stream=query_flag(scope, "stream"))


async def answer(runtime: Runtime, body: GenerateRequest, *, stream: bool) -> Response:
    """The answer to a valid request: JSON, or a stream with `?stream=true` or `"stream": true`."""
    started = time.perf_counter()
    settings = runtime.settings
    max_tokens = body.max_tokens or settings.max_tokens_default
    if max_tokens > settings.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens must be at most {settings.max_tokens_limit} (got {max_tokens})"
        )
    chars = len(body.prompt) + len(body.system or "")
    if chars > settings.max_prompt_chars:
        raise InvalidRequest(
            f"prompt (with system) is {chars} characters; the limit is "
            f"{settings.max_prompt_chars} (GATEWAY_MAX_PROMPT_CHARS)"
        )
    payload = build_payload(body, max_tokens=max_tokens)
    if stream or body.stream:
        upstream = await runtime.client.stream(payload)
        record_attempts(upstream.attempts)
        return EventStreamResponse(
            guard_stream(_frames(upstream, started), _error_event),
            headers={"X-Upstream-Attempts": str(upstream.attempts)},
            on_close=upstream.aclose,
        )
    result = await generate(runtime.client, payload, started=started)
    record_attempts(result.attempts)
    return json_response(
        result.response.model_dump(mode="json", exclude={"ttft_seconds"}),
        headers={"X-Upstream-Attempts": str(result.attempts)},
    )


async def _frames(upstream: ChatStream, started: float) -> AsyncIterator[bytes]:
    """`data: {"delta"}` per piece of text, keep-alives, then `event: done`."""
    async for item in relay(upstream, started=started):
        if isinstance(item, Delta):
            yield sse_event({"delta": item.text})
        elif isinstance(item, Waiting):
            yield SSE_KEEPALIVE
        elif isinstance(item, Done):
            yield sse_event(item.response.model_dump(mode="json"), event="done")


def _error_event(error: GatewayError) -> bytes:
    ctx = request_context()
    return sse_event(error.to_body(ctx.request_id if ctx else None), event="error")
