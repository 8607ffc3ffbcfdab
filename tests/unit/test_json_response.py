"""`json_response` with a fake `send`: what Starlette's `Response` would send for the same
JSON (status, content type, length, the route's headers), built without it."""

from __future__ import annotations

import orjson
import pytest
from starlette.responses import Response
from starlette.types import Message

from llm_gateway.api.responses import json_response

pytestmark = pytest.mark.anyio


async def _sent(response: Response) -> list[Message]:
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    async def receive() -> Message:
        raise AssertionError("a complete answer reads nothing")

    await response({"type": "http"}, receive, send)
    return messages


async def test_the_answer_matches_starlettes_for_the_same_json() -> None:
    content = {"response": "héllo", "tokens_used": 3}
    headers = {"X-Upstream-Attempts": "2", "X-Generation-Id": "gen-1"}
    ours = await _sent(json_response(content, status=202, headers=headers))
    theirs = await _sent(
        Response(
            orjson.dumps(content), status_code=202, headers=headers, media_type="application/json"
        )
    )
    assert ours[0]["status"] == theirs[0]["status"] == 202
    assert sorted(ours[0]["headers"]) == sorted(theirs[0]["headers"])
    assert ours[1:] == theirs[1:] == [{"type": "http.response.body", "body": orjson.dumps(content)}]


async def test_bytes_are_sent_as_they_are() -> None:
    raw = b'{"id":"gen-1",  "choices":[]}'  # an upstream's own spacing kept
    start, body = await _sent(json_response(raw))
    assert (b"content-length", str(len(raw)).encode()) in start["headers"]
    assert (b"content-type", b"application/json") in start["headers"]
    assert body["body"] == raw
