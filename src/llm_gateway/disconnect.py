"""Work stops when its client goes: a request whose client disconnects is cancelled.

An upstream call runs (and is billed) until it is cancelled, and a benchmark keeps calling the
upstream until it is stopped, so a client that leaves must stop what it started: a non-streamed
`/generate` or `/v1` call, a stream still waiting for its first token, an inline `POST
/benchmark`. ASGI reports a disconnect only to whoever awaits `receive()`, and a route awaits
it only while reading the body; `CancelOnDisconnect` listens from the moment the body has been
read (at once for a request without one) to the end of the answer, and cancels the request's
task when the client goes. The cancelled request is logged as `status=499` (nothing was
answered) or, for a stream already under way, with `stream_error=client_disconnected`.

How it learns that the client went depends on the server. `llm-gateway serve`'s protocol
(server.py) knows the moment a connection is lost, and offers a `ClientWatch` in the request's
scope extensions (CLIENT_WATCH): the request's task is handed to it and cancelled
from the server when the client goes, at no cost per request or per streamed event. Under any
other server (`uvicorn --factory ...`) the middleware listens itself: it wraps `receive` and
`send`, and from WATCH_AFTER_S on a task reads `receive` for the disconnect.

The server cancels requests too: on shutdown, uvicorn cancels what is still running after its
grace period and would answer a plain-text 500 with a traceback. A request cancelled that way
before its answer started gets a 503 `shutting_down` in the error shape instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.asgi import has_body, route_path
from llm_gateway.context import request_context
from llm_gateway.errors import ShuttingDown
from llm_gateway.rendering import send_error

logger = logging.getLogger("llm_gateway.errors")

_DISCONNECT: Message = {"type": "http.disconnect"}

# The scope extension under which a server offers its `ClientWatch`:
# `scope["extensions"][CLIENT_WATCH] == {"watch": <ClientWatch>}`.
CLIENT_WATCH = "llm_gateway.client_watch"


class ClientWatch(Protocol):
    """A server's watch over one request's connection."""

    @property
    def client_left(self) -> bool:
        """The client went before its answer was complete."""

    @property
    def response_started(self) -> bool:
        """The answer's status line has been sent."""

    def watch(self, task: asyncio.Task[object]) -> None:
        """Cancel `task` when the client goes (at once, if it has already gone)."""


# How long a request runs before its client is watched. Nearly every answer is out sooner, and
# a watcher (a task reading `receive`) started for every request cost a fifth of the gateway's
# throughput; a client that leaves a longer request (a stream, a slow model, a benchmark) is
# noticed at most this much later.
WATCH_AFTER_S = 0.05


class _Listener:
    """Reads `receive` for the app until the body is in, then listens for the disconnect."""

    __slots__ = (
        "_app_waiting",
        "_gone",
        "_keep_body",
        "_receive",
        "_stash",
        "_task",
        "_timer",
        "_watcher",
        "finished",
        "left_mid_upload",
    )

    def __init__(self, receive: Receive, task: asyncio.Task[object]) -> None:
        self._receive = receive
        self._task = task
        self._stash: list[Message] = []  # one message at most
        self._watcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._keep_body = False
        self._gone = False
        self._app_waiting: asyncio.Event | None = None
        self.finished = False  # the whole answer has been handed to the server
        self.left_mid_upload = False  # the client went before its body was all in

    @property
    def client_left(self) -> bool:
        return self._gone and not self.finished

    def listen(self, *, keep_body: bool = False) -> None:
        """Listen from WATCH_AFTER_S on, unless the answer is out by then; `keep_body` keeps a
        body message read meanwhile for the app (a request without a body still has its one
        empty body message to deliver)."""
        if self._watcher is None and self._timer is None:
            self._keep_body = keep_body
            self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._watch_now)

    def _watch_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watcher is None and not self.finished:
            self._watcher = asyncio.ensure_future(self._watch(self._keep_body))

    async def _watch(self, keep_body: bool) -> None:
        while (message := await self._receive())["type"] != "http.disconnect":
            if keep_body:
                self._stash.append(message)
                self._wake_app()
            # Else: body the app stopped reading (it answered early); dropped.
        self._gone = True
        self._wake_app()
        if not self.finished:
            self._task.cancel()

    def _wake_app(self) -> None:
        if self._app_waiting is not None:
            self._app_waiting.set()

    async def receive(self) -> Message:
        """What the app gets for `receive()`."""
        if self._timer is not None:  # the app asks before the watch began: begin it now
            self._watch_now()
        if self._watcher is None:
            message = await self._receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.listen()
            elif message["type"] == "http.disconnect":
                self.left_mid_upload = True  # whatever the app answers, nobody reads it
            return message
        while not self._stash and not self._gone:
            self._app_waiting = self._app_waiting or asyncio.Event()
            await self._app_waiting.wait()
            self._app_waiting.clear()
        return self._stash.pop(0) if self._stash else _DISCONNECT

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


class CancelOnDisconnect:
    """Cancels a request's task when its client disconnects before the answer is complete."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None  # ASGI apps run in a task
        # Taken out of the scope: the watch refers to the server's request, which refers to the
        # scope, and a reference cycle left behind by every request is work for the collector.
        extension = (scope.get("extensions") or {}).pop(CLIENT_WATCH, None)
        if extension is None:
            await self._listening(scope, receive, send, task)
            return
        server_watch: ClientWatch = extension["watch"]
        server_watch.watch(task)
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if task.uncancel() > 0:
                raise  # cancelled again meanwhile: not ours to swallow
            await _cancelled(
                scope,
                send,
                client_left=server_watch.client_left,
                started=server_watch.response_started,
            )

    async def _listening(
        self, scope: Scope, receive: Receive, send: Send, task: asyncio.Task[object]
    ) -> None:
        """The request under a server that does not watch its connection for the app."""
        listener = _Listener(receive, task)
        if not has_body(scope["headers"]):
            listener.listen(keep_body=True)
        started = False

        def watched_send(message: Message) -> Awaitable[None]:  # not a coroutine: see logging.py
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                listener.listen()  # whatever body is left is no longer wanted
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Before the send: once the server has the last piece it reports a disconnect
                # to anyone listening, and that is the end of the answer, not a client leaving.
                listener.finished = True
            return send(message)

        try:
            await self.app(scope, listener.receive, watched_send)
            if listener.left_mid_upload:
                ctx = request_context()
                if ctx is not None:
                    ctx.client_closed = True
        except asyncio.CancelledError:
            if task.uncancel() > 0:
                raise  # cancelled again meanwhile: not ours to swallow
            await _cancelled(scope, watched_send, client_left=listener.client_left, started=started)
        finally:
            listener.stop()


async def _cancelled(scope: Scope, send: Send, *, client_left: bool, started: bool) -> None:
    """The request's task was cancelled (and the cancellation absorbed): by its client leaving,
    logged as 499 unless a stream was under way; else by the server stopping, answered 503
    `shutting_down` unless the answer had started (then the connection just ends)."""
    if client_left:
        ctx = request_context()
        if ctx is not None and not started:
            ctx.client_closed = True
        return
    if started:
        return
    logger.warning("server shutting down: %s %s cancelled", scope["method"], scope["path"])
    error = ShuttingDown("The gateway is shutting down; send the request again.")
    await send_error(send, error, path=route_path(scope))
