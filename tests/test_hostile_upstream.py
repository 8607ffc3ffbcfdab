"""A broken or hostile upstream: what it sends is bounded, and no secret it echoes in new
places reaches a client or the log (found by the second review, each test failing before).

The upstream here is raw: it writes exactly what a test says, including what a framework would
refuse to send (control characters in headers, gzip bombs, events without an end).
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import orjson
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_gateway.bench.target import Target
from llm_gateway.config import Settings
from llm_gateway.emulator import Emulator
from llm_gateway.errors import UpstreamBadResponse
from llm_gateway.upstream.client import MAX_MODELS
from tests.conftest import TEST_KEY, GatewayFactory, read_log
from tests.servers import serve

pytestmark = pytest.mark.anyio

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _completion(text: str = "hi", **extra: object) -> bytes:
    body = {
        "id": "gen-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        **extra,
    }
    return orjson.dumps(body)


def _chunk(text: str) -> bytes:
    return (
        b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + b"\n\n"
    )


_FINISH = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'


def _http(status: int, body: bytes, *headers: bytes, ctype: bytes = b"application/json") -> bytes:
    head = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status,
        ctype,
        len(body),
    )
    return head + b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n" + body


# A raw upstream: what it writes is exactly what the test says, including what a framework would
# refuse to send (control characters in headers, gzip bombs, events without an end).
Reply = Callable[[str, bytes, socket.socket], None]


@contextmanager
def raw_upstream(reply: Reply) -> Iterator[str]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            data = b""
            while b"\r\n\r\n" not in data:
                piece = sock.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            while len(body) < length:
                body += sock.recv(65536)
            with suppress(OSError):
                reply(lines[0].split(" ")[1], body, sock)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _no_part_of_the_key(text: str, width: int = 12) -> None:
    """Not the key, and no `width` characters of it either (a truncated key is still a leak)."""
    for start in range(len(TEST_KEY) - width + 1):
        assert TEST_KEY[start : start + width] not in text, f"part of the key: {text[:300]}"


# --------------------------------------------------------------------------------------------
# 4. Upstream bodies without a size limit. A 1 MB gzip body inflating to 1 GB took the gateway
#    to 3.1 GB and stalled its event loop 13 s; a 300 MB JSON answer, 970 MB and 2.5 s; an SSE
#    event without its blank line is buffered whole (quadratic re-copying: 400 MB -> 800 MB RSS,
#    1.8 s stalls, and nothing reaches the client until the upstream hangs up).
# --------------------------------------------------------------------------------------------

_BOMB_MB = 24  # inflated; the gateway under test takes 4 MiB (max_upstream_bytes)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    before, after = _completion("@@").split(b"@@")
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"Z" * (1 << 20)
    parts = [packer.compress(before)]
    parts.extend(packer.compress(block) for _ in range(_BOMB_MB))
    parts += [packer.compress(after), packer.flush()]
    return b"".join(parts)  # about 256 KB


async def test_an_upstream_gzip_bomb_is_not_inflated(
    start_gateway: GatewayFactory, gzip_bomb: bytes
) -> None:
    """The gateway asks for an unencoded answer; one encoded anyway is refused, not inflated."""

    def reply(_path: str, _body: bytes, sock: socket.socket) -> None:
        sock.sendall(_http(200, gzip_bomb, b"Content-Encoding: gzip"))

    with (
        raw_upstream(reply) as upstream,
        start_gateway(upstream_url=upstream, max_upstream_bytes=4 << 20) as gateway,
    ):
        async with httpx.AsyncClient(base_url=gateway, timeout=120) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502, f"{response.status_code}, {len(response.content)} bytes"
    assert "Content-Encoding 'gzip'" in response.json()["error"]["message"]


async def test_a_gzip_bomb_to_a_benchmark_client_is_inflated_only_to_the_limit(
    gzip_bomb: bytes,
) -> None:
    """A benchmark's client (send times traced, through aiohttp, which inflates what it is
    sent) stops at the byte limit."""

    def reply(_path: str, _body: bytes, sock: socket.socket) -> None:
        sock.sendall(_http(200, gzip_bomb, b"Content-Encoding: gzip"))

    with raw_upstream(reply) as upstream:
        client = Target(base_url=upstream, api_key=TEST_KEY, max_bytes=4 << 20).client()
        try:
            with pytest.raises(UpstreamBadResponse, match="GATEWAY_MAX_UPSTREAM_BYTES"):
                await client.complete(CHAT)
        finally:
            await client.aclose()


async def test_an_error_body_that_never_ends_is_cut_at_the_first_byte_timeout(
    start_gateway: GatewayFactory,
) -> None:
    """A stream request answered 400 whose body comes a byte at a time, forever: the wait for
    it is the first-byte timeout's, not a hung request."""

    def reply(_path: str, _body: bytes, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 400 X\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            sock.sendall(b"1\r\n \r\n")
            time.sleep(0.1)

    stream = {**CHAT, "stream": True}
    with (
        raw_upstream(reply) as upstream,
        start_gateway(upstream_url=upstream, first_byte_timeout=0.5, retry_attempts=1) as gateway,
    ):
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
            response = await client.post("/v1/chat/completions", json=stream)
    assert response.status_code == 504
    assert "within 0.5s" in response.json()["error"]["message"]


async def test_an_upstream_event_without_an_end_is_not_buffered_without_bound(
    start_gateway: GatewayFactory,
) -> None:
    def reply(_path: str, _body: bytes, sock: socket.socket) -> None:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            + _chunk("hi")
            + b"data: "
        )
        block = b"x" * (1 << 20)
        for _ in range(6):  # 6 MB of one event (past the 4 MiB an event may have), then silence
            sock.sendall(block)
        time.sleep(3)

    with raw_upstream(reply) as upstream, start_gateway(upstream_url=upstream) as gateway:
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
            body = {**CHAT, "stream": True}
            text = b""
            try:
                async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    async for piece in response.aiter_bytes():
                        text += piece
            except httpx.ReadTimeout:
                pass
    assert b'"error"' in text, "no error event: the gateway was still buffering the event"


