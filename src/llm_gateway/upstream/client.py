"""The upstream client: pooled keep-alive connections per app, retries, timeouts, error mapping.

`BaseClient` knows how to send a request to an OpenAI-compatible API and how to turn every
transport failure into a gateway error; `UpstreamClient` knows the endpoints (models, chat
completions). Requests go over h1.py's connections; a client that traces its send times (a
benchmark's) goes through an aiohttp session instead, whose trace hooks give the wire's times.
Nothing above this module sees a transport's type.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeAlias, TypeVar

import aiohttp
import orjson
from aiohttp.client_proto import ResponseHandler

from llm_gateway import __version__
from llm_gateway.errors import (
    UpstreamBadResponse,
    UpstreamCutOff,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from llm_gateway.redaction import Redactor
from llm_gateway.upstream.deadlines import Deadlines
from llm_gateway.upstream.h1 import H1Pool, H1Response
from llm_gateway.upstream.mapping import TranslateErrors, decode_json, error_from_response
from llm_gateway.upstream.retry import RetryPolicy
from llm_gateway.upstream.stream import ChatStream, inband_error, passable_id

T = TypeVar("T")

# A request body: JSON bytes sent as they are (a passthrough forwards its client's bytes), or a
# mapping the client encodes.
Body: TypeAlias = bytes | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `first_byte`: request sent -> response headers (streams); `idle`: longest
    silence inside a stream (any byte, keep-alives included, restarts it); `total`: a whole
    non-streaming call; `stream_commit`: how long a stream is held back waiting for its first
    chunk before the gateway commits to a 200 and forwards keep-alives instead."""

    connect: float = 10.0
    first_byte: float = 60.0
    idle: float = 60.0
    total: float = 300.0
    stream_commit: float = 2.0


@dataclass(slots=True)  # not frozen: built per call (see SSEEvent)
class Reply:
    """A successful non-streaming answer: the parsed body, the raw bytes, and what it cost."""

    data: dict[str, Any]
    raw: bytes
    attempts: int
    generation_id: str | None
    # perf_counter_ns() when the successful attempt was sent, and when its body was read (as
    # written to and read from the connection when the client traces send times).
    started_ns: int
    finished_ns: int


MAX_MODELS = 5_000
logger = logging.getLogger("llm_gateway.upstream")

_ACCEPT_EVENTS = {"Accept": "text/event-stream"}
_NO_HEADERS: Mapping[str, str] = {}
_USER_AGENT = f"llm-gateway/{__version__}"

# An error message comes from the start of the body; an error page larger than this is noise.
_MAX_ERROR_BYTES = 64 * 1024


