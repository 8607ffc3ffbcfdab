"""How `llm-gateway serve` runs the app: uvicorn, plus the connection limits ASGI cannot set.

An ASGI app sees a request only once its headers are in, and uvicorn waits for headers
forever: 300 connections sending a header line every few seconds (slowloris) stayed open
indefinitely. Here:
- `GATEWAY_HEADER_TIMEOUT`: a connection whose request headers are not complete this long
  after it opened (or after the previous answer) is answered 408 and closed;
- `GATEWAY_BODY_TIMEOUT`: a request's body must be all in this long after its head, else 408
  and the connection is closed;
- `GATEWAY_MAX_CONNECTIONS`: uvicorn's `limit_concurrency`, beyond which new connections are
  answered 503 at once; the open-file limit is raised to fit it, and the listen backlog too
  (connections waiting to be accepted, where a burst of clients queues rather than loses
  its handshakes);
- `GATEWAY_KEEPALIVE_TIMEOUT`: how long an idle keep-alive connection is kept.

Each answer's head (status line and headers) goes out with its first body bytes, one write
where uvicorn makes two (`_HeadWithBody`).

Running the app under uvicorn directly (`uvicorn --factory llm_gateway.app:create_app`) keeps
every other guard, but not these connection limits, which live in the server.

`serve(..., workers=N)` with N > 1 runs N worker processes on one port (uvicorn's supervisor,
each worker a fresh interpreter that builds the app from the environment: `worker_app`).
What must happen once happens in the supervisor, before the workers start: the checks of the
CLI, the emulator (one for all workers, when there is no upstream key) and its banner, and the
folder where prometheus_client's multiprocess mode keeps every worker's metrics (metrics.py).
The log file is shared: each worker appends whole batches of lines under a lock (logging.py).
On SIGTERM or Ctrl-C the supervisor stops every worker, each with its graceful shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import resource
import shutil
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.supervisors.multiprocess import Multiprocess

from llm_gateway import __version__
from llm_gateway.asgi import has_body
from llm_gateway.config import Settings
from llm_gateway.disconnect import CLIENT_WATCH

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("llm_gateway")

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)
# A request line and headers bigger than this are not a client's (nginx allows 32 KiB): past
# it the connection is refused before the parser piles up a header in memory.
MAX_HEAD_BYTES = 64 * 1024
_END_OF_HEAD = b"\r\n\r\n"


class _ClientWatch:
    """The server's watch over one request's connection (see disconnect.py `ClientWatch`):
    the request's task, cancelled from `connection_lost` when its client goes before the
    answer is complete."""

    __slots__ = ("_cycle", "_task", "client_left")

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle
        self._task: asyncio.Task[object] | None = None
        self.client_left = False

    @property
    def response_started(self) -> bool:
        return self._cycle.response_started

    def watch(self, task: asyncio.Task[object]) -> None:
        self._task = task
        if self.client_left:
            task.cancel()

    def connection_lost(self) -> None:
        if self._cycle.response_complete or self.client_left:
            return
        self.client_left = True
        if self._task is not None:
            self._task.cancel()


class _HeadWithBody:
    """A request's connection as uvicorn's request cycle writes to it: the response head
    (status line and headers) is held back and goes out with the first piece of the body, in
    one write.

    uvicorn writes the head as soon as the app sends `http.response.start`, then each piece of
    the body: two system calls and two TCP segments where one does, on every answer. A head
    whose body does not follow in the same step of the app (a stream waiting for its first
    event) goes out on the loop's next turn, on its own; so does one the cycle closes the
    connection after, or whose answer ends without a body (HEAD).
    """

    __slots__ = ("_head", "_loop", "_state", "_transport")

    _BEFORE_HEAD, _HOLDING, _PASSING = 0, 1, 2

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._state = self._BEFORE_HEAD
        self._head = b""

    def write(self, data: bytes) -> None:
        state = self._state
        if state == self._PASSING:
            self._transport.write(data)
        elif state == self._HOLDING:
            self._state = self._PASSING
            self._transport.write(self._head + data)
            self._head = b""
        elif data.startswith(b"HTTP/1.1 1"):  # "100 Continue": the head is still to come
            self._transport.write(data)
        else:
            self._state, self._head = self._HOLDING, data
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._state == self._HOLDING:
            self._state = self._PASSING
            self._transport.write(self._head)
            self._head = b""

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on what a client may take before it is served.

    - A request's head (request line and headers) must be complete within `header_timeout`
      seconds of its first byte (or of the connection, for a client that sends nothing), and
      hold at most MAX_HEAD_BYTES: else 408 or 431, and the connection is closed.
    - Its body, if it has one, must be all in within `body_timeout` seconds of its head: else
      408 and the connection is closed (a client trickling a body a byte at a time).
    - Between requests, bytes that do not make one (blank lines, or the rest of a body the
      gateway answered without reading) stop uvicorn's keep-alive timer; so after an answer
      the next request's head must begin and end within the keep-alive time plus
      `header_timeout`, whatever trickles in meanwhile.

    One timer per connection phase, in the server: no cost per `receive` in the app. A
    module-level class (not one built per call) so that the server config can be pickled to
    the worker processes.

    It also watches each request's connection for the app (`CLIENT_WATCH` in the scope's
    extensions): a client that goes before its answer is complete has its request cancelled
    at once (disconnect.py), with no task listening per request. Like uvicorn's own disconnect
    notice, the watch is on the connection's latest request: a pipelined request still waiting
    behind another is never started once the connection is gone.
    """

    # Slots, not the instance dict: uvicorn's protocol already has about 30 attributes, and
    # CPython shares a dict's keys between instances only up to 30; past that each connection
    # carries a dict of its own.
    __slots__ = (
        "_body_seconds",
        "_head_bytes",
        "_head_tail",
        "_header_seconds",
        "_reading_head",
        "_timer",
        "_watch",
        "_writer",
    )

    def __init__(
        self, *args: Any, header_timeout: float, body_timeout: float, **kwargs: Any
    ) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._reading_head = False
        self._head_tail = b""
        self._header_seconds = header_timeout
        self._body_seconds = body_timeout
        self._watch: _ClientWatch | None = None
        self._writer: _HeadWithBody | None = None
        super().__init__(*args, **kwargs)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()  # a client that connects and sends nothing is timed too

    def data_received(self, data: bytes) -> None:
        if self._reading_head and self._head_too_large(data):
            self._refuse(_TOO_LARGE)
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_head:  # a new head: its own full time, whatever came before
            self._disarm()
            self._start_head()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._reading_head = False
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # a request to serve (no upgrade)
            self._watch = _ClientWatch(cycle)
            self.scope["extensions"] = {CLIENT_WATCH: {"watch": self._watch}}
            self._writer = _HeadWithBody(self.transport, self.loop)
            cycle.transport = self._writer  # type: ignore[assignment]
        if has_body(self.headers):
            self._arm(self._body_seconds)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:
            self._after_answer()  # answered before its body was all in

    def on_response_complete(self) -> None:
        if self._writer is not None:
            self._writer.flush()  # a head with no body (HEAD, 204) goes before the next answer
        super().on_response_complete()
        if self._timer is None:  # else the body is still coming: its own timer runs
            self._after_answer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        if self._watch is not None:
            self._watch.connection_lost()

    def _after_answer(self) -> None:
        if not self.transport.is_closing():
            self._arm(self.timeout_keep_alive + self._header_seconds)

    def _start_head(self) -> None:
        self._reading_head, self._head_bytes, self._head_tail = True, 0, b""
        self._arm(self._header_seconds)

    def _head_too_large(self, data: bytes) -> bool:
        """Count the head's bytes in `data` (up to its end, when it ends here)."""
        probe = self._head_tail + data
        end = probe.find(_END_OF_HEAD)
        taken = len(data) if end < 0 else end + len(_END_OF_HEAD) - len(self._head_tail)
        self._head_bytes += taken
        self._head_tail = probe[-3:]
        return self._head_bytes > MAX_HEAD_BYTES

    def _arm(self, seconds: float) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(seconds, self._refuse, _TIMED_OUT)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()


