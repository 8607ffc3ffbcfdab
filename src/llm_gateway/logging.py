"""Logging: `server_logs.txt` (rotating) and stderr, one access line per request, no secrets.

- `configure_logging` attaches the handlers to the `llm_gateway` logger only, replacing the
  ones it attached before (several apps in one process, as in the tests, must not pile up
  handlers, and a global `dictConfig` would also close handlers that belong to others).
  Records are redacted, stamped with the request id and formatted where they are logged, and
  the finished lines go through a queue to a writer thread that writes them in batches (every
  50 ms), so neither a slow disk nor a thread switch per line costs the event loop anything.
- `AccessLogMiddleware` is pure ASGI: it gives every request an id (the client's
  `X-Request-ID` when it is sane), times it, writes one INFO line when the response ends
  (streams included), and turns our own unhandled bugs into a logged traceback plus a JSON 500.
  The access line is the one line every request writes, so it skips the `logging` machinery
  (same layout, same redaction, same level switch): handlers added to `llm_gateway.access`
  by hand do not see it; the file and stderr do.
- `RedactFilter` scrubs the API key and any bearer token from every record, tracebacks too.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import logging.handlers
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.asgi import route_path, send_error
from llm_gateway.context import RequestContext, current_request
from llm_gateway.errors import GatewayError

LOG_FILE = "server_logs.txt"
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_MARK = "_llm_gateway_handler"

access_logger = logging.getLogger("llm_gateway.access")
error_logger = logging.getLogger("llm_gateway.errors")


class ContextFilter(logging.Filter):
    """Stamps each record with the current request id ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_request.get()
        record.request_id = ctx.request_id if ctx is not None else "-"
        return True


# Every character str.splitlines() breaks on: client input (a path, a model id) written
# unescaped could otherwise forge whole log lines.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


class RedactFilter(logging.Filter):
    """Replaces secrets with `***` in the message, its arguments and any traceback, and
    escapes line breaks in the message so one record is always one line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _BEARER.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage()).translate(_LINE_BREAKS)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class _RotatingFile:
    """`server_logs.txt`, rolled over to `.1` ... `.<backups>` when it passes `max_bytes`.

    Not logging's RotatingFileHandler: the writer thread writes whole batches, and a logging
    handler is closed by any `logging.config.dictConfig` in the process (uvicorn runs one).
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._stream = self._open()

    def _open(self) -> TextIO:
        return self.path.open("a", encoding="utf-8")

    def write(self, text: str) -> None:
        if self._stream.tell() + len(text) > self.max_bytes:
            self._roll_over()
        self._stream.write(text)
        self._stream.flush()

    def _roll_over(self) -> None:
        self._stream.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._stream = self._open()

    def close(self) -> None:
        self._stream.close()


class _BatchWriter(threading.Thread):
    """Writes the queued lines in batches, a few times a second.

    A writer woken for every record (logging's QueueListener) costs a thread switch per
    request line, measured at ~40% of the gateway's throughput under load; this one wakes on a
    timer and writes whatever has piled up, one write per destination. It gets finished text
    (any Python work here competes with the event loop for the GIL).
    """

    def __init__(
        self,
        lines: queue.SimpleQueue[str],
        file: _RotatingFile,
        console: TextIO,
        redact: RedactFilter,
    ) -> None:
        super().__init__(name="llm-gateway-log-writer", daemon=True)
        self.lines = lines
        self.file = file
        self.console = console
        self.redact = redact
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stopping.wait(_BATCH_INTERVAL_S):
            self.drain()
        self.drain()

    def drain(self) -> None:
        """Write everything queued so far (from this thread or any other)."""
        with self._lock:
            batch: list[str] = []
            while True:
                try:
                    batch.append(self.lines.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            text = "\n".join(batch) + "\n"
            self.file.write(text)
            # stderr may already be closed at interpreter exit; the file has the lines.
            with contextlib.suppress(OSError, ValueError):
                self.console.write(text)
                self.console.flush()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)
        self.file.close()


class _Enqueue(logging.handlers.QueueHandler):
    """Formats each record where it is logged and queues the finished line for the writer.

    The stock `prepare` copies the record for a listener to format later; ours never leave
    the process and `RedactFilter` has already redacted the message and the traceback.
    """

    def prepare(self, record: logging.LogRecord) -> str:
        return self.format(record)


