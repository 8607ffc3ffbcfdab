"""An OpenAI-compatible upstream with known timing that logs its own send times.

Every chat completion is answered on a fixed schedule counted from the moment the request's
first bytes were read: the first content token at `--ttft-ms`, then one every `--gap-ms`,
`--tokens` in all (defaults: 200 ms, 20 ms, 50, as in the study of issue 12). A streamed answer
sends each token as its own SSE event (OpenRouter's shape: a role chunk first, the content
chunks, a finish chunk, a usage chunk, `[DONE]`); a whole answer is sent when its last token
would have been.

For each request it logs, on `time.perf_counter_ns()` (CLOCK_MONOTONIC, the clock the
benchmark stamps with, shared by every process on the machine):
`recv_ns` (when its first bytes reached the kernel: the socket's receive timestamp,
SO_TIMESTAMPNS, so a busy or descheduled upstream still knows when the request came),
`first_ns` (just before the first token was written), `last_ns` (just before the last token,
or the whole answer, was written). The schedule counts from `recv_ns`. Each answer carries
a generation id (`X-Generation-Id`, and the `id` of every chunk), which the benchmark records
per row, so every client row is matched with the upstream's own. On SIGTERM each upstream
process writes its log to `<--log>.<n>.json`.

The true TTFT of a request is `first_ns - recv_ns` and its true latency `last_ns - recv_ns`,
whatever the upstream's own delays: if it sends late, it logs late. What the benchmark
measures minus that is the benchmark's error.

Raw non-blocking sockets on a uvloop loop, parsed with httptools: the upstream stays far from
busy at the loads measured; `--processes N` runs N of them on one port (SO_REUSEPORT).

Run: python benchmarks/accuracy/upstream.py --port 9020
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import signal
import socket
import struct
import time
from typing import Any

import httptools
import orjson
import uvloop

_CREATED = 1767225600


class Timing:
    def __init__(self, ttft_ms: float, gap_ms: float, tokens: int) -> None:
        self.ttft_ns = round(ttft_ms * 1e6)
        self.gap_ns = round(gap_ms * 1e6)
        self.tokens = tokens


def _sse(obj: object) -> bytes:
    event = b"data: " + orjson.dumps(obj) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _chunk(gen_id: str, model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _sse(
        {
            "id": gen_id,
            "provider": "Accuracy",
            "model": model,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}


class Server:
    """The state one upstream process shares between its connections: the log and the ids."""

    def __init__(self, timing: Timing, worker: int) -> None:
        self.timing = timing
        self.log: list[dict[str, Any]] = []
        self._ids = itertools.count()
        self._prefix = f"gen-acc-{os.getpid()}-{worker}-"

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"


class Upstream:
    """One client connection, read with `recvmsg` so the kernel's receive time comes along."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.recv_ns = 0  # when the request's first bytes reached this host's kernel
        self.out = bytearray()  # what the socket has not taken yet
        self.closed = False
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(65536, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self.close()
            return
        if not self.recv_ns:
            self.recv_ns = _kernel_ns(ancillary) or time.perf_counter_ns()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.out:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            if sent == len(data):
                return
            data = data[sent:]
            self.loop.add_writer(self.sock.fileno(), self._writable)
        self.out += data

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.out[:sent]
        if not self.out:
            self.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        if self.out:
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, body, recv_ns = self.url, b"".join(self.body), self.recv_ns
        method = self.parser.get_method()
        self.url, self.body, self.recv_ns = b"", [], 0
        # Answered after this read: reading stays quick when many requests land at once.
        self.loop.call_soon(self._handle, method, url, body, recv_ns)

    def _handle(self, method: bytes, url: bytes, body: bytes, recv_ns: int) -> None:
        path = url.partition(b"?")[0]
        if method == b"POST" and path.endswith(b"/chat/completions"):
            self._chat(body, recv_ns)
        elif path.endswith(b"/models"):
            self._reply(200, orjson.dumps({"data": [{"id": "accuracy/known-timing"}]}))
        else:
            self._reply(200, b'{"status":"ok"}')

    def _reply(self, status: int, body: bytes, extra: bytes = b"") -> None:
        head = (
            b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (status, len(body), extra)
        )
        self.write(head + body)

    def _chat(self, body: bytes, recv_ns: int) -> None:
        request = orjson.loads(body)
        model = str(request.get("model", "accuracy/known-timing"))
        timing = self.server.timing
        tokens = min(int(request.get("max_tokens") or timing.tokens), timing.tokens)
        gen_id = self.server.new_id()
        entry: dict[str, Any] = {
            "id": gen_id,
            "stream": bool(request.get("stream")),
            "tokens": tokens,
            "recv_ns": recv_ns,
            "first_ns": None,
            "last_ns": None,
        }
        self.server.log.append(entry)
        if entry["stream"]:
            self.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\nx-generation-id: "
                + gen_id.encode()
                + b"\r\n\r\n"
                + _chunk(gen_id, model, {"role": "assistant", "content": ""})
            )
            self._at(recv_ns + timing.ttft_ns, self._token, entry, model, 0)
        else:
            last = recv_ns + timing.ttft_ns + (tokens - 1) * timing.gap_ns
            self._at(last, self._whole, entry, model)

    def _at(self, when_ns: int, callback: Any, *args: Any) -> None:
        self.loop.call_later(max(0.0, (when_ns - time.perf_counter_ns()) / 1e9), callback, *args)

    def _token(self, entry: dict[str, Any], model: str, index: int) -> None:
        if self.closed:
            return
        frame = _chunk(entry["id"], model, {"content": f"t{index} "})
        last = index == entry["tokens"] - 1
        if last:
            frame += _chunk(entry["id"], model, {}, "length")
            frame += _sse(
                {
                    "id": entry["id"],
                    "object": "chat.completion.chunk",
                    "created": _CREATED,
                    "model": model,
                    "choices": [],
                    "usage": _usage(entry["tokens"]),
                }
            )
            frame += b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
        now = time.perf_counter_ns()
        if index == 0:
            entry["first_ns"] = now
        if last:
            entry["last_ns"] = now
        self.write(frame)
        if not last:
            timing = self.server.timing
            when = entry["recv_ns"] + timing.ttft_ns + (index + 1) * timing.gap_ns
            self._at(when, self._token, entry, model, index + 1)

    def _whole(self, entry: dict[str, Any], model: str) -> None:
        if self.closed:
            return
        text = "".join(f"t{i} " for i in range(entry["tokens"]))
        body = orjson.dumps(
            {
                "id": entry["id"],
                "provider": "Accuracy",
                "model": model,
                "object": "chat.completion",
                "created": _CREATED,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "length",
                    }
                ],
                "usage": _usage(entry["tokens"]),
            }
        )
        entry["first_ns"] = entry["last_ns"] = time.perf_counter_ns()
        self._reply(200, body, b"x-generation-id: " + entry["id"].encode() + b"\r\n")


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
_CMSG_SPACE = socket.CMSG_SPACE(16)


