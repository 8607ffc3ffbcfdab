"""Prometheus metrics (prometheus_client), one registry per app so several apps in one
process (as in the tests) never share or clash.

Request metrics are labelled by the route's path template (`/benchmarks/{run_id}`), never the
raw path, so a client cannot blow up the label cardinality.

Under `llm-gateway serve --workers N` each worker is a process of its own: prometheus_client's
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by the supervisor before the workers
start) keeps every worker's values in files of that folder, and a scrape, whichever worker
answers it, adds them up: counters and histograms summed, the gauges summed over the workers
alive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.context import CLIENT_CLOSED, request_context

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class GatewayMetrics:
    """The gateway's instruments; the upstream layer reports through the `on_*` hooks."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Set by `serve --workers N`; read when prometheus_client was imported, as here.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self._per_request: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._per_attempt: dict[tuple[str, str], Counter] = {}
        r = self.registry
        self.requests = Counter(
            "llm_gateway_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "llm_gateway_request_duration_seconds",
            "Time to answer an HTTP request (to the end of the stream for SSE).",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.upstream_attempts = Counter(
            "llm_gateway_upstream_attempts",
            "Calls to the upstream, by endpoint and outcome (ok or the error code).",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "llm_gateway_upstream_retries",
            "Upstream calls retried, by the failure.",
            ["reason"],
            registry=r,
        )
        self.models_cache = Counter(
            "llm_gateway_models_cache_lookups",
            "Model catalogue lookups: hit, miss (fetched), stale (served after a failed refresh).",
            ["result"],
            registry=r,
        )
        self.in_flight = Gauge(
            "llm_gateway_in_flight_requests",
            "Hot requests (/generate, /v1/chat/completions) running, streams until they end.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "llm_gateway_rejected_requests",
            "Requests refused before any work was started for them, by reason.",
            ["reason"],
            registry=r,
        )
        self.open_streams = Gauge(
            "llm_gateway_open_streams",
            "Server-Sent Event responses in progress.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.benchmark_jobs = Gauge(
            "llm_gateway_benchmark_jobs",
            "Benchmarks, inline and background, by state (running, queued).",
            ["state"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.set_jobs(0, 0)

    def on_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # The method is whatever the client sent; only the standard ones become labels.
        method = method if method in _METHODS else "OTHER"
        key = (method, route, status)
        instruments = self._per_request.get(key)
        if instruments is None:
            # `labels()` takes a lock and builds its key on every call; the set of
            # (method, route template, status) is small and fixed, so look each up once.
            instruments = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
            self._per_request[key] = instruments
        count, duration = instruments
        count.inc()
        duration.observe(seconds)

    def on_attempt(self, endpoint: str, outcome: str) -> None:
        # Once per upstream call: the children looked up once, as in `on_request`.
        counter = self._per_attempt.get((endpoint, outcome))
        if counter is None:
            counter = self._per_attempt[endpoint, outcome] = self.upstream_attempts.labels(
                endpoint, outcome
            )
        counter.inc()

    def on_retry(self, reason: str) -> None:
        self.upstream_retries.labels(reason).inc()

    def on_cache(self, result: str) -> None:
        self.models_cache.labels(result).inc()

    def set_jobs(self, running: int, queued: int) -> None:
        """This process's benchmarks (the job queue calls it on every change)."""
        self.benchmark_jobs.labels("running").set(running)
        self.benchmark_jobs.labels("queued").set(queued)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


class MetricsMiddleware:
    """Counts and times every HTTP request, and tracks open event streams."""

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        streaming = False

        def observe(message: Message) -> Awaitable[None]:  # not a coroutine: see logging.py
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"content-type" and value.startswith(b"text/event-stream"):
                        streaming = True
                        self.metrics.open_streams.inc()
            return send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            if streaming:
                self.metrics.open_streams.dec()
            ctx = request_context()
            if ctx is not None and ctx.client_closed:
                status = CLIENT_CLOSED  # nobody received an answer, whatever was sent
            elif status == 0:  # no answer went out and the client is there: a bug escaped
                status = 500
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.on_request(scope["method"], route, status, time.perf_counter() - started)
