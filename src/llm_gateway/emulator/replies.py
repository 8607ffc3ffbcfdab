"""Plain JSON replies that complete their request record once sent, and bearer-token parsing."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llm_gateway.emulator.errors import ErrorReply
from llm_gateway.emulator.state import RequestRecord


class RecordedResponse(Response):
    """A JSON response that stamps its record with its status, and as completed when sent.

    The record is completed just before the body goes out, so a client that has read the
    response never finds its record still open.
    """

    media_type = "application/json"

    def __init__(
        self,
        record: RequestRecord | None,
        content: bytes,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, status_code=status, headers=headers)
        self._record = record
        if record is not None:
            record.status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Complete the record, then send the response."""
        if self._record is not None:
            self._record.finished_at = time.monotonic()
            self._record.completed = True
        await super().__call__(scope, receive, send)


def json_reply(record: RequestRecord | None, data: Any, *, status: int = 200) -> RecordedResponse:
    """`data` encoded with orjson (key order kept)."""
    return RecordedResponse(record, orjson.dumps(data), status=status)


def error_reply(record: RequestRecord | None, error: ErrorReply) -> RecordedResponse:
    """An OpenRouter error body with its status and headers."""
    return RecordedResponse(
        record, orjson.dumps(error.body), status=error.status, headers=error.headers
    )


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when absent or empty."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
