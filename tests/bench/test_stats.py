"""Statistics checked against values computed by hand on fixed records."""

from __future__ import annotations

import math

import pytest

from llm_gateway.bench.records import RequestRecord
from llm_gateway.bench.stats import distribution, percentile, summarize
from tests.bench.conftest import make_record


def test_distribution_by_hand() -> None:
    dist = distribution([4.0, 1.0, 3.0, 2.0])
    assert dist is not None
    assert (dist.n, dist.avg, dist.min, dist.max) == (4, 2.5, 1.0, 4.0)
    # Sample standard deviation: sqrt(((1.5^2 + 0.5^2) * 2) / 3) = sqrt(5/3).
    assert dist.std_dev == pytest.approx(math.sqrt(5 / 3))
    # Linear interpolation at rank (n - 1) * q: p90 -> rank 2.7 -> 3 + 0.7 * (4 - 3).
    assert dist.p50 == pytest.approx(2.5)
    assert dist.p90 == pytest.approx(3.7)
    assert dist.p95 == pytest.approx(3.85)
    assert dist.p99 == pytest.approx(3.97)


def test_one_value_has_zero_std_dev_and_none_is_no_distribution() -> None:
    one = distribution([0.7])
    assert one is not None and one.std_dev == 0 and one.p99 == 0.7
    assert distribution([]) is None
    assert distribution([None, None]) is None


def test_percentile_endpoints() -> None:
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
    assert percentile([5.0], 50) == 5.0


def test_summary_counts_failures_by_class_and_excludes_warmups() -> None:
    records = [
        make_record(model="a", prompt_index=0, latency_seconds=1.0, ttft_seconds=0.1),
        make_record(model="a", prompt_index=1, latency_seconds=3.0, ttft_seconds=0.3),
        make_record(model="a", prompt_index=1, status="http_429", latency_seconds=None),
        make_record(model="b", prompt_index=0, latency_seconds=2.0, ttft_seconds=0.2),
        make_record(model="b", prompt_index=0, status="timeout", latency_seconds=None),
        make_record(model="b", prompt_index=1, status="timeout", latency_seconds=None),
        make_record(model="a", warmup=True, latency_seconds=100.0, run=0),
    ]
    summary = summarize(records)
    assert (summary.requests, summary.ok, summary.failed) == (6, 3, 3)
    assert summary.errors == {"http_429": 1, "timeout": 2}
    assert summary.latency is not None
    assert summary.latency.avg == pytest.approx(2.0)  # the warm-up's 100 s is excluded
    assert summary.latency.std_dev == pytest.approx(1.0)
    a, b = summary.models["a"], summary.models["b"]
    assert (a.requests, a.ok, a.failed, a.errors) == (3, 2, 1, {"http_429": 1})
    assert a.latency is not None and a.latency.avg == pytest.approx(2.0)
    assert b.error_rate == pytest.approx(2 / 3)
    assert b.ttft is not None and b.ttft.avg == pytest.approx(0.2)
    cells = {(c.prompt_index, c.model): c for c in summary.per_prompt}
    assert set(cells) == {(0, "a"), (0, "b"), (1, "a"), (1, "b")}
    assert cells[(1, "b")].latency is None and cells[(1, "b")].failed == 1
    assert cells[(1, "a")].latency is not None and cells[(1, "a")].latency.std_dev == 0.0


def test_run_throughput_uses_the_wall_window() -> None:
    records = [
        make_record(offset_seconds=0.0, done_seconds=1.0, completion_tokens=10),
        make_record(offset_seconds=0.5, done_seconds=1.5, completion_tokens=30),
        make_record(
            offset_seconds=1.0, done_seconds=0.5, status="http_5xx", completion_tokens=None
        ),
    ]
    throughput = summarize(records).throughput
    assert throughput.window_s == pytest.approx(2.0)  # 0.0 .. 0.5 + 1.5
    assert throughput.requests_per_s == pytest.approx(2 / 2.0)
    assert throughput.output_tokens_per_s == pytest.approx(40 / 2.0)


def test_each_model_keeps_its_most_frequent_error_messages() -> None:
    def failed(status: str, error: str, model: str = "m/a") -> RequestRecord:
        return make_record(model=model, status=status, error=error, latency_seconds=None)

    records = [
        failed("timeout", "no answer in 30 s"),
        *[failed("http_4xx", "upstream_bad_request: m/a is not a valid model ID")] * 3,
        failed("http_5xx", "x" * 1000),
        failed("http_429", "slow down"),
        failed("timeout", "no answer in 30 s"),
        failed("http_4xx", "other", model="m/b"),
        make_record(model="m/b"),
    ]
    models = summarize(records).models
    top = [(e.status, e.message, e.count) for e in models["m/a"].top_errors]
    assert top == [
        ("http_4xx", "upstream_bad_request: m/a is not a valid model ID", 3),
        ("timeout", "no answer in 30 s", 2),
        ("http_5xx", "x" * 299 + "…", 1),  # ties in the order first seen, messages cut
    ]
    assert [e.message for e in models["m/b"].top_errors] == ["other"]
    assert summarize([make_record()]).models["m/a"].top_errors == []
