"""Raw-ASGI helpers shared by the middleware and the hot-route dispatcher."""

from __future__ import annotations

from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """The path the app routes on: the request's path without the `root_path` prefix a proxy
    mount adds (Starlette's rule), so `/v1/...` and the public paths are recognised there too."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
