"""The typed result refuses malformed input instead of reading it as missing numbers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from result import RunResult


def _load(recorded_text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(recorded_text)
    return data


def test_an_unknown_field_is_an_error(recorded_text: str) -> None:
    data = _load(recorded_text)
    data["nonstream"]["1"]["gateway"]["stats"]["p50"] = 0.3  # a renamed field

    with pytest.raises(ValidationError, match="p50"):
        RunResult.model_validate(data)


def test_a_missing_number_is_an_error(recorded_text: str) -> None:
    data = _load(recorded_text)
    del data["capacity"]["3000"]["gateway"]["hold"]["stats"]["wall_s"]

    with pytest.raises(ValidationError, match="wall_s"):
        RunResult.model_validate(data)


def test_a_number_of_the_wrong_type_is_an_error(recorded_text: str) -> None:
    data = _load(recorded_text)
    data["stream"]["gateway"]["stats"]["ttft"]["p99_ms"] = "fast"

    with pytest.raises(ValidationError, match="p99_ms"):
        RunResult.model_validate(data)


@pytest.mark.parametrize("error", [None, "wrk failed"])
def test_a_cell_has_either_its_numbers_or_its_error(recorded_text: str, error: str | None) -> None:
    data = _load(recorded_text)
    cell = data["nonstream"]["64"]["floor"]
    cell["error"] = error
    if error is None:
        cell["stats"] = None  # neither

    with pytest.raises(ValidationError, match="either an error or its numbers"):
        RunResult.model_validate(data)
