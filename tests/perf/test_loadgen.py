"""The load generator's client and stream check, against real loopback servers: the perf
upstream itself, and a small server that answers with the bytes a test gives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from h1client import Channel
from loadgen import Spec, StreamResult, one_request, one_stream, read_spec
from upstream import Connection, Server

pytestmark = pytest.mark.anyio

CHAT = "/api/v1/chat/completions"


def _spec(port: int, *, kind: str = "chat", stream: bool = True, timeout: float = 5.0) -> Spec:
    body: dict[str, Any] = {"model": "perf/paced-3-5", "messages": [], "stream": stream}
    raw = {"url": f"http://127.0.0.1:{port}{CHAT}", "body": body, "kind": kind, "expect": 3}
    return read_spec({**raw, "stream": stream}, {"request_timeout": timeout})


async def stream_once(spec: Spec) -> StreamResult:
    channel = Channel(spec.host, spec.port)
    try:
        return await one_stream(channel, spec)
    finally:
        channel.close()


@asynccontextmanager
async def perf_upstream() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    state = Server(default_chunks=3)
    server = await loop.create_server(lambda: Connection(state), "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


CLOSE = b"<close>"
HANG = b"<hang>"


class Scripted:
    """Answers every request on a connection with the next of `answers`: a list of pieces, each
    written (and drained) on its own, so a test decides how the bytes are cut into reads.
    `CLOSE` as a piece closes the connection there, `HANG` waits without answering."""

    def __init__(self, answers: Sequence[Sequence[bytes]]) -> None:
        self._answers = list(answers)
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self._answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                for i, piece in enumerate(self._answers.pop(0)):
                    if piece is CLOSE:
                        return
                    if piece is HANG:
                        await reader.read()  # until the client gives up and closes
                        return
                    if i:
                        await asyncio.sleep(0.005)  # each piece a read of its own
                    writer.write(piece)
                    await writer.drain()
        except asyncio.IncompleteReadError:
            return
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        async with server:
            yield server.sockets[0].getsockname()[1]


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
END = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def content(i: int) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"t%d "}}]}\n\n' % i


DONE = b"data: [DONE]\n\n"


async def test_a_paced_stream_from_the_perf_upstream_is_complete_and_timed() -> None:
    async with perf_upstream() as port:
        result = await stream_once(_spec(port))
    assert (result.ok, result.error, result.contents) == (True, None, 3)
    assert result.ttft is not None and result.first_at is not None
    assert len(result.gaps) == 2 and all(gap > 0 for gap in result.gaps)
    assert result.started < result.first_at <= result.ended_at


async def test_streams_and_answers_on_one_channel_reuse_its_connection() -> None:
    stream = [STREAM_HEAD, *(chunk(content(i)) for i in range(3)), chunk(DONE) + END]
    whole = [b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n", b'{"a": 1}']
    server = Scripted([stream, whole, stream])
    async with server.running() as port:
        channel = Channel("127.0.0.1", port)
        first = await one_stream(channel, _spec(port))
        answer = await one_request(channel, _spec(port, stream=False))
        second = await one_stream(channel, _spec(port))
        channel.close()
    assert (first.ok, answer, second.ok) == (True, None, True)
    assert server.connections == 1


async def test_events_cut_mid_line_and_crlf_line_ends_are_read_whole() -> None:
    body = b"".join(content(i).replace(b"\n", b"\r\n") for i in range(3)) + b": keep-alive\r\n\r\n"
    body += DONE
    cut = [body[i : i + 7] for i in range(0, len(body), 7)]  # every read ends mid-line
    server = Scripted([[STREAM_HEAD, *(chunk(piece) for piece in cut), END]])
    async with server.running() as port:
        result = await stream_once(_spec(port))
    assert (result.ok, result.contents, len(result.gaps)) == (True, 3, 2)


async def test_a_generate_stream_is_read_by_its_named_events() -> None:
    events = [b'event: token\ndata: {"delta":"t%d "}\n\n' % i for i in range(3)]
    done = b'event: done\ndata: {"text":"t0 t1 t2 ","finish_reason":"stop"}\n\n'
    server = Scripted([[STREAM_HEAD, *(chunk(e) for e in events), chunk(done) + END]])
    async with server.running() as port:
        result = await stream_once(_spec(port, kind="generate"))
    assert (result.ok, result.contents) == (True, 3)


@pytest.mark.parametrize(
    ("pieces", "error"),
    [
        ([content(0), content(2), DONE], "reordered_or_lost"),
        ([content(0), b'data: {"error":{"code":502,"message":"x"}}\n\n'], "inband_error"),
        ([content(0), content(1), content(2)], "no_end"),
        ([content(0), content(1), DONE], "lost_events"),
        ([content(0), b"data: {not json\n\n", DONE], "JSONDecodeError"),
    ],
    ids=["reordered", "in-band error", "no end", "lost", "not json"],
)
async def test_each_wrong_stream_is_named(pieces: list[bytes], error: str) -> None:
    server = Scripted([[STREAM_HEAD, *(chunk(p) for p in pieces), END]])
    async with server.running() as port:
        result = await stream_once(_spec(port))
    assert (result.ok, result.error) == (False, error)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ([STREAM_HEAD, chunk(content(0)), CLOSE], "ServerDisconnected"),
        ([b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}"], "http_503"),
        ([b"HTTP/1.1 200 OK\r\n", b"\x00garbage\r\n\r\n"], "HttpParserError"),
        ([HANG], "TimeoutError"),
    ],
    ids=["closed mid-stream", "error status", "not HTTP", "no answer"],
)
async def test_each_failed_exchange_is_named(answer: list[bytes], error: str) -> None:
    server = Scripted([answer])
    async with server.running() as port:
        result = await stream_once(_spec(port, timeout=0.3))
    assert (result.ok, result.error) == (False, error)


async def test_a_whole_answer_must_be_a_json_object() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    server = Scripted([[head + b"{}"], [head + b"ok"]])
    async with server.running() as port:
        channel = Channel("127.0.0.1", port)
        found = [await one_request(channel, _spec(port, stream=False)) for _ in range(2)]
        channel.close()
    assert found == [None, "bad_body"]
