"""The one error hierarchy of the gateway, and the one place that decides HTTP statuses.

```
GatewayError                    500 internal_error          base; never raised itself
├── InternalError               500 internal_error          our own bug (logged with traceback)
├── ConfigError                 (start-up only)             settings that cannot work together
├── ClientError                 4xx                         the client can fix it; never retried
│   ├── InvalidRequest          422 invalid_request         fields that do not validate
│   │   ├── BadRequest          400 invalid_request         the same, where the API says 400 (/v1)
│   │   ├── InvalidJSON         400 invalid_json            not JSON, not an object, no body
│   │   └── InvalidPromptFile   400 invalid_prompt_file     a benchmark prompt file is unusable
│   │       └── PromptFileTooLarge  413 prompt_file_too_large
│   ├── Unauthorized            401 unauthorized            no or wrong inbound key
│   ├── CrossSiteRequest        403 cross_site_request      a web page's request, not allowed
│   ├── NetworkAccessRefused    403 network_access_refused  from the network, but no keys are set
│   ├── HostNotAllowed          403 host_not_allowed        a Host name the gateway does not serve
│   ├── NotFound                404 not_found               no such route
│   │   ├── RunNotFound         404 benchmark_not_found     no such benchmark run (or file)
│   │   └── ModelNotFound       404 model_not_found         no such model in the catalogue
│   ├── MethodNotAllowed        405 method_not_allowed      `Allow` says what is
│   ├── PayloadTooLarge         413 payload_too_large       GATEWAY_MAX_BODY_BYTES
│   ├── TooManyJobs             429 too_many_jobs           GATEWAY_BENCH_MAX_JOBS
│   ├── RateLimited             429 rate_limited            GATEWAY_RATE_LIMIT, per inbound key
│   └── TooManyConcurrent       429 too_many_concurrent_requests  GATEWAY_MAX_CONCURRENT_PER_KEY
├── InsufficientStorage         507 insufficient_storage    stored benchmark runs are at their limit
├── NotReady                    503 not_ready               the readiness probe failed
├── ShuttingDown                503 shutting_down           the server stopped before answering
├── Overloaded                  503 overloaded              GATEWAY_MAX_IN_FLIGHT requests running
├── SharedStateUnavailable      503 shared_state_unavailable  Redis is needed and cannot be reached
└── UpstreamError               502 upstream_error          upstream failed (logged, no traceback)
    ├── UpstreamStatusError     upstream 4xx kept as is; 5xx -> 502, 503 -> 503, 408 -> 504
    ├── UpstreamRateLimited     429 upstream_rate_limited   retried; Retry-After passed on
    │   └── UpstreamQuotaExhausted  429 upstream_quota_exhausted  daily quota: never retried
    ├── UpstreamTimeout         504 upstream_timeout
    ├── UpstreamUnreachable     502 upstream_unreachable    connect error or connection cut
    └── UpstreamBadResponse     502 upstream_bad_response   a 200 carrying an error, or garbage
        └── UpstreamCutOff      502 upstream_cut_off        a 200 whose body broke off: not retried
```

Every error knows its HTTP status, a stable `code` string clients can switch on, the headers
its answer carries, whether the retry layer may try again, and (for rate limits) how long the
upstream asked us to wait. Each kind of failure is a class: raise sites pick a class and write
a message, never a status. How an error is written on the wire (the gateway's shape or
OpenAI's, JSON or an SSE event) is `rendering.py`'s business, not the error's. Lower-layer
exceptions (the upstream transports', asyncio's, the OS's) are translated into these at the
upstream boundary.
"""

from __future__ import annotations

import math
from typing import ClassVar

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Filled in by the retry layer: how many upstream calls this failure took.
        self.attempts = 0

    @property
    def retryable(self) -> bool:
        return False

    def headers(self) -> dict[str, str]:
        return {}


class InternalError(GatewayError):
    """A bug of ours surfaced to a client: the message points at the log."""


class ConfigError(GatewayError):
    """The settings cannot work together (e.g. OpenRouter asked for but no key given).
    Raised while starting, never answered over HTTP."""

    code = "config_error"


