"""How the runtime joins the shared state: only a server does, and a Redis that is down at
start-up is not fatal (the gateway serves, degraded, and connects when Redis comes)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from llm_gateway.errors import SharedStateUnavailable
from llm_gateway.runtime import open_runtime
from tests.conftest import gateway_settings
from tests.services import RedisServer

pytestmark = pytest.mark.anyio


async def test_a_command_line_run_keeps_its_state_to_itself(tmp_path: Path) -> None:
    # A Redis that does not exist: a command-line run never tries it.
    settings = gateway_settings(
        "http://127.0.0.1:9/api/v1", tmp_path, redis_url="redis://127.0.0.1:9/0"
    )
    async with open_runtime(settings) as runtime:
        assert runtime.shared.state == "in-process"


async def test_redis_down_at_start_up_then_coming(tmp_path: Path, emulator_url: str) -> None:
    redis = RedisServer(tmp_path)  # not started yet
    settings = gateway_settings(
        emulator_url, tmp_path, redis_url=redis.url, benchmarks_dir=tmp_path / "runs"
    )
    try:
        async with open_runtime(settings, serving=True) as runtime:
            assert runtime.shared.state == "degraded"
            with pytest.raises(SharedStateUnavailable):
                async with runtime.jobs.inline():
                    pass
            assert [m.id for m in await runtime.catalog.models()]  # served, fetched locally
            assert await runtime.shared.limiter.acquire("key:k") is None  # no limits set
            await asyncio.to_thread(redis.start)
            deadline = time.monotonic() + 5
            shared = runtime.shared  # read afresh each time: the link's health changes
            while shared.state != "redis":
                assert time.monotonic() < deadline, "did not connect"
                await asyncio.sleep(0.05)
            async with runtime.jobs.inline():  # the one limit can be checked again
                pass
    finally:
        await asyncio.to_thread(redis.stop)
