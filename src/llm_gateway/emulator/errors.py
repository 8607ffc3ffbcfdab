"""OpenRouter's error bodies, as captured from real traffic (openrouter-wire.md section 4).

Key order follows the captures: platform errors put `message` before `code`, the OpenAPI-documented
ones (403, 408, 500, 502, 503) put `code` first. `user_id` is present where the captures have it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_gateway.emulator.catalog import PROVIDER_NAME
from llm_gateway.emulator.faults import Fault

USER_ID = "user_emulator"
_DAY_S = 86400
_FREE_RPM = 20
_FREE_RPD = 50
_FLAGGED_INPUT_CHARS = 100

# Bodies of 200 responses that carry an error; serialised as-is, never mutated.
PROVIDER_ERROR_200: dict[str, Any] = {
    "message": "Provider returned error",
    "code": 502,
    "metadata": {"raw": "upstream connect error", "provider_name": PROVIDER_NAME},
}
MIDSTREAM_ERROR: dict[str, Any] = {
    "code": 502,
    "message": "Provider returned error",
    "metadata": {"raw": "upstream connect error", "provider_name": PROVIDER_NAME},
}
CHOICE_ERROR: dict[str, Any] = {
    "code": 502,
    "message": "Provider disconnected mid-stream",
    "metadata": {"error_type": "provider_unavailable"},
}


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error response before any generation: HTTP status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _platform(status: int, message: str, **metadata: Any) -> ErrorReply:
    error: dict[str, Any] = {"message": message, "code": status}
    if metadata:
        error["metadata"] = metadata
    return ErrorReply(status, {"error": error, "user_id": USER_ID})


def _documented(status: int, message: str, **metadata: Any) -> ErrorReply:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata:
        error["metadata"] = metadata
    return ErrorReply(status, {"error": error})


def no_credentials() -> ErrorReply:
    """401 for a request without a bearer token."""
    return ErrorReply(401, {"error": {"message": "No auth credentials found", "code": 401}})


def user_not_found() -> ErrorReply:
    """401 for a bearer token that is not the configured key."""
    return ErrorReply(401, {"error": {"message": "User not found.", "code": 401}})


def bad_request(message: str) -> ErrorReply:
    """400 for a malformed request."""
    return _platform(400, message)


def invalid_model(model: str) -> ErrorReply:
    """400 for a model id the emulator does not serve."""
    return _platform(400, f"{model} is not a valid model ID")


def generation_not_found(generation_id: str) -> ErrorReply:
    """404 from /generation while the record is missing or not yet visible."""
    return ErrorReply(
        404, {"error": {"message": f"Generation {generation_id} not found", "code": 404}}
    )


def plain_error(status: int, message: str) -> ErrorReply:
    """A bare `{"error": {"message", "code"}}` body: unknown routes, control-route misuse."""
    return ErrorReply(status, {"error": {"message": message, "code": status}})


def no_tool_endpoints() -> ErrorReply:
    """404 for `tools` sent to a model that has no endpoint with tool use."""
    return plain_error(
        404,
        "No endpoints found that support tool use. To learn more about provider routing, "
        "visit: https://openrouter.ai/docs/guides/routing/provider-selection",
    )


def no_parameter_endpoints() -> ErrorReply:
    """404 under `provider.require_parameters` for a parameter the model does not support."""
    return plain_error(404, "No endpoints found that can handle the requested parameters.")


def _rate_limited(message: str, limit: int, reset_ms: int) -> ErrorReply:
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset_ms),
    }
    reply = _platform(429, message, headers=headers, provider_name=None)
    return ErrorReply(429, reply.body, dict(headers))


def per_minute_limit(limit: int, reset_ms: int) -> ErrorReply:
    """OpenRouter's own free-model per-minute 429; `reset_ms` is epoch milliseconds."""
    return _rate_limited("Rate limit exceeded: free-models-per-min. ", limit, reset_ms)


def per_day_limit(now: float) -> ErrorReply:
    """OpenRouter's free-model daily 429, resetting at the next 00:00 UTC."""
    reset_ms = (int(now) // _DAY_S + 1) * _DAY_S * 1000
    message = (
        "Rate limit exceeded: free-models-per-day. "
        "Add 10 credits to unlock 1000 free model requests per day"
    )
    return _rate_limited(message, _FREE_RPD, reset_ms)


def _upstream_rate_limited(model: str) -> ErrorReply:
    raw = (
        f"{model} is temporarily rate-limited upstream. Please retry shortly, or add your own key "
        "to accumulate your rate limits: https://openrouter.ai/settings/integrations"
    )
    return _platform(429, "Provider returned error", raw=raw, provider_name=PROVIDER_NAME)


def _status_reply(status: int, model: str, flagged_text: str) -> ErrorReply:
    if status == 400:
        return invalid_model(model)
    if status == 401:
        return user_not_found()
    if status == 402:
        message = (
            "This request requires more credits, or fewer max_tokens. You requested up to 16384 "
            "tokens, but can only afford 4000. To increase, visit "
            "https://openrouter.ai/settings/credits and upgrade to a paid account"
        )
        return _platform(
            402,
            message,
            limit_source="openrouter_credits",
            remedy_hint="Add credits or lower max_tokens.",
            provider_name=None,
        )
    if status == 403:
        message = (
            f"{model} requires moderation on {PROVIDER_NAME}. Your input was flagged for "
            '"harassment". No credits were charged.'
        )
        return _documented(
            403,
            message,
            reasons=["harassment"],
            flagged_input=flagged_text[:_FLAGGED_INPUT_CHARS],
            provider_name=PROVIDER_NAME,
            model_slug=model,
        )
    if status == 404:
        return _platform(404, f"No endpoints found for {model}.")
    if status == 408:
        return _documented(408, "Operation timed out. Please try again later.")
    if status == 500:
        return _documented(500, "Internal Server Error")
    if status == 502:
        return _documented(
            502,
            "Provider returned error",
            raw="upstream connect error",
            provider_name=PROVIDER_NAME,
        )
    return _documented(503, "Service temporarily unavailable")


def fault_reply(fault: Fault, *, model: str, flagged_text: str, now: float) -> ErrorReply:
    """The response of a rejecting fault step (see `faults.REJECTING_KINDS`).

    `flagged_text` is the user's text quoted by the 403 moderation body; `now` is epoch seconds.
    """
    if fault.kind == "rate-minute":
        return per_minute_limit(_FREE_RPM, round((now + fault.seconds) * 1000))
    if fault.kind == "rate-day":
        return per_day_limit(now)
    if fault.kind == "rate-upstream":
        return _upstream_rate_limited(model)
    if fault.kind == "retry-after":
        base = (
            _upstream_rate_limited(model) if fault.status == 429 else _status_reply(503, model, "")
        )
        return ErrorReply(fault.status, base.body, {"Retry-After": fault.retry_after})
    return _status_reply(fault.status, model, flagged_text)
