"""Raw-ASGI helpers for middleware that must answer before (or instead of) the app."""

from __future__ import annotations

import orjson
from starlette.types import Scope, Send

from llm_gateway.errors import GatewayError


def route_path(scope: Scope) -> str:
    """The path the app routes on: the request's path without the `root_path` prefix a proxy
    mount adds (Starlette's rule), so `/v1/...` and the public paths are recognised there too."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def send_error(
    send: Send,
    error: GatewayError,
    *,
    path: str,
    request_id: str | None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Send `error` as a complete JSON response, in OpenAI's shape under `/v1/`."""
    body = orjson.dumps(error.body_for(path, request_id))
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