async def test_model_ids_and_names_echoing_the_key_are_scrubbed(
    start_gateway: GatewayFactory,
) -> None:
    async def models(_request: Request) -> Response:
        data = [{"id": f"evil/{TEST_KEY}", "name": f"Evil {TEST_KEY}"}, {"id": "a/b"}]
        return Response(orjson.dumps({"data": data}), media_type="application/json")

    app = Starlette(routes=[Route("/models", models)])
    with serve(app) as upstream, start_gateway(upstream_url=upstream) as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            answers = [
                await client.get("/models"),
                await client.get("/models?details=true"),
                await client.get("/v1/models"),
            ]
    for answer in answers:
        assert answer.status_code == 200
        assert TEST_KEY not in answer.text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_generation_id_header_echoing_the_key_is_scrubbed(
    start_gateway: GatewayFactory, stream: bool
) -> None:
    def reply(_path: str, body: bytes, sock: socket.socket) -> None:
        header = f"X-Generation-Id: {TEST_KEY}".encode()
        if orjson.loads(body).get("stream"):
            events = _chunk("hi") + _FINISH
            sock.sendall(_http(200, events, header, ctype=b"text/event-stream"))
        else:
            sock.sendall(_http(200, _completion(), header))

    with raw_upstream(reply) as upstream, start_gateway(upstream_url=upstream) as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert response.status_code == 200
    assert TEST_KEY not in str(response.headers)


@pytest.mark.parametrize(
    ("status", "body", "ctype"),
    [
        # The message is cut at 500 characters before it is scrubbed: the key is cut too.
        (
            400,
            orjson.dumps({"error": {"message": "x" * 470 + " key=" + TEST_KEY}}),
            b"application/json",
        ),
        # A body that is not JSON is cut at 200 characters, the same way.
        (502, b"y" * 180 + TEST_KEY.encode(), b"text/html"),
    ],
    ids=["json-error-at-500-chars", "html-error-at-200-chars"],
)
async def test_a_truncated_error_message_leaks_no_part_of_the_key(
    start_gateway: GatewayFactory, log_file: Path, status: int, body: bytes, ctype: bytes
) -> None:
    def reply(_path: str, _body: bytes, sock: socket.socket) -> None:
        sock.sendall(_http(status, body, ctype=ctype))

    with (
        raw_upstream(reply) as upstream,
        start_gateway(upstream_url=upstream, retry_attempts=1) as gateway,
    ):
        async with httpx.AsyncClient(base_url=gateway) as client:
            answers = [
                await client.post("/v1/chat/completions", json=CHAT),
                await client.post("/generate", json={"prompt": "hi", "model": "m"}),
            ]
    for answer in answers:
        assert answer.status_code == status
        _no_part_of_the_key(answer.text)
    _no_part_of_the_key(read_log(log_file, waiting_for="POST /generate"))


async def test_a_json_escaped_key_is_not_decoded_into_an_answer(
    start_gateway: GatewayFactory,
) -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in TEST_KEY)

    def reply(_path: str, _body: bytes, sock: socket.socket) -> None:
        sock.sendall(_http(200, _completion("@@").replace(b"@@", escaped.encode())))

    with raw_upstream(reply) as upstream, start_gateway(upstream_url=upstream) as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            response = await client.post("/generate", json={"prompt": "hi", "model": "m"})
    assert response.status_code == 200
    assert TEST_KEY not in response.text  # the gateway decoded it and wrote it out plainly


