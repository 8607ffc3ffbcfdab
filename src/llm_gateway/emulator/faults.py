"""Fault steps: the small language that tells the emulator how to misbehave on one request.

A step is a string such as `429`, `429:1500`, `midstream:3` or `hang:2`; the full list is in
`STEP_HELP`. Parsing is cached because the same header value arrives on every retry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

FaultKind = Literal[
    "ok",
    "status",
    "rate-minute",
    "rate-day",
    "rate-upstream",
    "retry-after",
    "error-200",
    "error-choice",
    "midstream",
    "hang",
    "keepalive",
    "stall",
    "drop",
]

STEP_HELP = (
    "ok | 400 | 401 | 402 | 403 | 404 | 408 | 500 | 502 | 503 | 429 | 429:<ms> | 429-day | "
    "429-upstream | 429-retry-after:<s> | 503-retry-after:<s> | error-200 | error-choice | "
    "midstream[:<n>] | hang:<s> | keepalive:<s> | stall:<s> | drop:<n>"
)

# Steps answered with an error status before any generation starts.
REJECTING_KINDS: frozenset[FaultKind] = frozenset(
    {"status", "rate-minute", "rate-day", "rate-upstream", "retry-after"}
)

_PLAIN_STATUSES = frozenset({400, 401, 402, 403, 404, 408, 500, 502, 503})
_DEFAULT_MINUTE_RESET_MS = 1000
_DEFAULT_MIDSTREAM_CHUNKS = 2


@dataclass(frozen=True, slots=True)
class Fault:
    """One parsed fault step.

    `status` is the HTTP status of rejecting steps; `seconds` the duration of hang, keepalive and
    stall, or the reset delay of a per-minute 429; `count` the content chunks before a midstream
    error or a drop; `retry_after` the Retry-After header value exactly as written in the step.
    """

    step: str
    kind: FaultKind
    status: int = 200
    seconds: float = 0.0
    count: int = 0
    retry_after: str = ""


OK = Fault("ok", "ok")

_BARE_STEPS: dict[str, Fault] = {
    "ok": OK,
    "429": Fault("429", "rate-minute", 429, _DEFAULT_MINUTE_RESET_MS / 1000),
    "429-day": Fault("429-day", "rate-day", 429),
    "429-upstream": Fault("429-upstream", "rate-upstream", 429),
    "error-200": Fault("error-200", "error-200"),
    "error-choice": Fault("error-choice", "error-choice", count=1),
    "midstream": Fault("midstream", "midstream", count=_DEFAULT_MIDSTREAM_CHUNKS),
}
_TIMED_KINDS: dict[str, FaultKind] = {"hang": "hang", "keepalive": "keepalive", "stall": "stall"}
_CHUNK_KINDS: dict[str, FaultKind] = {"midstream": "midstream", "drop": "drop"}


def _seconds(step: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"fault step {step!r}: {text!r} is not a number of seconds >= 0")
    return value


def _count(step: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"fault step {step!r}: {text!r} is not a whole number >= 0")
    return int(text)


@lru_cache(maxsize=1024)
def parse_step(step: str) -> Fault:
    """Parse one fault step; raise ValueError (naming the valid steps) when it is not one."""
    text = step.strip()
    name, has_arg, arg = text.partition(":")
    if not has_arg:
        if name.isdigit() and int(name) in _PLAIN_STATUSES:
            return Fault(text, "status", status=int(name))
        if name in _BARE_STEPS:
            return _BARE_STEPS[name]
    elif name == "429":
        return Fault(text, "rate-minute", 429, _seconds(text, arg) / 1000)
    elif name in ("429-retry-after", "503-retry-after"):
        _seconds(text, arg)
        return Fault(text, "retry-after", int(name[:3]), retry_after=arg)
    elif name in _TIMED_KINDS:
        return Fault(text, _TIMED_KINDS[name], seconds=_seconds(text, arg))
    elif name in _CHUNK_KINDS:
        return Fault(text, _CHUNK_KINDS[name], count=_count(text, arg))
    raise ValueError(f"unknown fault step {step!r}; valid steps: {STEP_HELP}")


def parse_steps(steps: list[str] | tuple[str, ...]) -> list[Fault]:
    """Parse a sequence of steps, failing on the first invalid one."""
    return [parse_step(step) for step in steps]


@lru_cache(maxsize=256)
def parse_header(value: str) -> tuple[Fault, ...]:
    """Parse an `X-Emulator-Faults` header value: comma-separated steps."""
    return tuple(parse_step(step) for step in value.split(",") if step.strip())
