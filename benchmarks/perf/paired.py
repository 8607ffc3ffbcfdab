"""Paired comparison: this tree's gateway against another revision's, CPU per call measured at
the same moment (`make perf-paired AGAINST=<rev>`).

Two runs of `make perf` cannot resolve a change of a few percent on this class of VM: its speed
moves 2-3x within minutes, and rounds of the same code taken one after another spread
0.76-1.15. Here both versions run side by side: the gateway of this tree and the gateway of
`<rev>` (its `src/` exported with `git archive` and put first on `PYTHONPATH`, on the same
virtualenv), pinned to one core and loaded at the same moment by two generators on another core
with the upstream. Per round, each gateway's CPU time (from /proc) over what it served: calls,
or relayed events for long streams. Whatever the machine does during a round, it does to both.
The same code against itself (`--against HEAD`, 6 rounds): medians 0.99-1.01, single rounds
0.94-1.06; so a median that moves by 3% or more, with the rounds agreeing, is a real change.

Loads: `v1` and `generate` (non-streaming calls, wrk), `v1-stream` and `generate-stream`
(instant streams of 20 events, wrk), `long-v1` and `long-generate` (paced streams held at once
by the Python generator; CPU per event, the streams' starts included). Prints the table and
writes it to results/paired-<UTC time>.md.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cli import say
from endpoints import Target
from machine import ensure_wrk
from measure import Runner, hold_job, wrk_argv, wrk_errors, wrk_summary
from services import INSTANT, Servers, gateway_targets
from stack import Service, Stack, raise_fd_limit, tree_cpu_s

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"
LONG_CHUNKS = 50
LONG_MODEL = f"perf/paced-{LONG_CHUNKS}-20"  # ~1 s a stream


@dataclass(frozen=True, slots=True)
class Load:
    route: str  # a key of services.gateway_targets
    stream: bool
    held: bool  # long streams held by the Python generator, counted per event

    @property
    def unit(self) -> str:
        return "event" if self.held else "call"


LOADS = {
    "v1": Load("gateway", stream=False, held=False),
    "generate": Load("gateway_generate", stream=False, held=False),
    "v1-stream": Load("gateway", stream=True, held=False),
    "generate-stream": Load("gateway_generate", stream=True, held=False),
    "long-v1": Load("gateway", stream=True, held=True),
    "long-generate": Load("gateway_generate", stream=True, held=True),
}


@dataclass(frozen=True, slots=True)
class Side:
    """What one gateway did in one round."""

    cpu_s: float
    served: int

    @property
    def us_each(self) -> float:
        return self.cpu_s / self.served * 1e6


@dataclass(frozen=True, slots=True)
class Comparison:
    load: str
    unit: str
    rounds: tuple[tuple[Side, Side], ...]  # (this tree, the other revision) per round

    @property
    def ratios(self) -> list[float]:
        return [this.us_each / other.us_each for this, other in self.rounds]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    def us_each(self, side: int) -> float:
        return statistics.median(pair[side].us_each for pair in self.rounds)


def compare(load: str, unit: str, rounds: Sequence[tuple[Side, Side]]) -> Comparison:
    """A load's rounds; a round where either side served nothing is a failed measurement."""
    if not rounds:
        raise ValueError(f"{load}: no rounds")
    for this, other in rounds:
        if this.served <= 0 or other.served <= 0 or this.cpu_s <= 0 or other.cpu_s <= 0:
            raise ValueError(f"{load}: a round served nothing or used no CPU: {this}, {other}")
    return Comparison(load, unit, tuple(rounds))


