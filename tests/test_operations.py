"""Operations: probes, Prometheus metrics, request limits, CORS, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import CLI, GatewayFactory

pytestmark = pytest.mark.anyio

BODY = {"prompt": "hi", "model": "emulator/fast", "max_tokens": 5}


async def test_health_and_ready(gateway: str, start_gateway: GatewayFactory) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
        # Probes use HEAD too (found by review: 405).
        heads = [await client.head(path) for path in ("/health", "/ready")]
    assert health.json() == {"status": "ok", "upstream": "openrouter"}
    assert ready.status_code == 200 and ready.json()["models"] > 0
    assert [(h.status_code, h.content) for h in heads] == [(200, b""), (200, b"")]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
        with start_gateway(upstream_url=dead, retry_attempts=1) as down:
            async with httpx.AsyncClient(base_url=down) as client:
                assert (await client.get("/health")).status_code == 200  # alive, not ready
                not_ready = await client.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["code"] == "not_ready"
    # Public, so no internal address from the connection error (it is in the log instead).
    assert "127.0.0.1" not in not_ready.text and "Connect call failed" not in not_ready.text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in the text exposition format."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no sample {prefix!r}")


async def test_metrics_count_requests_retries_cache_and_streams(
    gateway: str, emulator: Emulator
) -> None:
    emulator.config.time_scale = 1.0
    emulator.script(["429:10", "ok"])
    async with httpx.AsyncClient(base_url=gateway, timeout=20) as client:
        assert (await client.post("/generate", json=BODY)).status_code == 200
        await client.get("/models")
        await client.get("/models")
        await client.get("/benchmarks/20261127T000000Z-abcdef")
        await client.request("PROPFIND", "/generate")  # not a method of ours: no new label
        stream_body = {**BODY, "model": "emulator/steady", "max_tokens": 40}
        async with client.stream("POST", "/generate?stream=true", json=stream_body) as stream:
            # Held: an iterator dropped mid-stream is finalized at once, and httpx then closes
            # the connection; the gateway would see the client leave before the count is read.
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data:"):
                    break
            during = (await client.get("/metrics")).text
        await asyncio.sleep(0.05)
        after = await client.get("/metrics")
    text = after.text
    assert after.headers["content-type"].startswith("text/plain")
    assert (
        _sample(text, "llm_gateway_requests_total", method="POST", route="/generate", status="200")
        == 2
    )
    assert (
        _sample(
            text,
            "llm_gateway_requests_total",
            method="GET",
            route="/benchmarks/{run_id}",
            status="404",
        )
        == 1
    )
    assert (
        _sample(text, "llm_gateway_requests_total", method="OTHER", route="/generate", status="405")
        == 1
    )
    assert "PROPFIND" not in text
    count = "llm_gateway_request_duration_seconds_count"
    assert _sample(text, count, method="GET", route="/models") == 2
    attempts = "llm_gateway_upstream_attempts_total"
    assert (
        _sample(text, attempts, endpoint="POST /chat/completions", outcome="upstream_rate_limited")
        == 1
    )
    assert _sample(text, attempts, endpoint="POST /chat/completions", outcome="ok") == 1
    assert _sample(text, "llm_gateway_upstream_retries_total", reason="upstream_rate_limited") == 1
    assert _sample(text, "llm_gateway_models_cache_lookups_total", result="miss") == 1
    assert _sample(text, "llm_gateway_models_cache_lookups_total", result="hit") == 1
    assert _sample(during, "llm_gateway_open_streams") == 1
    assert _sample(text, "llm_gateway_open_streams") == 0
    assert _sample(text, "llm_gateway_benchmark_jobs", state="running") == 0


async def test_bodies_over_the_limit_are_refused_before_being_read(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    with start_gateway(max_body_bytes=2048) as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            big = await client.post("/generate", json={**BODY, "prompt": "x" * 4000})

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(10):
                    yield b"x" * 1000  # no Content-Length: counted as it arrives

            chunked = await client.post(
                "/generate", content=chunks(), headers={"content-type": "application/json"}
            )
            small = await client.post("/generate", json=BODY)
    for refused in (big, chunked):
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "payload_too_large"
    assert small.status_code == 200
    assert len(emulator.chat_records()) == 1


async def test_cors_is_off_unless_origins_are_configured(
    gateway: str, start_gateway: GatewayFactory
) -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with httpx.AsyncClient(base_url=gateway) as client:
        closed = await client.options("/generate", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    with start_gateway(cors_origins="https://app.example") as open_gateway:
        async with httpx.AsyncClient(base_url=open_gateway) as client:
            allowed = await client.options("/generate", headers=preflight)
            other = await client.options(
                "/generate", headers={**preflight, "Origin": "https://evil.example"}
            )
            simple = await client.post(
                "/generate", json=BODY, headers={"Origin": "https://app.example"}
            )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == "https://app.example"


def test_shutdown_lets_open_streams_finish(cli_env: dict[str, str], emulator: Emulator) -> None:
    emulator.config.time_scale = 1.0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env={**cli_env, "GATEWAY_SHUTDOWN_GRACE": "10"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/health")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
        body = {**BODY, "model": "emulator/steady", "max_tokens": 60}  # about 1.3 s
        lines = []
        with httpx.stream(
            "POST", base + "/generate?stream=true", json=body, timeout=20
        ) as response:
            for line in response.iter_lines():
                lines.append(line)
                if len(lines) == 1:
                    process.send_signal(signal.SIGTERM)  # mid-stream
        assert "event: done" in lines  # the stream ran to its end after the signal
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
