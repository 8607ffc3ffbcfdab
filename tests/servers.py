"""Real loopback servers for the tests: an ASGI app served by uvicorn in its own thread.

Everything in the suite talks HTTP over 127.0.0.1, the way a user's client would; nothing
is called in-process behind the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llm_gateway.embedded import BackgroundServer


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Serve `app` on a free loopback port in a background thread; yield its base URL."""
    with BackgroundServer(app, **config) as url:
        yield url
