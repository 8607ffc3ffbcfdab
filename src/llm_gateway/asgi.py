"""Raw-ASGI helpers for middleware that must answer before (or instead of) the app."""

from __future__ import annotations

import orjson
from starlette.types import Send

from llm_gateway.errors import GatewayError


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
