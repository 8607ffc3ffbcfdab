"""Exceptions to answers: how every failure a route raises becomes the error shape.

FastAPI's exception handlers (registered in `app.py`) and the direct routes (`api/direct.py`,
which run ahead of FastAPI) both call these, so an error reads the same whichever path served it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

from llm_gateway.api.responses import error_response
from llm_gateway.context import record_attempts
from llm_gateway.errors import GatewayError, InvalidRequest, UpstreamError

logger = logging.getLogger("llm_gateway.errors")

NOT_JSON = "Send the request body as JSON with `Content-Type: application/json`."
NO_BODY = 'The request needs a JSON body, e.g. {"prompt": "...", "model": "..."}.'
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def gateway_error_response(exc: GatewayError, *, method: str, path: str) -> Response:
    """The answer for one of our errors; upstream failures are logged (without a traceback)."""
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
    response = error_response(exc, path=path)
    if exc.attempts:
        response.headers["X-Upstream-Attempts"] = str(exc.attempts)
    return response


def http_error_response(exc: HTTPException, *, method: str, path: str) -> Response:
    """Starlette's routing and body errors (404, 405, 413) in the error shape."""
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"No route {method} {path}; see /docs for the API."
    response = error_response(GatewayError(message, status=exc.status_code, code=code), path=path)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


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
            return invalid_json(NOT_JSON)
        if whole_body[0].get("type") == "missing":
            return invalid_json(NO_BODY)
        return invalid_json("The request body must be a JSON object.")
    return InvalidRequest("Invalid request: " + "; ".join(map(_describe, errors)))


def invalid_json(message: str) -> InvalidRequest:
    return InvalidRequest(message, status=400, code="invalid_json")


def not_json(detail: str) -> InvalidRequest:
    return invalid_json(f"The request body is not valid JSON ({detail}).")


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}"
