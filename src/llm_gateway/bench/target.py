"""Where a benchmark sends its requests, as a recipe for the client that sends them.

The benchmark never measures with the gateway's own client: it builds one of its own, with the
send-time trace on (t0 is when a request is written to its connection), a connection pool as
large as its concurrency, and its own retry policy (`--retries`; 0 measures the upstream as it
is). The recipe is plain data, so a worker process can build the same client on its own loop.
It holds the key: it is passed to worker processes, never written anywhere.

The gateway's own client is built from the same recipe (`runtime.build_client`), untraced and
with its metrics and shared waits attached: one place turns settings into a client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_gateway.config import Settings
from llm_gateway.shared.waits import UpstreamWaits
from llm_gateway.upstream.client import Timeouts, UpstreamClient
from llm_gateway.upstream.retry import RetryObserver, RetryPolicy


@dataclass(frozen=True, slots=True)
class Target:
    base_url: str
    api_key: str = field(repr=False)
    timeouts: Timeouts = field(default_factory=Timeouts)
    attempts: int = 1  # upstream calls per request (1 + retries)
    retry_base: float = 0.5
    retry_max_wait: float = 8.0
    retry_budget: float = 30.0
    headers: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = field(default=(), repr=False)
    pool_size: int = 256
    max_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings, *, base_url: str, api_key: str) -> Target:
        """The upstream at `base_url`, with the gateway's timeouts, attribution headers and
        retry policy (a benchmark's `retries` replaces the attempts)."""
        headers = {"X-OpenRouter-Title": settings.app_title, "X-Title": settings.app_title}
        if settings.app_url:
            headers["HTTP-Referer"] = settings.app_url
        return cls(
            base_url=base_url,
            api_key=api_key,
            timeouts=Timeouts(
                connect=settings.connect_timeout,
                first_byte=settings.first_byte_timeout,
                idle=settings.idle_timeout,
                total=settings.total_timeout,
                stream_commit=settings.stream_commit_after,
            ),
            attempts=settings.retry_attempts,
            retry_base=settings.retry_base,
            retry_max_wait=settings.retry_max_wait,
            retry_budget=settings.retry_budget,
            headers=tuple(headers.items()),
            secrets=tuple(settings.secrets()),
            pool_size=settings.upstream_pool_size,
            max_bytes=settings.max_upstream_bytes,
        )

    def client(
        self,
        *,
        concurrency: int | None = 1,
        trace_send_times: bool = True,
        observer: RetryObserver | None = None,
        waits: UpstreamWaits | None = None,
    ) -> UpstreamClient:
        """A new client; a benchmark's (the default) has the send-time trace and pools at least
        `concurrency` connections; `concurrency=None` keeps the pool size as set."""
        return UpstreamClient(
            base_url=self.base_url,
            api_key=self.api_key,
            timeouts=self.timeouts,
            retry=RetryPolicy(
                attempts=self.attempts,
                base=self.retry_base,
                max_wait=self.retry_max_wait,
                budget=self.retry_budget,
                observer=observer,
                waits=waits,
            ),
            pool_size=self.pool_size if concurrency is None else max(self.pool_size, concurrency),
            headers=dict(self.headers),
            secrets=self.secrets,
            max_bytes=self.max_bytes,
            trace_send_times=trace_send_times,
        )
