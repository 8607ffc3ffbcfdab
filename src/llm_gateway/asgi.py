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
    data = error.to_openai_body() if path.startswith("/v1/") else error.to_body(request_id)
    body = orjson.dumps(data)
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
