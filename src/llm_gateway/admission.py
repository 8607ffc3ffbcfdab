"""Admission control: how many upstream calls and streams one gateway process runs at once.

A gateway that is full must say so. Before this, the upstream connection pool (1,024) was the
only bound, and request 1,025 waited for a pooled connection with no error, no log line and no
metric: its client just saw a first token 9-18 s late. Now the pool is unbounded and the limit
is explicit: at most `GATEWAY_MAX_IN_FLIGHT` hot requests (`/generate`, `/v1/chat/completions`,
streams until they end) per process; the next one is answered at once with 503 `overloaded`
and `Retry-After`, counted in `llm_gateway_rejected_requests_total` and logged (a WARNING at
most once a second, with how many were refused meanwhile; every refused request still has its
own access line). In-flight requests are the `llm_gateway_in_flight_requests` gauge.
"""

from __future__ import annotations

import logging
import time

from llm_gateway.errors import Overloaded
from llm_gateway.metrics import GatewayMetrics

logger = logging.getLogger("llm_gateway.errors")

_LOG_EVERY_S = 1.0


class Admission:
    """Counts hot requests in flight; `enter` refuses one beyond `limit`."""

    __slots__ = ("_last_log", "_metrics", "_refused", "in_flight", "limit")

    def __init__(self, limit: int, metrics: GatewayMetrics | None = None) -> None:
        self.limit = limit
        self.in_flight = 0
        self._metrics = metrics
        self._refused = 0  # since the last log line
        self._last_log = 0.0

    def enter(self) -> None:
        """Admit one more request, or raise `Overloaded` (nothing was started for it)."""
        if self.in_flight >= self.limit:
            self._refuse()
        self.in_flight += 1
        if self._metrics is not None:
            self._metrics.in_flight.inc()

    def leave(self) -> None:
        self.in_flight -= 1
        if self._metrics is not None:
            self._metrics.in_flight.dec()

    def _refuse(self) -> None:
        self._refused += 1
        if self._metrics is not None:
            self._metrics.rejected.labels("overloaded").inc()
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            logger.warning(
                "overloaded: %d request%s refused with 503 (%d in flight, GATEWAY_MAX_IN_FLIGHT)",
                self._refused,
                "" if self._refused == 1 else "s",
                self.in_flight,
            )
            self._refused, self._last_log = 0, now
        raise Overloaded(
            f"The gateway is at its limit of {self.limit} requests in flight; retry shortly "
            "(GATEWAY_MAX_IN_FLIGHT)."
        )
