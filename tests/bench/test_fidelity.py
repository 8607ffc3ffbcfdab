"""What keeps the benchmark exact (issue 12): its own traced client, failed rows with the right
fields, retries in the totals, the loop-lag sampler and its warning, the GC policy, load shapes
and sweeps. Against the emulator on loopback; timing bounds are generous sanity bounds."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from pathlib import Path

import pytest

from llm_gateway.bench import gcpolicy, loads, pipeline
from llm_gateway.bench.documents import ClientLag, Distribution, GroupStats, ModelStats, Summary
from llm_gateway.bench.lag import LoopLag, client_lag, verdict
from llm_gateway.bench.prompts import Prompt
from llm_gateway.bench.runner import BenchConfig, Load, Runner, auto_processes, plan
from llm_gateway.bench.stats import summarize
from llm_gateway.bench.target import Target
from llm_gateway.emulator import Emulator
from llm_gateway.runtime import build_client
from llm_gateway.upstream.client import WIRE_LOG, WireLog
from tests.bench.conftest import make_record
from tests.conftest import gateway_settings

pytestmark = pytest.mark.anyio

PROMPTS = (Prompt("x", ({"role": "user", "content": "x"},)),)


@pytest.fixture
def target(emulator_url: str, tmp_path: Path) -> Target:
    """The emulator as a benchmark target (the benchmark's own traced client, fast retries)."""
    settings = gateway_settings(emulator_url, tmp_path)
    return Target.from_settings(settings, base_url=emulator_url, api_key="bench-key")


def _config(**values: object) -> BenchConfig:
    fields: dict[str, object] = {"models": ("emulator/fast",), "prompts": PROMPTS, "runs": 1}
    fields.update(values)
    return BenchConfig(**fields)  # type: ignore[arg-type]


async def test_the_traced_client_logs_the_final_attempt_on_the_wire(
    target: Target, emulator_url: str, tmp_path: Path
) -> None:
    body = {"model": "emulator/fast", "messages": [{"role": "user", "content": "x"}]}
    traced = target.client()
    untraced = build_client(gateway_settings(emulator_url, tmp_path), base_url=emulator_url,
                            api_key="k")  # fmt: skip
    wire = WireLog()
    token = WIRE_LOG.set(wire)
    try:
        before = time.perf_counter_ns()
        async with await traced.stream({**body, "max_tokens": 3}) as stream:
            assert before < wire.sent_ns == stream.started_ns and wire.status == 200
            async for _ in stream:
                pass
        assert wire.requests == 1
        assert 0 < wire.batch_arrived_ns <= wire.batch_read_ns  # arrived, then read
        reply = await traced.complete({**body, "max_tokens": 3})
        assert wire.requests == 2 and reply.started_ns == wire.sent_ns
        assert reply.finished_ns == wire.read_ns > wire.sent_ns
        await untraced.complete({**body, "max_tokens": 3})  # the gateway's: no trace at all
        assert wire.requests == 2
    finally:
        WIRE_LOG.reset(token)
        await traced.aclose()
        await untraced.aclose()


async def test_failed_rows_carry_the_final_attempt(target: Target, emulator: Emulator) -> None:
    # Retried 500s: the upstream's status (not the gateway's 502), every attempt counted, the
    # wait before the final one, and done_seconds from the final attempt's t0 only.
    emulator.script(["500", "500"])
    config = _config(retries=1, max_tokens=4)
    [row] = await Runner(config, target).run()
    assert (row.status, row.http_status, row.attempts) == ("http_5xx", 500, 2)
    assert row.retry_wait_seconds > 0 and row.done_seconds is not None
    assert row.done_seconds < row.retry_wait_seconds + 0.5
    # A stream cut after its 200, before the first token: broken mid-stream, not "connect".
    emulator.script(["drop:0"])
    [cut] = await Runner(_config(retries=0, max_tokens=4), target).run()
    assert (cut.status, cut.http_status, cut.attempts) == ("midstream_error", 200, 1)


async def test_retries_show_in_the_totals_and_can_be_turned_off(
    target: Target, emulator: Emulator
) -> None:
    emulator.script(["500", "ok", "500", "ok", "500", "ok", "500", "ok"])
    retried = summarize(await Runner(_config(runs=4, retries=1, max_tokens=3), target).run())
    assert (retried.error_rate, retried.retries.requests_retried) == (0.0, 4)
    assert (retried.retries.attempts, retried.retries.failed_attempts) == (8, 4)
    emulator.script(["500", "ok", "500", "ok"])
    measured = summarize(await Runner(_config(runs=4, retries=0, max_tokens=3), target).run())
    assert measured.error_rate == 0.5 and measured.retries.attempts == 4


async def test_loop_lag_sees_a_blocked_loop() -> None:
    lag = LoopLag()
    lag.start()
    await asyncio.sleep(0.03)
    time.sleep(0.04)  # the loop is blocked: every stamp taken now would be late
    await asyncio.sleep(0.03)
    lag.stop()
    samples = lag.take()
    assert len(samples) >= 3 and max(samples) >= 0.03
    assert sorted(samples)[len(samples) // 2] < 0.01  # the rest of the time it was on time


def test_the_lag_warning_threshold() -> None:
    ttft = Distribution(n=10, p50=0.2)
    summary = Summary(models={"m": ModelStats(ttft=ttft, latency=Distribution(n=10, p50=1.0))})
    quiet = client_lag([0.0001] * 99 + [0.001], processes=1)
    assert verdict(quiet, summary).warning is None
    # 12 ms at p99 is 6 % of a 200 ms TTFT: warned, with the numbers.
    starved = client_lag([0.0001] * 90 + [0.012] * 10, processes=1)
    warning = verdict(starved, summary).warning
    assert warning is not None and "12.0 ms" in warning and "TTFT" in warning
    # The same lag against 30 s answers is noise: no warning.
    slow = Summary(models={"m": ModelStats(latency=Distribution(n=10, p50=30.0))})
    assert verdict(starved, slow).warning is None
    assert verdict(ClientLag(), summary).warning is None  # nothing sampled, nothing said


def test_no_full_collection_while_measuring() -> None:
    full: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    threshold = gc.get_threshold()
    gc.callbacks.append(watch)
    try:
        with gcpolicy.measuring():
            assert gc.get_freeze_count() > 0
            full.clear()
            for _ in range(200_000):  # plenty of cyclic garbage, enough for many collections
                cycle: list[object] = []
                cycle.append(cycle)
            assert full == []
        assert gc.get_threshold() == threshold
    finally:
        gc.callbacks.remove(watch)


def test_load_shapes() -> None:
    assert loads.arrival_times(4, 2.0, "constant", None) == [0.0, 0.5, 1.0, 1.5]
    poisson = loads.arrival_times(2000, 10.0, "poisson", seed=7)
    assert poisson == loads.arrival_times(2000, 10.0, "poisson", seed=7)  # the seed replays it
    gaps = [b - a for a, b in itertools.pairwise(poisson)]
    assert sum(gaps) / len(gaps) == pytest.approx(0.1, rel=0.1) and len(set(gaps)) > 1000
    assert loads.sweep_loads(12) == [1.0, 2.0, 4.0, 8.0, 12.0]
    assert loads.sweep_loads(10.0, start=2.5, integer=False) == [2.5, 5.0, 10.0]
    assert loads.parse_slo("ttft_p99=0.5, latency_p99=5,error_rate=0.01") == {
        "ttft_p99": 0.5, "latency_p99": 5.0, "error_rate": 0.01,
    }  # fmt: skip
    for bad in ("ttft=1", "latency_p99", "latency_p42=1", "error_rate=-1", ""):
        with pytest.raises(ValueError):
            loads.parse_slo(bad)
    stats = GroupStats(requests=4, ok=3, failed=1, error_rate=0.25, ttft=Distribution(p99=0.6))
    assert loads.breaches(stats, {"ttft_p99": 0.5, "error_rate": 0.3, "latency_p50": 1}) == [
        "ttft_p99 0.6 > 0.5",
        "latency_p50 not measured",
    ]
    assert loads.good(make_record(ttft_seconds=0.1), {"ttft_p99": 0.5, "error_rate": 0})
    assert not loads.good(make_record(ttft_seconds=0.9), {"ttft_p99": 0.5})


def test_configs_say_what_is_wrong() -> None:
    assert Load(rate=5, arrivals="poisson").fields(rate_cap=64)["concurrency"] == 64
    assert Load(concurrency=8, sweep=True).fields(rate_cap=64)["sweep"] == (1, 2, 4, 8)
    for load, message in (
        (Load(arrivals="poisson"), "need a rate"),
        (Load(rate=1, arrivals="bursty"), "constant or poisson"),
        (Load(sweep=True), "top load"),
        (Load(concurrency=4, sweep=True, sweep_start=8), "above"),
    ):
        with pytest.raises(ValueError, match=message):
            load.fields(rate_cap=64)
    with pytest.raises(ValueError, match="add --sweep"):
        _config(slo={"ttft_p99": 1.0})
    with pytest.raises(ValueError, match="streaming"):
        _config(sweep=(1.0, 2.0), slo={"ttft_p99": 1.0}, stream=False)
    # Processes: one per 128 in flight, at most one per CPU.
    assert auto_processes(_config(concurrency=1000), cpus=4) == 4
    assert auto_processes(_config(concurrency=200), cpus=4) == 2
    assert auto_processes(_config(concurrency=16), cpus=4) == 1


def test_open_loop_steps_keep_their_schedules() -> None:
    config = _config(runs=6, rate=10.0, arrivals="poisson", arrival_seed=3, sweep=(5.0, 10.0))
    _, steps = plan(config)
    assert [(s.number, s.rate, s.concurrency) for s in steps] == [(1, 5.0, 1), (2, 10.0, 1)]
    assert [j.at for j in steps[0].jobs] == loads.arrival_times(6, 5.0, "poisson", 3)
    assert {j.step for j in steps[1].jobs} == {2}


async def test_a_poisson_run_is_sent_on_its_schedule(target: Target) -> None:
    config = _config(
        runs=8, rate=40.0, arrivals="poisson", arrival_seed=1, concurrency=8, max_tokens=2
    )
    records = await Runner(config, target).run()
    records.sort(key=lambda r: r.offset_seconds - r.queue_seconds)
    planned = loads.arrival_times(8, 40.0, "poisson", 1)
    # Each went at its planned time, or as late as its queue_seconds says (a busy machine).
    sent = [r.offset_seconds - r.queue_seconds - p for r, p in zip(records, planned, strict=True)]
    assert max(sent) - min(sent) < 0.05, sent


async def test_a_sweep_stops_where_the_slo_breaks_everywhere(target: Target) -> None:
    config = _config(
        models=("emulator/fast", "emulator/instant"), runs=2, concurrency=4, max_tokens=3,
        sweep=(1.0, 2.0, 4.0), slo={"latency_p99": 1e-6},
    )  # fmt: skip
    runner = Runner(config, target)
    records = await runner.run()
    assert {r.step for r in records} == {1}  # nobody met it at step 1: no step 2
    summary = summarize(records, runner.config.manifest())
    assert summary.sweep is not None and summary.sweep.knee == {
        "emulator/fast": None, "emulator/instant": None,
    }  # fmt: skip
    assert summary.sweep.stopped == "every model broke the SLO at concurrency 1"
    assert summary.sweep.steps[0].models["emulator/fast"].breaches[0].startswith("latency_p99")


async def test_finishing_survives_a_cancel() -> None:
    ran: list[str] = []

    def work(name: str) -> str:
        time.sleep(0.05)
        ran.append(name)
        return name

    task = asyncio.create_task(pipeline._to_the_end(work, "finish"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ran == ["finish"]
