"""Exceptions to answers: every failure a route raises, whichever layer served the route.

FastAPI's exception handlers (registered by `install`) and the hot-route dispatcher (`hot.py`)
both come through `answer`, so upstream failures are logged the same way and every error is
rendered by `rendering.py`. The framework's own exceptions (Starlette's 404/405, FastAPI's and
pydantic's validation errors) are first turned into the gateway's named errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from llm_gateway.asgi import route_path
from llm_gateway.context import record_attempts
from llm_gateway.errors import (
    BadRequest,
    GatewayError,
    InternalError,
    InvalidJSON,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    UpstreamError,
)
from llm_gateway.rendering import CarriedError, error_response

logger = logging.getLogger("llm_gateway.errors")

NOT_JSON = "Send the request body as JSON with `Content-Type: application/json`."


def answer(exc: GatewayError, *, method: str, path: str) -> Response:
    """The answer for one of our errors; upstream failures are logged (without a traceback:
    they are not our bug)."""
    if exc.attempts:
        record_attempts(exc.attempts)
    if isinstance(exc, UpstreamError):
        logger.error(
            "upstream error on %s %s: %s %s (upstream status %s, %d attempt%s): %s",
            method,
            path,
            exc.status,
            exc.code,
            exc.upstream_status,
            exc.attempts,
            "" if exc.attempts == 1 else "s",
            exc.message,
        )
    return error_response(exc, path=path)


def from_http_exception(exc: HTTPException, *, method: str, path: str) -> GatewayError:
    """Starlette's routing and body errors as the gateway's named errors."""
    if isinstance(exc, CarriedError):
        return exc.error
    if exc.status_code == 404:
        return NotFound(f"No route {method} {path}; see /docs for the API.")
    if exc.status_code == 405:
        allow = tuple((exc.headers or {}).get("Allow", "").replace(" ", "").split(","))
        return MethodNotAllowed(f"{method} is not allowed on {path}.", allow=allow)
    if 400 <= exc.status_code < 500:  # e.g. a multipart body Starlette cannot parse
        return BadRequest(str(exc.detail))
    return InternalError(str(exc.detail))


def invalid_request(errors: Iterable[Mapping[str, Any]]) -> InvalidRequest:
    """The 400/422 for a request that failed validation (pydantic's or FastAPI's error list):
    a body that is not JSON or not a JSON object, or fields that do not validate, each named."""
    errors = list(errors)
    if any(e.get("type") == "json_invalid" for e in errors):
        return not_json(errors[0].get("ctx", {}).get("error", ""))
    # FastAPI reports the whole body at ("body",); pydantic's own validation at ().
    whole_body = [e for e in errors if tuple(e.get("loc", ())) in {("body",), ()}]
    if whole_body:
        # FastAPI hands over the raw bytes when the content type is not JSON.
        if isinstance(whole_body[0].get("input"), bytes):
            return InvalidJSON(NOT_JSON)
        if whole_body[0].get("type") == "missing":
            return InvalidJSON(
                'The request needs a JSON body, e.g. {"prompt": "...", "model": "..."}.'
            )
        return InvalidJSON("The request body must be a JSON object.")
    first = [str(part) for part in errors[0].get("loc", ()) if part != "body"]
    return InvalidRequest(
        "Invalid request: " + "; ".join(map(_describe, errors)),
        param=".".join(first) or None,
    )


def not_json(detail: str) -> InvalidJSON:
    if "surrogate" in detail or "end of hex escape" in detail:
        detail += "; a \\uD800-\\uDFFF escape must be half of a pair: send valid Unicode text"
    return InvalidJSON(f"The request body is not valid JSON ({detail}).")


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    value = error.get("input")
    if error.get("type") in _NUMBER_TYPES and isinstance(value, str):
        # A common client mistake, with a message that does not show it: "12" for 12.
        message += f", not a string (got {value!r:.40}: send it without quotes)"
    return f"{where}: {message}"


_NUMBER_TYPES = frozenset({"int_type", "float_type", "bool_type"})


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions raised in FastAPI's routes into answers."""

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)  # registered for this class only
        return answer(exc, method=request.method, path=route_path(request.scope))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        path = route_path(request.scope)
        return answer(invalid_request(exc.errors()), method=request.method, path=path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        method, path = request.method, route_path(request.scope)
        return answer(from_http_exception(exc, method=method, path=path), method=method, path=path)

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
