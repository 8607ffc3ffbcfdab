"""`ChatStream` on a scripted response: how it reads events split across reads, what `prime`
raises before the 200, and what `next` raises after it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from llm_gateway.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnreachable
from llm_gateway.redaction import Redactor
from llm_gateway.upstream.deadlines import Deadlines
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
    return ChatStream(response, idle=Deadlines(idle), started_ns=0)


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
        await stream.prime(Deadlines(1.0))


async def test_prime_returns_on_keepalives_when_the_window_passes() -> None:
    stream = _stream(Response(b": OPENROUTER PROCESSING\n\n", None))
    await stream.prime(Deadlines(0.01))  # committed: the caller starts forwarding keep-alives
    assert await stream.next() == KeepAlive(" OPENROUTER PROCESSING")


async def test_after_the_first_event_errors_are_raised_by_next() -> None:
    finish_error = b'data: {"choices":[{"delta":{},"finish_reason":"error"}]}\n\n'
    stream = _stream(Response(CHUNK, finish_error))
    await stream.prime(Deadlines(1.0))
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


async def test_forward_knows_a_finish_however_it_is_spaced_and_not_from_a_null() -> None:
    spaced = b'data: {"choices":[{"delta":{},"finish_reason" :  "length"}]}\n\n'
    stream = _stream(Response(CHUNK + spaced))  # no [DONE]: the finish alone ends it cleanly
    assert b"".join(await _forwarded(stream)).endswith(DONE)
    null_only = b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\n'
    stream = _stream(Response(null_only + null_only))
    with pytest.raises(UpstreamUnreachable, match="before it finished"):
        await _forwarded(stream)


async def test_parsed_gives_each_forwarded_events_json_and_none_for_a_comment() -> None:
    comment = b": OPENROUTER PROCESSING\n\n"
    stream = _stream(Response(CHUNK, comment + CHUNK + FINISH + DONE))
    parsed = [chunk for block in await _forwarded(stream) for chunk in stream.parsed(block)]
    hi = {"choices": [{"delta": {"content": "hi"}}]}
    assert parsed == [hi, None, hi, {"choices": [{"delta": {}, "finish_reason": "stop"}]}]
    with pytest.raises(UpstreamBadResponse, match="not JSON: 'nope'"):
        stream.parsed(b"data: nope\n\n")


async def test_parsed_splits_plain_events_and_decodes_any_other_block_whole() -> None:
    stream = _stream(Response(CHUNK))
    hi = {"choices": [{"delta": {"content": "hi"}}]}
    finish = {"choices": [{"delta": {}, "finish_reason": "stop"}]}
    assert stream.parsed(CHUNK + FINISH + DONE) == [hi, finish]
    # An event's data over two lines, or CR line ends: the SSE decoder's rules, not a split.
    two_lines = b'data: {"choices":\ndata: []}\n\n'
    assert stream.parsed(CHUNK + two_lines) == [hi, {"choices": []}]
    assert stream.parsed((CHUNK + FINISH).replace(b"\n", b"\r\n")) == [hi, finish]


async def test_only_a_line_of_its_own_ends_the_stream_as_done() -> None:
    text_done = b'data: {"choices":[{"delta":{"content":"data: [DONE]"}}]}\n\n'
    reads = (CHUNK + text_done, CHUNK, FINISH + DONE)
    stream = _stream(Response(*reads))
    assert b"".join(await _forwarded(stream)) == b"".join(reads)
    assert stream.finished


async def test_silence_longer_than_the_idle_timeout_is_a_timeout() -> None:
    stream = _stream(Response(CHUNK, None), idle=0.01)
    assert isinstance(await stream.next(), Chunk)
    with pytest.raises(UpstreamTimeout, match="sent nothing"):
        await stream.next()


async def _forwarded(stream: ChatStream) -> list[bytes]:
    return [block async for block in stream.forward()]


async def test_forward_passes_the_upstreams_bytes_through_a_read_at_a_time() -> None:
    comment = b": OPENROUTER PROCESSING\n\n"
    whole = comment + CHUNK + CHUNK + FINISH + DONE
    stream = _stream(Response(whole[:40], whole[40:]))
    blocks = await _forwarded(stream)
    assert b"".join(blocks) == whole  # byte for byte, comments as they came
    assert stream.finished


async def test_forward_stops_at_an_error_after_the_events_before_it() -> None:
    error = b'data: {"error":{"message":"Provider returned error","code":502}}\n\n'
    stream = _stream(Response(CHUNK + CHUNK + error + DONE))
    blocks: list[bytes] = []
    with pytest.raises(UpstreamBadResponse, match="Provider returned error"):
        async for block in stream.forward():
            blocks.append(block)
    assert b"".join(blocks) == CHUNK + CHUNK


async def test_forward_ends_a_finished_stream_without_done_with_one() -> None:
    stream = _stream(Response(CHUNK, FINISH))
    assert b"".join(await _forwarded(stream)) == CHUNK + FINISH + DONE


async def test_forward_reports_a_stream_cut_before_its_finish() -> None:
    stream = _stream(Response(CHUNK))
    with pytest.raises(UpstreamUnreachable):
        await _forwarded(stream)


async def test_forward_scrubs_secrets_from_the_bytes() -> None:
    leak = b'data: {"choices":[{"delta":{"content":"key sk-secret-1"}}]}\n\n'
    stream = ChatStream(
        Response(leak, FINISH, DONE),
        idle=Deadlines(5),
        started_ns=0,
        redact=Redactor(["sk-secret-1"]),
    )
    forwarded = b"".join(await _forwarded(stream))
    assert b"sk-secret-1" not in forwarded and b"key ***" in forwarded


async def test_forward_handles_crlf_line_ends() -> None:
    crlf = CHUNK.replace(b"\n", b"\r\n") + FINISH.replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n"
    stream = _stream(Response(crlf[:30], crlf[30:]))
    assert b"".join(await _forwarded(stream)) == crlf
    assert stream.finished
