"""The one error hierarchy of the gateway, and the one place that decides HTTP statuses.

```
GatewayError                 500 internal_error          our own bug (logged with traceback)
├── InvalidRequest           400/422 invalid_*           the client sent something unusable
└── UpstreamError            502 upstream_error          upstream failed (logged, no traceback)
    ├── UpstreamStatusError  upstream 4xx kept as is; 5xx -> 502, 503 -> 503
    ├── UpstreamRateLimited  429 upstream_rate_limited   retried; Retry-After passed on
    │   └── UpstreamQuotaExhausted  429 upstream_quota_exhausted  daily quota: never retried
    ├── UpstreamTimeout      504 upstream_timeout
    ├── UpstreamUnreachable  502 upstream_unreachable    connect error or connection cut
    └── UpstreamBadResponse  502 upstream_bad_response   a 200 carrying an error, or garbage
```

Every error knows its HTTP status, a stable `code` string clients can switch on, whether the
retry layer may try again, and (for rate limits) how long the upstream asked us to wait.
Lower-layer exceptions (aiohttp, asyncio) are translated into these at the upstream boundary.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# OpenAI's `error.type` for a status, so OpenAI SDKs raise their usual classes.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        # Filled in by the retry layer: how many upstream calls this failure took.
        self.attempts = 0

    @property
    def retryable(self) -> bool:
        return False

    def headers(self) -> dict[str, str]:
        return {}

    def to_body(self, request_id: str | None) -> dict[str, Any]:
        """The gateway's single error shape."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "status": self.status,
                "request_id": request_id,
            }
        }

    def body_for(self, path: str, request_id: str | None) -> dict[str, Any]:
        """The shape a client of `path` expects: OpenAI's under `/v1/`, ours elsewhere."""
        return self.to_openai_body() if path.startswith("/v1/") else self.to_body(request_id)

    def to_openai_body(self) -> dict[str, Any]:
        """The same error in OpenAI's shape, for the OpenAI-compatible `/v1` routes."""
        kind = _OPENAI_TYPES.get(
            self.status, "api_error" if self.status >= 500 else "invalid_request_error"
        )
        return {"error": {"message": self.message, "type": kind, "param": None, "code": self.code}}


class InvalidRequest(GatewayError):
    """The client's request cannot be served as sent; the message says what to change."""

    status = 422
    code = "invalid_request"


class UpstreamError(GatewayError):
    """The upstream API failed or refused; not a bug of ours."""

    status = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.upstream_status = upstream_status
        # Seconds the upstream asked us to wait (Retry-After or X-RateLimit-Reset), if it said.
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


_STATUS_CODES: dict[int, tuple[int, str]] = {
    400: (400, "upstream_bad_request"),
    401: (401, "upstream_unauthorized"),
    402: (402, "upstream_payment_required"),
    403: (403, "upstream_forbidden"),
    404: (404, "upstream_not_found"),
    408: (504, "upstream_timeout"),
    413: (413, "upstream_payload_too_large"),
    422: (422, "upstream_unprocessable"),
    503: (503, "upstream_unavailable"),
}


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status (other than 429)."""

    def __init__(
        self, upstream_status: int, message: str, *, retry_after: float | None = None
    ) -> None:
        if upstream_status in _STATUS_CODES:
            status, code = _STATUS_CODES[upstream_status]
        elif upstream_status >= 500:
            status, code = 502, "upstream_server_error"
        else:
            status, code = 502, "upstream_error"
        super().__init__(
            message,
            status=status,
            code=code,
            upstream_status=upstream_status,
            retry_after=retry_after,
        )

    @property
    def retryable(self) -> bool:
        return self.upstream_status in RETRYABLE_STATUSES


class UpstreamRateLimited(UpstreamError):
    """429 from the upstream: worth waiting for, unless the wait is longer than our budget."""

    status = 429
    code = "upstream_rate_limited"
    _retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, upstream_status=429, retry_after=retry_after)

    @property
    def retryable(self) -> bool:
        return self._retryable

    def headers(self) -> dict[str, str]:
        # A client told "429" always deserves a hint of when to come back.
        wait = self.retry_after if self.retry_after is not None else 1.0
        return {"Retry-After": str(max(1, math.ceil(wait)))}


class UpstreamQuotaExhausted(UpstreamRateLimited):
    """The daily free-model quota is spent: retrying before the reset only burns requests."""

    code = "upstream_quota_exhausted"
    _retryable = False


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, answer or send the next byte in time."""

    status = 504
    code = "upstream_timeout"

    @property
    def retryable(self) -> bool:
        return True


class UpstreamUnreachable(UpstreamError):
    """No connection to the upstream could be made, or it was cut."""

    code = "upstream_unreachable"

    @property
    def retryable(self) -> bool:
        return True


class UpstreamBadResponse(UpstreamError):
    """The upstream said 200 but sent an error, or something that is not a completion."""

    code = "upstream_bad_response"
