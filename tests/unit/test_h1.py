"""h1.py, the streams' HTTP/1.1 client, against real loopback servers that answer byte for
byte as each test scripts them (plain TCP, and TLS with a test authority)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme
from aiohappyeyeballs import AddrInfoType

from llm_gateway.errors import UpstreamUnreachable
from llm_gateway.upstream import h1
from llm_gateway.upstream.deadlines import Deadlines
from llm_gateway.upstream.h1 import BadHttp, CannotConnect, H1Pool, ServerDisconnected
from llm_gateway.upstream.mapping import TranslateErrors

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "x/y"}
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


Script = Callable[["Upstream", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream:
    """A loopback server running `script` for each connection; counts the connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(self, reader, writer)
        finally:
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        """Read one whole request (head and Content-Length body) and note it."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        whole = head + await reader.readexactly(length)
        self.requests.append(whole)
        return whole


@asynccontextmanager
async def upstream(
    script: Script, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Upstream, str]]:
    served = Upstream(script)
    server = await asyncio.start_server(served.serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield served, f"{'https' if tls else 'http'}://localhost:{port}/api/v1"
    finally:
        server.close()


def pool(url: str, *, limit: int = 0, keepalive: float = h1.KEEPALIVE_SECONDS) -> H1Pool:
    return H1Pool(
        url,
        headers={"Authorization": "Bearer k"},
        connect=Deadlines(2.0),
        limit=limit,
        keepalive=keepalive,
    )


async def read_all(response: h1.H1Response) -> bytes:
    out = b""
    while data := await response.content.readany():
        out += data
    return out


def answers(data: bytes, *, then_wait: bool = False) -> Script:
    """A server that reads one request and writes `data`; then hangs up, or with `then_wait`
    keeps the connection until the client goes."""

    async def script(
        served: Upstream, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await served.request(reader)
        w.write(data)
        await w.drain()
        if then_wait:
            await reader.read()

    return script


async def events(
    served: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answers each request on the connection with two events, then the end of the body."""
    while not reader.at_eof():
        try:
            await served.request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(chunk(b"data: 2\n\n") + b"0\r\n\r\n")
        await writer.drain()


async def test_a_stream_is_read_as_it_arrives_and_its_connection_reused() -> None:
    async with upstream(events) as (served, url):
        client = pool(url)
        for _ in range(3):
            response = await client.request("POST", "/chat/completions", b'{"a":1}', ACCEPT)
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            assert await response.content.readany() == b"data: 1\n\n"  # not the whole body
            assert await read_all(response) == b"data: 2\n\n"
            response.release()
        await client.aclose()
    assert served.connections == 1
    head, _, body = served.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/chat/completions HTTP/1.1"
    assert {b"Authorization: Bearer k", b"Accept: x/y", b"Accept-Encoding: identity"} <= set(lines)
    assert any(line.startswith(b"Host: localhost:") for line in lines)
    assert body == b'{"a":1}'


async def test_a_get_sends_no_body_and_reads_an_answer_of_declared_length() -> None:
    models = answers(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"data":[]}', then_wait=True)

    async with upstream(models) as (served, url):
        client = pool(url)
        response = await client.request("GET", "/models", None, {})
        assert response.content_length == 11
        assert await read_all(response) == b'{"data":[]}'
        response.release()
        await client.aclose()
    head = served.requests[0].split(b"\r\n")
    assert head[0] == b"GET /api/v1/models HTTP/1.1"
    assert not any(line.lower().startswith(b"content-length") for line in head)


async def test_an_answer_not_read_to_its_end_closes_its_connection() -> None:
    async with upstream(events) as (served, url):
        client = pool(url)
        for _ in range(2):
            response = await client.request("POST", "/x", b"{}", {})
            await response.content.readany()
            response.release()  # the second event is still to come: not reusable
        await client.aclose()
    assert served.connections == 2


