"""Per-request facts shared between the access log and the code that learns them.

The middleware puts a mutable `RequestContext` in a context variable; routes record on it what
only they know (upstream attempts, how a stream ended). It is mutated, never replaced, so the
values are visible to the middleware even when they are set inside a streaming task.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestContext:
    request_id: str
    upstream_attempts: int = 0
    # Set when a streamed answer ended with an in-band error event after its 200.
    stream_error: str | None = None


current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


def request_context() -> RequestContext | None:
    return current_request.get()


def record_attempts(attempts: int) -> None:
    ctx = current_request.get()
    if ctx is not None:
        ctx.upstream_attempts = attempts
