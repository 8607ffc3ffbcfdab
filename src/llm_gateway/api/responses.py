"""Responses: fast JSON, and the error shape (the gateway's own, or OpenAI's under `/v1/`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response

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


def error_response(error: GatewayError, *, path: str = "") -> Response:
    """The error answer: OpenAI's shape under `/v1/`, the gateway's own shape elsewhere."""
    ctx = request_context()
    body = error.body_for(path, ctx.request_id if ctx else None)
    return json_response(body, status=error.status, headers=error.headers())
