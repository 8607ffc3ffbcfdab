"""The runner against the emulator, whose latency profile is the ground truth."""

from __future__ import annotations

import asyncio
import itertools
import socket
from pathlib import Path

import pytest

from llm_gateway.bench import pipeline
from llm_gateway.bench.prompts import Prompt, PromptFile
from llm_gateway.bench.runner import BenchConfig, Runner, schedule
from llm_gateway.bench.store import RunStore
from llm_gateway.emulator import Emulator
from llm_gateway.runtime import build_client
from llm_gateway.upstream.client import UpstreamClient
from tests.conftest import gateway_settings

pytestmark = pytest.mark.anyio


def _prompts(*texts: str) -> tuple[Prompt, ...]:
    return tuple(Prompt(t, ({"role": "user", "content": t},)) for t in texts)


def test_models_and_prompts_are_interleaved() -> None:
    config = BenchConfig(models=("a", "b"), prompts=_prompts("p0", "p1"), runs=2, warmup=1)
    warmups, jobs = schedule(config)
    assert [(j.model, j.warmup) for j in warmups] == [("a", True), ("b", True)]
    assert [(j.run, j.prompt_index, j.model) for j in jobs] == [
        (1, 0, "a"), (1, 0, "b"),
        (1, 1, "b"), (1, 1, "a"),  # the model order rotates, so neither is always first
        (2, 0, "a"), (2, 0, "b"),
        (2, 1, "b"), (2, 1, "a"),
    ]  # fmt: skip
    shuffled = schedule(
        BenchConfig(models=("a", "b"), prompts=_prompts("p0", "p1"), runs=2, shuffle_seed=1)
    )[1]
    assert sorted(j.model + str(j.prompt_index) + str(j.run) for j in shuffled) == sorted(
        j.model + str(j.prompt_index) + str(j.run) for j in jobs
    )


@pytest.mark.parametrize("stream", [True, False])
async def test_latency_and_ttft_match_the_emulated_profile(
    bench_client: UpstreamClient, emulator: Emulator, stream: bool
) -> None:
    # emulator/steady: first token after 0.3 s, then 60 tokens/s; 12 tokens.
    emulator.config.time_scale = 1.0
    config = BenchConfig(
        models=("emulator/steady",),
        prompts=_prompts("measure me"),
        runs=2,
        max_tokens=12,
        stream=stream,
    )
    records = await Runner(config, bench_client).run()
    assert [r.status for r in records] == ["ok", "ok"]
    for record in records:
        assert record.completion_tokens == 12 and record.tokens_source == "usage"
        assert record.finish_reason == "length"
        if stream:
            assert record.ttft_seconds == pytest.approx(0.3, abs=0.04)
            # The 12th token comes 11 gaps of 1/60 s after the first.
            assert record.latency_seconds == pytest.approx(0.3 + 11 / 60, abs=0.04)
            assert record.chunks == 12
            assert record.inter_chunk_p50_seconds == pytest.approx(1 / 60, abs=0.008)
            assert record.decode_tokens_per_second == pytest.approx(60, rel=0.25)
        else:
            assert record.ttft_seconds is None
            assert record.latency_seconds == pytest.approx(0.3 + 12 / 60, abs=0.04)
        assert record.latency_seconds is not None
        assert record.tokens_per_second == pytest.approx(12 / record.latency_seconds, rel=0.01)


async def test_failures_are_recorded_by_class(
    bench_client: UpstreamClient, emulator: Emulator
) -> None:
    emulator.script(
        ["402", "429-day", "503", "midstream:2", "error-200", "hang:1", "stall:1", "ok"]
    )
    config = BenchConfig(
        models=("emulator/fast",), prompts=_prompts("x"), runs=8, timeout=0.4, max_tokens=8
    )
    records = await Runner(config, bench_client).run()
    assert [r.status for r in records] == [
        "http_4xx",
        "http_429",
        "http_5xx",
        "midstream_error",
        "midstream_error",
        "timeout",
        "timeout",  # too slow after its first token is still a timeout, not a broken stream
        "ok",
    ]
    midstream = records[3]
    assert midstream.http_status == 200 and midstream.chunks == 2
    assert midstream.ttft_seconds is not None  # measured before it failed, and kept
    assert all(r.error for r in records[:-1]) and records[-1].error is None


async def test_connection_failures_are_recorded(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
        client = build_client(
            gateway_settings(base, tmp_path, retry_attempts=1), base_url=base, api_key="k"
        )
        try:
            config = BenchConfig(models=("m",), prompts=_prompts("x"), runs=2)
            records = await Runner(config, client).run()
        finally:
            await client.aclose()
    assert [r.status for r in records] == ["connect", "connect"]


async def test_concurrency_overlaps_requests(
    bench_client: UpstreamClient, emulator: Emulator
) -> None:
    emulator.config.time_scale = 1.0
    config = BenchConfig(
        models=("emulator/steady", "emulator/fast"), prompts=_prompts("a", "b"), runs=2,
        concurrency=8, max_tokens=5,
    )  # fmt: skip
    runner = Runner(config, bench_client)
    records = await runner.run()
    assert len(records) == 8 and {r.model for r in records} == set(config.models)
    window = max(r.offset_seconds + r.done_seconds for r in records)  # type: ignore[operator]
    serial = sum(r.done_seconds for r in records)  # type: ignore[misc]
    assert window < serial / 2
    assert runner.lag().loop_lag_max_s is not None


async def test_rate_paces_the_sends(bench_client: UpstreamClient) -> None:
    config = BenchConfig(
        models=("emulator/instant",), prompts=_prompts("x"), runs=5, concurrency=5, rate=20
    )
    records = await Runner(config, bench_client).run()
    offsets = sorted(r.offset_seconds for r in records)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(gap == pytest.approx(0.05, abs=0.03) for gap in gaps)


async def test_an_interrupted_run_keeps_every_finished_record(
    bench_client: UpstreamClient, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.time_scale = 1.0
    config = BenchConfig(
        models=("emulator/fast",), prompts=_prompts("x", "y"), runs=50, max_tokens=5
    )
    run = RunStore(tmp_path).create(status="running", models=config.models, total=config.total)
    prompt_file = PromptFile("p.txt", "0" * 64, config.prompts)
    upstream = pipeline.Upstream("http://emulator", "emulator")
    task = asyncio.create_task(pipeline.execute(run, config, prompt_file, bench_client, upstream))
    while len(run.records()) < 3:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    kept = run.records()
    assert 3 <= len(kept) < config.requests
    assert run.status().status == "interrupted"
    assert run.manifest().status == "interrupted"
    summary = run.summary()
    assert summary is not None and summary.requests == len(kept)
    assert run.file("report.html").exists()
