"""The upstream's HTTP/1.1 connections: httptools' parser under an asyncio protocol, and a
pool of keep-alive connections.

Why not aiohttp (which only a benchmark's client still uses, for the trace hooks that time its
requests on the wire): a stream's start and each of its events are the gateway's hot path, and
aiohttp's client is most of what a bare proxy spends on them. Measured on one core (300 streams
held at once, CPU from the kernel), a proxy that does nothing but forward: with aiohttp's
client 480-690 us per stream of one event and 36 us per further event; with a client like this
one 250-650 us and 22-26 us; its first token, streams at concurrency 4, 0.53-1.06 ms after the
upstream's against 0.31-0.58 ms (benchmarks/perf/profile.md, eleventh round). The bytes go
from the parser's callback to the reader with no stream reader, task or timer of their own.

What it speaks is what an OpenAI-compatible upstream needs, no more: one request at a time per
connection (keep-alive, no pipelining), plain TCP or TLS (the system's trust store), answers
with a length, chunked, or ended by closing the connection; no proxies, redirects, cookies or
compression (it asks for `identity`). Failures are OSError subclasses (`CannotConnect` for the
connection itself), mapped at the client's boundary like any other (mapping.py).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import aiohappyeyeballs
import httptools
from aiohappyeyeballs import AddrInfoType
from multidict import CIMultiDict, CIMultiDictProxy

from llm_gateway.upstream.deadlines import Deadlines

# A response's unread body past which its connection stops reading (the upstream then waits on
# TCP's window): a client slower than the upstream must not make the gateway buffer the answer.
_HIGH_WATER = 64 * 1024
# The most a status line and headers may take: an upstream that never ends its head is cut off.
MAX_HEAD_BYTES = 64 * 1024
# How long an upstream's addresses are kept once looked up (aiohttp's default too).
DNS_TTL_SECONDS = 300.0
# How long an unused connection is trusted to still be open (aiohttp's default too): servers
# close idle keep-alive connections after a while, and one they closed cannot be reused.
KEEPALIVE_SECONDS = 15.0


class CannotConnect(OSError):
    """No connection to the upstream could be made; the OS's error is the cause."""


class ServerDisconnected(ConnectionError):
    """The upstream closed the connection before its answer ended."""


class BadHttp(ConnectionError):
    """The upstream's answer is not HTTP/1.1 as the parser reads it (or its head is too long)."""


