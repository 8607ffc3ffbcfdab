"""The model catalogue: fetched from the upstream, normalised, cached.

- TTL cache so the upstream is asked once per TTL, not once per request;
- single flight: however many requests find the cache cold, one upstream fetch serves them all
  (across workers and replicas too, when the store is shared: shared/catalog.py);
- stale on error: when a refresh fails, the last good list keeps being served (never an empty
  one) and the refresh is retried after a short back-off instead of on every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from llm_gateway.errors import UpstreamError
from llm_gateway.shared.catalog import CatalogStore, MemoryCatalogStore, Snapshot

logger = logging.getLogger("llm_gateway.catalog")

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model, normalised: prices in USD per million tokens (None when dynamic/unknown)."""

    id: str
    name: str
    context_length: int | None
    prompt_price_per_m: Decimal | None
    completion_price_per_m: Decimal | None
    free: bool
    supported_parameters: tuple[str, ...]
    created: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "context_length": self.context_length,
            "pricing": {
                "prompt_per_million": _number(self.prompt_price_per_m),
                "completion_per_million": _number(self.completion_price_per_m),
            },
            "free": self.free,
            "supported_parameters": list(self.supported_parameters),
            "created": self.created,
        }


def _number(value: Decimal | None) -> float | int | None:
    if value is None:
        return None
    normal = value.normalize()
    return int(normal) if normal == normal.to_integral_value() else float(normal)


def _price(pricing: Any, key: str) -> Decimal | None:
    """Per-token decimal string -> per-million Decimal. Missing means 0; negative (router
    pseudo-models such as openrouter/auto use "-1") means dynamic, reported as None, and so
    does anything that is not a finite number."""
    raw = pricing.get(key, "0") if isinstance(pricing, dict) else "0"
    try:
        per_token = Decimal(str(raw))
    except InvalidOperation:
        return None
    if not per_token.is_finite() or per_token < 0:
        return None
    return per_token * _MILLION


def normalise(raw: dict[str, Any]) -> ModelInfo:
    """An upstream model object (any vintage of OpenRouter's schema) as a ModelInfo."""
    model_id = str(raw["id"])
    prompt = _price(raw.get("pricing"), "prompt")
    completion = _price(raw.get("pricing"), "completion")
    context = raw.get("context_length")
    params = raw.get("supported_parameters")
    created = raw.get("created")
    return ModelInfo(
        id=model_id,
        name=str(raw.get("name") or model_id),
        context_length=context if isinstance(context, int) else None,
        prompt_price_per_m=prompt,
        completion_price_per_m=completion,
        free=model_id.endswith(":free") or (prompt == 0 and completion == 0),
        supported_parameters=tuple(p for p in params if isinstance(p, str))
        if isinstance(params, list)
        else (),
        created=created if isinstance(created, int) else None,
    )


def select(
    models: Sequence[ModelInfo], *, free: bool = False, query: str | None = None
) -> list[ModelInfo]:
    """The catalogue filtered: free models only, and/or a case-insensitive text search."""
    needle = query.lower() if query else None
    return [
        m
        for m in models
        if (not free or m.free)
        and (needle is None or needle in m.id.lower() or needle in m.name.lower())
    ]


@dataclass(frozen=True, slots=True)
class _Entry:
    """The local copy: the snapshot it came from, normalised."""

    snapshot: Snapshot
    models: tuple[ModelInfo, ...]

    @property
    def stale(self) -> bool:
        return self.snapshot.stale


