"""Serve an ASGI app on a loopback port from a background thread.

Used to run the built-in emulator next to the gateway when no upstream key is configured, and
by the tests to put real servers on loopback. A thread (with its own event loop) keeps the
emulator's work off the gateway's loop, as a real upstream would be, and keeps uvicorn from
installing signal handlers (it only does so on the main thread).

uvicorn's loggers are process-wide, and they are the gateway's own server's too: an embedded
server must not configure them (it once set `uvicorn.error` to WARNING, and the gateway's
"Uvicorn running on ..." and shutdown lines vanished), and its own start-up lines, which name
its internal port, must not look like the gateway's. So it leaves logging alone, and a filter
drops the records its thread logs to uvicorn's loggers.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

_THREAD_PREFIX = "llm-gateway-embedded-"


class _FromEmbeddedServers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.threadName or not record.threadName.startswith(_THREAD_PREFIX)


_QUIET = _FromEmbeddedServers()
for _name in ("uvicorn.error", "uvicorn.access"):
    logging.getLogger(_name).addFilter(_QUIET)


class BackgroundServer:
    """`with BackgroundServer(app) as url: ...` serves `app` at `url` until the block ends."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                lifespan="on",
                timeout_graceful_shutdown=1,
                log_config=None,
                log_level=None,
                **config,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"{_THREAD_PREFIX}{self.url}",
            daemon=True,
        )

    def start(self, timeout: float = 10.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._sock.close()
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.005)
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
