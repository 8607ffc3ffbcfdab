"""The one renderer: the same error in the gateway's shape and in OpenAI's, with its headers."""

from __future__ import annotations

import orjson

from llm_gateway.context import RequestContext, current_request
from llm_gateway.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    Unauthorized,
    UpstreamRateLimited,
    UpstreamStatusError,
)
from llm_gateway.rendering import error_body, error_response


def test_the_gateway_shape_carries_the_request_id() -> None:
    token = current_request.set(RequestContext("req-1"))
    try:
        body = error_body(UpstreamStatusError(503, "down"), openai=False)
    finally:
        current_request.reset(token)
    assert body == {
        "error": {
            "code": "upstream_unavailable",
            "message": "down",
            "status": 503,
            "request_id": "req-1",
        }
    }


def test_openais_shape_has_the_type_sdks_switch_on_and_the_param() -> None:
    assert error_body(BadRequest("bad", param="max_tokens"), openai=True) == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "invalid_request",
        }
    }
    assert error_body(InternalError("oops"), openai=True)["error"]["type"] == "api_error"
    assert error_body(UpstreamRateLimited("slow"), openai=True)["error"]["type"] == (
        "rate_limit_error"
    )


def test_the_shape_follows_the_path_and_the_headers_follow_the_error() -> None:
    limited = UpstreamRateLimited("slow", retry_after=2.2)
    limited.attempts = 3
    response = error_response(limited, path="/v1/chat/completions")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.headers["X-Upstream-Attempts"] == "3"
    assert "type" in orjson.loads(response.body)["error"]
    other = error_response(MethodNotAllowed("no", allow=("POST",)), path="/generate")
    assert other.headers["Allow"] == "POST"
    assert "status" in orjson.loads(other.body)["error"]
    auth = error_response(Unauthorized("who?"), path="/models")
    assert auth.headers["WWW-Authenticate"] == "Bearer"
