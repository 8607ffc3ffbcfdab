"""`run.py --profile`: py-spy on the gateway during a c=64 non-streaming load, and a summary.

py-spy samples the running server from outside (no code change, no restart) and is installed
into its own virtualenv (`.venv-tools`, git-ignored), never into the project's. Two recordings
per endpoint, each under the same load: `raw` (collapsed stacks, summarised here into ranked
tables) and a flamegraph SVG to open in a browser.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cli import say
from endpoints import Target
from measure import Runner
from result import Options
from services import INSTANT, Servers, gateway_targets
from stack import Stack

HERE = Path(__file__).resolve().parent
TOOLS_VENV = HERE / ".venv-tools"
# Samples per second: enough for stable shares in a few seconds, little overhead on the server;
# not a round number, so the sampling does not lock on to a regular request cadence.
RATE = 173


def ensure_pyspy(log: Path) -> tuple[Path | None, str | None]:
    """The py-spy binary (installing it into .venv-tools on first use), or an error message."""
    binary = TOOLS_VENV / "bin" / "py-spy"
    if binary.exists():
        return binary, None
    with log.open("ab") as out:
        for argv in (
            [sys.executable, "-m", "venv", str(TOOLS_VENV)],
            [str(TOOLS_VENV / "bin" / "pip"), "install", "--quiet", "py-spy", "pyinstrument"],
        ):
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=600)
            if done.returncode != 0:
                return None, f"`{' '.join(argv)}` failed (exit {done.returncode}); see {log}"
    return (binary, None) if binary.exists() else (None, "py-spy missing after install")


def _frame_parts(frame: str) -> tuple[str, str]:
    """("function", "file:line") of a py-spy frame `function (file:line)`."""
    name, _, where = frame.rpartition(" (")
    return (name or frame), where.rstrip(")")


def _group(where: str) -> str:
    # py-spy shortens paths to the import path, so the first component is the package
    # (site-packages) or the stdlib module: a fair first cut of "whose code is it".
    path = where.rsplit(":", 1)[0]
    return path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")


# Where a request's time goes, by stage: (label, a frame on the stack, a frame that must not be).
# Substrings of py-spy frames `function (path:line)`; the differences split nested stages.
COMPONENTS: tuple[tuple[str, str, str | None], ...] = (
    (
        "outside the router: uvicorn, the middleware stack, sending the response",
        "RequestResponseCycle.run_asgi (",
        "Router.__call__ (starlette/routing.py",
    ),
    (
        "routing to the endpoint (Starlette/FastAPI router, included routers)",
        "Router.__call__ (starlette/routing.py",
        "get_request_handler.<locals>.app (fastapi/routing.py",
    ),
    (
        "FastAPI endpoint glue: dependencies, body read, validation, response",
        "get_request_handler.<locals>.app (fastapi/routing.py",
        "run_endpoint_function (fastapi/routing.py",
    ),
    ("the endpoint function itself", "run_endpoint_function (fastapi/routing.py", None),
    ("  of which the upstream call (UpstreamClient.complete)", "UpstreamClient.complete (", None),
    ("  of which aiohttp's request (ClientSession._request)", "ClientSession._request (", None),
    ("  of which tenacity (the retry loop's own work)", "tenacity/", None),
    ("FastAPI dependency solving (solve_dependencies)", "solve_dependencies (", None),
    ("access-log record made on the event loop (Logger.info)", "Logger.info (logging/", None),
    ("Prometheus metrics (prometheus_client)", "prometheus_client/", None),
    ("uvloop C code: sockets, HTTP parsing (Runner.run as the running frame)", "", None),
)


def summarize(collapsed: Path, *, seconds: float, top: int = 25) -> dict[str, Any]:
    """Ranked shares of the samples in which a gateway thread held the GIL (py-spy --gil): the
    CPU the one worker spends, by thread, by package, by function (self and inclusive)."""
    total = 0
    components: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    self_frames: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[0].startswith("thread ("):
            # `thread (tid): name`, from --threads: the thread the sample came from.
            threads[frames[0].partition(": ")[2] or frames[0]] += count
            frames = frames[1:]
        if not frames:
            continue
        total += count
        for label, include, exclude in COMPONENTS:
            if not include:
                hit = frames[-1].startswith("Runner.run (asyncio/runners.py")
            else:
                hit = any(include in f for f in frames) and not (
                    exclude is not None and any(exclude in f for f in frames)
                )
            if hit:
                components[label] += count
        leaf_name, leaf_where = _frame_parts(frames[-1])
        leaf = f"{leaf_name} ({leaf_where})"
        self_frames[leaf] += count
        caller = " <- ".join(_frame_parts(f)[0] for f in reversed(frames[-4:-1]))
        callers.setdefault(leaf, Counter())[caller] += count
        packages[_group(leaf_where)] += count
        # Inclusive time per function (file, not line), counted once per stack even if the
        # function recurses.
        seen = set()
        for frame in frames:
            name, where = _frame_parts(frame)
            seen.add(f"{name} ({where.rsplit(':', 1)[0]})")
        for key in seen:
            inclusive[key] += count

    def ranked(counter: Counter[str], limit: int = top) -> list[dict[str, Any]]:
        return [
            {"frame": key, "samples": n, "share": round(n / total, 4) if total else 0.0}
            for key, n in counter.most_common(limit)
        ]

    # Frames on (nearly) every stack are the server's scaffolding (typer, uvicorn.run, the event
    # loop): true but useless in a ranking.
    scaffolding = {key for key, n in inclusive.items() if n >= 0.9 * total}
    for key in scaffolding:
        del inclusive[key]
    self_rows = ranked(self_frames)
    for row in self_rows:
        row["caller"] = callers[row["frame"]].most_common(1)[0][0]
    return {
        "samples": total,
        "gil_held_share": round(total / (RATE * seconds), 3) if seconds else None,
        "threads": ranked(threads, 10),
        "components": [
            {
                "frame": label,
                "samples": components[label],
                "share": round(components[label] / total, 4) if total else 0.0,
            }
            for label, _, _ in COMPONENTS
        ],
        "self": self_rows,
        "inclusive": ranked(inclusive),
        "packages": ranked(packages),
    }


def profile_gateway(
    runner: Runner,
    stack: Stack,
    *,
    pyspy: Path,
    gateway_pid: int,
    targets: list[Target],
    model: str,
    seconds: int,
    out_prefix: Path,
) -> dict[str, Any]:
    """Record each target under a c=64 wrk load; returns summaries and file paths."""
    if runner.wrk is None:
        raise RuntimeError("--profile needs wrk for the load (apt-get install wrk)")
    results: dict[str, Any] = {}
    for target in targets:
        entry: dict[str, Any] = {"url": target.url}
        for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
            output = Path(f"{out_prefix}-{target.key}.{suffix}")
            script = runner.wrk_script(target, model)
            load = stack.spawn_helper(
                [
                    runner.wrk,
                    "-t1",
                    "-c64",
                    f"-d{seconds + 3}s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(script),
                    target.url,
                ],
                runner.run_dir / "work" / f"profile-{target.key}-{fmt}.wrk.log",
            )
            time.sleep(1.5)  # let the load reach its steady state before sampling
            record = subprocess.run(
                [
                    str(pyspy),
                    "record",
                    "--pid",
                    str(gateway_pid),
                    "--duration",
                    str(seconds),
                    "--rate",
                    str(RATE),
                    # Only samples where a thread holds the GIL: what the single worker spends,
                    # with idle waits (and the log thread's waits) left out.
                    "--gil",
                    "--threads",
                    "--format",
                    fmt,
                    "--output",
                    str(output),
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
            load.wait(timeout=seconds + 60)
            wrk_log = (runner.run_dir / "work" / f"profile-{target.key}-{fmt}.wrk.log").read_text()
            rps = next(
                (x.split()[-1] for x in wrk_log.splitlines() if x.startswith("Requests/sec")), "?"
            )
            if record.returncode != 0 or not output.exists():
                entry[f"{fmt}_error"] = (record.stderr or record.stdout)[-500:]
                continue
            entry[fmt] = str(output)
            entry[f"{fmt}_rps_under_profiler"] = rps
            if fmt == "raw":
                entry["summary"] = summarize(output, seconds=seconds)
        results[target.key] = entry
    return results


def run(runner: Runner, servers: Servers, options: Options, *, out_prefix: Path) -> dict[str, Any]:
    """Start a gateway, warm it up, and record both hot routes under load."""
    pyspy, error = ensure_pyspy(runner.run_dir / "tools-install.log")
    if pyspy is None:
        raise RuntimeError(f"py-spy unavailable: {error}")
    gateway = servers.gateway()
    targets = list(gateway_targets(gateway).values())
    say("warming the gateway up ...")
    for target in targets:
        runner.nonstream(target, INSTANT, concurrency=64, duration=2, warmup=0)
    say(f"profiling: py-spy for {options.profile_seconds} s per recording under c=64 load ...")
    return profile_gateway(
        runner,
        servers.stack,
        pyspy=pyspy,
        gateway_pid=gateway.pid,
        targets=targets,
        model=INSTANT,
        seconds=options.profile_seconds,
        out_prefix=out_prefix,
    )


def profile_markdown(results: dict[str, Any], *, seconds: int) -> str:
    lines = [
        "# Gateway profile (py-spy)",
        "",
        f"py-spy at {RATE} Hz for {seconds} s per recording, during a wrk load at concurrency 64 "
        "(non-streaming). Shares are of all CPU samples of the gateway process (idle time not "
        "sampled: `py-spy --gil`). Self = the frame running on the CPU; inclusive = the "
        "function anywhere on the stack. `Runner.run (asyncio/runners.py)` as a self frame is "
        "uvloop's C code (socket I/O, HTTP parsing callbacks), which py-spy cannot see into.",
    ]
    for key, entry in results.items():
        lines += ["", f"## {key}: `{entry['url']}`", ""]
        if "summary" not in entry:
            lines.append(f"Recording failed: {entry.get('raw_error', 'unknown error')}")
            continue
        summary = entry["summary"]
        lines.append(
            f"{summary['samples']} samples with the GIL held ({summary['gil_held_share']:.0%} of "
            f"the sampled time: the worker's CPU saturation); throughput under the profiler "
            f"{entry.get('raw_rps_under_profiler', '?')} req/s. Flamegraph: "
            f"`{Path(entry.get('flamegraph', '(failed)')).name}`."
        )
        for title, rows in (
            ("By stage (inclusive; nested stages are indented)", summary["components"]),
            ("By thread", summary["threads"]),
            (
                "Self time by package (first path component of the running frame)",
                summary["packages"][:15],
            ),
            (
                "Inclusive time by function (scaffolding on >= 90% of stacks left out)",
                summary["inclusive"][:25],
            ),
        ):
            lines += ["", f"### {title}", "", "| share | samples | frame |", "|---:|---:|---|"]
            lines += [
                f"| {row['share'] * 100:.1f}% | {row['samples']} | `{row['frame']}` |"
                for row in rows
            ]
        lines += [
            "",
            "### Self time by function, with its most common callers",
            "",
            "| share | samples | frame | called from |",
            "|---:|---:|---|---|",
        ]
        lines += [
            f"| {row['share'] * 100:.1f}% | {row['samples']} | `{row['frame']}` "
            f"| {row['caller'] or '-'} |"
            for row in summary["self"][:25]
        ]
    return "\n".join(lines) + "\n"
