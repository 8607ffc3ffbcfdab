"""The summary as the terminal shows it: readable at 80 columns (a small terminal, or a pipe),
numbers never cut, model ids whole, errors said."""

from __future__ import annotations

import io

from rich.console import Console

from llm_gateway.bench.documents import Summary
from llm_gateway.bench.stats import summarize
from llm_gateway.cli.tables import failed_models, print_summary
from tests.bench.conftest import make_record

# OpenRouter's ids: the old table cut every number to `0…` to fit them.
MODELS = ["deepseek/deepseek-chat-v3.1:free", "z-ai/glm-4.5-air:free", "moonshotai/kimi-k2:free"]
WRONG = "upstream_bad_request: foo/bar is not a valid model ID"


def _summary() -> Summary:
    records = [
        make_record(model=model, run=run, latency_seconds=41.25 * (i + 1) + run, ttft_seconds=10.5)
        for i, model in enumerate(MODELS)
        for run in (1, 2, 3)
    ]
    records += [make_record(model="one/run", latency_seconds=0.25)]
    records += [
        make_record(model="foo/bar", run=run, status="http_4xx", error=WRONG, latency_seconds=None)
        for run in (1, 2)
    ]
    return summarize(records)


def _render(summary: Summary, *, width: int = 80, wide: bool = False) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    print_summary(console, summary, wide=wide)
    return console.export_text()


def _first_cells(text: str) -> str:
    """The first column of every table row, its folded lines joined."""
    return "".join(line.split("│")[1].strip() for line in text.splitlines() if line[:1] == "│")


def test_at_80_columns_every_number_is_whole_and_ids_fold() -> None:
    summary = _summary()
    text = _render(summary)
    assert max(map(len, text.splitlines())) <= 80
    assert "…" not in text
    for model in MODELS:
        latency, ttft = summary.models[model].latency, summary.models[model].ttft
        assert latency is not None and ttft is not None
        for value in (latency.avg, latency.std_dev, latency.p95, ttft.avg):
            assert f" {value:.3f} " in text, (model, value)
    cells = _first_cells(text)
    assert all(model in cells for model in [*MODELS, "foo/bar"])


def test_std_dev_of_one_request_is_a_dash_and_wide_shows_every_column() -> None:
    summary = _summary()
    [row] = [line for line in _render(summary).splitlines() if "one/run" in line]
    assert row.split("│")[2:6] == ["  1 ", "      0 ", "   0.250 ", "       - "]
    wide = _render(summary, width=160, wide=True)
    assert all(name in wide for name in ("p50", "p99", "tokens/s", "http_4xx 2"))
    assert "p99" not in _render(summary)


def test_errors_are_said_and_a_model_without_success_is_named() -> None:
    summary = _summary()
    text = _render(summary)
    assert "Most frequent errors" in text
    assert "foo/bar is not a valid model" in text and "│ foo/bar │ 2 │ http_4xx:" in text
    assert "No successful request from foo/bar" in text
    assert failed_models(summary) == ["foo/bar"]
    assert "Most frequent errors" not in _render(summarize([make_record()]))
