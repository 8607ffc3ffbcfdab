"""The speed probe: the machine's own speed around each measurement, summed up and reported."""

from __future__ import annotations

from derive import summarize_noise
from report import render
from result import RunResult
from stack import NoiseMeter, speed_probe_ms


def test_the_probe_times_fixed_work_and_the_meter_takes_it_around_a_block() -> None:
    assert speed_probe_ms() > 0
    with NoiseMeter() as meter:
        pass
    assert meter.probe_ms > 0 and meter.cores >= 0


def _with_probes(recorded_text: str, fast: float, slow: float) -> RunResult:
    result = RunResult.model_validate_json(recorded_text)
    for cells in result.nonstream.values():
        for cell in cells.values():
            cell.probe_ms = fast
    result.capacity[3000]["floor"].hold.probe_ms = slow
    result.noise = summarize_noise(result)
    return result


def test_a_run_whose_machine_slowed_says_so_and_shows_each_cells_probe(recorded_text: str) -> None:
    result = _with_probes(recorded_text, 20.0, 40.0)
    assert result.noise is not None
    assert (result.noise.probe_ms_min, result.noise.probe_ms_max) == (20.0, 40.0)

    lines = render(result).splitlines()

    assert any("**The machine's own speed changed by 2.0x during the run**" in x for x in lines)
    floor = next(x for x in lines if x.startswith("| 3,000 | bare Python ASGI proxy"))
    assert floor.endswith("| 0.05 · 40 ms |")
    c64 = lines.index("### Concurrency 64")
    row = next(x for x in lines[c64:] if x.startswith("| llm-gateway `/v1/chat"))
    assert row.endswith(" · 20 ms |")


def test_a_steady_machine_and_a_run_without_probes(recorded_text: str) -> None:
    steady = render(_with_probes(recorded_text, 20.0, 21.0))
    assert "took 20 to 21 ms, median 20 ms. Steady." in steady

    unprobed = render(RunResult.model_validate_json(recorded_text))
    assert "speed probe" not in unprobed.split("## Summary")[0]
