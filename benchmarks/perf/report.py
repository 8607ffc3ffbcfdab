"""The Markdown report of one run: issue 5's table first, then every number behind it.

It reads a `RunResult` that `derive.py` and `checks.py` have completed, and measures nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fmt import kb, mb, ms, ratio, rps, seconds
from result import Derived, LoadCell, Measured, Noise, RunResult
from stack import BUSY_CORES, PROBE_STEPS


def _cell(cell: LoadCell | None) -> str:
    if cell is None:
        return "-"
    if cell.stats is None:
        return "failed"
    errors = f", {cell.stats.errors} errors" if cell.stats.errors else ""
    return f"{rps(cell.stats.rps)}, p50 {ms(cell.stats.p50_ms)}{errors}"


def _rounds(values: list[float], each: Callable[[float], str]) -> str:
    """Every round's number, when there was more than one (the cell is the median)."""
    return " / ".join(each(v) for v in values) if len(values) > 1 else "-"


def _noise(measured: Measured[Any]) -> str:
    """Other processes' load during a measurement and, when taken, the speed probe around it."""
    value = measured.foreign_cores
    load = f"**{value:.2f}**" if value > BUSY_CORES else f"{value:.2f}"
    return load if measured.probe_ms is None else f"{load} · {measured.probe_ms:.0f} ms"


def _failed(label: str, error: str | None) -> str:
    return f"| {label} | failed: {(error or '?')[:80]} |"


def summary_table(result: RunResult, derived: Derived) -> list[str]:
    rows = [
        "| | concurrency 1 | concurrency 64 | streaming TTFT added | memory |",
        "|---|---|---|---|---|",
    ]
    for key in result.target_order:
        delta = derived.stream.get(key)
        added = None if delta is None else delta.added_ttft_p50_ms
        ttft = "-" if key == "direct" or added is None else f"{ms(added, signed=True)} p50"
        memory = result.memory.get(key)
        service = result.services.get(key)
        memory_cell = "-"
        if memory is not None and service is not None:
            last = memory.after_2_mb or memory.idle_mb
            memory_cell = (
                f"{mb(last)} RSS after {2 * memory.requests_per_batch:,} requests, "
                f"{seconds(service.startup_s)} start"
            )
        elif key == "gateway_generate":
            memory_cell = "(the same process)"
        elif service is not None:
            memory_cell = (
                f"{mb(service.rss_end_mb)} RSS at the end, {seconds(service.startup_s)} start"
            )
        rows.append(
            f"| {result.label(key)} | {_cell(result.nonstream.get(1, {}).get(key))} "
            f"| {_cell(result.nonstream.get(64, {}).get(key))} | {ttft} | {memory_cell} |"
        )
    return rows


def targets_table(result: RunResult) -> list[str]:
    lines = ["", "| issue | target | measured | met? |", "|---:|---|---|---|"]
    for check in result.targets:
        met = {True: "yes", False: "**no**", None: "n/a"}[check.met]
        lines.append(f"| {check.issue} | {check.what} | {check.measured} | {met} |")
    return lines


