"""Inbound limits per client key: requests per window (GATEWAY_RATE_LIMIT) and calls open at
once (GATEWAY_MAX_CONCURRENT_PER_KEY), for one process or the whole cluster.

Requests per window are the `limits` package's sliding-window counter: the count of the
current window plus the previous window's, weighted by how much of it the last window still
covers, so there is no burst of twice the limit across a window boundary. It costs the same
whatever the limit: two counters per key. (The moving window, exact, keeps one entry per
request: a 100,000/minute limit meant a list of 100,000 per key, and `limits`' memory storage
prepends to it on every request, measured at tens of microseconds per request.)

- `InboundLimiter` keeps both limits in this process (`limits`' memory storage, and a count of
  open calls per key).
- `RedisInboundLimiter` keeps them in Redis, for every worker and replica: the window is
  `limits`' own Lua script and key layout (the same as its `RedisStorage`, whose
  `get_window_stats` we call for a refusal's headers), and open calls are leases in a sorted
  set per key (a lease is renewed while its call runs, so a replica that dies frees its
  leases within `LEASE_S`). Both go out through the link's batcher: one pipelined round trip
  per event-loop turn, whatever the number of requests in it, and none at all when no limit
  is set. A lease's release is sent without waiting for the answer, with the next batch (5 ms
  at most later).

When Redis cannot be reached, the Redis limiter applies the same limits in each process
(fail-open to local limits; the link logs it once and `/ready` says degraded).

The order is the same in both: the window is counted first, and a call refused for too many
open calls still counts in the window; a call refused by the window takes no lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSlidingWindow
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from llm_gateway.errors import RateLimited, TooManyConcurrent
from llm_gateway.shared.redis import REDIS_FAILURES, RedisLink

LEASE_S = 60.0  # a lease not renewed for this long is dropped (its replica died)
_RENEW_S = LEASE_S / 3

# KEYS[1]: the key's leases (a sorted set, score = expiry in ms). ARGV: now (ms), the new
# lease's expiry (ms), the limit, the lease id. Drops expired leases, then adds the new one if
# there is room: 1 if taken, 0 if not.
_TAKE_LEASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[1])))
return 1
"""


class Lease:
    """An open call counted against its key's limit; `release()` when the call has ended."""

    __slots__ = ("_done", "_release")

    def __init__(self, release: Any) -> None:
        self._release = release
        self._done = False

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._release()


class InboundLimiter:
    """Both limits in this process."""

    def __init__(self, rate: str | None, concurrent: int | None) -> None:
        self.rate: RateLimitItem | None = parse(rate) if rate else None
        self.concurrent = concurrent
        self._window = SlidingWindowCounterRateLimiter(MemoryStorage()) if self.rate else None
        self._open: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.rate is not None or self.concurrent is not None

    @property
    def shared(self) -> bool:
        """Whether the limits hold across the cluster right now."""
        return False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def acquire(self, identity: str) -> Lease | None:
        """Count one call for `identity`: RateLimited or TooManyConcurrent when over a limit,
        else a lease to release when the call ends (None without a concurrency limit)."""
        return self._acquire_here(identity)

    def _acquire_here(self, identity: str) -> Lease | None:
        rate, window = self.rate, self._window
        if rate is not None and window is not None and not window.hit(rate, identity):
            stats = window.get_window_stats(rate, identity)
            raise self._over_rate(stats.reset_time - time.time(), stats.remaining)
        if self.concurrent is None:
            return None
        count = self._open.get(identity, 0)
        if count >= self.concurrent:
            raise self._over_concurrency()
        self._open[identity] = count + 1
        return Lease(lambda: self._release_here(identity))

    def _release_here(self, identity: str) -> None:
        count = self._open.get(identity, 0) - 1
        if count > 0:
            self._open[identity] = count
        else:
            self._open.pop(identity, None)

    def _over_rate(self, reset_after: float, remaining: int) -> RateLimited:
        assert self.rate is not None
        return RateLimited(
            f"Rate limit reached: {self.rate.amount} requests per "
            f"{_window_name(self.rate)} for this key (GATEWAY_RATE_LIMIT); retry after "
            f"{max(0.0, reset_after):.1f}s.",
            limit=self.rate.amount,
            remaining=max(0, remaining),
            reset_after=max(0.0, reset_after),
        )

    def _over_concurrency(self) -> TooManyConcurrent:
        return TooManyConcurrent(
            f"This key already has {self.concurrent} calls or streams open "
            "(GATEWAY_MAX_CONCURRENT_PER_KEY); retry when one has finished."
        )


