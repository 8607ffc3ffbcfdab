"""The application factory: settings, the log sink, middleware, error handling, routes, lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway import __version__
from llm_gateway.admission import Admission
from llm_gateway.api import benchmarks, error_handlers, generate, health, models, openai, openapi
from llm_gateway.api.hot import HotRoutes
from llm_gateway.browsers import BrowserGuard
from llm_gateway.config import Settings
from llm_gateway.disconnect import CancelOnDisconnect
from llm_gateway.limits import BodyLimitMiddleware
from llm_gateway.logging import AccessLogMiddleware, LogSink, current_sink
from llm_gateway.metrics import GatewayMetrics, MetricsMiddleware
from llm_gateway.ratelimit import InboundLimitMiddleware
from llm_gateway.redaction import Redactor
from llm_gateway.runtime import open_runtime
from llm_gateway.schemas.errors import ErrorResponse
from llm_gateway.security import InboundAuthMiddleware, LoopbackOnly

logger = logging.getLogger("llm_gateway")

# The collector while serving. Python collects its young generation after a net 700 new
# container objects; a gateway with 64 calls in flight holds several thousand, so that ran
# every few requests and walked the same in-flight objects again and again: 9% of a proxied
# call's CPU at c=64, measured with gc.callbacks. After a net 10,000 it almost never runs
# between ordinary calls; when it does (thousands of streams starting), every third collection
# takes the middle generation too, so none walks more than about 30,000 objects (pauses
# measured at 3,000 streams: at most 35 ms, as with Python's default thresholds),
# and survivors go to the old generation, collected after 1,000 middle ones rather than 10:
# Python also waits for it to have grown by a quarter, and once the start-up heap is frozen
# that quarter is of what open requests hold, so thousands of long streams set off a full
# collection at every quarter's growth, each walking every open stream (58-108 ms at 1,000-
# 3,000 streams). The gateway makes almost no cyclic garbage (a few hundred objects in a
# 3,000-stream run), so collecting rarely holds back next to no memory.
SERVING_GC_THRESHOLDS = (10_000, 1, 1000)

# Served by `HotRoutes` ahead of FastAPI's router (see api/hot.py), documented by api/openapi.py.
HOT_ROUTES = (generate.ROUTE, openai.CHAT_ROUTE)


class GatewayApp(FastAPI):
    """FastAPI, with the gateway's middleware in front of FastAPI's own layers rather than
    inside them.

    Starlette places added middleware inside its error middleware, and FastAPI adds its
    telemetry and body-limit layers there too, so every request, hot routes included, went
    through five framework frames (and each message it sent through one more wrapper) before
    the gateway's first: measured, 5-9% of a proxied call's CPU. None of them is needed in
    front: the access log answers the last-resort 500 in the error shape, the gateway limits
    bodies itself, and telemetry is off. So HTTP requests go straight to the gateway's
    middleware, whose innermost layer hands every route but the hot ones to FastAPI's own
    stack (error middleware, exception handlers, router), which serves them as before.
    Lifespan and any other scope go through FastAPI unchanged.
    """

    def build_middleware_stack(self) -> ASGIApp:
        ours, self.user_middleware = self.user_middleware, []
        try:
            app = super().build_middleware_stack()
        finally:
            self.user_middleware = ours
        for cls, args, kwargs in reversed(ours):
            app = cls(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)


def create_app(settings: Settings | None = None, *, banner: bool = True) -> FastAPI:
    """Build the gateway. Settings come from the environment and `.env` unless given.
    `banner=False`: the emulator banner is someone else's to show (the supervisor of
    `serve --workers N` shows it once for all its workers)."""
    settings = settings if settings is not None else Settings()
    mode = settings.resolved_upstream()  # fails fast on an impossible configuration
    inbound = settings.inbound_keys()
    sink = LogSink(settings.log_dir, settings.log_level, Redactor(settings.secrets()))
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sink.start()
        # What the lifespan logs, and the tasks it starts, go to this app's log.
        token = current_sink.set(sink)
        try:
            async with open_runtime(settings, metrics, serving=True) as runtime:
                app.state.runtime = runtime
                if runtime.upstream == "emulator" and banner:
                    emulator_banner(runtime.upstream_url)
                logger.info(
                    "llm-gateway %s serving upstream %s (%s); inbound keys %s; shared state "
                    "%s; log file %s",
                    __version__,
                    runtime.upstream,
                    runtime.upstream_url,
                    f"required ({len(inbound)})" if inbound else "not required",
                    runtime.shared.state,
                    sink.path,
                )
                # Everything built so far (FastAPI, pydantic, the OpenAPI schema, aiohttp) lives
                # as long as the process. Left to the collector, each full collection walked all
                # of it (~30 ms, the gateway's p99 under load); frozen, a full collection walks
                # only what requests created.
                gc.collect()
                gc.freeze()
                gc.set_threshold(*SERVING_GC_THRESHOLDS)
                yield
        finally:
            current_sink.reset(token)
            sink.stop()

    app = GatewayApp(
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
    for module in (health, models, benchmarks, openai):
        app.include_router(module.router)
    openapi.install(app, HOT_ROUTES)
    error_handlers.install(app)
    # Added innermost first: access log -> metrics -> disconnect watch -> browser guard ->
    # CORS -> keys -> inbound limits -> body limit -> hot routes -> FastAPI's own stack
    # (GatewayApp puts them in front of it).
    admission = Admission(settings.max_in_flight, metrics)
    app.add_middleware(HotRoutes, routes=HOT_ROUTES, admission=admission)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate_limit or settings.max_concurrent_per_key:
        app.add_middleware(InboundLimitMiddleware, keys=inbound)
    if inbound:
        app.add_middleware(InboundAuthMiddleware, keys=inbound)
    elif not settings.allow_open:
        app.add_middleware(LoopbackOnly)
    if settings.cors_origin_list():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list(),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-Upstream-Attempts",
                "Retry-After",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        )
    app.add_middleware(
        BrowserGuard,
        allowed_origins=settings.cors_origin_list(),
        allowed_hosts=settings.allowed_host_list(),
    )
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(
        AccessLogMiddleware,
        sink=sink,
        extra_headers={"X-Upstream": "emulator"} if mode == "emulator" else None,
    )
    return app


def emulator_banner(url: str) -> None:
    """The loud notice that answers are the emulator's. One record per line: the log keeps
    every record on a single line."""
    rule = "=" * 78
    for line in (
        rule,
        "NO OPENROUTER_API_KEY SET: the gateway's upstream is the BUILT-IN EMULATOR",
        "Answers are synthetic, not from real models: `GET /models` lists the emulated ones",
        "(ids start with `emulator/`). Every response carries `X-Upstream: emulator`.",
        f"(The emulator listens at {url} for the gateway; call the gateway itself.)",
        "Put OPENROUTER_API_KEY=... in .env (see .env.example) to use OpenRouter.",
        rule,
    ):
        logger.warning("%s", line)
