"""Server-Sent Events out: framing, the response class, and the after-the-200 error rule.

Both streaming routes (`/generate?stream=true`, `/v1/chat/completions`) use these, so they
close upstreams, report failures and log outcomes the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from llm_gateway.context import request_context
from llm_gateway.errors import GatewayError, InternalError, UpstreamError

logger = logging.getLogger("llm_gateway.errors")

SSE_KEEPALIVE = b": keep-alive\n\n"


def sse_event(data: Any, *, event: str | None = None) -> bytes:
    """One SSE frame: optional `event:` line, one `data:` line of JSON, blank line."""
    payload = b"data: " + orjson.dumps(data) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + payload if event else payload


async def guard_stream(
    frames: AsyncIterator[bytes], render_error: Callable[[GatewayError], bytes]
) -> AsyncIterator[bytes]:
    """Forward `frames`. Once the 200 is out the status cannot change, so a failure becomes
    one last frame (`render_error`) and the stream ends; the outcome goes to the access log
    (`stream_error=`), upstream failures to the error log without a traceback."""
    ctx = request_context()
    try:
        async for frame in frames:
            yield frame
    except asyncio.CancelledError:
        if ctx:
            ctx.stream_error = "client_disconnected"
        raise
    except Exception as exc:
        if isinstance(exc, UpstreamError):
            logger.error("upstream failed mid-stream: %s (%s)", exc.message, exc.code)
            error: GatewayError = exc
        else:
            logger.exception("error while streaming")
            error = (
                exc
                if isinstance(exc, GatewayError)
                else InternalError(
                    "Internal error in the gateway during the stream; it has been logged."
                )
            )
        if ctx:
            ctx.stream_error = error.code
        yield render_error(error)


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` with the headers that stop proxies from buffering it.

    Each frame goes out as its own ASGI message (uvicorn writes it at once), from the request's
    own task: Starlette's `StreamingResponse` streams from a second task in an anyio task group
    while the first listens for the disconnect, which costs a task hand-off before the first
    frame (time to first token) and the group's set-up on every stream. Here the app's
    `CancelOnDisconnect` middleware listens instead and cancels the request when its client
    goes. `on_close` (closing the upstream stream, which cuts its connection if unfinished)
    runs however the response ends.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        headers: Mapping[str, str],
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.stream_response(send)
        finally:
            await self._on_close()
