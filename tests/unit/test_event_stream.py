"""`EventStreamResponse` with a fake `send`: frames go out one message each (none for an empty
one), an `end` frame comes last, a failure after the 200 is one last error frame, and the
upstream is closed however the response ends (finished, failed, or cancelled by a leaving
client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from starlette.types import Message, Send

from llm_gateway.api.streaming import EventStreamResponse
from llm_gateway.context import RequestContext, current_request
from llm_gateway.errors import GatewayError, UpstreamUnreachable

pytestmark = pytest.mark.anyio


class Upstream:
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def _never_receive() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _render(error: GatewayError) -> bytes:
    return b"event: error\ndata: " + error.code.encode() + b"\n\n"


async def test_each_frame_is_its_own_message_and_the_upstream_is_released() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    sent: list[Message] = []
    upstream = Upstream()

    async def send(message: Message) -> None:
        sent.append(message)

    response = EventStreamResponse(
        frames(), render_error=_render, headers={}, on_close=upstream.aclose
    )
    await response({"type": "http"}, _never_receive, send)
    assert sent[0]["type"] == "http.response.start"
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"x-accel-buffering"] == b"no"
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]
    assert upstream.closed == 1


async def _served_to_the_end(
    items: AsyncIterator[Any],
    render: Callable[[Any], bytes] | None = None,
    end: Callable[[], bytes] | None = None,
) -> tuple[list[bytes], RequestContext, Upstream]:
    """Serve `items` whole: the bodies sent after the start, the request's context, the
    upstream."""
    sent: list[Message] = []
    ctx = RequestContext("r")
    token = current_request.set(ctx)
    upstream = Upstream()

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        response = EventStreamResponse(
            items,
            render=render,
            end=end,
            render_error=_render,
            headers={},
            on_close=upstream.aclose,
        )
        await response({"type": "http"}, _never_receive, send)
    finally:
        current_request.reset(token)
    return [m.get("body", b"") for m in sent[1:]], ctx, upstream


async def test_a_failure_after_the_200_is_one_last_error_frame() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise UpstreamUnreachable("cut")

    bodies, ctx, upstream = await _served_to_the_end(frames())
    assert bodies == [b"data: 1\n\n", b"event: error\ndata: upstream_unreachable\n\n", b""]
    assert ctx.stream_error == "upstream_unreachable"
    assert upstream.closed == 1


async def test_items_are_rendered_into_frames_and_a_failing_render_ends_the_stream() -> None:
    async def numbers() -> AsyncIterator[int]:
        for n in (1, 2, 0, 3):
            yield n

    def render(n: int) -> bytes:
        return b"data: %d\n\n" % (10 // n)  # 0 cannot be rendered

    bodies, ctx, upstream = await _served_to_the_end(numbers(), render)
    assert bodies == [
        b"data: 10\n\n",
        b"data: 5\n\n",
        b"event: error\ndata: internal_error\n\n",
        b"",
    ]
    assert ctx.stream_error == "internal_error"
    assert upstream.closed == 1


async def test_empty_frames_are_not_sent_and_the_end_is_the_last_frame() -> None:
    async def words() -> AsyncIterator[str]:
        for word in ("a", "", "b"):
            yield word

    seen: list[str] = []

    def render(word: str) -> bytes:
        seen.append(word)
        return b"data: %s\n\n" % word.encode() if word else b""

    def end() -> bytes:
        return b"event: done\ndata: %d\n\n" % len(seen)

    bodies, ctx, upstream = await _served_to_the_end(words(), render, end)
    assert bodies == [b"data: a\n\n", b"data: b\n\n", b"event: done\ndata: 3\n\n", b""]
    assert ctx.stream_error is None
    assert upstream.closed == 1


async def test_a_failing_end_is_reported_like_any_failure_after_the_200() -> None:
    async def one() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"

    def end() -> bytes:
        raise UpstreamUnreachable("the answer could not be finished")

    bodies, ctx, upstream = await _served_to_the_end(one(), end=end)
    assert bodies == [b"data: 1\n\n", b"event: error\ndata: upstream_unreachable\n\n", b""]
    assert ctx.stream_error == "upstream_unreachable"
    assert upstream.closed == 1


async def _cancelled_mid_stream(
    frames: AsyncIterator[bytes], send: Send, ready: asyncio.Event
) -> tuple[RequestContext, Upstream]:
    """Serve `frames`, and cancel the request (its client left) once `ready` is set."""
    ctx = RequestContext("r")
    upstream = Upstream()

    async def serve() -> None:
        current_request.set(ctx)
        response = EventStreamResponse(
            frames, render_error=_render, headers={}, on_close=upstream.aclose
        )
        await response({"type": "http"}, _never_receive, send)

    task = asyncio.ensure_future(serve())
    await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return ctx, upstream


async def test_a_cancelled_stream_closes_its_upstream_and_says_the_client_left() -> None:
    first_sent = asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        await asyncio.Event().wait()  # the upstream is slow; the client goes meanwhile
        yield b"never"

    async def send(message: Message) -> None:
        if message.get("body"):
            first_sent.set()

    ctx, upstream = await _cancelled_mid_stream(frames(), send, first_sent)
    assert upstream.closed == 1
    assert ctx.stream_error == "client_disconnected"


async def test_a_client_that_leaves_while_a_frame_waits_to_be_sent_is_noted_too() -> None:
    async def frames() -> AsyncIterator[bytes]:
        while True:
            yield b"data: 1\n\n"

    blocked = asyncio.Event()

    async def send(message: Message) -> None:
        if message.get("body"):
            blocked.set()
            await asyncio.Event().wait()  # a slow client: the server waits for its window

    ctx, upstream = await _cancelled_mid_stream(frames(), send, blocked)
    assert upstream.closed == 1
    assert ctx.stream_error == "client_disconnected"
