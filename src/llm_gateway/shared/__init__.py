"""The state workers and replicas share: small interfaces, each with an in-process and a Redis
implementation, chosen once at start-up (GATEWAY_REDIS_URL) and tested against the same
contract tests (tests/shared/).

| use | in-process | Redis (when GATEWAY_REDIS_URL is set) | when Redis is down |
|---|---|---|---|
| model catalogue | `MemoryCatalogStore` | `RedisCatalogStore` | each process fetches for itself |
| upstream waits | `UpstreamWaits` | `RedisWaits` | each process keeps its own |
| inbound limits | `InboundLimiter` | `RedisInboundLimiter` | limits per process |
| benchmark jobs | `bench.jobs.Jobs` | `bench.queue.RedisJobs` | no new benchmark (503) |

Nothing here is imported from the request path per call: the middleware and the upstream
client get the objects once. docs/scale-out.md has the design, the keys and the failure modes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from llm_gateway.config import Settings
from llm_gateway.shared.catalog import CatalogStore, MemoryCatalogStore, RedisCatalogStore
from llm_gateway.shared.limiter import InboundLimiter, RedisInboundLimiter
from llm_gateway.shared.redis import RedisLink
from llm_gateway.shared.waits import RedisWaits, UpstreamWaits

SharedState = Literal["in-process", "redis", "degraded"]


@dataclass(frozen=True, slots=True)
class Shared:
    link: RedisLink | None
    waits: UpstreamWaits
    catalog: CatalogStore
    limiter: InboundLimiter

    @property
    def state(self) -> SharedState:
        """`in-process` (no Redis configured), `redis`, or `degraded` (Redis unreachable)."""
        if self.link is None:
            return "in-process"
        return "redis" if self.link.healthy else "degraded"


def upstream_namespace(upstream_url: str, key: str) -> str:
    """Names an upstream and the key used for it, in Redis keys (a hash: never the key)."""
    return hashlib.sha256(f"{upstream_url}\0{key}".encode()).hexdigest()[:16]


@asynccontextmanager
async def open_shared(settings: Settings, namespace: str) -> AsyncIterator[Shared]:
    """The shared state for `settings`: in this process, or in Redis. A Redis that cannot be
    reached at start-up is not fatal: it is logged, `/ready` says degraded, and the link
    reconnects on its own."""
    rate, concurrent = settings.rate_limit, settings.max_concurrent_per_key
    if settings.redis_url is None:
        yield Shared(None, UpstreamWaits(), MemoryCatalogStore(), InboundLimiter(rate, concurrent))
        return
    link = RedisLink(
        settings.redis_url.get_secret_value(),
        prefix=settings.redis_prefix,
        timeout=settings.redis_timeout,
    )
    async with AsyncExitStack() as stack:
        stack.push_async_callback(link.close)
        await link.start()
        waits = RedisWaits(link, namespace)
        await waits.start()
        stack.push_async_callback(waits.close)
        limiter = RedisInboundLimiter(link, rate, concurrent)
        await limiter.start()
        stack.push_async_callback(limiter.close)
        yield Shared(link, waits, RedisCatalogStore(link, namespace), limiter)