def nonstream_tables(result: RunResult, derived: Derived) -> list[str]:
    lines: list[str] = []
    for concurrency, cells in result.nonstream.items():
        lines += [
            "",
            f"### Concurrency {concurrency}",
            "",
            "| target | req/s | p50 | p95 | p99 | added p50 | added p95 | added p99 "
            "| x floor req/s | errors | req/s of each round | other load (cores) · probe |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key in result.target_order:
            cell = cells.get(key)
            if cell is None:
                continue
            if cell.stats is None:
                lines.append(_failed(result.label(key), cell.error))
                continue
            d = derived.nonstream[concurrency][key]
            lines.append(
                f"| {result.label(key)} | {rps(cell.stats.rps)} | {ms(cell.stats.p50_ms)} "
                f"| {ms(cell.stats.p95_ms)} | {ms(cell.stats.p99_ms)} "
                f"| {ms(d.added_p50_ms, signed=True)} | {ms(d.added_p95_ms, signed=True)} "
                f"| {ms(d.added_p99_ms, signed=True)} | {ratio(d.fraction_of_floor)} "
                f"| {cell.stats.errors} | {_rounds(cell.rounds, '{:,.0f}'.format)} "
                f"| {_noise(cell)} |"
            )
    return lines


def stream_tables(result: RunResult, derived: Derived) -> list[str]:
    setup = result.setup
    lines = [
        "",
        f"Streams of {setup.stream_model} (content chunks {setup.stream_gap_ms} ms apart, the "
        f"first at once) at concurrency {result.run.options.stream_concurrency}; TTFT is request"
        " sent to first content event; gaps are between consecutive content events."
        + (
            f" Targets interleaved in {result.run.options.rounds} rounds: each row is the "
            "target's median round by TTFT p50."
            if result.run.options.rounds > 1
            else ""
        ),
        "",
        "| target | streams ok | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p99 "
        "| gap p50 | gap p99 | added gap p50 | added gap p99 | TTFT p50 of each round "
        "| other load (cores) · probe |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in result.target_order:
        cell = result.stream.get(key)
        if cell is None:
            continue
        if cell.stats is None:
            lines.append(_failed(result.label(key), cell.error))
            continue
        s = cell.stats
        d = derived.stream[key]
        errors = f" ({s.errors})" if s.errors else ""
        lines.append(
            f"| {result.label(key)} | {s.ok}/{s.streams}{errors} | {ms(s.ttft.p50_ms)} "
            f"| {ms(s.ttft.p99_ms)} | {ms(d.added_ttft_p50_ms, signed=True)} "
            f"| {ms(d.added_ttft_p99_ms, signed=True)} | {ms(s.gap.p50_ms)} "
            f"| {ms(s.gap.p99_ms)} | {ms(d.added_gap_p50_ms, signed=True)} "
            f"| {ms(d.added_gap_p99_ms, signed=True)} | {_rounds(cell.rounds, ms)} "
            f"| {_noise(cell)} |"
        )
    lines += [
        "",
        f"Concurrent streams of {setup.ramp_model} ({setup.ramp_chunks} content chunks "
        f"{setup.ramp_gap_ms} ms apart), all opened at once; a step passes when every stream got"
        " every event in order and ended properly. Peak open = most streams between their first"
        " content event and their end at one instant; a step where fewer than 90% were open at"
        " once (streams waited, or ended before others started) does not count as held.",
        "",
        "| target | most held | step | ok | errors | peak open | TTFT p50 | TTFT p99 "
        "| stream p50 | stream max | wall | other load (cores) · probe |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, ramp in result.ramp.items():
        for i, step in enumerate(ramp.steps):
            label = result.label(key) if i == 0 else ""
            held = str(ramp.max_held) if i == 0 else ""
            if step.stats is None:
                lines.append(f"| {label} | {held} | {step.streams} | 0 | {step.error} |")
                continue
            h = step.stats
            lines.append(
                f"| {label} | {held} | {step.streams} | {h.ok} | {h.errors or '-'} "
                f"| {h.peak_open}{' (not all open)' if step.queued else ''} "
                f"| {ms(h.ttft.p50_ms)} | {ms(h.ttft.p99_ms)} | {ms(h.stream_duration.p50_ms)} "
                f"| {ms(h.stream_duration.max_ms)} | {h.wall_s:.2f} s | {_noise(step)} |"
            )
    return lines


def capacity_table(result: RunResult, derived: Derived) -> list[str]:
    setup, options = result.setup, result.run.options
    stream_s = setup.capacity_chunks * setup.capacity_gap_ms / 1000
    lines = [
        "",
        f"N streams of {setup.capacity_model} ({setup.capacity_chunks} content chunks "
        f"{setup.capacity_gap_ms} ms apart, ~{stream_s:g} s each), started evenly over "
        f"{options.capacity_spread:g} s, per target on a server started for that step alone. "
        "Complete = every content event in order and a proper end. "
        "Wall = first stream started to last ended; events/s = content events received / wall. "
        "RSS = the server's process tree: idle after a short warm-up, and the most it used while "
        "the streams were open; per stream = (open - idle) / N, KB = 1,000 bytes."
        + (
            f' Rows "{options.capacity_workers} workers": the same route on `llm-gateway serve '
            f"--workers {options.capacity_workers}` (all its processes' RSS); no targets, which "
            "are for default settings."
            if options.capacity_workers > 1
            else ""
        )
        + (f" Gateway environment: {options.gateway_env}." if options.gateway_env else ""),
        "",
        "| streams | target | complete | errors | TTFT p50 | TTFT p99 | x floor | wall "
        "| x floor | events/s | RSS idle | RSS open | per stream | other load (cores) · probe |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for streams, steps in result.capacity.items():
        for key, step in steps.items():
            head = f"| {streams:,} | {result.label(key)}"
            hold = step.hold
            if hold.stats is None:
                lines.append(f"{head} | failed: {(hold.error or '?')[:80]} |")
                continue
            h = hold.stats
            d = derived.capacity[streams][key]
            lines.append(
                f"{head} | {h.ok:,}/{streams:,} | {h.errors or '-'} | {ms(h.ttft.p50_ms)} "
                f"| {ms(h.ttft.p99_ms)} | {ratio(d.ttft_p99_x_floor)} | {h.wall_s:.1f} s "
                f"| {ratio(d.wall_x_floor)} | {d.events_per_s:,.0f} | {mb(step.rss_idle_mb)} "
                f"| {mb(step.rss_peak_mb)} | {kb(d.rss_per_stream_kb)} | {_noise(hold)} |"
            )
    return lines


def memory_table(result: RunResult) -> list[str]:
    lines = [
        "",
        "| process | start-up (to first 200) | RSS idle | RSS after batch 1 | RSS after batch 2 "
        "| growth batch 1 -> 2 | requests per batch | batch errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, memory in result.memory.items():
        service = result.services.get(key)
        errors = [b.error if b.stats is None else b.stats.errors for b in memory.batches]
        label = "llm-gateway (`serve`, one worker)" if key == "gateway" else result.label(key)
        startup = None if service is None else service.startup_s
        lines.append(
            f"| {label} | {seconds(startup)} | {mb(memory.idle_mb)} "
            f"| {mb(memory.after_1_mb)} | {mb(memory.after_2_mb)} | {mb(memory.growth_mb)} "
            f"| {memory.requests_per_batch:,} | {errors} |"
        )
    for key in ("floor", "upstream", "emulator"):
        service = result.services.get(key)
        if service is not None:
            lines.append(
                f"| {result.label(key)} | {seconds(service.startup_s)} "
                f"| {mb(service.rss_idle_mb)} | | {mb(service.rss_end_mb)} (end of run) | | | |"
            )
    return lines


def emulator_table(result: RunResult) -> list[str]:
    if not result.emulator_alone:
        return []
    lines = [
        "",
        "| concurrency | emulator (`--time-scale 0`, emulator/instant) | perf upstream | floor "
        "through the perf upstream | emulator / floor |",
        "|---:|---:|---:|---:|---:|",
    ]
    for cell in result.emulator_alone:
        cells = result.nonstream.get(cell.concurrency, {})
        direct, floor = cells.get("direct"), cells.get("floor")
        direct_rps = direct.stats.rps if direct and direct.stats else None
        floor_rps = floor.stats.rps if floor and floor.stats else None
        emulator_rps = cell.stats.rps if cell.stats else None
        times = emulator_rps / floor_rps if emulator_rps and floor_rps else None
        lines.append(
            f"| {cell.concurrency} | {_cell(cell)} | {rps(direct_rps)} | {rps(floor_rps)} "
            f"| {ratio(times)} |"
        )
    return lines


UPSTREAM_CHOICE = (
    "The measured upstream is `benchmarks/perf/upstream.py`, a raw asyncio protocol on uvloop "
    "with httptools and pre-encoded OpenRouter-shaped replies (JSON, and SSE with role, content, "
    "finish and usage chunks and [DONE]). The emulator is measured alone below: at every "
    "concurrency it answers at about the floor's rate or less, so behind it the floor, and at "
    "high concurrency the gateway, would be measuring the emulator. The perf upstream is several "
    "times faster than the floor (direct rows)."
)


def notes(result: RunResult) -> list[str]:
    generator = (
        "wrk (one thread, one connection per concurrent request, Lua script for the POST body)"
        if result.setup.wrk
        else "the Python client (wrk not installed): two `loadgen.py` processes"
    )
    extra = result.run.options.gateway_env
    return [
        f"Load generator: {generator}; streams and fixed-count batches: "
        "`benchmarks/perf/loadgen.py` (httptools' parser under uvloop) in its own process(es), "
        "one per 1,000 streams of a large step. The direct rows are the generator driving the "
        "upstream with nothing in between: far above every proxy, so the generator is not what "
        "limits them.",
        "Every server is its own process on 127.0.0.1: perf upstream, floor "
        "(`benchmarks/perf/floor.py`: uvicorn, one worker, uvloop + httptools, no access log, one "
        "aiohttp ClientSession without a connection limit, bytes passed through, streams "
        "forwarded read by read), the gateway and LiteLLM. All share the machine's cores with "
        "the generator, as in the issue's measurements.",
        "Gateway: `llm-gateway serve` (uvicorn, one worker), GATEWAY_UPSTREAM=openrouter pointed "
        "at the perf upstream, default settings otherwise (upstream pool 1024, retries on), "
        "GATEWAY_LOG_LEVEL=INFO (the default) so its access log is on, as users run it: one line "
        "per request to logs/server_logs.txt and to stderr (a file here)."
        + (f" Extra environment (`--gateway-env`): {extra}." if extra else ""),
        "LiteLLM (with PEER=litellm): its own virtualenv, `litellm --num_workers 1`, one "
        "OpenAI-compatible model entry per model id pointing at the perf upstream, retries 0 "
        "(router and OpenAI SDK), no callbacks, no cache, local model-cost map, "
        "LITELLM_MASTER_KEY set; its default (uvicorn) access log left on.",
        "Model ids: perf/instant answers at once (20 content chunks when streamed); "
        "perf/paced-N-D streams N content chunks D ms apart.",
        "Percentiles: wrk's (non-streaming) or linear interpolation over all samples (streams). "
        "Latency percentiles are closed-loop: each connection sends its next request when the "
        "previous answer arrives.",
    ]


# The probe's slowest over its fastest beyond which the run says the machine's speed moved.
_SPEED_SPREAD = 1.5


def _speed(noise: Noise | None) -> list[str]:
    if noise is None or noise.probe_ms_min is None or noise.probe_ms_max is None:
        return []
    spread = noise.probe_ms_max / noise.probe_ms_min
    text = (
        f"Machine speed: the speed probe (a {PROBE_STEPS:,}-step Python loop, timed before and "
        "after every measurement while the servers were idle; the last column of each table) "
        f"took {noise.probe_ms_min:.0f} to {noise.probe_ms_max:.0f} ms, median "
        f"{noise.probe_ms_median:.0f} ms. "
    )
    if spread > _SPEED_SPREAD:
        text += (
            f"**The machine's own speed changed by {spread:.1f}x during the run**, which no count "
            "of other processes sees: compare cells measured at similar probe times."
        )
    else:
        text += "Steady."
    return ["", text]


def render(result: RunResult) -> str:
    derived = result.derived
    if derived is None:
        raise ValueError("render() needs a derived result (derive.derive and checks)")
    run, machine, quiet, noise = result.run, result.machine, result.quiet, result.noise
    options = run.options
    quiet_text = (
        "not measured"
        if quiet is None
        else f"{quiet.foreign_cores} cores busy with other processes before the run (load "
        f"average {quiet.loadavg})"
    )
    during = (
        "nothing was measured."
        if noise is None
        else f"during measurements at most {noise.max_foreign_cores} cores, median "
        f"{noise.median_foreign_cores}. "
        + (
            "**The machine was busy: treat these numbers with care and re-run when it is quiet.**"
            if noise.busy
            else "Quiet enough to trust."
        )
    )
    speed = _speed(noise)
    lines = [
        f"# llm-gateway performance: run {run.id}",
        "",
        f"Machine: {machine.cpu_model}, {machine.cores} cores, {machine.memory_gb} GB, Linux "
        f"{machine.kernel}, Python {machine.python}; llm-gateway {machine.git}. "
        f"Wall time {run.wall_s} s.",
        "",
        f"Other load on the machine: {quiet_text}; {during}",
        *speed,
    ]
    if run.interrupted:
        lines += ["", "**This run was interrupted; the tables hold what it measured.**"]
    for error in run.errors:
        lines += ["", f"**Error:** {error}"]
    lines += ["", "## Summary (issue 5's table, measured in this run)", ""]
    lines += summary_table(result, derived)
    lines += ["", "## Targets (issues 5 and 14)", *targets_table(result)]
    lines += [
        "",
        "## Non-streaming: throughput and latency",
        "",
        "Added = target minus direct at the same percentile and concurrency; x floor = the "
        f"target's throughput over the floor's. wrk closed loop, {options.warmup} s warm-up then "
        f"{options.duration} s measured per cell; targets interleaved within each concurrency"
        + (
            f", in {options.rounds} rounds: each row is the target's median round by req/s, "
            "the others next to it"
            if options.rounds > 1
            else ""
        )
        + ". Other load = cores used by processes that are not this run's during the cell (bold "
        f"above {BUSY_CORES}); probe = the speed probe around it (higher = slower machine).",
        *nonstream_tables(result, derived),
    ]
    lines += ["", "## Streaming", *stream_tables(result, derived)]
    if result.capacity:
        lines += ["", "## Capacity: long streams by the thousand (issue 14)"]
        lines += capacity_table(result, derived)
    lines += [
        "",
        "## Memory and start-up",
        "",
        "RSS is VmRSS from /proc. Each batch is chat completions JSON, chat completions SSE, "
        "/generate JSON, /generate SSE (LiteLLM: the two chat kinds), cycled, at concurrency 16; "
        "readings 1 s after each batch. Start-up = process spawned to its first 200 on the "
        "health route.",
        *memory_table(result),
    ]
    lines += [
        "",
        "## The upstream: emulator alone vs the dedicated perf upstream",
        "",
        UPSTREAM_CHOICE,
        *emulator_table(result),
    ]
    lines += ["", "## How this was measured", ""]
    lines += [f"- {note}" for note in notes(result)]
    versions = ", ".join(f"{k} {v}" for k, v in machine.packages.items())
    lines += ["", f"Versions: {versions}."]
    return "\n".join(lines) + "\n"
