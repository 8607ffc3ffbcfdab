"""OpenAI-compatible routes under `/v1`: point any OpenAI SDK at `<gateway>/v1`.

`/v1/chat/completions` (a hot route, `hot.py`) is a faithful passthrough: the client's body
bytes go upstream as sent and the upstream's answer comes back verbatim (the JSON bytes, or each
SSE `data:` line), with the gateway's retries, timeouts, request ids and logging around it.
Errors use OpenAI's shape (the renderer picks it for every path under `/v1/`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response
from starlette.types import Scope

from llm_gateway.api.deps import RuntimeDep
from llm_gateway.api.hot import HotRoute, require_json
from llm_gateway.api.responses import json_response
from llm_gateway.api.streaming import EventStreamResponse, sse_event
from llm_gateway.context import record_attempts
from llm_gateway.errors import GatewayError, ModelNotFound
from llm_gateway.passthrough import check_chat_request
from llm_gateway.rendering import error_body
from llm_gateway.runtime import Runtime
from llm_gateway.schemas.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    OpenAIErrorResponse,
    OpenAIModel,
    OpenAIModelList,
)
from llm_gateway.upstream.catalog import ModelInfo

router = APIRouter(prefix="/v1", tags=["openai"])


def _model(m: ModelInfo) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created or 0, "owned_by": _vendor(m.id)}


def _vendor(model_id: str) -> str:
    # OpenRouter ids are `vendor/model` (aliases start with `~`); other upstreams may use bare ids.
    vendor, slash, _ = model_id.partition("/")
    vendor = vendor.lstrip("~")
    return vendor if slash and vendor else "unknown"


@router.get(
    "/models",
    response_model=OpenAIModelList,
    responses={502: {"model": OpenAIErrorResponse, "description": "Upstream failed, no cache"}},
)
async def list_models(runtime: RuntimeDep) -> Response:
    """The upstream's models in OpenAI's list shape, from the same cache as `/models`."""
    models = await runtime.catalog.models()
    return json_response({"object": "list", "data": [_model(m) for m in models]})


@router.get(
    "/models/{model_id:path}",
    response_model=OpenAIModel,
    responses={
        404: {"model": OpenAIErrorResponse, "description": "No such model upstream"},
        502: {"model": OpenAIErrorResponse, "description": "Upstream failed, no cache"},
    },
)
async def retrieve_model(runtime: RuntimeDep, model_id: str) -> Response:
    """One model (the OpenAI SDK's `models.retrieve`), from the same cache as `/models`."""
    for m in await runtime.catalog.models():
        if m.id == model_id:
            return json_response(_model(m))
    raise ModelNotFound(
        f"The model {model_id!r} does not exist upstream; GET /v1/models lists them.",
        param="model",
    )


async def chat_completions(runtime: Runtime, body: bytes, scope: Scope) -> Response:
    """OpenAI Chat Completions, passed through to the upstream (OpenRouter extras included)."""
    if body.strip():  # an empty body has a better message of its own
        require_json(scope)
    settings = runtime.settings
    payload = check_chat_request(
        body,
        max_tokens_limit=settings.max_tokens_limit,
        max_prompt_chars=settings.max_prompt_chars,
    )
    if payload.get("stream") is True:
        # Pre-flight: errors up to the first upstream event are raised here, as real statuses.
        upstream = await runtime.client.stream(body)
        record_attempts(upstream.attempts)
        return EventStreamResponse(
            upstream.forward(),
            render_error=_error_event,
            headers=_headers(upstream.attempts, upstream.generation_id),
            on_close=upstream.aclose,
        )
    reply = await runtime.client.complete(body)
    record_attempts(reply.attempts)
    # The upstream's own bytes: nothing OpenRouter adds is lost to a re-serialisation.
    return json_response(reply.raw, headers=_headers(reply.attempts, reply.generation_id))


def _headers(attempts: int, generation_id: str | None) -> dict[str, str]:
    headers = {"X-Upstream-Attempts": str(attempts)}
    if generation_id:
        headers["X-Generation-Id"] = generation_id
    return headers


def _error_event(error: GatewayError) -> bytes:
    # OpenRouter's in-band form: a `data:` event with a top-level `error`, then the end.
    return sse_event(error_body(error, openai=True))


CHAT_ROUTE = HotRoute(
    path="/v1/chat/completions",
    handler=chat_completions,
    summary="OpenAI Chat Completions, passed through to the upstream (OpenRouter extras included).",
    tags=("openai",),
    request_model=ChatCompletionRequest,
    response_model=ChatCompletion,
    error_model=OpenAIErrorResponse,
    success="The upstream's `chat.completion`, byte for byte; with "
    '`"stream": true`, Server-Sent Events: each upstream `data:` line as it arrives, '
    "the upstream's comments (keep-alives) as they came, then `data: [DONE]`. A failure "
    'after the first event is one last event `data: {"error": {...}}` (OpenAI SDKs raise '
    "`APIError`), with no [DONE].",
    errors={
        400: "Invalid body (not JSON, no `model` or `messages`, `max_tokens` over the limit), "
        "or the upstream rejected the request (e.g. unknown model)",
        401: "The upstream rejected the gateway's API key",
        402: "The upstream account is out of credits",
        403: "The upstream refused the request (moderation, permissions)",
        404: "The upstream has no endpoint for this model",
        405: "Only POST is served here",
        429: "Rate limited upstream beyond the retry budget (see Retry-After)",
        502: "The upstream failed or answered with an error",
        503: "The upstream is unavailable",
        504: "The upstream timed out",
    },
)
