"""The benchmark routes leave the event loop free: what takes long (parsing a prompt file,
encoding a big answer) runs in a thread, so the gateway keeps answering meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import GatewayFactory

pytestmark = pytest.mark.anyio

BIG = 32 * 1024  # bytes of JSON: more than any answer but a benchmark's statistics


async def _health_while(gateway: str, work: asyncio.Task[httpx.Response]) -> list[float]:
    """How long each `GET /health` took, asked one after another until `work` is done."""
    took = []
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        while not work.done():
            started = time.perf_counter()
            assert (await client.get("/health")).status_code == 200
            took.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
    return took


async def test_a_prompt_file_of_a_million_lines_is_refused_without_stalling(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    lines = b"a\n" * 1_500_000  # 1.5 million one-letter prompts: 3 MB
    with start_gateway(
        benchmarks_dir=tmp_path / "runs", bench_max_file_bytes=len(lines)
    ) as gateway:
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
            post = asyncio.create_task(
                client.post(
                    "/benchmark",
                    data={"model": "emulator/fast"},
                    files={"prompt_file": ("p.txt", lines, "text/plain")},
                )
            )
            took = await _health_while(gateway, post)
            refused = await post
    assert refused.status_code == 400
    assert "the limit is 1000" in refused.json()["error"]["message"]
    assert took and max(took) < 0.5, took


@pytest.fixture
def encoded_on_a_gateway_loop(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every JSON text over 32 KiB a gateway encodes on its event loop: the list
    should stay empty. Gateways run in threads of their own; the test's loop is the main
    thread's, and worker threads have no running loop."""
    seen: list[int] = []
    real = orjson.dumps

    def dumps(*args: Any, **kwargs: Any) -> bytes:
        encoded = real(*args, **kwargs)
        if len(encoded) > BIG and threading.current_thread() is not threading.main_thread():
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return encoded
            seen.append(len(encoded))
        return encoded

    monkeypatch.setattr(orjson, "dumps", dumps)
    return seen


async def test_a_big_runs_statistics_are_encoded_off_the_loop(
    start_gateway: GatewayFactory, tmp_path: Path, encoded_on_a_gateway_loop: list[int]
) -> None:
    # 10,000 requests answer megabytes (100 ms to encode); 80 answer enough to see where the
    # encoding happens.
    prompts = "".join(f"prompt {i}\n" for i in range(40)).encode()
    fields = {"model": "emulator/instant,emulator/fast", "runs": "1", "concurrency": "8"}
    with start_gateway(benchmarks_dir=tmp_path / "runs") as gateway:
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
            answer = await client.post(
                "/benchmark", data=fields, files={"prompt_file": ("p.txt", prompts)}
            )
            assert answer.status_code == 200 and len(answer.content) > BIG
            stored = await client.get(answer.json()["links"]["status"])
            assert stored.json()["summary"]["requests"] == 80
    assert encoded_on_a_gateway_loop == []
