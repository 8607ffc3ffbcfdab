"""`BodyLimitMiddleware` with fake `receive`/`send`: a declared size over the limit is refused
before a byte is read; a body without one is refused the moment it passes the limit."""

from __future__ import annotations

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from llm_gateway.errors import PayloadTooLarge
from llm_gateway.limits import BodyLimitMiddleware
from llm_gateway.rendering import CarriedError

pytestmark = pytest.mark.anyio


def _scope(*headers: tuple[bytes, bytes], path: str = "/generate") -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": list(headers)}


async def test_a_declared_size_over_the_limit_is_refused_unread() -> None:
    sent: list[Message] = []
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(_scope: Scope, _receive: Receive, _send: Send) -> None:
        raise AssertionError("the app must not run")

    limit = BodyLimitMiddleware(app, max_bytes=10)
    await limit(_scope((b"content-length", b"11"), path="/v1/chat/completions"), receive, send)
    assert reads == 0
    assert sent[0]["status"] == 413
    error = orjson.loads(sent[1]["body"])["error"]
    assert error["code"] == "payload_too_large" and error["type"] == "invalid_request_error"


async def test_a_chunked_body_is_refused_when_it_passes_the_limit() -> None:
    chunks = [b"a" * 6, b"b" * 6]

    async def receive() -> Message:
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    async def send(_message: Message) -> None:
        raise AssertionError("the middleware does not answer for the app")

    got: list[bytes] = []

    async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
        got.append((await receive())["body"])
        await receive()

    with pytest.raises(CarriedError) as refused:
        await BodyLimitMiddleware(app, max_bytes=10)(_scope(), receive, send)
    assert got == [b"a" * 6]  # the first piece was within the limit
    assert isinstance(refused.value.error, PayloadTooLarge)
    assert refused.value.status_code == 413


async def test_a_body_within_the_limit_passes_untouched() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"0123456789", "more_body": False}

    async def send(_message: Message) -> None:
        pass

    got: list[Message] = []
    receives: list[Receive] = []

    async def app(_scope: Scope, app_receive: Receive, _send: Send) -> None:
        receives.append(app_receive)
        got.append(await app_receive())

    await BodyLimitMiddleware(app, max_bytes=10)(_scope((b"content-length", b"10")), receive, send)
    assert got[0]["body"] == b"0123456789"
    # The framing ends the body at its declared length: the server's own receive, unwrapped.
    assert receives == [receive]


async def test_a_chunked_body_that_also_declares_a_length_is_still_counted() -> None:
    chunks = [b"a" * 6, b"b" * 6]

    async def receive() -> Message:
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    async def send(_message: Message) -> None:
        raise AssertionError("the middleware does not answer for the app")

    async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
        await receive()
        await receive()

    scope = _scope((b"content-length", b"5"), (b"transfer-encoding", b"chunked"))
    with pytest.raises(CarriedError):
        await BodyLimitMiddleware(app, max_bytes=10)(scope, receive, send)
