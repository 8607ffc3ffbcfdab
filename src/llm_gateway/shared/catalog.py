"""Where the model catalogue is kept between upstream fetches, for one process or a cluster.

`ModelCatalog` (upstream/catalog.py) holds the rules (TTL, single flight, stale on error) and a
local copy it answers from; a store holds the last list fetched, with when to refresh it, for
every catalogue that shares the store:

- `MemoryCatalogStore`: in this process (the default: one process, no extra service).
- `RedisCatalogStore`: in Redis (`<prefix>:catalog:<upstream>`), so one upstream fetch per TTL
  serves every worker and replica. The fetch is single-flight across the cluster under a short
  Redis lock (redis-py's `Lock`, 30 s at most): a replica that finds the list due takes the
  lock, reads again (another may just have fetched), and only then fetches. Others wait for
  the lock (10 s at most, then fetch on their own) and read what it fetched.

When Redis cannot be reached the store reads nothing and writes nothing: each replica fetches
and caches for itself (fail-open), as a single process does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.exceptions import LockError

from llm_gateway.shared.redis import REDIS_FAILURES, RedisLink

LOCK_TTL_S = 30.0
LOCK_WAIT_S = 10.0
_KEEP_S = 7 * 86_400  # the last good list outlives any TTL: it is what a failed refresh serves


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The upstream's raw model objects as last fetched, and when to fetch them again."""

    models: tuple[dict[str, Any], ...]
    fetched_at: float  # by the catalogue's clock (epoch seconds, shared by replicas)
    refresh_at: float
    stale: bool  # a refresh failed; `models` is the last good list

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "models": self.models,
                "fetched_at": self.fetched_at,
                "refresh_at": self.refresh_at,
                "stale": self.stale,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot | None:
        try:
            raw = orjson.loads(data)
            return cls(
                tuple(m for m in raw["models"] if isinstance(m, dict)),
                float(raw["fetched_at"]),
                float(raw["refresh_at"]),
                bool(raw["stale"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class CatalogStore(Protocol):
    async def read(self) -> Snapshot | None: ...

    async def write(self, snapshot: Snapshot) -> None: ...

    def flight(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while one caller reads the store again and, if still due, fetches."""
        ...


class MemoryCatalogStore:
    """The catalogue of this process (shared by the catalogues built on this object)."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def read(self) -> Snapshot | None:
        return self._snapshot

    async def write(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    @contextlib.asynccontextmanager
    async def flight(self) -> AsyncIterator[None]:
        async with self._lock:
            yield


class RedisCatalogStore:
    """The catalogue of every replica, in Redis; `namespace` names the upstream and its key."""

    def __init__(
        self,
        link: RedisLink,
        namespace: str,
        *,
        lock_ttl: float = LOCK_TTL_S,
        lock_wait: float = LOCK_WAIT_S,
    ) -> None:
        self._link = link
        self._key = link.key("catalog", namespace)
        self._lock_ttl = lock_ttl
        self._lock_wait = lock_wait

    async def read(self) -> Snapshot | None:
        if not self._link.healthy:
            return None
        try:
            async with asyncio.timeout(self._link.timeout):
                data = await self._link.client.get(self._key)
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "reading the model catalogue")
            return None
        return Snapshot.from_bytes(data) if data is not None else None

    async def write(self, snapshot: Snapshot) -> None:
        if not self._link.healthy:
            return
        try:
            async with asyncio.timeout(self._link.timeout):
                await self._link.client.set(self._key, snapshot.to_bytes(), ex=_KEEP_S)
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "writing the model catalogue")

    @contextlib.asynccontextmanager
    async def flight(self) -> AsyncIterator[None]:
        if not self._link.healthy:
            yield
            return
        lock = self._link.client.lock(
            self._key + ":lock",
            timeout=self._lock_ttl,
            sleep=0.05,
            blocking_timeout=self._lock_wait,
            raise_on_release_error=False,
        )
        held = False
        try:
            async with asyncio.timeout(self._lock_wait + self._link.timeout):
                held = await lock.acquire()  # False after lock_wait: go ahead without it
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "locking the model catalogue")
        try:
            yield
        finally:
            if held:
                with contextlib.suppress(LockError, *REDIS_FAILURES):
                    async with asyncio.timeout(self._link.timeout):
                        await lock.release()
