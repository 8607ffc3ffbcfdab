"""Non-streaming phase: throughput and latency of each endpoint at each concurrency (wrk).

Targets are interleaved within each concurrency, so drift on the machine spreads over all of
them, in `--rounds` passes of which each cell keeps the median (`median_round`); a cell
perturbed by other processes is measured again (`quietest`). The emulator is
measured alone the same way, to show why it is not the upstream.
"""

from __future__ import annotations

import functools

from cli import say
from endpoints import Target
from measure import Runner, interleaved
from result import LoadCell, Options
from services import INSTANT, UPSTREAM_KEY
from stack import Service

EMULATOR_MODEL = "emulator/instant"


def _log(prefix: str, cell: LoadCell) -> None:
    if cell.stats is None:
        say(f"  {prefix}: FAILED {(cell.error or '')[:200]}")
        return
    say(
        f"  {prefix}: {cell.stats.rps:,.0f} req/s, p50 {cell.stats.p50_ms} ms, "
        f"p99 {cell.stats.p99_ms} ms, errors {cell.stats.errors}, "
        f"other load {cell.foreign_cores} cores"
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
        cell = runner.nonstream(
            target,
            EMULATOR_MODEL,
            concurrency=concurrency,
            duration=options.duration,
            warmup=options.warmup,
        )
        _log(f"c={concurrency} emulator", cell)
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
        measure = functools.partial(
            _measure,
            runner,
            concurrency=concurrency,
            duration=options.duration,
            warmup=options.warmup,
        )
        interleaved(
            targets,
            options,
            measure,
            _rps,
            into.setdefault(concurrency, {}).__setitem__,
            functools.partial(_log_named, concurrency),
        )


def _measure(
    runner: Runner, target: Target, *, concurrency: int, duration: int, warmup: int
) -> LoadCell:
    return runner.nonstream(
        target, INSTANT, concurrency=concurrency, duration=duration, warmup=warmup
    )


def _log_named(concurrency: int, name: str, cell: LoadCell) -> None:
    _log(f"c={concurrency} {name}", cell)
