"""`run.py --whatif`: the gateway with one part switched off at a time, to price each part.

A profile says where samples land; switching a part off says what it costs, including what a
profile cannot see (context switches, GIL hand-offs between threads). This serves the real app
from `create_app()` exactly as `llm-gateway serve` does, minus the parts named on the command
line. It reaches into the app after it is built (the middleware list, the retry policy), so it
may need updating when those internals change; it never changes a file.

Switches (joined with `+`): `accesslog` (GATEWAY_LOG_LEVEL=WARNING, set by the driver: the
access line is INFO), `metrics`, `bodylimit`, `accessmw` (the access-log middleware itself),
`direct` (no `DirectRoutes`: the hot routes go through FastAPI's routing, dependencies and
exception middleware, as they did before `api/direct.py`), `retry` (call the upstream once,
without the tenacity loop), `telemetry` (FastAPI's native OpenTelemetry check).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")

_MIDDLEWARE = {
    "metrics": "MetricsMiddleware",
    "bodylimit": "BodyLimitMiddleware",
    "accessmw": "AccessLogMiddleware",
    "direct": "DirectRoutes",
}
SWITCHES = ("accesslog", *_MIDDLEWARE, "retry", "telemetry")


async def _call_once(self: Any, fn: Callable[[], Awaitable[T]], *, what: str) -> tuple[T, int]:
    del self, what  # the signature of RetryPolicy.call
    return await fn(), 1


def build(switches: set[str]) -> Any:
    # Imported here, not at the top: the driver imports this module only for SWITCHES.
    from llm_gateway.app import create_app
    from llm_gateway.config import Settings
    from llm_gateway.upstream import retry

    if "retry" in switches:
        retry.RetryPolicy.call = _call_once  # type: ignore[method-assign]
    app = create_app(Settings())
    # Starlette builds the middleware stack on the first request, so the list can still change.
    drop = {cls for name, cls in _MIDDLEWARE.items() if name in switches}
    app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ not in drop]  # type: ignore[attr-defined]
    if "telemetry" in switches:
        app._native_telemetry.enabled = lambda: False  # type: ignore[method-assign]
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The gateway with parts switched off.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--off", default="", help=f"`+`-joined subset of {', '.join(SWITCHES)}")
    args = parser.parse_args()
    switches = {s for s in args.off.split("+") if s}
    unknown = switches - set(SWITCHES)
    if unknown:
        parser.error(f"unknown switches: {', '.join(sorted(unknown))}")
    # The same server settings as `llm-gateway serve`.
    uvicorn.run(
        build(switches), host="127.0.0.1", port=args.port, access_log=False, log_level="info"
    )


if __name__ == "__main__":
    main()
