"""The application factory: settings, logging, middleware, error mapping, routes, lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from llm_gateway import __version__
from llm_gateway.api import benchmarks, generate, health, models, openai
from llm_gateway.api.direct import DirectRoutes, Handler
from llm_gateway.api.error_handlers import (
    gateway_error_response,
    http_error_response,
    invalid_request,
)
from llm_gateway.asgi import route_path
from llm_gateway.config import Settings
from llm_gateway.errors import GatewayError
from llm_gateway.limits import BodyLimitMiddleware
from llm_gateway.logging import AccessLogMiddleware, configure_logging
from llm_gateway.metrics import GatewayMetrics, MetricsMiddleware
from llm_gateway.runtime import open_runtime
from llm_gateway.schemas.errors import ErrorResponse
from llm_gateway.security import InboundAuthMiddleware

logger = logging.getLogger("llm_gateway")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the gateway. Settings come from the environment and `.env` unless given."""
    settings = settings if settings is not None else Settings()
    mode = settings.resolved_upstream()  # fails fast on an impossible configuration
    key = settings.openrouter_api_key
    inbound = settings.inbound_keys()
    secrets = [key.get_secret_value()] if key else []
    log_path = configure_logging(settings.log_dir, settings.log_level, [*secrets, *inbound])
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, metrics) as runtime:
            app.state.runtime = runtime
            if runtime.upstream == "emulator":
                _emulator_banner(runtime.upstream_url)
            logger.info(
                "llm-gateway %s serving upstream %s (%s); inbound keys %s; log file %s",
                __version__,
                runtime.upstream,
                runtime.upstream_url,
                f"required ({len(inbound)})" if inbound else "not required",
                log_path,
            )
            # Everything built so far (FastAPI, pydantic, the OpenAPI schema, aiohttp) lives as
            # long as the process. Left to the collector, each full collection walked all of it
            # (~30 ms, the gateway's p99 under load); frozen, a full collection walks only what
            # requests created.
            gc.collect()
            gc.freeze()
            yield

    app = FastAPI(
        title="llm-gateway",
        version=__version__,
        summary="A fast, reliable gateway to OpenRouter and OpenAI-compatible LLM APIs.",
        lifespan=lifespan,
        # Our error shape, not FastAPI's default `{"detail": [...]}`, is what 422s carry.
        responses={422: {"model": ErrorResponse, "description": "The request is invalid"}},
        # FastAPI's built-in OpenTelemetry hooks looked up the global tracer provider on every
        # request (~17% of the CPU time of a proxied call in the profile) even with nothing
        # configured; the gateway has its own Prometheus metrics and access log.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.metrics = metrics
    for module in (health, models, generate, benchmarks, openai):
        app.include_router(module.router)
    # Added innermost first:
    # access log -> metrics -> CORS -> auth -> body limit -> direct routes -> FastAPI's routes.
    app.add_middleware(DirectRoutes, routes=_direct_routes())
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if inbound:
        app.add_middleware(InboundAuthMiddleware, keys=inbound)
    if settings.cors_origin_list():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list(),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Upstream-Attempts", "Retry-After"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(
        AccessLogMiddleware,
        extra_headers={"X-Upstream": "emulator"} if mode == "emulator" else None,
    )
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    return app


# The hot paths, served without FastAPI's per-request machinery (see api/direct.py).
_DIRECT: dict[str, Handler] = {
    "/v1/chat/completions": openai.serve_chat,
    "/generate": generate.serve_generate,
}


def _direct_routes() -> dict[str, tuple[APIRoute, Handler]]:
    routes = {
        route.path: (route, _DIRECT[route.path])
        for route in [*generate.router.routes, *openai.router.routes]
        if isinstance(route, APIRoute) and route.path in _DIRECT and "POST" in (route.methods or ())
    }
    if routes.keys() != _DIRECT.keys():  # a renamed route must not silently lose its fast path
        raise RuntimeError(f"no FastAPI POST route for {sorted(_DIRECT.keys() - routes.keys())}")
    return routes


def _emulator_banner(url: str) -> None:
    # One record per line: the log keeps every record on a single line.
    rule = "=" * 78
    for line in (
        rule,
        f"NO OPENROUTER_API_KEY SET: serving the BUILT-IN EMULATOR at {url}",
        "Answers are synthetic, not from real models: `GET /models` lists the emulated ones",
        "(ids start with `emulator/`). Every response carries `X-Upstream: emulator`.",
        "Put OPENROUTER_API_KEY=... in .env (see .env.example) to use OpenRouter.",
        rule,
    ):
        logger.warning("%s", line)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return gateway_error_response(exc, method=request.method, path=route_path(request.scope))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = invalid_request(exc.errors())
    return gateway_error_response(error, method=request.method, path=route_path(request.scope))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return http_error_response(exc, method=request.method, path=route_path(request.scope))
