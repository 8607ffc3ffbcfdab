"""Errors on the wire: the one renderer every failure goes through.

The app's exception handlers, the hot-route dispatcher, the raw-ASGI middleware (inbound keys,
body limit, the last-resort 500) and the streaming routes (their in-band error events) all
render here, so an error reads the same whichever layer answered it. The shape follows who is
asking: OpenAI's `{"error": {"message", "type", "param", "code"}}` under `/v1/`, so OpenAI SDKs
raise their usual classes; the gateway's own `{"error": {"code", "message", "status",
"request_id"}}` everywhere else.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Send

from llm_gateway.context import request_context
from llm_gateway.errors import ClientError, GatewayError

# OpenAI's `error.type` for a status, so OpenAI SDKs raise their usual classes.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class CarriedError(HTTPException):
    """A gateway error raised from inside the ASGI `receive` (the body limit): FastAPI turns
    any other exception from reading a body into a 400, but lets an HTTPException through to
    the handlers, which unwrap `error`."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.status, error.message, error.headers())
        self.error = error


def openai_shape(path: str) -> bool:
    """Whether a client of `path` (the routing path, without any root path) expects OpenAI's
    error shape."""
    return path.startswith("/v1/")


def error_body(error: GatewayError, *, openai: bool) -> dict[str, Any]:
    """The error as the JSON object a client gets, in the shape its API uses."""
    if openai:
        kind = _OPENAI_TYPES.get(
            error.status, "api_error" if error.status >= 500 else "invalid_request_error"
        )
        param = error.param if isinstance(error, ClientError) else None
        return {
            "error": {"message": error.message, "type": kind, "param": param, "code": error.code}
        }
    ctx = request_context()
    return {
        "error": {
            "code": error.code,
            "message": error.message,
            "status": error.status,
            "request_id": ctx.request_id if ctx is not None else None,
        }
    }


def error_response(error: GatewayError, *, path: str) -> Response:
    """The whole answer for `error`: status, its headers, the body in the right shape."""
    return Response(
        orjson.dumps(error_body(error, openai=openai_shape(path))),
        status_code=error.status,
        headers=_headers(error),
        media_type="application/json",
    )


async def send_error(send: Send, error: GatewayError, *, path: str) -> None:
    """`error` sent as a complete response, for middleware that answer instead of the app."""
    body = orjson.dumps(error_body(error, openai=openai_shape(path)))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in _headers(error).items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _headers(error: GatewayError) -> dict[str, str]:
    headers = error.headers()
    if error.attempts:
        headers["X-Upstream-Attempts"] = str(error.attempts)
    return headers
