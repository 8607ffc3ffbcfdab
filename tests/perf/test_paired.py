"""The paired comparison's arithmetic, report and options (the servers it starts are the
harness's own, measured by `make perf-paired`)."""

from __future__ import annotations

import pytest

from paired import LOADS, Side, compare, export_source, parse_args, render

# CPU seconds and calls per round: 400 / 500, 450 / 500 and 550 / 500 us per call.
ROUNDS = [
    (Side(1.0, 2500), Side(1.0, 2000)),
    (Side(0.9, 2000), Side(1.0, 2000)),
    (Side(1.1, 2000), Side(1.0, 2000)),
]


def test_each_round_is_this_trees_cpu_per_call_over_the_others_and_the_median_decides() -> None:
    found = compare("v1", "call", ROUNDS)
    assert [round(r, 3) for r in found.ratios] == [0.8, 0.9, 1.1]
    assert round(found.ratio, 3) == 0.9
    assert round(found.us_each(0), 1) == 450.0  # the median of each side's own rounds
    assert round(found.us_each(1), 1) == 500.0


def test_a_round_that_served_nothing_fails_loudly() -> None:
    with pytest.raises(ValueError, match="served nothing"):
        compare("v1", "call", [*ROUNDS, (Side(1.0, 0), Side(1.0, 10))])
    with pytest.raises(ValueError, match="no rounds"):
        compare("v1", "call", [])


def test_the_report_has_a_row_per_load_with_every_round() -> None:
    text = render(
        [compare("v1", "call", ROUNDS), compare("long-v1", "event", ROUNDS[:1])],
        this="this tree",
        other="`main~1` (abc1234)",
        setup="Run X.",
    )
    assert "| v1 | call | 450.0 | 500.0 | **0.900** | 0.800 / 0.900 / 1.100 |" in text
    assert "| long-v1 | event | 400.0 | 500.0 | **0.800** | 0.800 |" in text
    assert text.startswith("# Paired CPU per call: this tree against `main~1` (abc1234)")


def test_options_default_to_every_load_and_refuse_what_makes_no_sense() -> None:
    assert parse_args(["--against", "HEAD"]).loads == list(LOADS)
    assert parse_args(["--against", "x", "--loads", "v1, long-generate"]).loads == [
        "v1",
        "long-generate",
    ]
    for bad in (["--loads", "v2"], ["--rounds", "0"], ["--seconds", "0"]):
        with pytest.raises(SystemExit):
            parse_args(["--against", "HEAD", *bad])
    with pytest.raises(SystemExit):
        parse_args([])  # --against is required


def test_a_revision_that_is_not_a_commit_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit, match="is not a commit"):
        export_source("no-such-revision-anywhere", tmp_path)
