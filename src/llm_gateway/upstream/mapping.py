"""Translate what the upstream says into the gateway's error types (errors.py).

OpenRouter error bodies look like `{"error": {"message", "code", "metadata"}, "user_id"}`, but
`code` may be an int or a string, `message` may be missing, the real detail may hide in
`metadata.raw`, and rate-limit headers may arrive as real headers or only inside
`metadata.headers`. Everything here tolerates all of that. `user_id` is never passed on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from llm_gateway.errors import (
    UpstreamError,
    UpstreamQuotaExhausted,
    UpstreamRateLimited,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from llm_gateway.upstream.h1 import CannotConnect

_MAX_MESSAGE = 500
# Longer waits than a day are not waits but garbage (or an attempt to make us sleep forever).
_MAX_WAIT_S = 86_400.0


class TranslateErrors:
    """Maps transport failures (h1.py's, aiohttp's, asyncio's, the OS's) to gateway errors at the
    boundary, always `from exc`: `with TranslateErrors("POST /chat/completions", 60): ...`.

    A class rather than `@contextmanager`: it wraps every upstream call and every read of a
    stream, and the generator machinery was ~6% of a proxied call's CPU in the profile.
    """

    __slots__ = ("timeout", "what")

    def __init__(self, what: str, timeout: float) -> None:
        self.what = what  # joined into a message only when something fails
        self.timeout = timeout

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        if exc is None or isinstance(exc, UpstreamError):
            return
        # Timeouts first: aiohttp's ServerTimeoutError is also a ClientError.
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout(
                f"The upstream did not answer {self.what} within {self.timeout:g}s"
            ) from exc
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise UpstreamUnreachable(f"Cannot connect to the upstream: {exc.os_error}") from exc
        if isinstance(exc, CannotConnect):
            raise UpstreamUnreachable(f"Cannot connect to the upstream: {exc}") from exc
        if isinstance(exc, aiohttp.ClientError | OSError):
            raise UpstreamUnreachable(
                f"The upstream connection failed ({self.what}): {exc}"
            ) from exc


def decode_json(body: bytes) -> Any:
    """Parse a body, or None when it is not JSON (upstream HTML error pages exist)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_message(payload: Any, fallback: str) -> str:
    """The human message inside an upstream error payload, with the provider detail if any."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return fallback
    message = str(error.get("message") or fallback).strip()
    metadata = error.get("metadata")
    if isinstance(metadata, dict):
        raw = metadata.get("raw")
        provider = metadata.get("provider_name")
        if isinstance(raw, str) and raw and raw not in message:
            message = f"{message}: {raw}"
        if isinstance(provider, str) and provider:
            message = f"{message} (provider: {provider})"
    return message[:_MAX_MESSAGE]


def _rate_limit_headers(headers: Mapping[str, str], payload: Any) -> dict[str, str]:
    """Rate-limit headers, from the response or, failing that, from `error.metadata.headers`."""
    found = {
        k.lower(): v
        for k, v in headers.items()
        if k.lower().startswith(("x-ratelimit", "retry-after"))
    }
    error = payload.get("error") if isinstance(payload, dict) else None
    metadata = error.get("metadata") if isinstance(error, dict) else None
    embedded = metadata.get("headers") if isinstance(metadata, dict) else None
    if isinstance(embedded, dict):
        for key, value in embedded.items():
            found.setdefault(str(key).lower(), str(value))
    return found


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """How long the upstream asked us to wait, from `Retry-After` or `X-RateLimit-Reset`.

    `Retry-After` is seconds or an HTTP date; OpenRouter's `X-RateLimit-Reset` is epoch
    milliseconds. Unparseable values are ignored rather than trusted.
    """
    now = time.time() if now is None else now
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after")
    if value:
        try:
            return _bounded(float(value))
        except ValueError:
            try:
                return _bounded(parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = lowered.get("x-ratelimit-reset")
    if reset:
        try:
            stamp = float(reset)
        except ValueError:
            return None
        # Epoch seconds would be ~1.7e9, milliseconds ~1.7e12: accept both.
        if stamp > 1e11:
            stamp /= 1000.0
        return _bounded(stamp - now)
    return None


def _bounded(seconds: float) -> float | None:
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), _MAX_WAIT_S)


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """The gateway error for an upstream answer with a non-2xx status."""
    payload = decode_json(body)
    fallback = body.decode("utf-8", errors="replace").strip()[:200] or f"HTTP {status}"
    message = error_message(payload, fallback)
    if status == 429:
        wait = retry_after_seconds(_rate_limit_headers(headers, payload))
        if "per-day" in message:
            return UpstreamQuotaExhausted(
                f"Upstream daily quota exhausted: {message}", retry_after=wait
            )
        return UpstreamRateLimited(f"Upstream rate limit: {message}", retry_after=wait)
    if status == 401:
        message = (
            f"The upstream rejected the gateway's API key ({message}). Check OPENROUTER_API_KEY."
        )
    return UpstreamStatusError(status, message, retry_after=retry_after_seconds(headers))