async def test_an_upstream_header_with_control_characters_is_not_a_dropped_connection(
    start_gateway: GatewayFactory, log_file: Path
) -> None:
    def reply(_path: str, _body: bytes, sock: socket.socket) -> None:
        sock.sendall(_http(200, _completion(), b"X-Generation-Id: gen\x01\x7f-1"))

    with raw_upstream(reply) as upstream, start_gateway(upstream_url=upstream) as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            try:
                response = await client.post("/v1/chat/completions", json=CHAT)
                status = response.status_code
            except httpx.RemoteProtocolError:
                status = 0
    assert status in (200, 502), "the connection was dropped without an answer"
    assert "Traceback" not in read_log(log_file, waiting_for="POST /v1/chat/completions")


async def test_tool_definitions_count_towards_the_prompt_limit(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    """GATEWAY_MAX_PROMPT_CHARS bounds what a request makes the upstream read (and bill); tool
    definitions are prompt tokens too, yet 4 MiB of them pass a 1,000-character limit."""
    tool = {
        "type": "function",
        "function": {"name": "f", "description": "d" * 50_000, "parameters": {"type": "object"}},
    }
    body = {**CHAT, "model": "emulator/fast", "tools": [tool]}
    with start_gateway(max_prompt_chars=1000) as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert emulator.chat_records() == []


def test_credentials_in_the_upstream_url_are_a_configuration_error(emulator_url: str) -> None:
    """aiohttp refuses credentials in the URL next to the Authorization header (a ValueError it
    does not map): every upstream call was a 500 with a traceback. Refused at start-up now."""
    url = emulator_url.replace("http://", "http://user:pw@")
    with pytest.raises(ValidationError, match="OPENROUTER_API_KEY"):
        Settings(_env_file=None, upstream_url=url)  # type: ignore[call-arg]


async def test_nan_and_infinity_are_not_passed_upstream_as_json(
    gateway: str, emulator: Emulator
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        body = b'{"model": "emulator/fast", "messages": [{"role": "user", "content": "hi"}], '
        answers = [
            await client.post(
                "/v1/chat/completions",
                content=body + b'"temperature": ' + value + b"}",
                headers={"content-type": "application/json"},
            )
            for value in (b"NaN", b"Infinity")
        ]
        generate = await client.post(
            "/generate",
            content=b'{"prompt": "hi", "model": "emulator/fast", "temperature": NaN}',
            headers={"content-type": "application/json"},
        )
    assert [a.status_code for a in answers] == [400, 400]
    assert all(a.json()["error"]["code"] == "invalid_json" for a in answers)
    # pydantic's parser takes them, and the model refuses them with a message that says so.
    assert generate.status_code == 422 and "finite number" in generate.text
    assert emulator.chat_records() == []


async def test_a_key_split_across_stream_chunks_is_not_whole_in_the_answer(
    start_gateway: GatewayFactory,
) -> None:
    """Each chunk is scrubbed; only the answer the gateway assembles has the key whole."""
    half = len(TEST_KEY) // 2

    def reply(_path: str, _body: bytes, sock: socket.socket) -> None:
        events = _chunk("your key: ") + _chunk(TEST_KEY[:half]) + _chunk(TEST_KEY[half:]) + _FINISH
        sock.sendall(_http(200, events, ctype=b"text/event-stream"))

    with raw_upstream(reply) as upstream, start_gateway(upstream_url=upstream) as gateway:
        async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
            streamed = await client.post(
                "/generate?stream=true", json={"prompt": "hi", "model": "m", "max_tokens": 5}
            )
    done = streamed.text.split("event: done", 1)[1]  # the gateway's own assembled answer
    assert TEST_KEY not in done and "your key: ***" in done


async def test_a_huge_model_list_is_cut_to_what_a_catalogue_needs(
    start_gateway: GatewayFactory,
) -> None:
    """Found by review: 200,000 models stalled the event loop 2 s on every /models?details."""

    async def models(_request: Request) -> Response:
        data = [{"id": f"v/m{i}"} for i in range(MAX_MODELS + 500)]
        return Response(orjson.dumps({"data": data}), media_type="application/json")

    app = Starlette(routes=[Route("/models", models)])
    with serve(app) as upstream, start_gateway(upstream_url=upstream) as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            listed = (await client.get("/models")).json()
    assert len(listed) == MAX_MODELS and listed[0] == "v/m0"
