"""`ModelCatalog` with a counting fetch and an injected clock: how often the upstream is asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llm_gateway.errors import UpstreamUnreachable
from llm_gateway.upstream.catalog import ModelCatalog

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    def __init__(self) -> None:
        self.fetches = 0
        self.down = False

    async def list_models(self) -> tuple[list[dict[str, Any]], int]:
        self.fetches += 1
        await asyncio.sleep(0)  # let other callers pile up on a cold cache
        if self.down:
            raise UpstreamUnreachable("down")
        return [{"id": "a/b"}, {"id": "c/d:free"}], 1


async def test_a_cold_cache_is_filled_by_one_fetch_however_many_ask() -> None:
    upstream = Upstream()
    catalog = ModelCatalog(upstream.list_models, ttl=60, timer=Clock())
    answers = await asyncio.gather(*(catalog.models() for _ in range(10)))
    assert upstream.fetches == 1
    assert all([m.id for m in a] == ["a/b", "c/d:free"] for a in answers)


async def test_the_list_is_fetched_again_only_after_the_ttl() -> None:
    upstream, clock = Upstream(), Clock()
    catalog = ModelCatalog(upstream.list_models, ttl=60, timer=clock)
    await catalog.models()
    clock.now += 59
    await catalog.models()
    assert upstream.fetches == 1
    clock.now += 2
    await catalog.models()
    assert upstream.fetches == 2


async def test_a_stale_list_is_served_without_asking_again_until_the_backoff() -> None:
    upstream, clock = Upstream(), Clock()
    catalog = ModelCatalog(upstream.list_models, ttl=60, stale_retry=5, timer=clock)
    fresh = await catalog.models()
    upstream.down = True
    clock.now += 61
    assert await catalog.models() == fresh  # the refresh failed: stale served
    assert upstream.fetches == 2
    clock.now += 4
    assert await catalog.models() == fresh
    assert upstream.fetches == 2  # within the back-off: not asked again
    clock.now += 2
    assert await catalog.models() == fresh
    assert upstream.fetches == 3  # after it: asked again (and still down)
    upstream.down = False
    clock.now += 6
    await catalog.models()
    assert upstream.fetches == 4


async def test_with_nothing_cached_a_failure_is_an_error() -> None:
    upstream = Upstream()
    upstream.down = True
    with pytest.raises(UpstreamUnreachable):
        await ModelCatalog(upstream.list_models, ttl=60, timer=Clock()).models()