def _window_name(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"


class RedisInboundLimiter(InboundLimiter):
    """Both limits across every replica, in Redis (in this process while it is down)."""

    def __init__(self, link: RedisLink, rate: str | None, concurrent: int | None) -> None:
        super().__init__(rate, concurrent)
        self._link = link
        self._storage = RedisStorage(
            "async+" + link.url,
            implementation="redispy",
            key_prefix=link.key("limits"),
            connection_pool=link.client.connection_pool,  # type: ignore[arg-type]
        )
        bridge = self._storage.bridge
        self._prefixed = bridge.prefixed_key
        self._stats = AsyncSlidingWindow(self._storage)
        self._window_sha = link.batch.script(bridge.SCRIPT_ACQUIRE_SLIDING_WINDOW)
        self._lease_sha = link.batch.script(_TAKE_LEASE)
        self._lease_ids = itertools.count()
        self._lease_prefix = os.urandom(6).hex()
        self._leases: dict[str, str] = {}  # lease id -> its key, renewed while open
        self._renewer: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return self._link.healthy

    async def start(self) -> None:
        if self.concurrent is not None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="lease-renewal")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer

    async def acquire(self, identity: str) -> Lease | None:
        if not self._link.healthy:
            return self._acquire_here(identity)
        batch, now = self._link.batch, time.time()
        rate_reply: asyncio.Future[Any] | None = None
        lease_reply: asyncio.Future[Any] | None = None
        lease_id = lease_key = ""
        if self.rate is not None:
            # The keys `limits`' RedisStorage uses for this window: `{key}` and `{key}/-1`
            # (braces: one cluster slot for both).
            key = "{" + self.rate.key_for(identity) + "}"
            keys = (self._prefixed(key + "/-1"), self._prefixed(key))
            window = (self.rate.amount, self.rate.get_expiry(), 1)
            rate_reply = batch.evalsha(self._window_sha, keys, window)
        if self.concurrent is not None:
            lease_id = f"{self._lease_prefix}{next(self._lease_ids):x}"
            lease_key = self._link.key("open", identity)
            now_ms = int(now * 1000)
            lease = (now_ms, now_ms + int(LEASE_S * 1000), self.concurrent, lease_id)
            lease_reply = batch.evalsha(self._lease_sha, (lease_key,), lease)
        replies = [r for r in (rate_reply, lease_reply) if r is not None]
        results = await asyncio.gather(*replies, return_exceptions=True)
        if any(isinstance(r, BaseException) for r in results):
            # The link is marked down (and says so, once); this call is counted here instead.
            return self._acquire_here(identity)
        rate_ok = bool(results[0]) if rate_reply is not None else True
        leased = bool(results[-1]) if lease_reply is not None else False
        if not rate_ok:
            if leased:
                self._drop(lease_key, lease_id)
            raise await self._refusal(identity)
        if self.concurrent is None:
            return None
        if not leased:
            raise self._over_concurrency()
        self._leases[lease_id] = lease_key
        return Lease(lambda: self._end(lease_key, lease_id))

    async def _refusal(self, identity: str) -> RateLimited:
        assert self.rate is not None
        try:
            async with asyncio.timeout(self._link.timeout):
                stats = await self._stats.get_window_stats(self.rate, identity)
        except REDIS_FAILURES:
            return self._over_rate(float(self.rate.get_expiry()), 0)
        return self._over_rate(stats.reset_time - time.time(), stats.remaining)

    def _end(self, key: str, lease_id: str) -> None:
        self._leases.pop(lease_id, None)
        self._drop(key, lease_id)

    def _drop(self, key: str, lease_id: str) -> None:
        if self._link.healthy:
            self._link.batch.fire(("ZREM", key, lease_id))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(_RENEW_S)
            if not self._leases or not self._link.healthy:
                continue
            expiry = int((time.time() + LEASE_S) * 1000)
            try:
                async with asyncio.timeout(self._link.timeout * 4):
                    pipe = self._link.client.pipeline(transaction=False)
                    for lease_id, key in list(self._leases.items()):
                        pipe.zadd(key, {lease_id: expiry}, xx=True)
                        pipe.pexpire(key, int(LEASE_S * 1000))
                    await pipe.execute()
            except REDIS_FAILURES as exc:
                self._link.failed(exc, "renewing open-call leases")
