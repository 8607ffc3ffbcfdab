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
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llm_gateway.context import request_context
from llm_gateway.errors import GatewayError, InternalError, UpstreamError

logger = logging.getLogger("llm_gateway.errors")

SSE_KEEPALIVE = b": keep-alive\n\n"

# Every event stream's headers: no caching, and no buffering by proxies (nginx's header).
_SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


def sse_event(data: Any, *, event: str | None = None) -> bytes:
    """One SSE frame: optional `event:` line, one `data:` line of JSON, blank line."""
    payload = b"data: " + orjson.dumps(data) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + payload if event else payload


def _failure_frame(exc: Exception, render_error: Callable[[GatewayError], bytes]) -> bytes:
    """The last frame of a stream whose frames failed after the 200: the error, rendered, and
    its code in the access log (`stream_error=`); upstream failures go to the error log
    without a traceback."""
    if isinstance(exc, UpstreamError):
        logger.error("upstream failed mid-stream: %s (%s)", exc.message, exc.code)
        error: GatewayError = exc
    else:
        logger.exception("error while streaming")
        message = "Internal error in the gateway during the stream; it has been logged."
        error = exc if isinstance(exc, GatewayError) else InternalError(message)
    ctx = request_context()
    if ctx:
        ctx.stream_error = error.code
    return render_error(error)


class EventStreamResponse(Response):
    """`text/event-stream` with the headers that stop proxies from buffering it.

    Each frame goes out as its own ASGI message (uvicorn writes it at once), from the request's
    own task: Starlette's `StreamingResponse` streams from a second task in an anyio task group
    while the first listens for the disconnect, which costs a task hand-off before the first
    frame (time to first token) and the group's set-up on every stream. Here the app's
    `CancelOnDisconnect` middleware cancels the request when its client goes.

    `items` are the frames themselves (bytes), or with `render`, what frames are made of (a
    route's own events, rendered here rather than by a generator of its own around them: one
    hop less for every event, one generator frame less held by every open stream); `end`, if
    given, renders one last frame once `items` are exhausted. An empty frame is not sent.

    Once the 200 is out its status cannot change, so a failure of `items`, `render` or `end`
    becomes one last frame (`render_error`) and the stream ends; the outcome goes to the access
    log (`stream_error=`, `client_disconnected` when the request is cancelled). `on_close`
    (closing the upstream stream, which cuts its connection if unfinished) runs however the
    response ends. The rule lives in the response's own loop, for the same reason.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        items: AsyncIterator[Any],
        *,
        render: Callable[[Any], bytes] | None = None,
        end: Callable[[], bytes] | None = None,
        render_error: Callable[[GatewayError], bytes],
        headers: Mapping[str, str],
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        # Not Starlette's header building: the headers are the same for every stream but
        # what the route adds, and each open stream holds its list for as long as it lasts.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            *_SSE_HEADERS,
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        self._items = items
        self._render = render
        self._end = end
        self._render_error = render_error
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        items, render = self._items, self._render
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            last = False
            while not last:
                try:
                    try:
                        item = await anext(items)
                        frame: bytes = item if render is None else render(item)
                    except StopAsyncIteration:
                        last = True
                        frame = b"" if self._end is None else self._end()
                except Exception as exc:  # the frames failed, not the sending
                    last = True
                    frame = _failure_frame(exc, self._render_error)
                if frame:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            ctx = request_context()
            if ctx:
                ctx.stream_error = "client_disconnected"
            raise
        finally:
            await self._on_close()
