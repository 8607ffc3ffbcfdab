"""A tiny, fast OpenRouter-shaped upstream for overhead measurements.

Why not the emulator: the harness measures it alone in every run (see the "emulator alone" table),
and under load it answers a few thousand requests a second, about what the floor proxy can push
through, so a gateway measured against it would be capped by the upstream, not by itself. This
server is a raw asyncio protocol on uvloop with httptools parsing and pre-encoded replies, so the
upstream stays several times faster than anything measured through it.

Wire shape (the parts a gateway reads): `POST .../chat/completions` answers an OpenRouter
`chat.completion` (id, provider, model, choices[0].message, usage with cost), or with
`"stream": true` Server-Sent Events: a role chunk, N content chunks, a finish chunk, a separate
usage chunk (`choices: []`), then `data: [DONE]`. Content chunk i carries the text `t<i> `, so a
client can check that no event was lost or reordered. `GET .../models` and `GET /health` answer
too. HTTP/1.1 keep-alive, no pipelining during a paced stream (no client the harness uses
pipelines).

Model ids choose the pacing: `perf/paced-<chunks>-<ms>` streams <chunks> content chunks <ms>
apart (the first at once); any other id answers at once with `--chunks` chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from dataclasses import dataclass
from typing import cast

import httptools
import orjson
import uvloop

_PACED = re.compile(r"^perf/paced-(\d{1,4})-(\d{1,5})$")
_MAX_CHUNKS = 2000
_ID = "gen-perf-0000000000000000000"
_CREATED = 1767225600


@dataclass(frozen=True, slots=True)
class Reply:
    """Everything pre-encoded for one model id."""

    json_response: bytes  # a whole HTTP response
    stream_head: bytes  # status line + headers + the role chunk
    content: tuple[bytes, ...]  # one chunked-encoding frame per content chunk
    tail: bytes  # finish + usage + [DONE] + the terminating zero-length chunk
    delay_s: float


def _chunk_frame(event: bytes) -> bytes:
    # Chunked transfer encoding: each SSE event is one HTTP chunk, as a streaming server sends.
    return b"%x\r\n%s\r\n" % (len(event), event)


def _sse(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _usage(chunks: int) -> dict[str, object]:
    return {
        "prompt_tokens": 9,
        "completion_tokens": chunks,
        "total_tokens": 9 + chunks,
        "cost": 1.2e-06,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def build_reply(model: str, default_chunks: int) -> Reply:
    paced = _PACED.match(model)
    chunks = min(int(paced.group(1)), _MAX_CHUNKS) if paced else default_chunks
    delay_s = int(paced.group(2)) / 1000 if paced else 0.0
    texts = [f"t{i} " for i in range(chunks)]
    head = {
        "id": _ID,
        "provider": "Perf",
        "model": model,
        "object": "chat.completion.chunk",
        "created": _CREATED,
    }

    def choice(delta: dict[str, object], finish: str | None) -> dict[str, object]:
        return {
            "index": 0,
            "delta": delta,
            "finish_reason": finish,
            "native_finish_reason": finish,
            "logprobs": None,
        }

    body = orjson.dumps(
        {
            "id": _ID,
            "provider": "Perf",
            "model": model,
            "object": "chat.completion",
            "created": _CREATED,
            "choices": [
                {
                    "logprobs": None,
                    "finish_reason": "stop",
                    "native_finish_reason": "stop",
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(texts),
                        "refusal": None,
                        "reasoning": None,
                    },
                }
            ],
            "system_fingerprint": "",
            "usage": _usage(chunks),
        }
    )
    json_response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"x-generation-id: " + _ID.encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    )
    role = _sse({**head, "choices": [choice({"role": "assistant", "content": ""}, None)]})
    stream_head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"x-generation-id: " + _ID.encode() + b"\r\ntransfer-encoding: chunked\r\n\r\n"
    ) + _chunk_frame(role)
    content = tuple(
        _chunk_frame(_sse({**head, "choices": [choice({"role": "assistant", "content": t}, None)]}))
        for t in texts
    )
    finish = _sse({**head, "choices": [choice({"role": "assistant", "content": ""}, "stop")]})
    usage = _sse({**head, "choices": [], "usage": _usage(chunks)})
    tail = _chunk_frame(finish) + _chunk_frame(usage) + _chunk_frame(b"data: [DONE]\n\n")
    return Reply(json_response, stream_head, content, tail + b"0\r\n\r\n", delay_s)


def _simple(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\n".encode()
        + b"content-type: "
        + content_type
        + b"\r\ncontent-length: %d\r\n\r\n" % len(body)
        + body
    )


_HEALTH = _simple("200 OK", b'{"status":"ok"}')
_MODELS = _simple(
    "200 OK",
    orjson.dumps(
        {
            "data": [
                {"id": "perf/instant", "name": "Perf: instant", "context_length": 131072},
                {"id": "perf/paced-20-10", "name": "Perf: paced", "context_length": 131072},
            ]
        }
    ),
)
_NOT_FOUND = _simple("404 Not Found", b'{"error":{"code":404,"message":"Not Found"}}')
_BAD = _simple("400 Bad Request", b'{"error":{"code":400,"message":"Invalid JSON body"}}')


class Server:
    """Shared state: the reply cache (one entry per model id seen)."""

    def __init__(self, default_chunks: int) -> None:
        self.default_chunks = default_chunks
        self._replies: dict[str, Reply] = {}

    def reply(self, model: str) -> Reply:
        found = self._replies.get(model)
        if found is None:
            # Bounded: a client sending endless distinct ids cannot grow the cache forever.
            if len(self._replies) > 1000:
                self._replies.clear()
            found = self._replies[model] = build_reply(model, self.default_chunks)
        return found


class Connection(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer from the cache."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        # The client left mid-stream: stop pacing the rest of its events.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None:
            return
        path = self._url.split(b"?", 1)[0]
        method = self._parser.get_method()
        if method == b"POST" and path.endswith(b"/chat/completions"):
            self._chat(transport, b"".join(self._body))
        elif method == b"GET" and path.endswith(b"/models"):
            transport.write(_MODELS)
        elif method == b"GET" and path in (b"/health", b"/"):
            transport.write(_HEALTH)
        else:
            transport.write(_NOT_FOUND)
        if not self._parser.should_keep_alive() and self._timer is None:
            self._close()

    # replies

    def _chat(self, transport: asyncio.Transport, raw: bytes) -> None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            transport.write(_BAD)
            return
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            transport.write(_BAD)
            return
        reply = self._server.reply(body["model"])
        if body.get("stream") is not True:
            transport.write(reply.json_response)
        elif reply.delay_s <= 0 or len(reply.content) <= 1:
            transport.write(reply.stream_head + b"".join(reply.content) + reply.tail)
        else:
            # The first content chunk goes with the headers (upstream TTFT ~0); the rest are
            # paced by timers, which cost nothing per idle stream, so 1000 streams stay cheap.
            transport.write(reply.stream_head + reply.content[0])
            self._schedule(reply, 1)

    def _schedule(self, reply: Reply, index: int) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(reply.delay_s, self._tick, reply, index)

    def _tick(self, reply: Reply, index: int) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if index + 1 < len(reply.content):
            transport.write(reply.content[index])
            self._schedule(reply, index + 1)
        else:
            transport.write(reply.content[index] + reply.tail)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(host: str, port: int, default_chunks: int) -> None:
    loop = asyncio.get_running_loop()
    server_state = Server(default_chunks)
    server = await loop.create_server(
        lambda: Connection(server_state), host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks of instant replies")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.chunks))


if __name__ == "__main__":
    main()
