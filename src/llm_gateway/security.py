"""Inbound access control: the gateway spends its owner's upstream credits.

- With keys configured, every route but the probes and the docs demands one
  (`InboundAuthMiddleware`). Keys are compared in constant time, every configured key is
  checked (no early exit that would reveal which one nearly matched), and neither the keys nor
  the presented token are ever logged.
- Without keys, the gateway serves only requests that reached it on a loopback address
  (`LoopbackOnly`), unless `GATEWAY_ALLOW_OPEN=true` says something in front authenticates
  clients. The check is on each request's local address, so it holds however the app was
  started (`llm-gateway serve`, `uvicorn --factory ... --host 0.0.0.0`, a process manager
  handing over a socket): an ASGI app is never told the address it was bound to, only the one
  each request came in on.

Pure ASGI, before routing: a refused request never reaches a route or the upstream.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
from collections.abc import Awaitable

from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.asgi import route_path
from llm_gateway.errors import NetworkAccessRefused, Unauthorized
from llm_gateway.rendering import send_error

logger = logging.getLogger("llm_gateway.errors")

# Liveness/readiness probes and the API docs stay reachable without a key.
PUBLIC_PATHS = frozenset(
    {"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)


# Asked on every request (the address it came in on, its Host): parsing an address each time
# cost ~5 us a request. Bounded, so a client varying its Host cannot grow it.
@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
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

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: a request let through gets the app's own awaitable, so this keeps
        # no frame alive for the life of the request (streams last minutes, by the thousand).
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or route_path(scope) in PUBLIC_PATHS
        ):
            return self.app(scope, receive, send)
        token = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    token = b""
                break
        if token and key_matches(token.strip(), self._keys):
            return self.app(scope, receive, send)
        reason = "The API key is not valid" if token else "No API key was sent"
        error = Unauthorized(
            f"{reason}: send `Authorization: Bearer <key>` (a key of GATEWAY_API_KEYS)."
        )
        return send_error(send, error, path=route_path(scope))


class LoopbackOnly:
    """Answers 403 to requests that arrived on a non-loopback address (no keys are set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._warned = False

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: a request let through gets the app's own awaitable, so this keeps
        # no frame alive for the life of the request (streams last minutes, by the thousand).
        server = scope.get("server")
        if (
            scope["type"] != "http"
            or server is None  # a Unix socket: only this machine can reach it
            or is_loopback(str(server[0]))
            or route_path(scope) in PUBLIC_PATHS
        ):
            return self.app(scope, receive, send)
        if not self._warned:  # once: a refused stranger per request must not flood the log
            self._warned = True
            logger.error(
                "refusing requests from the network (%s): no inbound keys are set; set "
                "GATEWAY_API_KEYS, or GATEWAY_ALLOW_OPEN=true if something in front "
                "authenticates clients",
                server[0],
            )
        error = NetworkAccessRefused(
            "This gateway has no inbound keys, so it serves only this machine (loopback). "
            "Its owner can set GATEWAY_API_KEYS, or GATEWAY_ALLOW_OPEN=true if something in "
            "front of it authenticates clients."
        )
        return send_error(send, error, path=route_path(scope))
