"""Non-streaming phase: throughput and latency of each endpoint at each concurrency (wrk).

Targets are interleaved within each concurrency, so drift on the machine spreads over all of
them, in `--rounds` passes of which each cell keeps the median (`median_round`); a cell
perturbed by other processes is measured again (`quietest`). The emulator is
measured alone the same way, to show why it is not the upstream.
"""

from __future__ import annotations

import functools

from cli import say_measured
from endpoints import Target
from measure import Runner, interleaved
from result import LoadCell, LoadStats, Options
from services import INSTANT, UPSTREAM_KEY
from stack import Service

EMULATOR_MODEL = "emulator/instant"


def _numbers(stats: LoadStats) -> str:
    return (
        f"{stats.rps:,.0f} req/s, p50 {stats.p50_ms} ms, p99 {stats.p99_ms} ms, "
        f"errors {stats.errors}"
    )


def emulator_alone(
    runner: Runner, emulator: Service, options: Options, into: list[LoadCell]
) -> None:
    """The emulator (`--time-scale 0`) as an upstream by itself, at each concurrency."""
    target = Target(
        "emulator",
        "emulator",
        f"{emulator.url}/api/v1/chat/completions",
        "chat",
        {"Authorization": f"Bearer {UPSTREAM_KEY}"},
    )
    for concurrency in options.concurrency:
        cell = _measure(runner, EMULATOR_MODEL, concurrency, options, target)
        _log(concurrency, "emulator", cell)
        into.append(cell)


def _rps(cell: LoadCell) -> float | None:
    return None if cell.stats is None else cell.stats.rps


def run(
    runner: Runner,
    targets: dict[str, Target],
    options: Options,
    into: dict[int, dict[str, LoadCell]],
) -> None:
    """Fill `into` (concurrency -> target key -> the median of `options.rounds` cells) as it
    goes: an interrupted run keeps what it measured."""
    for concurrency in options.concurrency:
        interleaved(
            targets,
            options,
            functools.partial(_measure, runner, INSTANT, concurrency, options),
            _rps,
            into.setdefault(concurrency, {}).__setitem__,
            functools.partial(_log, concurrency),
        )


def _measure(
    runner: Runner, model: str, concurrency: int, options: Options, target: Target
) -> LoadCell:
    return runner.nonstream(
        target, model, concurrency=concurrency, duration=options.duration, warmup=options.warmup
    )


def _log(concurrency: int, name: str, cell: LoadCell) -> None:
    say_measured(f"c={concurrency} {name}", cell, _numbers)
