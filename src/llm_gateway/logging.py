"""Logging: `server_logs.txt` (rotating) and stderr, one access line per request, no secrets.

The log belongs to the app, not to the process:
- `LogSink` is an app's log output: the file, stderr, a writer thread that writes the finished
  lines in batches (every 50 ms: neither a slow disk nor a thread switch per line costs the
  event loop anything). `create_app` builds it, the lifespan starts and stops it, and the
  middleware get it by constructor. Several apps in one process (as in the tests) each write
  their own file.
- The modules log to the usual module loggers (`llm_gateway.errors`, ...). One small handler on
  the `llm_gateway` logger sends each record to the sink of the app it was logged for, found in
  a context variable that the lifespan and each request set (tasks and `to_thread` calls
  inherit it). A record logged outside any app goes to stderr.
- Every line is redacted (`redaction.py`: the upstream key, the inbound keys, any bearer token)
  and escaped
  (control characters, so a client's input can neither forge a line nor drive a terminal).
- `AccessLogMiddleware` gives every request an id (the client's `X-Request-ID` when it is sane),
  times it, logs one INFO line when the response ends (streams included) through
  `llm_gateway.access`, and turns our own unhandled bugs into a logged traceback plus a 500.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Awaitable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.asgi import route_path
from llm_gateway.context import CLIENT_CLOSED, RequestContext, current_request
from llm_gateway.errors import InternalError
from llm_gateway.redaction import Redactor
from llm_gateway.rendering import send_error

LOG_FILE = "server_logs.txt"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# What one access line carries of what a client chose: enough to recognise the request, never
# enough for one anonymous client to push the log history out with huge paths.
_MAX_PATH_CHARS = 512
_MAX_QUERY_CHARS = 200
_BATCH_INTERVAL_S = 0.05
_MAX_LOG_BYTES = 10 * 1024 * 1024
_BACKUPS = 5

access_logger = logging.getLogger("llm_gateway.access")
error_logger = logging.getLogger("llm_gateway.errors")


# Every control character (C0, DEL, C1) and the Unicode line and paragraph separators, as
# escapes: client input (a path, a model id) written raw could forge log lines, hide text
# behind backspaces or send escape sequences to a terminal that shows the log.
_CONTROLS = str.maketrans(
    {
        c: repr(c)[1:-1]
        for c in [*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\u2028", "\u2029"]
    }
)


def escape_controls(text: str) -> str:
    # `isprintable` is a fast scan, and nearly every line passes it.
    return text if text.isprintable() else text.translate(_CONTROLS)


class _RotatingFile:
    """`server_logs.txt`, rolled over to `.1` ... `.<backups>` when it would pass `max_bytes`.

    Written in bytes with O_APPEND, each batch in one `write`, under an exclusive lock on the
    log folder: several processes (workers) can share the file without losing or interleaving
    lines, and whichever of them rolls it over, the others notice (the path no longer names
    the file they have open) and reopen it.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._dir = os.open(path.parent, os.O_RDONLY)
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._dir, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._dir, fcntl.LOCK_UN)

    def write(self, data: bytes) -> None:
        with self._locked():
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = -1
            if current != os.fstat(self._fd).st_ino:  # rolled over by another process
                os.close(self._fd)
                self._fd = self._open()
            size = os.fstat(self._fd).st_size
            if size and size + len(data) > self.max_bytes:
                self._roll_over()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]

    def _roll_over(self) -> None:
        os.close(self._fd)
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._fd = self._open()

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._dir)


_second: tuple[int, str] = (0, "")


def _asctime(now: float) -> str:
    """`logging.Formatter`'s default `asctime` (local time, milliseconds after a comma), with
    the part that changes once a second formatted once a second."""
    global _second
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole)))
    return f"{_second[1]},{int((now - whole) * 1000):03d}"


class LogSink:
    """One app's log output: `<log_dir>/server_logs.txt` and stderr, written in batches.

    Lines are formatted (redacted, escaped) where they are logged; the writer thread only joins
    and writes them (any Python work there competes with the event loop for the GIL).
    """

    def __init__(
        self,
        log_dir: Path,
        level: str,
        redact: Redactor,
        *,
        console: TextIO | None = None,
        interval: float = _BATCH_INTERVAL_S,
    ) -> None:
        self.path = log_dir / LOG_FILE
        self._level: int = logging.getLevelNamesMapping()[level]
        self.redact = redact
        self._console = console if console is not None else sys.stderr
        self._interval = interval
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._file: _RotatingFile | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _RotatingFile(self.path, max_bytes=_MAX_LOG_BYTES, backups=_BACKUPS)
        self._thread = threading.Thread(
            target=self._run, name="llm-gateway-log-writer", daemon=True
        )
        self._thread.start()
        _router.attach(self)

    def stop(self) -> None:
        """Write what is still queued, then close the file."""
        _router.detach(self)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def enabled(self, level: int) -> bool:
        return level >= self._level

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.put(format_record(record, self.redact))

    def put(self, line: str) -> None:
        """Queue a line already formatted (and redacted) for this sink."""
        self._lines.put(line)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        """Write everything queued so far (from the writer thread or any other)."""
        with self._lock:
            batch: list[str] = []
            while True:
                try:
                    batch.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            if not batch or self._file is None:
                return
            text = "\n".join(batch) + "\n"
            self._file.write(text.encode("utf-8", errors="backslashreplace"))
            # stderr may already be closed at interpreter exit; the file has the lines.
            with contextlib.suppress(OSError, ValueError):
                self._console.write(text)
                self._console.flush()


