"""What a web page may make a browser do to a gateway: nothing it has not been allowed.

A gateway on 127.0.0.1 with no inbound keys (the default) trusts whoever can reach it, and a
web page the user visits can reach it through the user's browser:
- "simple" cross-site requests (a form post, `text/plain`) need no CORS preflight, so a page
  could start generations or benchmarks on the owner's credits: a state-changing request whose
  `Origin` is neither the gateway itself nor one of `GATEWAY_CORS_ORIGINS` is refused (403);
- DNS rebinding (a name of the attacker's that resolves to 127.0.0.1) makes the page
  same-origin with the gateway and lets it read answers; the browser still sends the
  attacker's name as `Host`. Without inbound keys only loopback names are accepted as `Host`
  unless `GATEWAY_ALLOWED_HOSTS` says otherwise (how Jupyter and Ollama protect theirs).

Clients that are not browsers send no `Origin` and a `Host` of what they were given: unaffected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.asgi import route_path
from llm_gateway.errors import CrossSiteRequest, HostNotAllowed
from llm_gateway.rendering import send_error
from llm_gateway.security import is_loopback

# Reading is harmless without CORS (the page cannot see the answer); these change nothing.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _host_name(host: str) -> str:
    """`host[:port]` (or `[v6]:port`) without the port."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _host_allowed(host: str, allowed: frozenset[str]) -> bool:
    name = _host_name(host)
    return is_loopback(name) or host in allowed or name in allowed


class BrowserGuard:
    """Refuses cross-site state-changing requests and, when asked, unknown `Host` names."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: Iterable[str],
        allowed_hosts: Iterable[str] | None,
    ) -> None:
        """`allowed_hosts`: None accepts any `Host`; otherwise loopback names and these
        (`*` accepts any)."""
        self.app = app
        self._origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        hosts = None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        self._hosts = None if hosts is not None and "*" in hosts else hosts

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: a request let through gets the app's own awaitable, so this keeps
        # no frame alive for the life of the request (streams last minutes, by the thousand).
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        host = origin = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1").lower()
            elif name == b"origin":
                origin = value.decode("latin-1").rstrip("/").lower()
        if self._hosts is not None and not _host_allowed(host, self._hosts):
            refused = HostNotAllowed(
                f"The Host {host!r:.100} is not one this gateway answers to: it serves "
                "loopback names unless GATEWAY_ALLOWED_HOSTS lists others (or set inbound keys)."
            )
            return send_error(send, refused, path=route_path(scope))
        if (
            origin
            and scope["method"] not in _SAFE_METHODS
            and not self._origin_allowed(origin, host)
        ):
            error = CrossSiteRequest(
                f"A {scope['method']} from the web page at {origin!r:.100} is refused: browsers "
                "may call the gateway only from origins in GATEWAY_CORS_ORIGINS."
            )
            return send_error(send, error, path=route_path(scope))
        return self.app(scope, receive, send)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        if origin in self._origins:
            return True
        # The gateway's own pages (/docs) post to it from its own origin.
        return origin != "null" and urlsplit(origin).netloc == host
