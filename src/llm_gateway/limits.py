"""The request body limit: 413 as soon as a body is known to be too large, before it is read.

A declared `Content-Length` over the limit is refused without reading a byte; a body sent
without one (chunked) is counted as it arrives and refused the moment it passes the limit.
(Starlette's own body-limit middleware answers in plain text from outside our middleware,
so the answer would lose the error shape, the request id and the access-log line.)
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.asgi import route_path
from llm_gateway.errors import PayloadTooLarge
from llm_gateway.rendering import CarriedError, send_error


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            error = PayloadTooLarge(self._message(f"is {declared} bytes"))
            await send_error(send, error, path=route_path(scope))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    error = PayloadTooLarge(self._message(f"passed {self.max_bytes} bytes"))
                    raise CarriedError(error)
            return message

        await self.app(scope, counted, send)

    def _message(self, size: str) -> str:
        return (
            f"The request body {size}; the limit is {self.max_bytes} bytes "
            "(GATEWAY_MAX_BODY_BYTES)."
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