def format_line(
    created: float, level: str, name: str, request_id: str, message: str, redact: Redactor
) -> str:
    """One log line in the sink's layout (`<asctime> <level> <logger> [<request id>]
    <message>`), its message redacted and escaped. An f-string, not `%` with a dict: every
    request's access line is made here (~1 us against ~1.6)."""
    return f"{_asctime(created)} {level} {name} [{request_id}] {escape_controls(redact(message))}"


def format_record(record: logging.LogRecord, redact: Redactor) -> str:
    """`record` as one line (redacted and escaped), plus its traceback (redacted) if any."""
    request_id = getattr(record, "request_id", None)
    if request_id is None:
        ctx = current_request.get()
        request_id = ctx.request_id if ctx is not None else "-"
    line = format_line(
        record.created, record.levelname, record.name, request_id, record.getMessage(), redact
    )
    if record.exc_info:
        line += "\n" + redact(logging.Formatter().formatException(record.exc_info))
    return line


# The sink of the app a piece of code is running for: set by the app's lifespan and by every
# request it serves, inherited by the tasks and threads they start.
current_sink: ContextVar[LogSink | None] = ContextVar("current_sink", default=None)


class _Router(logging.Handler):
    """The one handler on the `llm_gateway` logger: each record to its app's sink."""

    def __init__(self) -> None:
        super().__init__()
        self._sinks: list[LogSink] = []
        self._guard = threading.Lock()
        self._no_secrets = Redactor(())

    def attach(self, sink: LogSink) -> None:
        with self._guard:
            self._sinks.append(sink)
            self._configure()

    def detach(self, sink: LogSink) -> None:
        with self._guard:
            if sink in self._sinks:
                self._sinks.remove(sink)
            self._configure()

    def only_handler_for(self, logger: logging.Logger) -> bool:
        """Whether a record of `logger` would reach this handler and nothing else."""
        return (
            not logger.handlers
            and logger.propagate
            and logger.parent is not None
            and logger.parent.handlers == [self]
            and not logger.filters
        )

    def _configure(self) -> None:
        root = logging.getLogger("llm_gateway")
        if self not in root.handlers:
            root.addHandler(self)
        # Records below every live sink's level are not even created.
        root.setLevel(min((s._level for s in self._sinks), default=logging.WARNING))
        root.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        sink = current_sink.get()
        if sink is not None:
            if sink.enabled(record.levelno):
                sink.emit(record)
            return
        # Logged for no app in particular: stderr only, redacted of bearer tokens still.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(format_record(record, self._no_secrets) + "\n")


_router = _Router()


class AccessLogMiddleware:
    """One log line per request, request ids on every response, and the last-resort 500."""

    def __init__(
        self, app: ASGIApp, *, sink: LogSink, extra_headers: dict[str, str] | None = None
    ) -> None:
        self.app = app
        self.sink = sink
        self._extra = [(k.lower().encode(), v.encode()) for k, v in (extra_headers or {}).items()]
        # Request ids need to be unique, not secret: a random per-app prefix and a counter
        # cost nothing per request, where uuid4() is a getrandom() system call each time.
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count()

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate: str = value.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    return candidate
                break
        return f"{self._id_prefix}{next(self._ids):016x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(self._request_id(scope))
        token = current_request.set(ctx)
        sink_token = current_sink.set(self.sink)
        started = time.perf_counter()
        status = 0
        headers = [(b"x-request-id", ctx.request_id.encode()), *self._extra]

        # Not a coroutine: a stream's every event passes here, and handing on the inner send's
        # awaitable costs no coroutine of its own (as with the metrics and disconnect wrappers).
        def send_with_id(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *headers]
            return send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if status == 0:
                error = InternalError(
                    f"Internal error in the gateway; logged with request id {ctx.request_id}."
                )
                await send_error(send_with_id, error, path=route_path(scope))
        finally:
            if self.sink.enabled(logging.INFO) and access_logger.isEnabledFor(logging.INFO):
                self._log(scope, ctx, status, time.perf_counter() - started)
            current_sink.reset(sink_token)
            current_request.reset(token)

    def _log(self, scope: Scope, ctx: RequestContext, status: int, seconds: float) -> None:
        endpoint: Any = scope.get("endpoint")
        handler = getattr(endpoint, "__name__", "-")
        path: str = scope["path"]
        if len(path) > _MAX_PATH_CHARS:
            path = f"{path[:_MAX_PATH_CHARS]}...({len(path)} chars)"
        query = scope.get("query_string", b"")
        target = path + ("?" + query.decode("latin-1")[:_MAX_QUERY_CHARS] if query else "")
        # A client that left gets nothing, whatever was about to be sent to it.
        shown = CLIENT_CLOSED if ctx.client_closed else (status or "-")
        message = (
            f"{scope['method']} {target} handler={handler} status={shown} "
            f"duration_ms={seconds * 1000:.1f} upstream_attempts={ctx.upstream_attempts}"
            + (f" stream_error={ctx.stream_error}" if ctx.stream_error else "")
        )
        if _router.only_handler_for(access_logger):
            # Nobody else listens: the line straight to the sink, without a LogRecord and the
            # logging machinery (a third of the access line's cost, on every request).
            self.sink.put(
                format_line(
                    time.time(),
                    "INFO",
                    access_logger.name,
                    ctx.request_id,
                    message,
                    self.sink.redact,
                )
            )
            return
        # A record made directly: `access_logger.info` would walk the stack to find the caller,
        # a cost every request would pay for a location nobody reads.
        record = logging.LogRecord(access_logger.name, logging.INFO, "", 0, message, None, None)
        record.request_id = ctx.request_id
        access_logger.handle(record)