_BATCH_INTERVAL_S = 0.05
_MAX_LOG_BYTES = 10 * 1024 * 1024
_writer: _BatchWriter | None = None


def configure_logging(log_dir: Path, level: str, secrets: Iterable[str] = ()) -> Path:
    """Send `llm_gateway.*` records to `<log_dir>/server_logs.txt` and stderr; return the path."""
    global _writer
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOG_FILE
    root = logging.getLogger("llm_gateway")
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    _stop_writer()
    file = _RotatingFile(path, max_bytes=_MAX_LOG_BYTES, backups=5)
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    redact = RedactFilter(secrets)
    _writer = _BatchWriter(lines, file, sys.stderr, redact)
    _writer.start()
    enqueue = _Enqueue(lines)
    enqueue.setFormatter(logging.Formatter(_FORMAT))
    enqueue.addFilter(ContextFilter())  # the request id lives in the caller's context
    enqueue.addFilter(redact)  # secrets never even reach the queue
    setattr(enqueue, _MARK, True)
    root.addHandler(enqueue)
    root.setLevel(level)
    root.propagate = False
    return path


def flush_logs() -> None:
    """Write every record logged so far, now."""
    if _writer is not None:
        _writer.drain()


def _stop_writer() -> None:
    global _writer
    if _writer is not None:
        _writer.stop()  # writes what is still queued, then closes the handlers
        _writer = None


atexit.register(_stop_writer)


# Request ids need to be unique, not secret: a random per-process prefix and a counter cost
# nothing per request, where uuid4() is a getrandom() system call each time.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
            break
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class AccessLogMiddleware:
    """One log line per request, request ids on every response, and the last-resort 500."""

    def __init__(self, app: ASGIApp, *, extra_headers: dict[str, str] | None = None) -> None:
        self.app = app
        self._extra = [(k.lower().encode(), v.encode()) for k, v in (extra_headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(_request_id(scope))
        token = current_request.set(ctx)
        started = time.perf_counter()
        status = 0
        headers = [(b"x-request-id", ctx.request_id.encode()), *self._extra]

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if status == 0:
                status = 500
                error = GatewayError(
                    f"Internal error in the gateway; logged with request id {ctx.request_id}."
                )
                await send_error(
                    send_with_id, error, path=route_path(scope), request_id=ctx.request_id
                )
        finally:
            _log_access(scope, ctx, status, time.perf_counter() - started)
            current_request.reset(token)


def _log_access(scope: Scope, ctx: RequestContext, status: int, seconds: float) -> None:
    writer = _writer
    if writer is None or not access_logger.isEnabledFor(logging.INFO):
        return
    endpoint: Any = scope.get("endpoint")
    handler = getattr(endpoint, "__name__", "-")
    query = scope.get("query_string", b"")
    target = scope["path"] + ("?" + query.decode("latin-1")[:200] if query else "")
    # The one line every request writes, built directly rather than as a LogRecord through
    # the logger, its filters and a formatter (~12 us, ~14% of a proxied call's throughput
    # under load): the same layout, and the same redaction for the only part a client
    # chooses, the target.
    target = writer.redact.redact(target)
    if not target.isprintable():  # every line break is unprintable; most targets have none
        target = target.translate(_LINE_BREAKS)
    message = (
        f"{scope['method']} {target} "
        f"handler={handler} status={status or '-'} duration_ms={seconds * 1000:.1f} "
        f"upstream_attempts={ctx.upstream_attempts}"
        + (f" stream_error={ctx.stream_error}" if ctx.stream_error else "")
    )
    writer.lines.put(
        _FORMAT
        % {
            "asctime": _asctime(time.time()),
            "levelname": "INFO",
            "name": access_logger.name,
            "request_id": ctx.request_id,
            "message": message,
        }
    )


_second: tuple[int, str] = (0, "")


def _asctime(now: float) -> str:
    """`logging.Formatter`'s default `asctime` (local time, milliseconds after a comma), with
    the part that changes once a second formatted once a second."""
    global _second
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole)))
    return f"{_second[1]},{int((now - whole) * 1000):03d}"