class ModelCatalog:
    """Cached access to the upstream catalogue. `timer` (epoch seconds, so that replicas
    sharing a store agree) is injectable so tests need not sleep; `store` is where the list is
    kept between fetches (this process by default; Redis for a cluster: shared/catalog.py).

    The request path reads the local copy only; the store is read when that copy is due, and
    the upstream is asked when the store's copy is due too.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[list[dict[str, Any]], int]]],
        *,
        ttl: float,
        stale_retry: float = 10.0,
        timer: Callable[[], float] = time.time,
        on_lookup: Callable[[str], None] | None = None,
        store: CatalogStore | None = None,
    ) -> None:
        self._fetch = fetch
        self._on_lookup = on_lookup
        self._timer = timer
        self._ttl = ttl
        self._stale_retry = min(stale_retry, ttl) if ttl > 0 else 0.0
        self._store: CatalogStore = store if store is not None else MemoryCatalogStore()
        self._local: _Entry | None = None
        self._last_good: _Entry | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> _Entry | None:
        entry = self._local
        if entry is None or self._ttl <= 0 or self._timer() >= entry.snapshot.refresh_at:
            return None
        return entry

    async def models(self) -> list[ModelInfo]:
        """The catalogue: from the cache when fresh, else from one upstream fetch."""
        entry = self._fresh()
        if entry is None:
            async with self._lock:
                # Whoever waited on the lock finds the list the first caller fetched.
                entry = self._fresh()
                if entry is None:
                    entry = await self._shared()
                    if entry is None:
                        return list(await self._refresh())
        self._count("stale" if entry.stale else "hit")
        logger.info(
            "models cache hit (%d models, age %.1fs%s)",
            len(entry.models),
            self._timer() - entry.snapshot.fetched_at,
            ", stale" if entry.stale else "",
        )
        return list(entry.models)

    async def _shared(self) -> _Entry | None:
        """The store's copy when it is fresh (another catalogue sharing it fetched it)."""
        if self._ttl <= 0:
            return None
        snapshot = await self._store.read()
        if snapshot is None or self._timer() >= snapshot.refresh_at:
            return None
        return self._adopt(snapshot)

    def _adopt(self, snapshot: Snapshot) -> _Entry:
        local = self._local
        if local is not None and local.snapshot.fetched_at == snapshot.fetched_at:
            entry = _Entry(snapshot, local.models)  # the same list: no need to normalise again
        else:
            entry = _Entry(snapshot, tuple(normalise(m) for m in snapshot.models))
        self._local = entry
        if not snapshot.stale:
            self._last_good = entry
        return entry

    async def _refresh(self) -> tuple[ModelInfo, ...]:
        # One caller across everything sharing the store: it reads again under the flight
        # lock (the list may have just been fetched elsewhere), and only then fetches.
        async with self._store.flight():
            entry = await self._shared()
            if entry is not None:
                self._count("hit")
                return entry.models
            if self._last_good is None and self._ttl > 0:
                previous = await self._store.read()  # another's list, for stale-on-error
                if previous is not None:
                    self._adopt(replace(previous, stale=False))
            return await self._fetch_now()

    async def _fetch_now(self) -> tuple[ModelInfo, ...]:
        self._count("miss")
        logger.info("models cache miss: fetching the catalogue from the upstream")
        started = time.perf_counter()
        try:
            raw, attempts = await self._fetch()
        except UpstreamError as exc:
            if self._last_good is None:
                raise
            logger.warning(
                "models refresh failed (%s: %s); serving the stale list of %d models",
                exc.code,
                exc.message,
                len(self._last_good.models),
            )
            now = self._timer()
            stale = replace(
                self._last_good.snapshot, stale=True, refresh_at=now + self._stale_retry
            )
            await self._store_snapshot(stale)
            return self._adopt(stale).models
        snapshot = Snapshot(tuple(raw), 0.0, 0.0, False)
        models = tuple(normalise(m) for m in raw)
        if not models and self._last_good is not None:
            logger.warning("upstream returned an empty model list; keeping the previous one")
            snapshot, models = self._last_good.snapshot, self._last_good.models
        now = self._timer()
        snapshot = replace(snapshot, fetched_at=now, refresh_at=now + self._ttl, stale=False)
        entry = _Entry(snapshot, models)
        self._local = self._last_good = entry
        await self._store_snapshot(snapshot)
        logger.info(
            "models fetched: %d models in %.3fs (%d attempt%s)",
            len(models),
            time.perf_counter() - started,
            attempts,
            "" if attempts == 1 else "s",
        )
        return models

    def _count(self, result: str) -> None:
        if self._on_lookup is not None:
            self._on_lookup(result)

    async def _store_snapshot(self, snapshot: Snapshot) -> None:
        if self._ttl > 0:
            await self._store.write(snapshot)