class ClientError(GatewayError):
    """The request cannot be served as sent; the message says what to change, and `param`
    names the parameter at fault when there is one (OpenAI's error shape carries it)."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class InvalidRequest(ClientError):
    """Fields of the request do not validate; the message names each."""

    status = 422
    code = "invalid_request"


class BadRequest(InvalidRequest):
    """An invalid request on an API whose contract answers 400 (OpenAI's, under `/v1`)."""

    status = 400


class InvalidJSON(InvalidRequest):
    """The body is missing, is not JSON, or is not the JSON object the route takes."""

    status = 400
    code = "invalid_json"


class InvalidPromptFile(InvalidRequest):
    """A benchmark prompt file cannot be used; the message says why and where."""

    status = 400
    code = "invalid_prompt_file"


class PromptFileTooLarge(InvalidPromptFile):
    status = 413
    code = "prompt_file_too_large"


class Unauthorized(ClientError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class CrossSiteRequest(ClientError):
    status = 403
    code = "cross_site_request"


class NetworkAccessRefused(ClientError):
    status = 403
    code = "network_access_refused"


class HostNotAllowed(ClientError):
    status = 403
    code = "host_not_allowed"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class RunNotFound(NotFound):
    code = "benchmark_not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class TooManyJobs(ClientError):
    status = 429
    code = "too_many_jobs"


class RateLimited(ClientError):
    """An inbound key (or client address) is over GATEWAY_RATE_LIMIT. The answer says when to
    come back (`Retry-After`) and carries OpenAI's `x-ratelimit-*` request headers."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, limit: int, remaining: int, reset_after: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.remaining = remaining
        self.reset_after = reset_after

    def headers(self) -> dict[str, str]:
        return {
            "Retry-After": str(max(1, math.ceil(self.reset_after))),
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": f"{max(0.0, self.reset_after):.3f}s",
        }


class TooManyConcurrent(ClientError):
    """An inbound key already has GATEWAY_MAX_CONCURRENT_PER_KEY calls and streams open."""

    status = 429
    code = "too_many_concurrent_requests"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class InsufficientStorage(GatewayError):
    """A new benchmark run does not fit the retention limits even with every finished run
    removed (GATEWAY_BENCH_KEEP_RUNS, GATEWAY_BENCH_MAX_BYTES); the message names the one."""

    status = 507
    code = "insufficient_storage"


class NotReady(GatewayError):
    status = 503
    code = "not_ready"


class ShuttingDown(GatewayError):
    status = 503
    code = "shutting_down"


class Overloaded(GatewayError):
    status = 503
    code = "overloaded"

    def headers(self) -> dict[str, str]:
        # In-flight requests end within seconds (or a stream's length): worth a quick retry.
        return {"Retry-After": "1"}


class SharedStateUnavailable(GatewayError):
    """What was asked needs the shared state (Redis, GATEWAY_REDIS_URL), and it cannot be
    reached: queueing a benchmark, which must count against the one limit of the cluster."""

    status = 503
    code = "shared_state_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class UpstreamError(GatewayError):
    """The upstream API failed or refused; not a bug of ours."""

    status = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        # Seconds the upstream asked us to wait (Retry-After or X-RateLimit-Reset), if it said.
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


# An upstream's error status -> ours: client errors are the client's to fix, so they keep their
# status; the upstream's own failures are a bad gateway (502) unless more specific.
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
        super().__init__(message, upstream_status=upstream_status, retry_after=retry_after)
        if upstream_status in _STATUS_CODES:
            status, code = _STATUS_CODES[upstream_status]
        elif upstream_status >= 500:
            status, code = 502, "upstream_server_error"
        else:
            status, code = 502, "upstream_error"
        # Per instance: the status depends on what the upstream said.
        self.status = status
        self.code = code

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


class UpstreamCutOff(UpstreamBadResponse):
    """The upstream answered 2xx and then its body broke off (cut or stalled). Not retried: the
    generation ran upstream and may already be billed; a second one would be billed again."""

    code = "upstream_cut_off"
