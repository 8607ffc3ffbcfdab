"""The model catalogue: fetched from the upstream, normalised, cached.

- TTL cache (cachetools) so the upstream is asked once per TTL, not once per request;
- single flight: however many requests find the cache cold, one upstream fetch serves them all;
- stale on error: when a refresh fails, the last good list keeps being served (never an empty
  one) and the refresh is retried after a short back-off instead of on every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cachetools import TLRUCache

from llm_gateway.errors import UpstreamError

logger = logging.getLogger("llm_gateway.catalog")

_MILLION = Decimal(1_000_000)
_KEY = "models"


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
    models: tuple[ModelInfo, ...]
    stale: bool
    fetched_at: float


class ModelCatalog:
    """Cached access to the upstream catalogue. `timer` is injectable so tests need not sleep."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[list[dict[str, Any]], int]]],
        *,
        ttl: float,
        stale_retry: float = 10.0,
        timer: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[str], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._on_lookup = on_lookup
        self._timer = timer
        self._ttl = ttl
        self._stale_retry = min(stale_retry, ttl) if ttl > 0 else 0.0
        self._cache: TLRUCache[str, _Entry] = TLRUCache(maxsize=1, ttu=self._expiry, timer=timer)
        self._last_good: _Entry | None = None
        self._lock = asyncio.Lock()

    def _expiry(self, _key: str, entry: _Entry, now: float) -> float:
        return now + (self._stale_retry if entry.stale else self._ttl)

    async def models(self) -> list[ModelInfo]:
        """The catalogue: from the cache when fresh, else from one upstream fetch."""
        entry = self._cache.get(_KEY)
        if entry is None:
            async with self._lock:
                # Whoever waited on the lock finds the list the first caller fetched.
                entry = self._cache.get(_KEY)
                if entry is None:
                    return list(await self._refresh())
        self._count("stale" if entry.stale else "hit")
        logger.info(
            "models cache hit (%d models, age %.1fs%s)",
            len(entry.models),
            self._timer() - entry.fetched_at,
            ", stale" if entry.stale else "",
        )
        return list(entry.models)

    async def _refresh(self) -> tuple[ModelInfo, ...]:
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
            stale = _Entry(self._last_good.models, True, self._last_good.fetched_at)
            self._store(stale)
            return stale.models
        models = tuple(normalise(m) for m in raw)
        if not models and self._last_good is not None:
            logger.warning("upstream returned an empty model list; keeping the previous one")
            models = self._last_good.models
        entry = _Entry(models, False, self._timer())
        self._last_good = entry
        self._store(entry)
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

    def _store(self, entry: _Entry) -> None:
        if self._ttl > 0:
            self._cache[_KEY] = entry
