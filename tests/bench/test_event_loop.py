"""The benchmark routes leave the event loop free: what takes long (parsing a prompt file,
encoding a big answer) runs in a thread, so the gateway keeps answering meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayFactory

pytestmark = pytest.mark.anyio


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
