"""Inbound limits per client (GATEWAY_RATE_LIMIT, GATEWAY_MAX_CONCURRENT_PER_KEY), as ASGI
middleware after the key check, so a refused key never counts and a counted one is genuine.

A client is its inbound key when keys are configured (named in Redis and in logs by a hash,
never the key itself), else its address (behind a proxy, the address uvicorn takes from
`X-Forwarded-For` when the proxy is one of `FORWARDED_ALLOW_IPS`, by default 127.0.0.1).
The probes, the docs and `/metrics` are never limited. An open call holds its place from the
moment it is admitted to the end of its answer, a stream's last event included.

Over a limit: 429 in the route's error shape (`rate_limited` or
`too_many_concurrent_requests`) with `Retry-After`, and for the rate limit OpenAI's
`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
`x-ratelimit-reset-requests`.
"""

from __future__ import annotations

import hashlib

from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.asgi import route_path
from llm_gateway.errors import RateLimited, TooManyConcurrent
from llm_gateway.rendering import send_error
from llm_gateway.security import PUBLIC_PATHS

UNLIMITED_PATHS = PUBLIC_PATHS | {"/metrics"}


def key_id(key: str) -> str:
    """How a client key is named outside the process: a short hash, never the key."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


class InboundLimitMiddleware:
    """The limiter is the runtime's (built in the lifespan, in-process or Redis)."""

    def __init__(self, app: ASGIApp, *, keys: frozenset[str]) -> None:
        self.app = app
        self._ids = {key.encode(): key_id(key) for key in keys}

    def _identity(self, scope: Scope) -> str:
        if self._ids:
            for name, value in scope["headers"]:
                if name == b"authorization":
                    found = self._ids.get(value.partition(b" ")[2].strip())
                    if found is not None:
                        return found
                    break
        client = scope.get("client")
        return f"addr:{client[0]}" if client else "addr:-"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            limiter = scope["app"].state.runtime.shared.limiter
            lease = await limiter.acquire(self._identity(scope))
        except (RateLimited, TooManyConcurrent) as exc:
            await send_error(send, exc, path=path)
            return
        if lease is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            lease.release()
