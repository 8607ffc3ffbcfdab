"""Derivation and target checks on a recorded run: the numbers, their absence, and bugs."""

from __future__ import annotations

import json

import pytest

from checks import check_targets
from derive import derive, summarize_noise
from result import RunResult


def complete(result: RunResult) -> RunResult:
    result.derived = derive(result)
    result.targets = check_targets(result, result.derived)
    result.noise = summarize_noise(result)
    return result


def test_the_recorded_run_reads_back_and_writes_the_same_json(recorded_text: str) -> None:
    result = RunResult.model_validate_json(recorded_text)

    assert json.loads(result.model_dump_json()) == json.loads(recorded_text)


def test_derivation_on_the_recorded_run_gives_what_the_run_wrote(
    measured: RunResult, recorded_text: str
) -> None:
    recorded = RunResult.model_validate_json(recorded_text)

    complete(measured)

    assert measured.derived == recorded.derived
    assert measured.targets == recorded.targets
    assert measured.noise == recorded.noise


def test_added_latency_is_the_target_minus_direct_and_the_fraction_is_of_the_floor(
    measured: RunResult,
) -> None:
    cells = measured.nonstream[1]
    gateway, direct, floor = cells["gateway"].stats, cells["direct"].stats, cells["floor"].stats
    assert gateway is not None and direct is not None and floor is not None

    delta = derive(measured).nonstream[1]["gateway"]

    assert delta.added_p50_ms == round(gateway.p50_ms - direct.p50_ms, 4)
    assert delta.added_p99_ms == round(gateway.p99_ms - direct.p99_ms, 4)
    assert delta.fraction_of_floor == round(gateway.rps / floor.rps, 4)


def test_capacity_memory_per_stream_rates_and_ratios_to_the_floor(measured: RunResult) -> None:
    step, floor = measured.capacity[3000]["gateway"], measured.capacity[3000]["floor"]
    assert step.hold.stats is not None and floor.hold.stats is not None
    assert step.rss_peak_mb is not None and step.rss_idle_mb is not None

    delta = derive(measured).capacity[3000]["gateway"]

    assert delta.rss_per_stream_kb == round((step.rss_peak_mb - step.rss_idle_mb) * 1000 / 3000, 2)
    assert delta.events_per_s == round(step.hold.stats.events / step.hold.stats.wall_s, 1)
    assert delta.wall_x_floor == round(step.hold.stats.wall_s / floor.hold.stats.wall_s, 4)
    assert derive(measured).capacity[3000]["floor"].wall_x_floor is None


def test_the_recorded_run_checks_both_issues_and_marks_each_target(measured: RunResult) -> None:
    checks = {check.what: check for check in complete(measured).targets}

    assert {check.issue for check in checks.values()} == {5, 14}
    floor_300 = checks[
        "floor: 300 long streams, every one complete and in order, TTFT p99 < 250 ms"
    ]
    assert floor_300.met is True
    memory = [c for c in checks.values() if "RSS per open stream at 3,000 streams" in c.what]
    assert len(memory) == 2  # both gateway routes
    # 2,000 requests cannot show the issue's 20,000-request memory target either way.
    assert checks["gateway RSS < 120 MB after 2,000 requests"].met is None


def test_without_a_direct_baseline_the_added_numbers_are_absent_not_dropped(
    measured: RunResult,
) -> None:
    del measured.nonstream[1]["direct"]

    complete(measured)

    assert measured.derived is not None
    delta = measured.derived.nonstream[1]["gateway"]
    assert delta.added_p50_ms is None
    assert delta.fraction_of_floor is not None
    added = next(c for c in measured.targets if "added latency at c=1" in c.what)
    assert (added.measured, added.met) == ("no direct baseline", None)


def test_a_failed_measurement_fails_its_target(measured: RunResult) -> None:
    cell = measured.nonstream[64]["gateway"]
    measured.nonstream[64]["gateway"] = cell.model_copy(
        update={"stats": None, "error": "wrk failed: connection refused"}
    )

    complete(measured)

    check = next(c for c in measured.targets if c.what.endswith("c=64 >= 0.5x the floor"))
    assert check.met is False
    assert check.measured == "failed: wrk failed: connection refused"


def test_an_impossible_number_raises_instead_of_vanishing(measured: RunResult) -> None:
    stats = measured.capacity[300]["gateway"].hold.stats
    assert stats is not None
    stats.wall_s = 0.0  # a generator bug: streams that took no time

    with pytest.raises(ZeroDivisionError):
        derive(measured)


def test_a_target_without_its_derived_number_is_a_bug(measured: RunResult) -> None:
    derived = derive(measured)
    del derived.nonstream[1]["gateway"]

    with pytest.raises(KeyError):
        check_targets(measured, derived)
