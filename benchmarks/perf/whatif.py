"""`run.py --whatif`: what each part of the gateway costs, by serving it with the part off.

A profile says where samples land; switching a part off says what it costs, including what a
profile cannot see (context switches, GIL hand-offs between threads). Each variant is the real
app (`whatif_app.py`) with settings changed through the environment and/or named middleware
left out; rounds interleave the variants, so drift on the machine spreads over all of them, and
the report takes the median of the rounds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from cli import say
from endpoints import Target
from fmt import ms, rps
from measure import Runner
from result import Options, WhatifRow
from services import INSTANT, Servers
from stack import context_switches


@dataclass(frozen=True)
class Variant:
    label: str
    env: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()  # middleware class names (whatif_app.py fails on unknown ones)


# The access line is logged at INFO; the retry loop runs only from the second attempt on, so
# one attempt prices what is left of it on the happy path.
ACCESS_LOG_OFF = {"GATEWAY_LOG_LEVEL": "WARNING"}
RETRY_OFF = {"GATEWAY_RETRY_ATTEMPTS": "1"}
MIDDLEWARE = (
    "MetricsMiddleware",
    "BodyLimitMiddleware",
    "AccessLogMiddleware",
    "CancelOnDisconnect",
    "BrowserGuard",
    "LoopbackOnly",
)
VARIANTS = (
    Variant("as served (everything on)"),
    Variant("access log off (GATEWAY_LOG_LEVEL=WARNING)", env=ACCESS_LOG_OFF),
    Variant("metrics middleware off", drop=("MetricsMiddleware",)),
    Variant("body-limit middleware off", drop=("BodyLimitMiddleware",)),
    Variant("access-log middleware off", drop=("AccessLogMiddleware",)),
    Variant("disconnect watch off", drop=("CancelOnDisconnect",)),
    Variant("browser and loopback guards off", drop=("BrowserGuard", "LoopbackOnly")),
    Variant("retry loop off (GATEWAY_RETRY_ATTEMPTS=1)", env=RETRY_OFF),
    Variant("all of the above off", env={**ACCESS_LOG_OFF, **RETRY_OFF}, drop=MIDDLEWARE),
)
C64_SECONDS, C1_SECONDS = 4, 3


def run(runner: Runner, servers: Servers, options: Options) -> dict[str, list[WhatifRow]]:
    if runner.wrk is None:
        raise RuntimeError("--whatif needs wrk (apt-get install wrk)")
    rows: dict[str, list[WhatifRow]] = {variant.label: [] for variant in VARIANTS}
    for round_no in range(1, options.whatif_rounds + 1):
        for i, variant in enumerate(VARIANTS):
            service = servers.gateway(f"whatif{i}", env=variant.env, drop=variant.drop)
            target = Target("whatif", variant.label, f"{service.url}/v1/chat/completions", "chat")
            before = context_switches(service.pid)
            c64 = runner.nonstream(target, INSTANT, concurrency=64, duration=C64_SECONDS, warmup=1)
            switches = context_switches(service.pid) - before
            c1 = runner.nonstream(target, INSTANT, concurrency=1, duration=C1_SECONDS, warmup=1)
            servers.stack.stop(service)
            row = WhatifRow(
                round=round_no,
                c64_rps=None if c64.stats is None else c64.stats.rps,
                c64_p50_ms=None if c64.stats is None else c64.stats.p50_ms,
                c1_p50_ms=None if c1.stats is None else c1.stats.p50_ms,
                c1_mean_ms=None if c1.stats is None else c1.stats.mean_ms,
                switches_per_request=None
                if c64.stats is None
                else round(switches / c64.stats.requests, 2),
                foreign_cores=max(c64.foreign_cores, c1.foreign_cores),
            )
            rows[variant.label].append(row)
            say(
                f"  round {round_no} {variant.label}: {row.c64_rps} req/s at c=64, c=1 p50 "
                f"{row.c1_p50_ms} ms, {row.switches_per_request} context switches/request"
            )
    return rows


def markdown(rows: dict[str, list[WhatifRow]]) -> str:
    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    base = VARIANTS[0].label
    base_rps = median([r.c64_rps for r in rows[base]])
    base_p50 = median([r.c1_p50_ms for r in rows[base]])
    lines = [
        "# What each part of the gateway costs (run.py --whatif)",
        "",
        "The real app from `create_app()`, served as `llm-gateway serve` serves it, with one part "
        "switched off at a time (`benchmarks/perf/whatif_app.py`), against the perf upstream; "
        "`POST /v1/chat/completions` non-streaming, wrk. Medians of "
        f"{len(rows[base])} interleaved rounds ({C64_SECONDS} s at c=64, {C1_SECONDS} s at c=1 "
        "each). Round to round spread is often 10-20%: only differences larger than the rounds' "
        "range mean something.",
        "",
        "| variant | c=64 req/s | rounds (min-max) | vs as served | c=1 p50 | c=1 p50 saved "
        "| c=1 mean | context switches / request | other load (max, cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        mine = rows[variant.label]
        rps_value = median([r.c64_rps for r in mine])
        p50 = median([r.c1_p50_ms for r in mine])
        switches = median([r.switches_per_request for r in mine])
        gain = f"{rps_value / base_rps - 1:+.0%}" if rps_value and base_rps else "-"
        saved = ms(base_p50 - p50, signed=True) if p50 and base_p50 else "-"
        spread = [r.c64_rps for r in mine if r.c64_rps is not None]
        span = f"{min(spread):,.0f}-{max(spread):,.0f}" if spread else "-"
        lines.append(
            f"| {variant.label} | {rps(rps_value)} | {span} | {gain} | {ms(p50)} | {saved} "
            f"| {ms(median([r.c1_mean_ms for r in mine]))} "
            f"| {'-' if switches is None else f'{switches:.2f}'} "
            f"| {max(r.foreign_cores for r in mine):.2f} |"
        )
    return "\n".join(lines) + "\n"
