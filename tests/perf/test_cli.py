"""The harness's options: --quick shortens, explicit lists win, bad input is refused."""

from __future__ import annotations

import pytest

from cli import parse_args
from result import PHASES


def test_a_full_run_by_default() -> None:
    options = parse_args([])

    assert options.mode == "full"
    assert options.phases == list(PHASES)
    assert options.capacity_steps == [1000, 2000, 3000, 5000]
    assert options.rounds == 3
    assert options.capacity_workers == 2


def test_quick_shortens_but_explicit_steps_win() -> None:
    options = parse_args(["--quick", "--capacity-steps", "1000,2000"])

    assert (options.mode, options.duration, options.ramp) == ("quick", 2, [100, 250])
    assert options.capacity_steps == [1000, 2000]
    assert (options.rounds, options.capacity_workers) == (1, 1)
    assert parse_args(["--quick", "--rounds", "3"]).rounds == 3


def test_gateway_environment_is_repeatable() -> None:
    options = parse_args(["--gateway-env", "A=1", "--gateway-env", "B=x=y"])

    assert options.gateway_env == {"A": "1", "B": "x=y"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--phases", "capacity,nope"],
        ["--capacity-steps", "0"],
        ["--gateway-env", "NOEQUALS"],
        ["--rounds", "2"],
        ["--rounds", "0"],
        ["--capacity-workers", "0"],
    ],
)
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