async def _read_at_most(
    response: H1Response | aiohttp.ClientResponse, limit: int, what: str
) -> bytes:
    """The whole body unless it passes `limit` bytes: then UpstreamBadResponse (not retried:
    the upstream answered). A gzip bomb (aiohttp inflates what it is sent) stops here, not in
    memory."""
    size = response.content_length
    if size is not None and size > limit:
        raise UpstreamBadResponse(
            f"The upstream's answer to {what} is {size} bytes; the limit is {limit} "
            "(GATEWAY_MAX_UPSTREAM_BYTES)"
        )
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.readany():
        size += len(chunk)
        if size > limit:
            raise UpstreamBadResponse(
                f"The upstream's answer to {what} passed {limit} bytes (GATEWAY_MAX_UPSTREAM_BYTES)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(slots=True)
class WireLog:
    """What a client made with `trace_send_times=True` saw on the wire during the calls made
    while this log is current in the calling task (`WIRE_LOG.set(log)`), in perf_counter_ns():
    when the latest request was written to its connection (after any wait for a pooled or new
    connection), the status of its response, and when its body was fully read (`read()`).
    Each attempt overwrites the previous one's values, so after a call they describe its final
    attempt; `requests` counts the requests written. The benchmark sets one per measured
    request; nothing else pays for the tracing.

    Arrivals, not reads: `read_ns` is when the last bytes of a whole body arrived (its
    connection's latest `data_received`, in the loop's I/O phase); for a stream,
    `batch_read_ns` is when the latest read of its body returned and `batch_arrived_ns` when
    the first bytes that read returned had arrived. When many answers land at once, each task
    reads its own after the others, but they all arrived together."""

    sent_ns: int = 0
    status: int | None = None
    read_ns: int = 0
    requests: int = 0
    batch_read_ns: int = 0
    batch_arrived_ns: int = 0
    connection: Any = field(default=None, repr=False)  # the final attempt's protocol


class _ArrivalStampedProtocol(ResponseHandler):
    """A traced client's connection: notes when its latest bytes arrived."""

    arrived_ns = 0

    def data_received(self, data: bytes) -> None:
        self.arrived_ns = time.perf_counter_ns()
        super().data_received(data)


def _stamped_protocol(loop: asyncio.AbstractEventLoop) -> ResponseHandler:
    return _ArrivalStampedProtocol(loop=loop)


class _ArrivalStampedConnector(aiohttp.TCPConnector):
    """Makes its connections with `_ArrivalStampedProtocol` (the loop keeps the protocol's
    `data_received` from the start, so it must be the protocol's class from the start)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = functools.partial(_stamped_protocol, loop=self._loop)


# The first bytes fed to a traced stream's reader since its last read: reader id -> ns.
_ARRIVED: dict[int, int] = {}


class _ArrivalStampedReader(aiohttp.StreamReader):
    """A stream body's reader that remembers when its unread bytes started arriving. Installed
    by swapping the class of the response's reader (same slots, no new state: it lives in
    `_ARRIVED`), so the connection that feeds it is left alone."""

    __slots__ = ()

    def feed_data(self, data: bytes, size: int = 0) -> bool:
        if data:
            _ARRIVED.setdefault(id(self), time.perf_counter_ns())
        return super().feed_data(data, size)

    async def readany(self) -> bytes:
        data = await super().readany()
        arrived = _ARRIVED.pop(id(self), 0)
        log = WIRE_LOG.get()
        if log is not None:
            log.batch_read_ns = now = time.perf_counter_ns()
            log.batch_arrived_ns = arrived or now
        return data


WIRE_LOG: ContextVar[WireLog | None] = ContextVar("llm_gateway_wire_log", default=None)


async def _on_headers_sent(_session: object, ctx: SimpleNamespace, _params: object) -> None:
    # aiohttp buffers the headers to send them with the first body chunk: a request without a
    # body goes out now, one with a body when `_on_chunk_sent` runs.
    log = WIRE_LOG.get()
    if log is not None:
        log.sent_ns, log.status, log.read_ns = time.perf_counter_ns(), None, 0
        log.requests += 1
        ctx.first_chunk = True


async def _on_chunk_sent(_session: object, ctx: SimpleNamespace, _params: object) -> None:
    log = WIRE_LOG.get()
    if log is not None and getattr(ctx, "first_chunk", False):
        ctx.first_chunk = False
        log.sent_ns = time.perf_counter_ns()  # just before the socket write


async def _on_request_end(
    _session: object, _ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    log = WIRE_LOG.get()
    if log is None:
        return
    response = params.response
    log.status = response.status
    # aiohttp's own reference: a body that came with the headers has already released the
    # connection, but its protocol still knows when those bytes arrived.
    protocol = getattr(response, "_protocol", None)
    if response.content.is_eof():  # the whole body is here: its arrival cannot change now
        log.read_ns = getattr(protocol, "arrived_ns", 0)
    log.connection = protocol
    reader = response.content
    if response.content_type == "text/event-stream" and type(reader) is aiohttp.StreamReader:
        _ARRIVED.pop(id(reader), None)  # a reader this id belonged to before
        # An aiohttp whose reader differs refuses the swap: events are then stamped when read.
        with suppress(TypeError):
            reader.__class__ = _ArrivalStampedReader


async def _on_body_read(_session: object, _ctx: SimpleNamespace, _params: object) -> None:
    log = WIRE_LOG.get()
    if log is not None:
        arrived = log.read_ns or getattr(log.connection, "arrived_ns", 0)
        log.read_ns = arrived if arrived >= log.sent_ns > 0 else time.perf_counter_ns()


def _send_time_trace() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_on_headers_sent)
    trace.on_request_chunk_sent.append(_on_chunk_sent)
    trace.on_request_end.append(_on_request_end)
    trace.on_response_chunk_received.append(_on_body_read)
    return trace


def _sent_at(fallback: int) -> int:
    """When the final attempt was written, from the current wire log; else `fallback`."""
    log = WIRE_LOG.get()
    return log.sent_ns if log is not None and log.sent_ns >= fallback else fallback


def _read_at(fallback: int) -> int:
    log = WIRE_LOG.get()
    return log.read_ns if log is not None and log.read_ns else fallback


class BaseClient:
    """Sends requests to an OpenAI-compatible base URL with the key set once in the headers."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeouts: Timeouts,
        retry: RetryPolicy,
        pool_size: int = 0,
        headers: dict[str, str] | None = None,
        secrets: Iterable[str] = (),
        max_bytes: int = 64 * 1024 * 1024,
        trace_send_times: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        # One timer for each kind of timeout rather than one per call (deadlines.py).
        self._total = Deadlines(timeouts.total)
        self._first_byte = Deadlines(timeouts.first_byte)
        self._commit = Deadlines(timeouts.stream_commit)
        self._idle = Deadlines(timeouts.idle)
        self.retry = retry
        # Everything the upstream says is scrubbed of these (its own key always) on the way in.
        self.redact = Redactor([api_key, *secrets])
        # The most an answer (a whole body, or a whole stream) may bring, decompressed.
        self.max_bytes = max_bytes
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            **(headers or {}),
        }
        self._pool_size = pool_size
        # Trace hooks cost on every request: only the benchmark's own clients have them.
        self._trace_send_times = trace_send_times
        self._session: aiohttp.ClientSession | None = None
        # Requests go over h1.py's connections (aiohttp's session serves a traced client: _send).
        self._connections = H1Pool(
            self.base_url,
            headers=self._headers,
            connect=Deadlines(timeouts.connect),
            limit=pool_size,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made on first use because an aiohttp session must be created inside a running loop.
        if self._session is None:
            connector = _ArrivalStampedConnector if self._trace_send_times else aiohttp.TCPConnector
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=connector(limit=self._pool_size, limit_per_host=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts.connect),
                trace_configs=[_send_time_trace()] if self._trace_send_times else None,
            )
        return self._session

    async def aclose(self) -> None:
        await self._connections.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request_json(
        self, method: str, path: str, *, data: bytes | None = None
    ) -> tuple[dict[str, Any], bytes, Mapping[str, str]]:
        """One request, read whole within the total timeout; non-2xx raises the mapped error.

        A failure after a 2xx status line (the body cut off or stalled) is `UpstreamCutOff`,
        which is not retried: the upstream ran the generation and may already have billed it.
        """
        status = 0
        what = f"{method} {path}"
        try:
            with TranslateErrors(what, self.timeouts.total), self._total():
                response = await self._send(method, path, data)
                try:
                    status = response.status
                    if status >= 300:
                        body = await self._error_body(response)
                    else:
                        body = await _read_at_most(response, self.max_bytes, what)
                    # The transport's own case-insensitive mapping: OpenAI-compatible servers
                    # spell header names in any case, and copying them costs on every call.
                    headers = response.headers
                finally:
                    response.release()  # back to the pool if read to its end, else cut
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            if 200 <= status < 300:
                raise UpstreamCutOff(
                    f"The upstream's answer to {method} {path} broke off after its {status}: "
                    f"{exc.message}"
                ) from exc
            raise
        if status >= 300:
            raise error_from_response(status, body, headers)
        # Scrubbed before anything reads it: the model list, an answer, an error inside a 200.
        body = self.redact.content_bytes(body)
        parsed = decode_json(body)
        if not isinstance(parsed, dict):
            raise UpstreamBadResponse(
                f"The upstream answered {method} {path} with something that is not a JSON object"
            )
        if b"\\u" in body:  # escapes decode into text the byte search could not see
            scrubbed = self.redact.json(parsed)
            if scrubbed is not parsed:
                parsed, body = scrubbed, orjson.dumps(scrubbed)
        return parsed, body, headers

    async def _open_stream(self, path: str, data: bytes) -> ChatStream:
        """Send a streaming request, check its status, and pre-read up to the first chunk."""
        started = time.perf_counter_ns()
        response: H1Response | aiohttp.ClientResponse | None = None
        with TranslateErrors(f"POST {path}", self.timeouts.first_byte):
            try:
                # Within the first-byte deadline: the headers, and an answer that is not a
                # stream (an error's body, however slowly it comes).
                with self._first_byte():
                    response = await self._send("POST", path, data, _ACCEPT_EVENTS)
                    if response.status >= 300:
                        body = await self._error_body(response)
                        raise error_from_response(response.status, body, response.headers)
                    content_type = response.headers.get("Content-Type", "")
                    if not content_type.startswith("text/event-stream"):
                        # Some upstreams answer a stream request with a JSON error and a 200.
                        body = await self._error_body(response)
                        error = inband_error(decode_json(body) or {})
                        raise error or UpstreamBadResponse(
                            "The upstream answered a stream request with "
                            f"{content_type or 'no type'}"
                        )
                started = _sent_at(started)
                stream = ChatStream(
                    response,
                    idle=self._idle,
                    started_ns=started,
                    redact=self.redact,
                    max_bytes=self.max_bytes,
                )
                await stream.prime(self._commit)
            except BaseException:
                if response is not None:
                    response.close()
                raise
        return stream

    async def _send(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: Mapping[str, str] = _NO_HEADERS,
    ) -> H1Response | aiohttp.ClientResponse:
        """Send a request; its answer once the status and headers are in. Over h1.py's
        connections, or for a client that traces send times (a benchmark's) through aiohttp's
        session, whose trace hooks tell when a request was written and its answer arrived."""
        if self._trace_send_times:
            return await self.session.request(
                method, self.base_url + path, data=data, headers=headers, allow_redirects=False
            )
        response = await self._connections.request(method, path, data, headers)
        encoding = response.headers.get("Content-Encoding", "identity")
        if encoding.lower() != "identity":
            # Asked for none (h1.py): an encoded body would be read as garbage, or inflated.
            response.close()
            raise UpstreamBadResponse(
                f"The upstream answered {method} {path} with Content-Encoding {encoding!r}, "
                "though asked for an unencoded answer"
            )
        return response

    async def _error_body(self, response: H1Response | aiohttp.ClientResponse) -> bytes:
        """An error answer's body: its start only, scrubbed before anyone cuts a message out of
        it (a key cut in half by a length limit would escape the scrubbing)."""
        body = await response.content.read(_MAX_ERROR_BYTES)
        return self.redact(body.decode("utf-8", errors="replace")).encode()

    async def _retried(
        self, fn: Callable[[], Awaitable[T]], what: str, body: Body | None = None
    ) -> tuple[T, int]:
        """`fn` under the retry policy; a failure leaves with its message scrubbed. `body`
        names the model, for the upstream's rate-limit waits (read only when one applies)."""
        try:
            return await self.retry.call(
                fn, what=what, model=(lambda: model_of(body)) if body is not None else None
            )
        except UpstreamError as exc:
            self.redact.error(exc)
            raise