def limited_protocol(settings: Settings) -> Callable[..., LimitedHttpProtocol]:
    """The protocol factory uvicorn builds connections with (picklable)."""
    return functools.partial(
        LimitedHttpProtocol,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
    )


def raise_open_file_limit(wanted: int) -> None:
    """Lift the soft limit on open files towards `wanted` (each connection is one; the default
    soft limit is often 1,024), as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def uvicorn_config(
    app: Any, settings: Settings, *, host: str, port: int, workers: int = 1
) -> uvicorn.Config:
    """The server settings `llm-gateway serve` runs the gateway with (`app` an import string
    of a factory when there are several workers)."""
    # Connections, plus files, upstream connections and the log, with room to spare.
    # Each in-flight request may hold an upstream connection besides its client's.
    raise_open_file_limit(settings.max_connections + settings.max_in_flight + 1024)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        factory=workers > 1,
        workers=workers,
        http=limited_protocol(settings),  # type: ignore[arg-type]
        limit_concurrency=settings.max_connections,
        # Connections the kernel holds until the server accepts them (it caps this at
        # net.core.somaxconn). uvicorn's 2,048 overflowed when 5,000 streams started over a few
        # seconds on a busy loop (measured: 1,200-6,000 dropped handshakes), and a dropped one
        # is retried by the client's kernel after 1, 3, 7 s: a multi-second wait before the
        # request even arrives. Up to the connection limit, they wait in the queue instead
        # (and past it are accepted and refused with a 503, never dropped unanswered).
        backlog=max(2048, settings.max_connections),
        timeout_keep_alive=settings.keepalive_timeout,
        access_log=False,
        # uvicorn would rewrite each request's client address and scheme from X-Forwarded-*
        # headers (a middleware frame and a header scan per request); the gateway reads
        # neither: its loopback check is on the address a request came in on.
        proxy_headers=False,
        log_level="info",
        # On SIGTERM, open streams get this long to finish before they are cut.
        timeout_graceful_shutdown=settings.shutdown_grace,  # type: ignore[arg-type]
    )


def worker_app() -> FastAPI:
    """The app of one worker of `serve --workers N`: settings from the environment (the
    supervisor's, with the shared emulator's URL), no banner (the supervisor showed it)."""
    from llm_gateway.app import create_app

    return create_app(banner=False)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, telling prometheus_client when a worker is gone (its gauges then
    stop counting in the sums)."""

    def __init__(self, config: uvicorn.Config, sockets: list[Any], metrics_dir: str) -> None:
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir

    def keep_subprocess_alive(self) -> None:
        before = {p.pid for p in self.processes}
        super().keep_subprocess_alive()
        from prometheus_client import multiprocess

        for pid in before - {p.pid for p in self.processes}:
            if pid is not None:
                multiprocess.mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]


def serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    """Run the gateway until SIGTERM or Ctrl-C: in this process, or with `workers` > 1 as a
    supervisor of that many worker processes sharing the port."""
    if workers <= 1:
        from llm_gateway.app import create_app

        app = create_app(settings)
        uvicorn.Server(uvicorn_config(app, settings, host=host, port=port)).run()
        return
    _supervise(settings, host=host, port=port, workers=workers)


def _supervise(settings: Settings, *, host: str, port: int, workers: int) -> None:
    from llm_gateway.app import emulator_banner
    from llm_gateway.embedded import BackgroundServer
    from llm_gateway.emulator import Emulator, EmulatorConfig
    from llm_gateway.logging import LogSink, current_sink
    from llm_gateway.redaction import Redactor

    metrics_dir = tempfile.mkdtemp(prefix="llm-gateway-metrics-")
    # Before any worker imports prometheus_client: its multiprocess mode is chosen then.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    sink = LogSink(settings.log_dir, settings.log_level, Redactor(settings.secrets()))
    sink.start()
    token = current_sink.set(sink)
    emulator: BackgroundServer | None = None
    try:
        if settings.resolved_upstream() == "emulator" and settings.emulator_url is None:
            emulated = EmulatorConfig(
                seed=settings.emulator_seed, time_scale=settings.emulator_time_scale
            )
            emulator = BackgroundServer(Emulator(emulated).app)
            base = emulator.start()
            os.environ["GATEWAY_EMULATOR_URL"] = base  # one emulator for every worker
            emulator_banner(f"{base}/api/v1")
        logger.info(
            "llm-gateway %s: %d worker processes on http://%s:%d (metrics summed over them, "
            "one log file)",
            __version__,
            workers,
            host,
            port,
        )
        config = uvicorn_config(
            "llm_gateway.server:worker_app", settings, host=host, port=port, workers=workers
        )
        sock = config.bind_socket()
        try:
            _Supervisor(config, [sock], metrics_dir).run()
        finally:
            sock.close()
    finally:
        if emulator is not None:
            emulator.stop()
        logger.info("llm-gateway stopped (%d workers)", workers)
        current_sink.reset(token)
        sink.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
