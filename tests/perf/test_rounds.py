"""Rounds: a cell measured several times keeps its median round, and the report shows them all."""

from __future__ import annotations

from measure import median_round
from report import render
from result import LoadCell, LoadStats, RunResult


def _cell(rps: float | None) -> LoadCell:
    if rps is None:
        return LoadCell(target="gateway", concurrency=64, foreign_cores=0.0, error="wrk exited 1")
    stats = LoadStats(
        generator="wrk",
        requests=int(rps * 5),
        errors=0,
        duration_s=5.0,
        rps=rps,
        mean_ms=1.0,
        p50_ms=1.0,
        p95_ms=2.0,
        p99_ms=3.0,
        max_ms=4.0,
    )
    return LoadCell(target="gateway", concurrency=64, foreign_cores=0.0, stats=stats)


def _rps(cell: LoadCell) -> float | None:
    return None if cell.stats is None else cell.stats.rps


def test_the_median_round_is_kept_with_every_round_recorded() -> None:
    rounds = [_cell(5000.0), _cell(3100.0), _cell(4200.0)]

    kept = median_round(rounds, _rps)

    assert kept is rounds[2]
    assert kept.rounds == [5000.0, 3100.0, 4200.0]


def test_failed_rounds_do_not_count_and_all_failed_keeps_the_last() -> None:
    rounds = [_cell(None), _cell(3100.0), _cell(4200.0)]
    assert median_round(rounds, _rps) is rounds[1]  # the lower of the two that measured

    failed = [_cell(None), _cell(None), _cell(None)]
    kept = median_round(failed, _rps)
    assert kept is failed[2] and kept.error == "wrk exited 1" and kept.rounds == []


def test_the_report_shows_every_round_next_to_the_median(recorded_text: str) -> None:
    result = RunResult.model_validate_json(recorded_text)
    result.run.options.rounds = 3
    result.nonstream[64]["gateway"].rounds = [4811.0, 5020.4, 4700.0]
    result.stream["gateway"].rounds = [1.51, 1.56, 1.62]

    lines = render(result).splitlines()

    c64 = lines.index("### Concurrency 64")
    row = next(line for line in lines[c64:] if line.startswith("| llm-gateway `/v1/chat"))
    assert "| 4,811 / 5,020 / 4,700 |" in row
    streaming = lines.index("## Streaming")
    row = next(line for line in lines[streaming:] if line.startswith("| llm-gateway `/v1/chat"))
    assert "| 1.51 ms / 1.56 ms / 1.62 ms |" in row
    assert any("in 3 rounds: each row is the target's median round by req/s" in x for x in lines)
