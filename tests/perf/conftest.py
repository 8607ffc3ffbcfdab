"""Fixtures for the perf harness's own tests: a recorded run, read back as the typed result.

The harness (benchmarks/perf) is a folder of scripts that import each other by module name, as
`run.py` does when it runs; the tests import them the same way. The folder goes at the end of
`sys.path`, so none of its names can shadow an installed package for the rest of the session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "perf"
if str(HARNESS) not in sys.path:
    sys.path.append(str(HARNESS))

from result import RunResult  # noqa: E402  (needs the path above)

# A real quick run (`run.py --quick --concurrency 1,64 --ramp 100 --capacity-steps 300,3000
# --capacity-spread 2`), as the harness wrote it to results/<time>.json, derived numbers and
# targets included.
RECORDED = Path(__file__).with_name("data") / "recorded_run.json"


@pytest.fixture
def recorded_text() -> str:
    return RECORDED.read_text(encoding="utf-8")


@pytest.fixture
def measured(recorded_text: str) -> RunResult:
    """The recorded run as it was before completing: what the phases measured, nothing derived."""
    result = RunResult.model_validate_json(recorded_text)
    result.derived, result.targets, result.noise = None, [], None
    return result