async def test_connection_close_and_an_idle_connection_past_keepalive_are_not_reused() -> None:
    close_after = answers(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    async with upstream(close_after) as (served, url):
        client = pool(url)
        for _ in range(2):
            response = await client.request("POST", "/x", b"{}", {})
            assert await read_all(response) == b"ok"
            response.release()
        assert served.connections == 2
    async with upstream(events) as (served, url):
        client = pool(url, keepalive=0.0)
        for _ in range(2):
            response = await client.request("POST", "/x", b"{}", {})
            await read_all(response)
            response.release()
        await client.aclose()
        assert served.connections == 2


async def test_a_connection_idle_past_keepalive_is_closed_unasked() -> None:
    closed = asyncio.Event()

    async def one_answer(
        served: Upstream, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await answers(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")(served, reader, w)
        await reader.read()  # until the client hangs up
        closed.set()

    async with upstream(one_answer) as (_, url):
        client = pool(url, keepalive=0.05)
        response = await client.request("POST", "/x", b"{}", {})
        await read_all(response)
        response.release()
        await asyncio.wait_for(closed.wait(), 2)


async def test_a_body_without_length_ends_with_the_connection() -> None:
    until_close = answers(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\n")

    async with upstream(until_close) as (_, url):
        response = await pool(url).request("POST", "/x", b"{}", {})
        assert await read_all(response) == b"data: 1\n\n"
        response.release()


async def test_an_upstream_that_leaves_mid_answer_or_before_it_is_a_disconnection() -> None:
    cut = answers(HEAD + chunk(b"data: 1\n\n"))
    silent = answers(b"")

    async with upstream(cut) as (_, url):
        response = await pool(url).request("POST", "/x", b"{}", {})
        with pytest.raises(ServerDisconnected):
            await read_all(response)
        response.close()
    async with upstream(silent) as (_, url):
        with pytest.raises(ServerDisconnected):
            await pool(url).request("POST", "/x", b"{}", {})


async def test_what_is_not_http_and_a_head_without_end_are_bad_http() -> None:
    garbage = answers(b"SSH-2.0-OpenSSH\r\n\r\n", then_wait=True)

    async def endless(
        served: Upstream, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await served.request(reader)
        w.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):
            w.write(b"x-filler: " + b"a" * 1000 + b"\r\n")
            await w.drain()
        await asyncio.sleep(1)

    async with upstream(garbage) as (_, url):
        with pytest.raises(BadHttp, match="not valid HTTP"):
            await pool(url).request("POST", "/x", b"{}", {})
    async with upstream(endless) as (_, url):
        with pytest.raises(BadHttp, match=f"passed {h1.MAX_HEAD_BYTES} bytes"):
            await pool(url).request("POST", "/x", b"{}", {})


async def test_an_informational_answer_is_passed_over_and_a_second_answer_refused() -> None:
    hints = answers(
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        + HEAD
        + chunk(b"data: 1\n\n")
        + b"0\r\n\r\n",
        then_wait=True,
    )
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    twice = answers(answer + answer, then_wait=True)

    async with upstream(hints) as (_, url):
        response = await pool(url).request("POST", "/x", b"{}", {})
        assert response.status == 200
        assert "link" not in response.headers
        assert await read_all(response) == b"data: 1\n\n"
        response.release()
    async with upstream(twice) as (served, url):
        client = pool(url)
        response = await client.request("POST", "/x", b"{}", {})
        assert await read_all(response) == b"ok"  # the first answer, and nothing of the second
        response.release()
        response = await client.request("POST", "/x", b"{}", {})
        await read_all(response)
        response.release()
        await client.aclose()
    assert served.connections == 2  # the connection that said too much was not reused


async def test_a_refused_connection_is_mapped_as_one() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    refused = pytest.raises(UpstreamUnreachable, match="Cannot connect to the upstream")
    with refused as mapped, TranslateErrors("POST /x", 5):
        await pool(f"http://127.0.0.1:{port}").request("POST", "/x", b"{}", {})
    assert isinstance(mapped.value.__cause__, CannotConnect)


async def test_a_reader_slower_than_the_upstream_pauses_its_connection() -> None:
    """The unread body stays near the high-water mark however much the upstream has to send;
    read, it all arrives."""
    piece = b"x" * 16384
    sent = asyncio.Event()

    async def flood(
        served: Upstream, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await served.request(reader)
        w.write(HEAD)
        for _ in range(256):  # 4 MiB
            w.write(chunk(piece))
            await w.drain()
        w.write(b"0\r\n\r\n")
        await w.drain()
        sent.set()

    async with upstream(flood) as (_, url):
        response = await pool(url).request("POST", "/x", b"{}", {})
        await asyncio.sleep(0.2)
        assert not sent.is_set()  # the upstream waits on TCP's window
        assert len(await response.content.readany()) <= 4 * 65536
        assert len(await read_all(response)) > 3 * 1024 * 1024
        assert sent.is_set()
        response.release()


async def test_past_its_limit_a_request_waits_for_a_connection_to_come_back() -> None:
    async with upstream(events) as (served, url):
        client = pool(url, limit=1)
        first = await client.request("POST", "/x", b"{}", {})
        second = asyncio.ensure_future(client.request("POST", "/x", b"{}", {}))
        await asyncio.sleep(0.05)
        assert not second.done()
        await read_all(first)
        first.release()
        response = await second
        await read_all(response)
        response.release()
        await client.aclose()
    assert served.connections == 1


async def test_a_cancelled_request_cuts_its_connection() -> None:
    left = asyncio.Event()

    async def hang(
        served: Upstream, reader: asyncio.StreamReader, _w: asyncio.StreamWriter
    ) -> None:
        await served.request(reader)
        await reader.read()  # until the client goes
        left.set()

    async with upstream(hang) as (_, url):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool(url).request("POST", "/x", b"{}", {}), 0.1)
        await asyncio.wait_for(left.wait(), 2)


async def test_of_several_addresses_the_one_that_answers_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upstream name with two addresses, the first refusing: the connection is made to the
    second (tried as RFC 8305 says). The resolver is the only part replaced here."""
    refusing = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead = refusing.sockets[0].getsockname()
    refusing.close()
    await refusing.wait_closed()
    async with upstream(events) as (served, url):
        client = pool(url)
        port = int(url.split(":")[2].split("/")[0])
        good = await asyncio.get_running_loop().getaddrinfo(
            "127.0.0.1", port, type=socket.SOCK_STREAM
        )
        bad = [(family, kind, proto, name, dead) for family, kind, proto, name, _ in good]

        async def two_addresses(_loop: asyncio.AbstractEventLoop) -> list[AddrInfoType]:
            return [*bad, *good]

        monkeypatch.setattr(client, "_look_up", two_addresses)
        response = await client.request("POST", "/x", b"{}", {})
        assert await read_all(response) == b"data: 1\n\ndata: 2\n\n"
        response.release()
        await client.aclose()
    assert served.connections == 1


def test_a_header_that_would_split_the_request_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        H1Pool("http://h:1", headers={"X-Title": "a\r\nEvil: 1"}, connect=Deadlines(1))


async def test_tls_with_a_trusted_authority_and_a_refused_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = trustme.CA()
    served_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(served_ctx)
    async with upstream(events, tls=served_ctx) as (_, url):
        with pytest.raises(CannotConnect, match="CERTIFICATE_VERIFY_FAILED"):
            await pool(url).request("POST", "/x", b"{}", {})
        # The system's trust store, as OpenSSL finds it: here, only the test authority.
        ca_file = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        client = pool(url)
        response = await client.request("POST", "/x", b"{}", {})
        assert await read_all(response) == b"data: 1\n\ndata: 2\n\n"
        response.release()
        await client.aclose()
