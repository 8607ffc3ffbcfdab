"""The Markdown report of one run: issue 5's table first, then every number behind it."""

from __future__ import annotations

from typing import Any

# Other processes using more than this many cores during a measurement make it suspect.
BUSY_CORES = 0.2


def ms(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed and value >= 0 else ""
    if abs(value) >= 100:
        return f"{sign}{value:,.0f} ms"
    if abs(value) >= 10:
        return f"{sign}{value:.1f} ms"
    return f"{sign}{value:.2f} ms"


def rps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} req/s"


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} MB"


def ratio(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def _cell(result: dict[str, Any] | None) -> str:
    if not result:
        return "-"
    if "error" in result:
        return "failed"
    errors = f", {result['errors']} errors" if result.get("errors") else ""
    return f"{rps(result.get('rps'))}, p50 {ms(result.get('p50_ms'))}{errors}"


def _noise(result: dict[str, Any] | None) -> str:
    if not result or result.get("foreign_cores") is None:
        return "-"
    value = float(result["foreign_cores"])
    return f"**{value:.2f}**" if value > BUSY_CORES else f"{value:.2f}"


def summary_table(data: dict[str, Any]) -> list[str]:
    nonstream = data.get("nonstream", {})
    labels = data.get("labels", {})
    stream = data.get("derived", {}).get("stream", {})
    memory = data.get("memory", {})
    services = data.get("services", {})
    rows = [
        "| | concurrency 1 | concurrency 64 | streaming TTFT added | memory |",
        "|---|---|---|---|---|",
    ]
    for key in data.get("target_order", []):
        c1 = nonstream.get("1", {}).get(key)
        c64 = nonstream.get("64", {}).get(key)
        added = stream.get(key, {}).get("added_ttft_p50_ms")
        ttft = "-" if key == "direct" or added is None else f"{ms(added, signed=True)} p50"
        mem = memory.get(key)
        service = services.get(key, {})
        start = service.get("startup_s")
        memory_cell = "-"
        if mem:
            last = mem.get("after_2_mb") or mem.get("idle_mb")
            n = 2 * mem.get("requests_per_batch", 0)
            memory_cell = f"{mb(last)} RSS after {n:,} requests, {start:.2f} s start"
        elif key == "gateway_generate":
            memory_cell = "(the same process)"
        elif key != "direct" and start is not None:
            memory_cell = f"{mb(service.get('rss_end_mb'))} RSS at the end, {start:.2f} s start"
        rows.append(
            f"| {labels.get(key, key)} | {_cell(c1)} | {_cell(c64)} | {ttft} | {memory_cell} |"
        )
    return rows


def nonstream_tables(data: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    labels = data.get("labels", {})
    derived = data.get("derived", {}).get("nonstream", {})
    for conc, by_target in data.get("nonstream", {}).items():
        lines += [
            "",
            f"### Concurrency {conc}",
            "",
            "| target | req/s | p50 | p95 | p99 | added p50 | added p95 | added p99 "
            "| x floor req/s | errors | other load (cores) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key in data.get("target_order", []):
            result = by_target.get(key)
            if result is None:
                continue
            if "error" in result:
                lines.append(f"| {labels.get(key, key)} | failed: {result['error'][:80]} |")
                continue
            d = derived.get(conc, {}).get(key, {})
            lines.append(
                f"| {labels.get(key, key)} | {rps(result.get('rps'))} | {ms(result.get('p50_ms'))} "
                f"| {ms(result.get('p95_ms'))} | {ms(result.get('p99_ms'))} "
                f"| {ms(d.get('added_p50_ms'), signed=True)} "
                f"| {ms(d.get('added_p95_ms'), signed=True)} "
                f"| {ms(d.get('added_p99_ms'), signed=True)} "
                f"| {ratio(d.get('fraction_of_floor'))} | {result.get('errors', 0)} "
                f"| {_noise(result)} |"
            )
    return lines


def stream_tables(data: dict[str, Any]) -> list[str]:
    labels = data.get("labels", {})
    derived = data.get("derived", {}).get("stream", {})
    setup = data.get("setup", {})
    lines = [
        "",
        f"Streams of {setup.get('stream_model', '?')} (content chunks {setup.get('stream_gap_ms')}"
        f" ms apart, the first at once) at concurrency {setup.get('stream_concurrency')}; TTFT is"
        " request sent to first content event; gaps are between consecutive content events.",
        "",
        "| target | streams ok | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p99 "
        "| gap p50 | gap p99 | added gap p50 | added gap p99 | other load (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in data.get("target_order", []):
        result = data.get("stream", {}).get(key)
        if result is None:
            continue
        if "error" in result:
            lines.append(f"| {labels.get(key, key)} | failed: {result['error'][:80]} |")
            continue
        d = derived.get(key, {})
        errors = result.get("errors") or {}
        ok = f"{result['ok']}/{result['streams']}" + (f" ({errors})" if errors else "")
        lines.append(
            f"| {labels.get(key, key)} | {ok} | {ms(result['ttft']['p50_ms'])} "
            f"| {ms(result['ttft']['p99_ms'])} | {ms(d.get('added_ttft_p50_ms'), signed=True)} "
            f"| {ms(d.get('added_ttft_p99_ms'), signed=True)} | {ms(result['gap']['p50_ms'])} "
            f"| {ms(result['gap']['p99_ms'])} | {ms(d.get('added_gap_p50_ms'), signed=True)} "
            f"| {ms(d.get('added_gap_p99_ms'), signed=True)} | {_noise(result)} |"
        )
    lines += [
        "",
        f"Concurrent streams of {setup.get('ramp_model', '?')} ({setup.get('ramp_chunks')} content"
        f" chunks {setup.get('ramp_gap_ms')} ms apart), all opened at once; a step passes when"
        " every stream got every event in order and ended properly. Peak open = most streams"
        " between their first content event and their end at one instant; a step where fewer"
        " than 90% were open at once (streams queued) does not count as held.",
        "",
        "| target | most held | step | ok | errors | peak open | TTFT p50 | TTFT p99 "
        "| stream p50 | stream max | wall | other load (cores) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, ramp in data.get("ramp", {}).items():
        for i, step in enumerate(ramp["steps"]):
            label = labels.get(key, key) if i == 0 else ""
            held = str(ramp.get("max_held", 0)) if i == 0 else ""
            if "error" in step:
                lines.append(f"| {label} | {held} | {step['streams']} | 0 | {step['error'][:60]} |")
                continue
            ttft = step.get("ttft", {})
            duration = step.get("stream_duration", {})
            lines.append(
                f"| {label} | {held} | {step['streams']} | {step['ok']} "
                f"| {step.get('errors') or '-'} "
                f"| {step.get('peak_open', '-')}{' (queued)' if step.get('queued') else ''} "
                f"| {ms(ttft.get('p50_ms'))} | {ms(ttft.get('p99_ms'))} "
                f"| {ms(duration.get('p50_ms'))} | {ms(duration.get('max_ms'))} "
                f"| {step.get('wall_s', 0):.2f} s | {_noise(step)} |"
            )
    return lines


def memory_table(data: dict[str, Any]) -> list[str]:
    labels = data.get("labels", {})
    lines = [
        "",
        "| process | start-up (to first 200) | RSS idle | RSS after batch 1 | RSS after batch 2 "
        "| growth batch 1 -> 2 | requests per batch | batch errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, mem in data.get("memory", {}).items():
        start = data.get("services", {}).get(key, {}).get("startup_s")
        errors = [b.get("errors") or {} for b in mem.get("batches", [])]
        label = "llm-gateway (`serve`, one worker)" if key == "gateway" else labels.get(key, key)
        lines.append(
            f"| {label} | {'-' if start is None else f'{start:.2f} s'} "
            f"| {mb(mem.get('idle_mb'))} | {mb(mem.get('after_1_mb'))} "
            f"| {mb(mem.get('after_2_mb'))} | {mb(mem.get('growth_mb'))} "
            f"| {mem.get('requests_per_batch', 0):,} | {errors} |"
        )
    for key in ("floor", "upstream", "emulator"):
        service = data.get("services", {}).get(key)
        if service and service.get("startup_s") is not None:
            lines.append(
                f"| {labels.get(key, key)} | {service['startup_s']:.2f} s | "
                f"{mb(service.get('rss_idle_mb'))} | | {mb(service.get('rss_end_mb'))} "
                "(end of run) | | | |"
            )
    return lines


def targets_table(data: dict[str, Any]) -> list[str]:
    lines = ["", "| target (issue 5) | measured | met? |", "|---|---|---|"]
    for check in data.get("targets", []):
        met = {True: "yes", False: "**no**", None: "n/a"}[check["met"]]
        lines.append(f"| {check['what']} | {check['measured']} | {met} |")
    return lines


def emulator_table(data: dict[str, Any]) -> list[str]:
    rows = data.get("emulator_alone", [])
    if not rows:
        return []
    direct = data.get("nonstream", {})
    floor = {c: r.get("floor", {}).get("rps") for c, r in direct.items()}
    perf = {c: r.get("direct", {}).get("rps") for c, r in direct.items()}
    lines = [
        "",
        "| concurrency | emulator (`--time-scale 0`, emulator/instant) | perf upstream | floor "
        "through the perf upstream | emulator / floor |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        conc = str(row["concurrency"])
        emu = row.get("rps")
        fl = floor.get(conc)
        lines.append(
            f"| {conc} | {_cell(row)} | {rps(perf.get(conc))} | {rps(fl)} "
            f"| {ratio(emu / fl if emu and fl else None)} |"
        )
    return lines


def render(data: dict[str, Any]) -> str:
    run = data.get("run", {})
    machine = data.get("machine", {})
    quiet = data.get("quiet", {})
    setup = data.get("setup", {})
    noise = data.get("noise", {})
    lines = [
        f"# llm-gateway performance: run {run.get('id', '?')}",
        "",
        f"Machine: {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('memory_gb', '?')} GB, Linux {machine.get('kernel', '?')}, "
        f"Python {machine.get('python', '?')}; llm-gateway {machine.get('git', '?')}. "
        f"Wall time {run.get('wall_s', '?')} s.",
        "",
        f"Other load on the machine: {quiet.get('foreign_cores', '?')} cores busy with other "
        f"processes before the run (load average {quiet.get('loadavg', '?')}); during "
        f"measurements at most {noise.get('max_foreign_cores', '?')} cores, median "
        f"{noise.get('median_foreign_cores', '?')}. "
        + (
            "**The machine was busy: treat these numbers with care and re-run when it is quiet.**"
            if noise.get("busy")
            else "Quiet enough to trust."
        ),
    ]
    if run.get("interrupted"):
        lines += ["", "**This run was interrupted; the tables hold what it measured.**"]
    for error in run.get("errors", []):
        lines += ["", f"**Error:** {error}"]
    lines += ["", "## Summary (issue 5's table, measured in this run)", "", *summary_table(data)]
    lines += ["", "## Issue 5 targets", *targets_table(data)]
    lines += [
        "",
        "## Non-streaming: throughput and latency",
        "",
        "Added = target minus direct at the same percentile and concurrency; x floor = the "
        "target's throughput over the floor's. wrk closed loop, "
        f"{setup.get('warmup_s')} s warm-up then {setup.get('duration_s')} s measured per cell; "
        "targets interleaved within each concurrency. Other load = cores used by processes that "
        f"are not this run's during the cell (bold above {BUSY_CORES}).",
        *nonstream_tables(data),
    ]
    lines += ["", "## Streaming", *stream_tables(data)]
    lines += [
        "",
        "## Memory and start-up",
        "",
        f"RSS is VmRSS from /proc. Each batch is {setup.get('memory_mix', '?')}, cycled, at "
        "concurrency 16; readings 1 s after each batch. Start-up = process spawned to its first "
        "200 on the health route.",
        *memory_table(data),
    ]
    lines += [
        "",
        "## The upstream: emulator alone vs the dedicated perf upstream",
        "",
        setup.get("upstream_choice", ""),
        *emulator_table(data),
    ]
    lines += ["", "## How this was measured", ""]
    lines += [f"- {note}" for note in setup.get("notes", [])]
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("packages", {}).items())
    lines += ["", f"Versions: {versions}."]
    return "\n".join(lines) + "\n"