class _Connection(asyncio.Protocol):
    """One connection to the upstream; what arrives is fed to its current exchange."""

    __slots__ = ("closed", "exchange", "idle_since", "pool", "transport")

    def __init__(self, pool: H1Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: H1Response | None = None
        self.idle_since = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            # An idle connection has nothing to say: one that talks anyway is not reused.
            self.close()
            return
        exchange.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.exchange is not None:
            self.exchange.lost(exc)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class H1Response:
    """One exchange's answer: the status and headers once `H1Pool.post` returns, the body read
    with `content.readany()` / `content.read(n)`. `release()` once the body is read returns the
    connection to the pool (or closes it if the answer did not end cleanly); `close()` cuts it.
    """

    __slots__ = (
        "_chunks",
        "_complete",
        "_conn",
        "_error",
        "_head",
        "_head_bytes",
        "_keep_alive",
        "_paused",
        "_raw_headers",
        "_size",
        "_waiter",
        "headers",
        "parser",
        "status",
    )

    def __init__(self, conn: _Connection, head: asyncio.Future[None]) -> None:
        self._conn: _Connection | None = conn
        # The parser holds this object for its callbacks: dropped when the exchange ends, so
        # the two are not left in a reference cycle for the collector.
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._head = head
        self._head_bytes = 0
        self._raw_headers: list[tuple[str, str]] = []
        self.status = 0
        self.headers: CIMultiDictProxy[str] = _NO_HEADERS
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._keep_alive = False
        self._error: OSError | None = None
        self._paused = False

    @property
    def content_length(self) -> int | None:
        """The length the answer declares, if it declares one."""
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def content(self) -> H1Response:
        """The body's reader (this object: the name aiohttp's responses give theirs)."""
        return self

    # Fed by the connection

    def feed(self, data: bytes) -> None:
        if self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # A callback's own error (the head's size) arrives wrapped by the parser.
            cause = exc.__context__
            error = cause if isinstance(cause, BadHttp) else None
            self._fail(error or BadHttp(f"The upstream's answer is not valid HTTP/1.1: {exc}"))
            self.close()

    def lost(self, exc: Exception | None) -> None:
        if self._complete:
            return
        if exc is None and self._head.done() and not self._delimited():
            self._finish(keep_alive=False)  # the connection's end is the body's end
            return
        error = ServerDisconnected("The upstream closed the connection before its answer ended")
        error.__cause__ = exc
        self._fail(error)

    # httptools' callbacks

    def on_status(self, status: bytes) -> None:
        self._count_head(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._current_parser()
        status = parser.get_status_code()
        if status < 200:  # informational (103 Early Hints...): the answer is still to come
            self._raw_headers = []
            return
        self.status = status
        self.headers = CIMultiDictProxy(CIMultiDict(self._raw_headers))
        self._raw_headers = []
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._current_parser()
        self._chunks.append(body)
        self._size += len(body)
        if self._size > _HIGH_WATER and not self._paused and self._conn is not None:
            transport = self._conn.transport
            if transport is not None:
                transport.pause_reading()
                self._paused = True
        self._wake()

    def on_message_complete(self) -> None:
        parser = self._current_parser()
        if self.status:  # not the end of an informational answer
            self._finish(keep_alive=parser.should_keep_alive())

    # Read by the stream

    async def readany(self) -> bytes:
        """What has arrived since the last read (waiting for something), b"" at the end."""
        while not self._chunks:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if self._paused:
            self._paused = False
            if self._conn is not None and self._conn.transport is not None:
                self._conn.transport.resume_reading()
        return data

    async def read(self, limit: int) -> bytes:
        """The body up to `limit` bytes (an error answer's start: the rest is not wanted)."""
        out = bytearray()
        while len(out) < limit and (data := await self.readany()):
            out += data
        return bytes(out[:limit])

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the answer ended
        cleanly and the upstream keeps the connection open, else it is closed."""
        conn, self._conn = self._conn, None
        self.parser = None
        if conn is None:
            return
        if self._complete and self._keep_alive and self._error is None and not conn.closed:
            conn.pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Cut the connection (an answer not read to its end: the upstream sees it go)."""
        conn, self._conn = self._conn, None
        self.parser = None
        if conn is not None:
            conn.close()

    def _delimited(self) -> bool:
        """Whether the answer says where its body ends (a length, or chunks); else the body
        ends with the connection."""
        headers = self.headers
        return (
            "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()
        )

    def _current_parser(self) -> httptools.HttpResponseParser:
        # The parser goes on after the answer's end if more bytes came with it: a second
        # answer to one request is not HTTP, and none of it is taken.
        if self.parser is None:
            raise BadHttp("The upstream sent more than one answer to a request")
        return self.parser

    def _count_head(self, size: int) -> None:
        self._current_parser()
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise BadHttp(f"The upstream's status line and headers passed {MAX_HEAD_BYTES} bytes")

    def _finish(self, *, keep_alive: bool) -> None:
        self.parser = None
        self._complete = True
        self._keep_alive = keep_alive
        if self._conn is not None:
            self._conn.exchange = None
        self._wake()

    def _fail(self, error: OSError) -> None:
        self.parser = None
        if self._error is None:
            self._error = error
        if not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class H1Pool:
    """Keep-alive connections to one upstream (`base_url`'s scheme, host and port), at most
    `limit` open at once (0: no limit; past it, a request waits for one to be returned).

    `request` sends a request and returns once the answer's status and headers are in; the
    caller bounds it with its own deadline, and a cancelled `request` closes its connection.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        connect: Deadlines,
        limit: int = 0,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        # Made at the first connection: reading the system's trust store takes milliseconds,
        # and a benchmark's client (aiohttp's) never connects here.
        self._ssl: ssl.SSLContext | None = None
        self._path = parts.path.rstrip("/")
        fixed = {"Host": parts.netloc, **headers, "Accept-Encoding": "identity"}
        self._fixed = _header_lines(fixed)
        self._connect = connect
        self._limit = limit
        self._keepalive = keepalive
        self._open = 0
        # Idle connections, the most recently used last (reused first: the likeliest open).
        self._idle: dict[_Connection, None] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._lookup: asyncio.Task[list[AddrInfoType]] | None = None
        self._sweep: asyncio.TimerHandle | None = None  # closes connections idle too long
        self._resolved_until = 0.0

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> H1Response:
        """Send `method` to the base URL's path + `path` (with `body`, if any); the answer once
        its status and headers are in."""
        request = b"".join(
            (
                method.encode(),
                b" ",
                (self._path + path).encode(),
                b" HTTP/1.1\r\n",
                self._fixed,
                _header_lines(headers),
                b"" if body is None else b"Content-Length: %d\r\n" % len(body),
                b"\r\n",
                body or b"",
            )
        )
        conn = await self._acquire()
        head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        response = H1Response(conn, head)
        conn.exchange = response
        try:
            assert conn.transport is not None
            conn.transport.write(request)
            await head
        except BaseException:
            response.close()
            raise
        return response

    def put(self, conn: _Connection) -> None:
        """Take back a connection whose exchange ended cleanly."""
        conn.exchange = None
        if self._closed:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle[conn] = None
        if self._sweep is None:
            self._sweep = loop.call_later(self._keepalive, self._close_expired)
        self._wake_one()

    def _close_expired(self) -> None:
        """Close the connections idle for `keepalive` seconds: after a burst of streams, those
        never reused would otherwise stay open until the upstream hangs up."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            conn = next(iter(self._idle))  # the longest idle
            if now - conn.idle_since < self._keepalive:
                self._sweep = loop.call_at(conn.idle_since + self._keepalive, self._close_expired)
                return
            del self._idle[conn]
            conn.close()

    def forget(self, conn: _Connection) -> None:
        """A connection has closed."""
        self._idle.pop(conn, None)
        self._open -= 1
        self._wake_one()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their answers are done."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        while self._idle:
            conn, _ = self._idle.popitem()
            conn.close()

    async def _acquire(self) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._idle:
                conn, _ = self._idle.popitem()
                transport = conn.transport
                if (
                    not conn.closed
                    and transport is not None
                    and not transport.is_closing()
                    and now - conn.idle_since < self._keepalive
                ):
                    return conn
                conn.close()
            if not self._limit or self._open < self._limit:
                return await self._new_connection(loop)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _new_connection(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        self._open += 1
        try:
            with self._connect():
                return await self._connect_to(loop, await self._resolve(loop))
        except BaseException as exc:
            self._open -= 1
            self._wake_one()
            # Refused, unresolvable, a certificate refused...; a timeout is an OSError too,
            # but the caller's deadline's, and is mapped as one.
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise CannotConnect(f"{self._host}:{self._port}: {exc}") from exc
            raise

    async def _resolve(self, loop: asyncio.AbstractEventLoop) -> list[AddrInfoType]:
        """The upstream's addresses, looked up once per `DNS_TTL_SECONDS` (as aiohttp caches
        them): a burst of new streams is otherwise a burst of lookups, each a round trip to
        the resolver. Callers that miss together share one lookup."""
        lookup = self._lookup
        if lookup is None or (
            lookup.done()
            and (
                lookup.cancelled()
                or lookup.exception() is not None
                or loop.time() >= self._resolved_until
            )
        ):
            lookup = self._lookup = loop.create_task(self._look_up(loop))
        return await asyncio.shield(lookup)

    async def _look_up(self, loop: asyncio.AbstractEventLoop) -> list[AddrInfoType]:
        infos: list[AddrInfoType] = list(
            await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        )
        self._resolved_until = loop.time() + DNS_TTL_SECONDS
        return infos

    async def _connect_to(
        self, loop: asyncio.AbstractEventLoop, infos: list[AddrInfoType]
    ) -> _Connection:
        if self._tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        hostname = self._host if self._ssl is not None else None
        if len(infos) == 1:
            family, _, proto, _, address = infos[0]
            _, conn = await loop.create_connection(
                lambda: _Connection(self),
                address[0],
                address[1],
                family=family,
                proto=proto,
                ssl=self._ssl,
                server_hostname=hostname,
            )
            return conn
        # Several addresses (IPv6 and IPv4, say): the next one is tried 0.25 s after the
        # previous one if that has not connected yet (RFC 8305, as aiohttp does), so an address
        # that swallows packets does not hold a connection until the connect timeout.
        sock = await aiohappyeyeballs.start_connection(
            infos, happy_eyeballs_delay=0.25, interleave=1
        )
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self), sock=sock, ssl=self._ssl, server_hostname=hostname
            )
        except BaseException:
            sock.close()
            raise
        return conn

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _header_lines(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} cannot be sent: a line break or ':' in it")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")
