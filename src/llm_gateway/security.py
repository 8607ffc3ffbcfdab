"""Inbound access control: the gateway spends its owner's upstream credits, so when keys are
configured every route but the probes and the docs demands one.

Pure ASGI, before routing: a refused request never reaches a route or the upstream. Keys are
compared in constant time, every configured key is checked (no early exit that would reveal
which one nearly matched), and neither the keys nor the presented token are ever logged.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.asgi import route_path
from llm_gateway.errors import Unauthorized
from llm_gateway.rendering import send_error

# Liveness/readiness probes and the API docs stay reachable without a key.
PUBLIC_PATHS = frozenset(
    {"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)


def is_loopback(host: str) -> bool:
    """Whether binding to `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_matches(presented: bytes, keys: tuple[bytes, ...]) -> bool:
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


class InboundAuthMiddleware:
    """Answers 401 unless the request carries `Authorization: Bearer <one of the keys>`."""

    def __init__(self, app: ASGIApp, *, keys: frozenset[str]) -> None:
        self.app = app
        self._keys = tuple(k.encode() for k in sorted(keys))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or route_path(scope) in PUBLIC_PATHS
        ):
            await self.app(scope, receive, send)
            return
        token = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    token = b""
                break
        if token and key_matches(token.strip(), self._keys):
            await self.app(scope, receive, send)
            return
        reason = "The API key is not valid" if token else "No API key was sent"
        error = Unauthorized(
            f"{reason}: send `Authorization: Bearer <key>` (a key of GATEWAY_API_KEYS)."
        )
        await send_error(send, error, path=route_path(scope))
