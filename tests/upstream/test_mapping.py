"""How upstream answers become gateway errors, and how requested waits are read."""

from __future__ import annotations

import time

import orjson

from llm_gateway.errors import (
    UpstreamQuotaExhausted,
    UpstreamRateLimited,
    UpstreamStatusError,
)
from llm_gateway.upstream.mapping import error_from_response, retry_after_seconds


def test_retry_after_in_seconds_and_as_http_date() -> None:
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    now = 1_700_000_000.0
    date = "Tue, 14 Nov 2023 22:13:40 GMT"  # now + 20 s
    assert retry_after_seconds({"retry-after": date}, now=now) == 20.0


def test_ratelimit_reset_is_epoch_milliseconds() -> None:
    now = time.time()
    wait = retry_after_seconds({"X-RateLimit-Reset": str(int((now + 2.5) * 1000))}, now=now)
    assert wait is not None and 2.4 < wait <= 2.5


def test_reset_in_the_past_means_no_wait_and_garbage_is_ignored() -> None:
    assert retry_after_seconds({"X-RateLimit-Reset": "1000"}) == 0.0
    assert retry_after_seconds({"X-RateLimit-Reset": "soon"}) is None
    assert retry_after_seconds({}) is None
    # Found in review: an infinite wait used to crash the Retry-After we send (500).
    assert retry_after_seconds({"Retry-After": "1e999"}) is None
    assert retry_after_seconds({"Retry-After": "nan"}) is None
    assert retry_after_seconds({"Retry-After": "99999999"}) == 86_400.0


def test_per_minute_429_reads_the_reset_from_the_body_metadata() -> None:
    reset = str(int((time.time() + 5) * 1000))
    body = orjson.dumps(
        {
            "error": {
                "message": "Rate limit exceeded: free-models-per-min. ",
                "code": 429,
                "metadata": {"headers": {"X-RateLimit-Reset": reset}},
            },
            "user_id": "user_123",
        }
    )
    error = error_from_response(429, body, {})
    assert type(error) is UpstreamRateLimited
    assert error.retryable
    assert error.retry_after is not None and 4 < error.retry_after <= 5
    assert "user_123" not in error.message


def test_daily_quota_is_not_retryable() -> None:
    body = b'{"error":{"message":"Rate limit exceeded: free-models-per-day.","code":429}}'
    error = error_from_response(429, body, {})
    assert isinstance(error, UpstreamQuotaExhausted)
    assert not error.retryable
    assert error.status == 429 and error.code == "upstream_quota_exhausted"


def test_statuses_keep_their_meaning() -> None:
    cases = {
        400: (400, "upstream_bad_request", False),
        401: (401, "upstream_unauthorized", False),
        402: (402, "upstream_payment_required", False),
        403: (403, "upstream_forbidden", False),
        404: (404, "upstream_not_found", False),
        408: (504, "upstream_timeout", True),
        500: (502, "upstream_server_error", True),
        502: (502, "upstream_server_error", True),
        503: (503, "upstream_unavailable", True),
        504: (502, "upstream_server_error", True),
    }
    for upstream, (status, code, retryable) in cases.items():
        error = error_from_response(upstream, b'{"error":{"message":"x","code":1}}', {})
        assert isinstance(error, UpstreamStatusError)
        assert (error.status, error.code, error.retryable) == (status, code, retryable), upstream


def test_provider_detail_and_non_json_bodies() -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": "Provider returned error",
                "code": 502,
                "metadata": {"raw": "boom", "provider_name": "Acme"},
            }
        }
    )
    message = error_from_response(502, body, {}).message
    assert message == "Provider returned error: boom (provider: Acme)"
    html = error_from_response(502, b"<html>Bad gateway</html>", {})
    assert html.message == "<html>Bad gateway</html>"
    assert error_from_response(500, b"", {}).message == "HTTP 500"
