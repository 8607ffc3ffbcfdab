"""Slow and idle clients cannot hold the gateway's connections (issue 10: 300 connections
sending partial headers and 300 sending a slow body all stayed open after 20 s). One real
`llm-gateway serve` process, with short limits, checked over raw sockets."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from llm_gateway import server
from llm_gateway.config import Settings
from llm_gateway.server import raise_open_file_limit
from tests.conftest import CLI, TEST_KEY

LIMITS = {
    "GATEWAY_HEADER_TIMEOUT": "0.5",
    "GATEWAY_BODY_TIMEOUT": "0.5",
    "GATEWAY_KEEPALIVE_TIMEOUT": "1",
    "GATEWAY_MAX_CONNECTIONS": "8",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One gateway for the module. Nothing here reaches the upstream: none is running."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        OPENROUTER_API_KEY=TEST_KEY,
        GATEWAY_UPSTREAM_URL="http://127.0.0.1:9/api/v1",
        GATEWAY_LOG_DIR=str(tmp_path_factory.mktemp("logs")),
        **LIMITS,
    )
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError("the gateway did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


def _connect(port: int, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(first_bytes)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (within the socket timeout)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_slow_headers_and_slow_bodies_are_cut_off(served: int) -> None:
    silent = _connect(served, b"")
    partial = _connect(served, b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    body = b'{"prompt": "hi", "model": "emulator/fast"}'
    trickle = _connect(
        served,
        b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:5],
    )
    with silent, partial, trickle:
        # Each is answered 408 and closed, well within the socket's 5 s timeout.
        assert _read_all(silent).startswith(b"HTTP/1.1 408")
        assert _read_all(partial).startswith(b"HTTP/1.1 408")
        answer = _read_all(trickle)
    assert answer.startswith(b"HTTP/1.1 408")


def test_connections_beyond_the_cap_are_refused_at_once(served: int) -> None:
    idle = [_connect(served, b"") for _ in range(int(LIMITS["GATEWAY_MAX_CONNECTIONS"]) + 2)]
    try:
        one_more = _connect(served, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with one_more:
            assert one_more.recv(4096).startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()


def test_the_open_file_limit_is_raised_to_fit_the_connection_cap() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        wanted = soft + 16 if hard == resource.RLIM_INFINITY else min(soft + 16, hard)
        raise_open_file_limit(wanted)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_accept_queue_holds_as_many_connections_as_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not uvicorn's 2,048: thousands of clients connecting at once would lose handshakes, and
    # each lost one waits seconds for its retry.
    monkeypatch.setattr(server, "raise_open_file_limit", lambda _wanted: None)
    for cap, backlog in ((5000, 5000), (8, 2048)):
        settings = Settings(_env_file=None, max_connections=cap)  # type: ignore[call-arg]
        config = server.uvicorn_config(object(), settings, host="127.0.0.1", port=0)
        assert config.backlog == backlog


def _closed_within(sock: socket.socket, drip: bytes, seconds: float) -> bool:
    """Send `drip` every 0.1 s; whether the server closed the connection within `seconds`."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.sendall(drip)
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


@pytest.mark.parametrize(
    ("request_bytes", "drip"),
    [
        # One answered request, then blank lines (the parser skips them before a request line).
        (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"\r\n"),
        # Answered 413 from its Content-Length, unread; then the body trickles for ever.
        (b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n", b"a"),
    ],
    ids=["blank-lines-after-an-answer", "unread-body-after-413"],
)
def test_a_connection_cannot_be_held_after_its_answer(
    served: int, request_bytes: bytes, drip: bytes
) -> None:
    """Found by review: any byte stops uvicorn's keep-alive timer, so either of these held a
    connection for ever (no key needed, a 401 did the same)."""
    with socket.create_connection(("127.0.0.1", served), timeout=5) as sock:
        sock.sendall(request_bytes)
        assert sock.recv(65536).startswith(b"HTTP/1.1 ")
        # Keep-alive 1 s plus header timeout 0.5 s: closed well within 4 s.
        assert _closed_within(sock, drip, 4.0), "the connection was still open after 4 s"


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-H: v\r\n" * 150_000 + b"\r\n",
    ],
    ids=["1-MiB-header-value", "150k-headers"],
)
def test_an_oversized_request_head_is_refused(served: int, head: bytes) -> None:
    """Found by review: 150 MB of headers took the gateway to 2.6 GB before any key check."""
    with socket.create_connection(("127.0.0.1", served), timeout=5) as sock:
        try:
            sock.sendall(head)
            answer = _read_all(sock)
        except OSError:  # closed while the rest was still coming: the 431 may be lost in a reset
            return
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_head_just_under_the_limit_and_a_big_body_are_served(served: int) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(400))  # ~43 KB
    with socket.create_connection(("127.0.0.1", served), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def _read_answers(sock: socket.socket, *, with_body: tuple[bool, ...]) -> list[bytes]:
    """Whole HTTP/1.1 answers, one per entry of `with_body` (False: a head alone, as for HEAD;
    True: a head and its Content-Length of body)."""
    data = b""
    answers: list[bytes] = []
    for has_body in with_body:
        while (head_end := data.find(b"\r\n\r\n")) < 0 or len(data) < head_end + 4 + (
            length := _content_length(data[:head_end]) if has_body else 0
        ):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(answers)} answers"
            data += chunk
        answers.append(data[: head_end + 4 + length])
        data = data[head_end + 4 + length :]
    return answers


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def test_pipelined_answers_come_whole_and_in_order_after_a_head_request(served: int) -> None:
    # The server holds a response head back to send it with the body; a HEAD answer has no
    # body, and the answer after it must not overtake it.
    with socket.create_connection(("127.0.0.1", served), timeout=5) as sock:
        sock.sendall(
            b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: head-answer\r\n\r\n"
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: get-answer\r\n\r\n"
        )
        first, second = _read_answers(sock, with_body=(False, True))
    assert first.startswith(b"HTTP/1.1 200") and b"head-answer" in first
    assert second.startswith(b"HTTP/1.1 200") and b"get-answer" in second
    assert second.endswith(b"}")  # the JSON body, whole


def test_a_client_that_expects_100_continue_gets_it_before_sending_the_body(served: int) -> None:
    body = b'{"prompt": "hi", "model": "m"}'
    with socket.create_connection(("127.0.0.1", served), timeout=5) as sock:
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = sock.recv(65536)
    # No upstream runs for this module: the call itself fails, but as a whole HTTP answer.
    assert answer.startswith(b"HTTP/1.1 5") and b'"error"' in answer
