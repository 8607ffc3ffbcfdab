"""The application factory: settings, logging, middleware, error mapping, routes, lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from llm_gateway import __version__
from llm_gateway.api import benchmarks, generate, health, models, openai
from llm_gateway.api.responses import error_response
from llm_gateway.config import Settings
from llm_gateway.context import record_attempts
from llm_gateway.errors import GatewayError, InvalidRequest, UpstreamError
from llm_gateway.limits import BodyLimitMiddleware
from llm_gateway.logging import AccessLogMiddleware, configure_logging
from llm_gateway.metrics import GatewayMetrics, MetricsMiddleware
from llm_gateway.runtime import open_runtime
from llm_gateway.schemas.errors import ErrorResponse
from llm_gateway.security import InboundAuthMiddleware

logger = logging.getLogger("llm_gateway")
error_logger = logging.getLogger("llm_gateway.errors")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


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
    # Added innermost first: access log -> metrics -> CORS -> auth -> body limit -> routes.
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
    for module in (health, models, generate, benchmarks, openai):
        app.include_router(module.router)
    return app


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
    if exc.attempts:
        record_attempts(exc.attempts)
    if isinstance(exc, UpstreamError):
        # Not our fault: logged without a traceback.
        error_logger.error(
            "upstream error on %s %s: %s %s (upstream status %s, %d attempt%s): %s",
            request.method,
            request.url.path,
            exc.status,
            exc.code,
            exc.upstream_status,
            exc.attempts,
            "" if exc.attempts == 1 else "s",
            exc.message,
        )
    response = error_response(exc, path=request.url.path)
    if exc.attempts:
        response.headers["X-Upstream-Attempts"] = str(exc.attempts)
    return response


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = errors[0].get("ctx", {}).get("error", "")
        return error_response(
            InvalidRequest(
                f"The request body is not valid JSON ({detail}).", status=400, code="invalid_json"
            ),
            path=request.url.path,
        )
    whole_body = [e for e in errors if tuple(e.get("loc", ())) == ("body",)]
    if whole_body:
        if isinstance(whole_body[0].get("input"), bytes | str):
            message = "Send the request body as JSON with `Content-Type: application/json`."
        elif whole_body[0].get("type") == "missing":
            message = 'The request needs a JSON body, e.g. {"prompt": "...", "model": "..."}.'
        else:
            message = "The request body must be a JSON object."
        return error_response(
            InvalidRequest(message, status=400, code="invalid_json"), path=request.url.path
        )
    return error_response(
        InvalidRequest("Invalid request: " + "; ".join(map(_describe, errors))),
        path=request.url.path,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"No route {request.method} {request.url.path}; see /docs for the API."
    response = error_response(
        GatewayError(message, status=exc.status_code, code=code), path=request.url.path
    )
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response
