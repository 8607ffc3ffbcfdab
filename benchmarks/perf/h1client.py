"""The load generator's HTTP/1.1 client: httptools' response parser under an asyncio protocol.

Why not aiohttp: at the capacity phase's scale a client that resumes a task for every line it
reads costs nearly as much CPU as the proxy it measures, on the same two cores. Measured with
3,000 ten-second streams (150,000 events) started over 3 s through the floor: aiohttp's client
used 10.2 s of CPU for the step (0.9 of a core while the streams started), this one 4.6 s (0.4),
about a second of either being the three processes' start-up. Here a body's bytes go from the
parser's callback straight to the caller's `Sink`, timestamped on arrival, with no task switch.

One request at a time per connection (keep-alive, no pipelining), as wrk does. Only what the
harness sends is supported: a fixed request (prebuilt bytes), a response with a length or
chunked encoding, its body handed on as it arrives.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools


class Sink(Protocol):
    def body(self, data: bytes, now: float) -> bool:
        """Take the next piece of a 200 answer's body, received at `now` (perf_counter); False
        when the answer is judged and the rest is not wanted (the connection is then closed)."""


class ServerDisconnected(ConnectionError):
    """The server closed the connection before its answer ended."""


def request_bytes(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    """(host, port, the whole POST request) for `url`."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ValueError(f"the generator speaks plain HTTP to host:port only: {url}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    return parts.hostname, parts.port, ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection(asyncio.Protocol):
    """One connection to the server; `exchange` sends a request and feeds its answer's body to a
    sink as it arrives."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._sink: Sink | None = None
        self._done: asyncio.Future[int] | None = None
        self.status = 0
        self.reusable = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            return  # bytes outside an exchange (a misbehaving server) are dropped
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._transport = None
        self._fail(exc or ServerDisconnected("the server closed the connection mid-answer"))

    # httptools callbacks

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.status != 200 or self._sink is None:
            return  # an error's body is not checked, only its status
        if not self._sink.body(body, time.perf_counter()):
            self._sink = None
            self._finish(reusable=False)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        self._finish(reusable=self._parser.should_keep_alive())

    # the exchange

    async def exchange(self, request: bytes, sink: Sink) -> int:
        """Send `request`, feed a 200 answer's body to `sink`; the answer's status."""
        if self._transport is None:
            raise ServerDisconnected("the connection is closed")
        self.status = 0
        self.reusable = False
        self._sink = sink
        self._parser = httptools.HttpResponseParser(self)
        self._done = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await self._done
        finally:
            self._sink = None
            self._parser = None
            self._done = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _finish(self, *, reusable: bool) -> None:
        self.reusable = reusable
        if not reusable:
            self.close()
        if self._done is not None and not self._done.done():
            self._done.set_result(self.status)

    def _fail(self, exc: BaseException) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        self.close()


class Channel:
    """A keep-alive connection to one server, opened on first use and again whenever the server
    (or a judged answer) closed the last one."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._connection: Connection | None = None

    async def exchange(self, request: bytes, sink: Sink) -> int:
        connection = self._connection
        self._connection = None
        if connection is None or not connection.reusable:
            loop = asyncio.get_running_loop()
            _, connection = await loop.create_connection(Connection, self._host, self._port)
        try:
            status = await connection.exchange(request, sink)
        except BaseException:
            connection.close()
            raise
        if connection.reusable:
            self._connection = connection
        return status

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
