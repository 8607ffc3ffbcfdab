"""The gateway app for `run.py --whatif`, with named middleware left out.

Serves the real app from `create_app()` exactly as `llm-gateway serve` does, minus the pure-ASGI
middleware classes named with `--drop` (repeatable). It uses only Starlette's public
`app.user_middleware` list, before the first request builds the middleware stack from it. A name
that is not in the list is an error that lists the names that are: after a rename, the what-if
fails visibly instead of measuring nothing. Settings come from the environment, as for `serve`
(the driver prices the access log with GATEWAY_LOG_LEVEL=WARNING and the retry loop with
GATEWAY_RETRY_ATTEMPTS=1); it never changes a file.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from starlette.middleware import Middleware


def build(drop: list[str]) -> FastAPI:
    # Imported here: `--help` and argument errors need no gateway.
    from llm_gateway.app import create_app
    from llm_gateway.config import Settings

    app = create_app(Settings())
    if app.middleware_stack is not None:
        raise RuntimeError("the middleware stack is already built: dropping would change nothing")
    present = [_name(middleware) for middleware in app.user_middleware]
    missing = sorted(set(drop) - set(present))
    if missing:
        raise SystemExit(
            f"whatif_app: no middleware named {', '.join(missing)} in the app; it has "
            f"{', '.join(present) or 'none'}"
        )
    app.user_middleware = [m for m in app.user_middleware if _name(m) not in drop]
    return app


def _name(middleware: Middleware) -> str:
    # `cls` is typed as a factory callable; the middleware this drops are classes.
    return str(getattr(middleware.cls, "__name__", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description="The gateway with named middleware left out.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="CLASS",
        help="a middleware class name to leave out (repeatable), e.g. MetricsMiddleware",
    )
    args = parser.parse_args()
    # The same server settings as `llm-gateway serve`.
    uvicorn.run(
        build(args.drop), host="127.0.0.1", port=args.port, access_log=False, log_level="info"
    )


if __name__ == "__main__":
    main()
