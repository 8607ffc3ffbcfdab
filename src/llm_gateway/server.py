"""How `llm-gateway serve` runs the app: uvicorn, plus the connection limits ASGI cannot set.

An ASGI app sees a request only once its headers are in, and uvicorn waits for headers
forever: 300 connections sending a header line every few seconds (slowloris) stayed open
indefinitely. Here:
- `GATEWAY_HEADER_TIMEOUT`: a connection whose request headers are not complete this long
  after it opened (or after the previous answer) is answered 408 and closed;
- `GATEWAY_BODY_TIMEOUT`: the app's own limit on reading a body (`limits.py`);
- `GATEWAY_MAX_CONNECTIONS`: uvicorn's `limit_concurrency`, beyond which new connections are
  answered 503 at once; the open-file limit is raised to fit it;
- `GATEWAY_KEEPALIVE_TIMEOUT`: how long an idle keep-alive connection is kept.

Running the app under uvicorn directly (`uvicorn --factory llm_gateway.app:create_app`) keeps
every other guard, but not the header timeout, which lives in the server.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from llm_gateway.config import Settings

logger = logging.getLogger("llm_gateway")

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def header_timeout_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing connections whose headers take over `seconds`."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # a client that connects and sends nothing is timed too

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(_TIMED_OUT)
                self.transport.close()

    return HeaderTimeoutProtocol


def raise_open_file_limit(wanted: int) -> None:
    """Lift the soft limit on open files towards `wanted` (each connection is one; the default
    soft limit is often 1,024), as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """The server settings `llm-gateway serve` runs the gateway with."""
    # Connections, plus files, upstream connections and the log, with room to spare.
    # Each in-flight request may hold an upstream connection besides its client's.
    raise_open_file_limit(settings.max_connections + settings.max_in_flight + 1024)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=header_timeout_protocol(settings.header_timeout),
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keepalive_timeout,
        access_log=False,
        log_level="info",
        # On SIGTERM, open streams get this long to finish before they are cut.
        timeout_graceful_shutdown=settings.shutdown_grace,  # type: ignore[arg-type]
    )
