"""`CancelOnDisconnect` with fake `receive`/`send` (Starlette's way of testing ASGI): a client
that leaves cancels its request; a server that cancels gets a 503; a finished answer is not
mistaken for a client leaving. Both ways of learning that the client left: listening itself,
and told by a server that watches the connection (its `ClientWatch` in the scope)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from llm_gateway.context import RequestContext, current_request
from llm_gateway.disconnect import CLIENT_WATCH, CancelOnDisconnect

pytestmark = pytest.mark.anyio


def _scope(body: bool = True) -> Scope:
    headers = [(b"content-length", b"2")] if body else []
    return {"type": "http", "method": "POST", "path": "/generate", "headers": headers}


class Client:
    """The server side of one request: body messages, then a disconnect when told."""

    def __init__(self, *messages: Message) -> None:
        self.messages = list(messages)
        self.leave = asyncio.Event()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.messages:
            return self.messages.pop(0)
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


BODY: Message = {"type": "http.request", "body": b"{}", "more_body": False}


async def _run(app: Any, client: Client, scope: Scope) -> RequestContext:
    ctx = RequestContext("test")
    token = current_request.set(ctx)
    try:
        await CancelOnDisconnect(app)(scope, client.receive, client.send)
    finally:
        current_request.reset(token)
    return ctx


async def test_a_client_that_leaves_cancels_the_work_and_is_logged_as_499() -> None:
    client = Client(BODY)
    cancelled = asyncio.Event()

    async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
        await receive()  # the body
        client.leave.set()  # the client goes while the upstream is still working
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ctx = await _run(app, client, _scope())
    assert cancelled.is_set()
    assert ctx.client_closed
    assert client.sent == []


async def test_a_completed_answer_is_not_a_client_leaving() -> None:
    client = Client(BODY)

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        # The server reports a disconnect as soon as the last piece is handed over.
        client.leave.set()
        await send({"type": "http.response.body", "body": b"ok"})
        await asyncio.sleep(0)  # let the listener see it

    ctx = await _run(app, client, _scope())
    assert not ctx.client_closed
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]


async def test_a_request_without_a_body_still_gets_its_body_message() -> None:
    client = Client({"type": "http.request", "body": b"", "more_body": False})
    got: list[Message] = []

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        got.append(await receive())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await _run(app, client, _scope(body=False))
    assert got == [{"type": "http.request", "body": b"", "more_body": False}]


async def test_the_app_asking_again_after_the_body_learns_of_the_disconnect() -> None:
    client = Client(BODY)

    async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
        await receive()
        client.leave.set()
        assert (await receive())["type"] == "http.disconnect"
        await asyncio.sleep(30)  # cancelled meanwhile

    assert (await _run(app, client, _scope())).client_closed


async def test_a_request_cancelled_by_the_server_gets_a_503_in_the_error_shape() -> None:
    client = Client(BODY)
    started = asyncio.Event()

    async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
        await receive()
        started.set()
        await asyncio.sleep(30)

    task = asyncio.ensure_future(_run(app, client, _scope()))
    await started.wait()
    task.cancel()  # what uvicorn does to requests still running after its shutdown grace
    ctx = await task
    assert not ctx.client_closed
    start, body = client.sent
    assert start["status"] == 503
    assert orjson.loads(body["body"])["error"]["code"] == "shutting_down"


async def test_a_client_that_leaves_mid_upload_is_a_499_whatever_the_app_answers() -> None:
    client = Client({"type": "http.request", "body": b"{", "more_body": True})
    client.leave.set()

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        assert (await receive())["type"] == "http.disconnect"
        # What a framework does with a body it could not finish reading: a 400, to nobody.
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"bad body"})

    assert (await _run(app, client, _scope())).client_closed


class ServerWatch:
    """A server that watches the connection for the app (`llm-gateway serve`'s protocol)."""

    def __init__(self) -> None:
        self.client_left = False
        self.response_started = False
        self.task: asyncio.Task[object] | None = None

    def watch(self, task: asyncio.Task[object]) -> None:
        self.task = task

    def client_goes(self) -> None:
        self.client_left = True
        assert self.task is not None
        self.task.cancel()


def _watched(scope: Scope, watch: ServerWatch) -> Scope:
    return {**scope, "extensions": {CLIENT_WATCH: {"watch": watch}}}


async def test_under_a_watching_server_the_app_gets_the_servers_own_receive_and_send() -> None:
    client, watch = Client(BODY), ServerWatch()
    seen: list[object] = []

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        seen.extend([receive, send])

    await _run(app, client, _watched(_scope(), watch))
    # Nothing wrapped, no task listening: the server tells of the client leaving.
    assert seen == [client.receive, client.send]
    assert watch.task is not None


async def test_a_client_the_server_saw_leave_cancels_the_work_and_is_logged_as_499() -> None:
    client, watch = Client(BODY), ServerWatch()
    cancelled = asyncio.Event()

    async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
        await receive()
        watch.client_goes()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ctx = await _run(app, client, _watched(_scope(), watch))
    assert cancelled.is_set()
    assert ctx.client_closed
    assert client.sent == []


async def test_a_client_the_server_saw_leave_mid_stream_is_not_a_499() -> None:
    client, watch = Client(BODY), ServerWatch()

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        watch.response_started = True
        watch.client_goes()
        await asyncio.sleep(30)

    ctx = await _run(app, client, _watched(_scope(), watch))
    assert not ctx.client_closed  # the stream's own outcome says how it ended
    assert [m["type"] for m in client.sent] == ["http.response.start"]


async def test_under_a_watching_server_a_server_cancel_still_gets_a_503() -> None:
    client, watch = Client(BODY), ServerWatch()
    started = asyncio.Event()

    async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
        await receive()
        started.set()
        await asyncio.sleep(30)

    task = asyncio.ensure_future(_run(app, client, _watched(_scope(), watch)))
    await started.wait()
    task.cancel()
    ctx = await task
    assert not ctx.client_closed
    start, body = client.sent
    assert start["status"] == 503
    assert orjson.loads(body["body"])["error"]["code"] == "shutting_down"
