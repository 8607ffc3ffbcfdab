"""The event loop the benchmark measures on: uvloop where it is installed (it comes with
`uvicorn[standard]`), else asyncio's own. uvloop runs the same callbacks in less CPU, so a
measuring loop stays on time at a higher load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the benchmark's event loop (Ctrl-C cancels `main`, as there)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
