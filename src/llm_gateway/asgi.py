"""Raw-ASGI helpers shared by the middleware, the hot-route dispatcher and the server protocol."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """The path the app routes on: the request's path without the `root_path` prefix a proxy
    mount adds (Starlette's rule), so `/v1/...` and the public paths are recognised there too."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these (lower-case) headers carries a body."""
    for name, value in headers:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False
