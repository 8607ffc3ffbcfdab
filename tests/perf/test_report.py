"""The Markdown report of a recorded run: the lines a reader looks for are there."""

from __future__ import annotations

import pytest

from report import render
from result import RunResult


def test_the_report_of_the_recorded_run(recorded_text: str) -> None:
    text = render(RunResult.model_validate_json(recorded_text))
    lines = text.splitlines()

    assert lines[0].startswith("# llm-gateway performance: run ")
    for heading in (
        "## Summary (issue 5's table, measured in this run)",
        "## Targets (issues 5 and 14)",
        "## Non-streaming: throughput and latency",
        "### Concurrency 64",
        "## Streaming",
        "## Capacity: long streams by the thousand (issue 14)",
        "## Memory and start-up",
        "## How this was measured",
    ):
        assert heading in lines
    summary = next(line for line in lines if line.startswith("| llm-gateway `/generate` | "))
    assert "req/s, p50" in summary
    assert any(
        line.startswith("| 14 | llm-gateway `/v1/chat/completions`: RSS per open stream at 3,000")
        for line in lines
    )
    capacity = next(line for line in lines if line.startswith("| 3,000 | llm-gateway `/gen"))
    assert "3,000/3,000" in capacity and " KB |" in capacity
    assert lines[-1].startswith("Versions: llm-gateway ")


def test_absent_numbers_are_dashes_and_failures_say_so(recorded_text: str) -> None:
    result = RunResult.model_validate_json(recorded_text)
    assert result.derived is not None
    result.derived.nonstream[1]["gateway"].added_p50_ms = None
    cell = result.nonstream[64]["floor"]
    result.nonstream[64]["floor"] = cell.model_copy(update={"stats": None, "error": "boom"})

    lines = render(result).splitlines()

    c1 = lines.index("### Concurrency 1")
    gateway = next(line for line in lines[c1:] if line.startswith("| llm-gateway `/v1/chat"))
    assert gateway.split(" | ")[5] == "-"
    assert "| bare Python ASGI proxy, aiohttp client (the floor) | failed: boom |" in lines


def test_an_underived_result_is_not_rendered(measured: RunResult) -> None:
    with pytest.raises(ValueError, match="derived"):
        render(measured)
