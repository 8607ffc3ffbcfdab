"""Per-request facts shared between the access log and the code that learns them.

The middleware puts a mutable `RequestContext` in a context variable; routes record on it what
only they know (upstream attempts, how a stream ended, a client that left). It is mutated,
never replaced, so the values are visible to the middleware even when they are set inside a
streaming task.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

# The status nginx logs for a client that closed the connection before the answer was sent:
# no answer went out, so it is neither a 200 nor one of our 5xx.
CLIENT_CLOSED = 499


@dataclass(slots=True)
class RequestContext:
    request_id: str
    upstream_attempts: int = 0
    # Set when a streamed answer ended with an in-band error event after its 200.
    stream_error: str | None = None
    # The client went away before its answer was complete (and the work was cancelled).
    client_closed: bool = False


current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


def request_context() -> RequestContext | None:
    return current_request.get()


def record_attempts(attempts: int) -> None:
    ctx = current_request.get()
    if ctx is not None:
        ctx.upstream_attempts = attempts
