"""Benchmarks over HTTP within their bounds: inline runs share the job limit and stop when
their client leaves, stored runs are listed a page at a time without file I/O on the event
loop, and kept within the retention limits."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.bench.test_store import fake_runs
from tests.conftest import GatewayFactory

pytestmark = pytest.mark.anyio

PROMPTS = b"one\ntwo\nthree\n"


async def _post(
    gateway: str, *fields: tuple[str, str], timeout: float = 30, **params: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway, timeout=timeout) as client:
        return await client.post(
            "/benchmark",
            params=params,
            data=dict(fields),
            files={"prompt_file": ("p.txt", PROMPTS, "text/plain")},
        )


async def _until(check: Callable[[], Awaitable[Any]], seconds: float = 10) -> Any:
    """The first truthy result of `check`, polled until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while not (result := await check()):
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)
    return result


def _jobs(metrics: str, state: str) -> float:
    match = re.search(rf'^llm_gateway_benchmark_jobs\{{state="{state}"\}} (\S+)$', metrics, re.M)
    assert match, metrics
    return float(match.group(1))


async def test_inline_runs_count_against_the_job_limit(
    start_gateway: GatewayFactory, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.time_scale = 1.0
    with start_gateway(benchmarks_dir=tmp_path / "runs", bench_max_jobs=1) as gateway:
        steady = ("model", "emulator/steady"), ("runs", "1"), ("max_tokens", "5")
        inline = asyncio.create_task(_post(gateway, *steady))
        async with httpx.AsyncClient(base_url=gateway) as client:

            async def running() -> bool:
                return _jobs((await client.get("/metrics")).text, "running") == 1

            await _until(running)  # the inline run is visible, as a running benchmark
            refused = await _post(gateway, ("model", "emulator/instant"), ("runs", "1"))
            queued = await _post(gateway, ("model", "emulator/instant"), background="true")
            metrics = (await client.get("/metrics")).text
        assert (await inline).status_code == 200
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_jobs"
    assert queued.status_code == 202  # a background job still queues behind it
    assert (_jobs(metrics, "running"), _jobs(metrics, "queued")) == (1, 1)


async def test_an_inline_run_whose_client_leaves_stops_and_keeps_what_it_measured(
    start_gateway: GatewayFactory, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.time_scale = 1.0
    with start_gateway(benchmarks_dir=tmp_path / "runs", bench_max_jobs=1) as gateway:
        steady = ("model", "emulator/steady"), ("runs", "20"), ("max_tokens", "5")
        with pytest.raises(httpx.ReadTimeout):
            await _post(gateway, *steady, timeout=1.5)
        async with httpx.AsyncClient(base_url=gateway) as client:

            async def interrupted() -> dict[str, Any] | None:
                [run] = (await client.get("/benchmarks")).json()["runs"]
                return run if run["status"] == "interrupted" else None

            run = await _until(interrupted)
            sent = len(emulator.chat_records())
            await asyncio.sleep(0.5)  # the upstream hears nothing more from this run
            assert len(emulator.chat_records()) == sent < 60
            details = (await client.get(f"/benchmarks/{run['id']}")).json()
            rows = (await client.get(f"/benchmarks/{run['id']}/results.csv")).text
        # Its slot is free again.
        again = await _post(gateway, ("model", "emulator/instant"), ("runs", "1"))
    measured = list(csv.DictReader(io.StringIO(rows)))
    assert 1 <= len(measured) == details["summary"]["requests"] < 60
    assert again.status_code == 200


async def test_runs_are_listed_a_page_at_a_time_off_the_event_loop(
    start_gateway: GatewayFactory, tmp_path: Path, loop_file_access: list[str]
) -> None:
    ids = fake_runs(tmp_path / "runs", 300)  # as an older version left them: no index
    with start_gateway(benchmarks_dir=tmp_path / "runs") as gateway:
        async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
            listing = asyncio.create_task(client.get("/benchmarks"))
            started = time.monotonic()
            health = await client.get("/health")
            health_s = time.monotonic() - started
            page = (await listing).json()
            seen = [run["id"] for run in page["runs"]]
            while page["next"] is not None:
                page = (await client.get(page["next"])).json()
                seen += [run["id"] for run in page["runs"]]
            everything = (await client.get("/benchmarks", params={"limit": 500})).json()
            bad = [
                (await client.get("/benchmarks", params=params)).status_code
                for params in ({"limit": 0}, {"limit": 501}, {"before": "../x"})
            ]
            first = (await client.get(f"/benchmarks/{ids[0]}")).json()
    assert health.status_code == 200 and health_s < 1.0  # generous: nothing waits on a disk
    assert seen == ids[::-1]  # newest first, every run exactly once, in 6 pages of 50
    assert len(everything["runs"]) == 300 and everything["next"] is None
    assert everything["runs"][0]["links"]["report"] == f"/benchmarks/{ids[-1]}/report"
    assert bad == [422, 422, 422]
    assert first["status"] == "done" and first["summary"]["requests"] == 0
    assert loop_file_access == []


async def test_stored_runs_stay_within_retention_and_files_stay_off_the_loop(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    tmp_path: Path,
    loop_file_access: list[str],
) -> None:
    emulator.config.time_scale = 1.0
    root = tmp_path / "runs"
    with start_gateway(benchmarks_dir=root, bench_keep_runs=1) as gateway:
        instant = ("model", "emulator/instant"), ("runs", "1")
        first = (await _post(gateway, *instant)).json()
        report = await _post(gateway, *instant, visualize="true")
        slow = await _post(gateway, ("model", "emulator/slow"), background="true")
        refused = await _post(gateway, *instant)
        async with httpx.AsyncClient(base_url=gateway) as client:
            listed = (await client.get("/benchmarks")).json()["runs"]
            status = (await client.get(slow.json()["status_url"])).json()
    assert "<table" in report.text
    assert not (root / first["run_id"]).exists()  # the oldest finished run made room
    # The only run kept is still running: no room for another, and nothing was removed.
    assert refused.status_code == 507
    assert refused.json()["error"]["code"] == "insufficient_storage"
    assert "GATEWAY_BENCH_KEEP_RUNS" in refused.json()["error"]["message"]
    assert [run["id"] for run in listed] == [slow.json()["id"]]
    assert status["status"] in ("queued", "running")
    assert loop_file_access == []
