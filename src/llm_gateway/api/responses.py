"""Response classes: fast JSON, the error shape, and a flushing, disconnect-aware SSE stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response, StreamingResponse

from llm_gateway.context import request_context
from llm_gateway.errors import GatewayError


def json_response(
    content: BaseModel | Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """orjson-encoded JSON (pydantic models dumped first, None fields kept)."""
    data = content.model_dump(mode="json") if isinstance(content, BaseModel) else content
    return Response(
        orjson.dumps(data), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(error: GatewayError) -> Response:
    ctx = request_context()
    return json_response(
        error.to_body(ctx.request_id if ctx else None),
        status=error.status,
        headers=error.headers(),
    )


def sse_event(data: Any, *, event: str | None = None) -> bytes:
    """One SSE frame: optional `event:` line, one `data:` line of JSON, blank line."""
    payload = b"data: " + orjson.dumps(data) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + payload if event else payload


SSE_KEEPALIVE = b": keep-alive\n\n"


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` with the headers that stop proxies from buffering it.

    Each yielded frame goes out as its own ASGI message (uvicorn writes it at once). Starlette
    cancels the body iterator when the client disconnects, so the iterator's `finally` is
    where upstream streams get closed.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], *, headers: Mapping[str, str]) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
        )