def _kernel_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel's receive time of what `recvmsg` returned, on perf_counter_ns()'s clock: the
    kernel stamps CLOCK_REALTIME, so it is moved by the realtime - monotonic offset of now."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            offset = time.time_ns() - time.perf_counter_ns()
            return seconds * 1_000_000_000 + nanoseconds - offset
    return None


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    return sock


def serve(port: int, timing: Timing, log: str | None, worker: int = 0) -> None:
    async def main() -> None:
        server = Server(timing, worker)
        loop = asyncio.get_running_loop()
        listener = _listen(port)
        listener.setblocking(False)
        connections: list[Upstream] = []

        def accept() -> None:
            while True:
                try:
                    sock, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    return
                connections.append(Upstream(server, sock))

        loop.add_reader(listener.fileno(), accept)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        loop.remove_reader(listener.fileno())
        listener.close()
        for connection in connections:
            connection.close()
        if log:  # written once, at the end: nothing slows the upstream while it is measured
            with open(f"{log}.{worker}.json", "wb") as handle:
                handle.write(orjson.dumps(server.log))

    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9020)
    parser.add_argument("--ttft-ms", type=float, default=200.0)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--log", help="write the send-time log to LOG.<n>.json on SIGTERM")
    args = parser.parse_args()
    timing = Timing(args.ttft_ms, args.gap_ms, args.tokens)
    if args.processes == 1:
        serve(args.port, timing, args.log)
        return
    workers = [
        multiprocessing.Process(target=serve, args=(args.port, timing, args.log, k))
        for k in range(args.processes)
    ]
    for worker in workers:
        worker.start()

    def stop(*_: object) -> None:
        for worker in workers:
            worker.terminate()  # SIGTERM: each writes its log and ends

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