def render(comparisons: Sequence[Comparison], *, this: str, other: str, setup: str) -> str:
    lines = [
        f"# Paired CPU per call: {this} against {other}",
        "",
        setup,
        "",
        f"| load | unit | {this} (us each) | {other} (us each) | ratio (median) | each round |",
        "|---|---|---:|---:|---:|---|",
    ]
    for c in comparisons:
        rounds = " / ".join(f"{r:.3f}" for r in c.ratios)
        lines.append(
            f"| {c.load} | {c.unit} | {c.us_each(0):.1f} | {c.us_each(1):.1f} | "
            f"**{c.ratio:.3f}** | {rounds} |"
        )
    lines += [
        "",
        "Ratio = this tree's CPU per call (or per relayed event) over the other revision's, "
        "measured in the same round; below 1 is cheaper. The same code against itself gave "
        "medians of 0.99-1.01 and single rounds of 0.94-1.06 on a 2-core VM: judge a change "
        "by the median, and by whether the rounds agree.",
    ]
    return "\n".join(lines) + "\n"


def export_source(rev: str, into: Path) -> str:
    """`src/` of `rev` under `into`; the full commit id. Fails with git's message."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise SystemExit(f"--against: {rev!r} is not a commit of this repository")
    commit = found.stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "src"],
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return commit


def _check_imports(env_pythonpath: str, expected: Path) -> None:
    """The other gateway must import its own code, not this tree's."""
    where = subprocess.run(
        [sys.executable, "-c", "import llm_gateway; print(llm_gateway.__file__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": env_pythonpath},
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(expected.resolve()):
        raise SystemExit(f"the exported code is not what gets imported ({where})")


class Pair:
    """The two gateways under one load, and one round of it."""

    def __init__(
        self,
        runner: Runner,
        gateways: tuple[Service, Service],
        load_cpus: Collection[int],
        options: argparse.Namespace,
    ) -> None:
        self._runner = runner
        self._gateways = gateways
        self._load_cpus = load_cpus
        self._options = options

    def _targets(self, load: Load) -> list[Target]:
        return [gateway_targets(g)[load.route] for g in self._gateways]

    def round(self, load: Load, *, seconds: float, index: int = 0) -> tuple[Side, Side]:
        """One round; odd rounds start the other revision's load first, so neither side is
        always the one whose load starts a few milliseconds late."""
        order = [0, 1] if index % 2 == 0 else [1, 0]
        both = self._targets(load)
        targets = [both[i] for i in order]
        before = [tree_cpu_s(g.pid) for g in self._gateways]
        served = self._held(targets) if load.held else self._wrk(targets, load, seconds)
        after = [tree_cpu_s(g.pid) for g in self._gateways]
        served = [served[order.index(i)] for i in (0, 1)]
        this, other = (Side(a - b, n) for a, b, n in zip(after, before, served, strict=True))
        return this, other

    def _wrk(self, targets: list[Target], load: Load, seconds: float) -> list[int]:
        wrk = self._runner.wrk
        assert wrk is not None
        procs = []
        for target in targets:
            script = self._runner.wrk_script(target, INSTANT, stream=load.stream)
            argv = wrk_argv(wrk, script, self._options.concurrency, seconds, target.url)
            log = script.with_suffix(".out")
            procs.append((self._runner.stack.spawn_helper(argv, log, cpus=self._load_cpus), log))
        served = []
        for proc, log in procs:
            proc.wait(timeout=seconds + 30)
            summary = wrk_summary(log.read_text(errors="replace"))
            if summary is None:
                raise RuntimeError(f"wrk failed; see {log}")
            if any(wrk_errors(summary).values()):
                raise RuntimeError(f"wrk saw errors {wrk_errors(summary)}; see {log}")
            served.append(int(summary["requests"]))
        return served

    def _held(self, targets: list[Target]) -> list[int]:
        start_at = time.monotonic() + 1.5  # both generators import first, then start together
        jobs = [
            hold_job(
                target,
                LONG_MODEL,
                streams=self._options.streams,
                expect=LONG_CHUNKS,
                timeout=60,
                spread=1.0,
                start_at=start_at,
            )
            for target in targets
        ]
        outs, error = self._runner.loadgen(jobs, timeout=90, cpus=self._load_cpus)
        if error is not None:
            raise RuntimeError(error)
        for out in outs:
            if out["errors"]:
                raise RuntimeError(f"streams failed: {out['errors']}")
        return [int(out["events"]) for out in outs]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="a commit, tag or branch to compare to")
    parser.add_argument("--rounds", type=int, default=6, help="paired rounds per load (6)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of a wrk round (4)")
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections per side")
    parser.add_argument("--streams", type=int, default=300, help="long streams per side (300)")
    parser.add_argument(
        "--loads",
        default=",".join(LOADS),
        help=f"comma-separated, of: {', '.join(LOADS)} (all)",
    )
    args = parser.parse_args(argv)
    args.loads = [name.strip() for name in args.loads.split(",") if name.strip()]
    unknown = [name for name in args.loads if name not in LOADS]
    if unknown or not args.loads:
        parser.error(f"--loads: unknown {unknown}; choose from {', '.join(LOADS)}")
    if min(args.rounds, args.concurrency, args.streams) < 1 or args.seconds <= 0:
        parser.error("--rounds, --seconds, --concurrency and --streams must be positive")
    return args


