"""Fixtures for the benchmark tests: a client to the emulator, and records made by hand."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llm_gateway.bench.records import RequestRecord
from llm_gateway.runtime import build_client
from llm_gateway.upstream.client import UpstreamClient
from tests.conftest import gateway_settings


@pytest.fixture
async def bench_client(emulator_url: str, tmp_path: Path) -> AsyncIterator[UpstreamClient]:
    """The upstream client the benchmark uses, pointed at the emulator, retries off."""
    settings = gateway_settings(emulator_url, tmp_path, retry_attempts=1)
    client = build_client(settings, base_url=emulator_url, api_key="bench-key")
    yield client
    await client.aclose()


def make_record(**values: Any) -> RequestRecord:
    """A successful record with plausible defaults; override what the test is about."""
    defaults: dict[str, Any] = {name: None for name in RequestRecord.columns()}
    defaults.update(
        model="m/a",
        prompt_index=0,
        prompt="p",
        run=1,
        warmup=False,
        status="ok",
        http_status=200,
        finish_reason="stop",
        started_at="2026-11-27T00:00:00.000+00:00",
        offset_seconds=0.0,
        queue_seconds=0.0,
        ttft_seconds=0.1,
        latency_seconds=1.0,
        done_seconds=1.0,
        completion_tokens=10,
        tokens_per_second=10.0,
        chunks=10,
        stalls=0,
        attempts=1,
        retry_wait_seconds=0.0,
    )
    defaults.update(values)
    return RequestRecord(**defaults)


_FILE_CALLS = (
    (io, "open"),
    (os, "stat"),
    (os, "listdir"),
    (os, "scandir"),
    (os, "mkdir"),
    (os, "replace"),
)


@pytest.fixture
def loop_file_access(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every file call in `tmp_path / "runs"` (the benchmarks folder of the tests using this)
    that a gateway makes on its event loop: the list should stay empty, as file I/O belongs in
    a thread. Gateways run in threads of their own; the test's own loop, in the main thread,
    may prepare files as it likes."""
    seen: list[str] = []
    root = str(tmp_path / "runs")

    def on_gateway_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return threading.current_thread() is not threading.main_thread()

    for module, name in _FILE_CALLS:
        real = getattr(module, name)

        def watched(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            path = str(args[0]) if args and isinstance(args[0], str | Path) else ""
            if path.startswith(root) and on_gateway_loop():
                seen.append(f"{_name}({path})")
            return _real(*args, **kw)

        monkeypatch.setattr(module, name, watched)
    return seen
