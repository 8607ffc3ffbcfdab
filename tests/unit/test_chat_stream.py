"""`ChatStream` on a scripted response: how it reads events split across reads, what `prime`
raises before the 200, and what `next` raises after it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from llm_gateway.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnreachable
from llm_gateway.upstream.stream import ChatStream, Chunk, KeepAlive

pytestmark = pytest.mark.anyio

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
FINISH = b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
DONE = b"data: [DONE]\n\n"


class Reads:
    """The response body as a script of reads: bytes, or None for "nothing comes"."""

    def __init__(self, *reads: bytes | None) -> None:
        self.reads = list(reads)

    async def readany(self) -> bytes:
        if not self.reads:
            return b""
        read = self.reads.pop(0)
        if read is None:
            await asyncio.Event().wait()  # never set: only a timeout ends this
        return read or b""


class Response:
    def __init__(self, *reads: bytes | None) -> None:
        self.content = Reads(*reads)
        self.headers: Mapping[str, str] = {"X-Generation-Id": "gen-1"}
        self.released = self.closed = False

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


def _stream(response: Response, idle: float = 5.0) -> ChatStream:
    return ChatStream(response, idle_timeout=idle, started_ns=0)


async def _items(stream: ChatStream) -> list[Chunk | KeepAlive]:
    return [item async for item in stream]


async def test_events_split_across_reads_are_put_back_together() -> None:
    whole = b": OPENROUTER PROCESSING\n\n" + CHUNK + FINISH + DONE
    response = Response(*(whole[i : i + 7] for i in range(0, len(whole), 7)))
    stream = _stream(response)
    items = await _items(stream)
    assert items[0] == KeepAlive(" OPENROUTER PROCESSING")
    chunks = [item for item in items if isinstance(item, Chunk)]
    assert [c.data["choices"][0]["delta"] for c in chunks] == [{"content": "hi"}, {}]
    assert stream.finished and stream.generation_id == "gen-1"
    await stream.aclose()
    assert response.released and not response.closed  # read to the end: reusable


async def test_prime_raises_an_error_sent_as_the_first_event() -> None:
    error = b'data: {"error":{"message":"No capacity","code":502}}\n\n'
    stream = _stream(Response(error))
    with pytest.raises(UpstreamBadResponse, match="No capacity"):
        await stream.prime(1.0)


async def test_prime_returns_on_keepalives_when_the_window_passes() -> None:
    stream = _stream(Response(b": OPENROUTER PROCESSING\n\n", None))
    await stream.prime(0.01)  # committed: the caller starts forwarding keep-alives
    assert await stream.next() == KeepAlive(" OPENROUTER PROCESSING")


async def test_after_the_first_event_errors_are_raised_by_next() -> None:
    finish_error = b'data: {"choices":[{"delta":{},"finish_reason":"error"}]}\n\n'
    stream = _stream(Response(CHUNK, finish_error))
    await stream.prime(1.0)
    assert isinstance(await stream.next(), Chunk)
    with pytest.raises(UpstreamBadResponse, match="finish_reason=error"):
        await stream.next()


async def test_garbage_is_a_bad_response() -> None:
    stream = _stream(Response(b"data: {not json\n\n"))
    with pytest.raises(UpstreamBadResponse, match="not JSON"):
        await stream.next()


async def test_an_end_before_the_finish_is_a_cut_connection() -> None:
    stream = _stream(Response(CHUNK))
    assert isinstance(await stream.next(), Chunk)
    with pytest.raises(UpstreamUnreachable, match="before it finished"):
        await stream.next()
    await stream.aclose()
    assert stream._response.closed  # type: ignore[attr-defined]  # cut, not reused


async def test_a_finish_without_done_is_a_complete_stream() -> None:
    stream = _stream(Response(CHUNK, FINISH))
    assert len(await _items(stream)) == 2
    assert stream.finished


async def test_silence_longer_than_the_idle_timeout_is_a_timeout() -> None:
    stream = _stream(Response(CHUNK, None), idle=0.01)
    assert isinstance(await stream.next(), Chunk)
    with pytest.raises(UpstreamTimeout, match="sent nothing"):
        await stream.next()