def _measure(
    options: argparse.Namespace, run_dir: Path, wrk: str, other_src: Path, cpus: list[int]
) -> list[Comparison]:
    gateway_cpus, load_cpus = {cpus[-1]}, set(cpus[:-1])
    comparisons = []
    with Stack(log_dir=run_dir) as stack:
        servers = Servers(stack, run_dir)
        servers.start_upstream(cpus=load_cpus)
        gateways = (
            servers.gateway("this", cpus=gateway_cpus),
            servers.gateway("against", env={"PYTHONPATH": str(other_src)}, cpus=gateway_cpus),
        )
        runner = Runner(run_dir, stack, sys.executable, wrk)
        pair = Pair(runner, gateways, load_cpus, options)
        for name in options.loads:
            load = LOADS[name]
            pair.round(load, seconds=1.0)  # warm-up: caches, pools, the collector's first rounds
            rounds = []
            for index in range(options.rounds):
                this, other = pair.round(load, seconds=options.seconds, index=index)
                rounds.append((this, other))
                say(
                    f"  {name} round {index + 1}: {this.us_each:.1f} / {other.us_each:.1f} us "
                    f"per {load.unit} ({this.us_each / other.us_each:.3f})"
                )
            comparisons.append(compare(name, load.unit, rounds))
    return comparisons


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("a paired run needs two cores: one for the gateways, one for the load")
    wrk = ensure_wrk(install=True)
    if wrk is None:
        raise SystemExit("a paired run needs wrk (apt-get install wrk)")
    raise_fd_limit()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = RESULTS / f"paired-{stamp}"
    run_dir.mkdir(parents=True)
    # Outside the repository, so no tool that walks it (mypy, pytest) finds a second copy.
    with tempfile.TemporaryDirectory(prefix="llm-gateway-paired-") as exported:
        other_src = Path(exported)
        commit = export_source(options.against, other_src)
        _check_imports(str(other_src / "src"), other_src)
        say(f"paired run {stamp}: this tree against {options.against} ({commit[:7]})")
        comparisons = _measure(options, run_dir, wrk, other_src / "src", cpus)
    short = "" if commit.startswith(options.against) else f" ({commit[:7]})"
    this_name, other_name = "this tree", f"`{options.against}`{short}"
    setup = (
        f"Run {stamp}. Both gateways (`llm-gateway serve`, one worker, default settings, log "
        f"level INFO) on core {cpus[-1]}; the perf upstream and the load on "
        f"{', '.join(map(str, cpus[:-1]))}. wrk: one thread, {options.concurrency} "
        f"connections per side, {options.seconds:g} s rounds; long streams: {options.streams} "
        f"per side of `{LONG_MODEL}` started over 1 s."
    )
    text = render(comparisons, this=this_name, other=other_name, setup=setup)
    out = RESULTS / f"paired-{stamp}.md"
    out.write_text(text, encoding="utf-8")
    say("")
    say(text)
    say(f"wrote {out}")


if __name__ == "__main__":
    main()