def model_of(body: Body) -> str | None:
    """The model a chat request names (a passthrough's bytes are parsed only when asked)."""
    data = decode_json(body) if isinstance(body, bytes) else body
    model = data.get("model") if isinstance(data, Mapping) else None
    return model if isinstance(model, str) else None


class UpstreamClient(BaseClient):
    """The endpoints the gateway uses: the model list and chat completions."""

    async def list_models(self) -> tuple[list[dict[str, Any]], int]:
        """The raw model objects of `GET /models`, and the attempts it took."""

        async def fetch() -> list[dict[str, Any]]:
            body, _, _ = await self._request_json("GET", "/models")
            models = body.get("data")
            if not isinstance(models, list):
                raise UpstreamBadResponse("The upstream model list has no `data` array")
            kept = [m for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]
            if len(kept) > MAX_MODELS:
                # OpenRouter lists hundreds; every /models answer is built from the list, so an
                # upstream listing millions must not make each of them take seconds.
                logger.warning(
                    "the upstream lists %d models; keeping the first %d", len(kept), MAX_MODELS
                )
                kept = kept[:MAX_MODELS]
            return kept

        return await self._retried(fetch, "GET /models")

    async def complete(self, body: Body) -> Reply:
        """A non-streaming chat completion. A 200 that carries an error raises (not retried)."""
        encoded = body if isinstance(body, bytes) else orjson.dumps(body)
        started = 0

        async def send() -> tuple[dict[str, Any], bytes, Mapping[str, str]]:
            nonlocal started
            started = time.perf_counter_ns()
            return await self._request_json("POST", "/chat/completions", data=encoded)

        (data, raw, headers), attempts = await self._retried(send, "POST /chat/completions", body)
        started, finished = _sent_at(started), _read_at(time.perf_counter_ns())
        error = inband_error(data)
        if error is not None:
            error.attempts = attempts
            raise self.redact.error(error)
        body_id = data.get("id")
        generation_id = passable_id(headers.get("X-Generation-Id"), self.redact) or (
            passable_id(body_id, self.redact) if isinstance(body_id, str) else None
        )
        return Reply(data, raw, attempts, generation_id, started, finished)

    async def stream(self, body: Body) -> ChatStream:
        """A streaming chat completion, pre-flighted (and retried) up to its first chunk.
        A mapping is sent with `"stream": true`; bytes as they are (they must ask to stream)."""
        encoded = body if isinstance(body, bytes) else orjson.dumps({**body, "stream": True})

        async def open_() -> ChatStream:
            return await self._open_stream("/chat/completions", encoded)

        stream, attempts = await self._retried(open_, "POST /chat/completions (stream)", body)
        stream.attempts = attempts
        return stream
