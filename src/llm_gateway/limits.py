"""The request body limit: 413 as soon as a body is known to be too large, before it is read.

A declared `Content-Length` over the limit is refused without reading a byte; a body sent
without one (chunked) is counted as it arrives and refused the moment it passes the limit.
(How long a body may take to arrive is the server's business: `server.py`.)
(Starlette's own body-limit middleware answers in plain text from outside our middleware,
so the answer would lose the error shape, the request id and the access-log line.)
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.asgi import route_path
from llm_gateway.errors import PayloadTooLarge
from llm_gateway.rendering import CarriedError, send_error


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: a request let through gets the app's own awaitable, so this keeps
        # no frame alive for the life of the request (streams last minutes, by the thousand).
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                error = PayloadTooLarge(self._message(f"is {declared} bytes"))
                return send_error(send, error, path=route_path(scope))
            # HTTP/1.1 framing ends the body at its declared length: nothing to count, and no
            # wrapper for a stream to hold for as long as it lasts.
            return self.app(scope, receive, send)
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

        return self.app(scope, counted, send)

    def _message(self, size: str) -> str:
        return (
            f"The request body {size}; the limit is {self.max_bytes} bytes "
            "(GATEWAY_MAX_BODY_BYTES)."
        )


def _content_length(scope: Scope) -> int | None:
    """The declared body length; None when there is none, it is not a number, or the body is
    chunked (which, sent with a length too, overrides it)."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length" and declared is None:
            try:
                declared = int(value)
            except ValueError:
                return None
    return declared
