"""The catalogue with a real upstream (the emulator): TTL expiry, and a failure when nothing is
cached. The cache rules alone are in tests/unit/test_catalog_cache.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.emulator import Emulator
from llm_gateway.errors import UpstreamUnreachable
from llm_gateway.runtime import build_client
from llm_gateway.upstream.catalog import ModelCatalog, normalise
from tests.conftest import gateway_settings
from tests.unit.test_catalog_cache import Clock

pytestmark = pytest.mark.anyio


def _fetches(emulator: Emulator) -> int:
    return sum(1 for r in emulator.records if r.path == "/api/v1/models")


async def test_the_list_is_refetched_after_the_ttl(
    emulator: Emulator, emulator_url: str, tmp_path: Path
) -> None:
    client = build_client(
        gateway_settings(emulator_url, tmp_path), base_url=emulator_url, api_key="k"
    )
    clock = Clock()
    catalog = ModelCatalog(client.list_models, ttl=60, timer=clock)
    try:
        await catalog.models()
        clock.now += 59
        await catalog.models()
        assert _fetches(emulator) == 1
        clock.now += 2
        await catalog.models()
        assert _fetches(emulator) == 2
    finally:
        await client.aclose()


async def test_with_nothing_cached_a_failure_is_an_error(tmp_path: Path) -> None:
    base = "http://127.0.0.1:9/api/v1"
    client = build_client(
        gateway_settings(base, tmp_path, retry_attempts=1), base_url=base, api_key="k"
    )
    catalog = ModelCatalog(client.list_models, ttl=60)
    try:
        with pytest.raises(UpstreamUnreachable):
            await catalog.models()
    finally:
        await client.aclose()


def test_normalise_tolerates_every_vintage() -> None:
    router = normalise({"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}})
    assert router.prompt_price_per_m is None and not router.free
    bare = normalise({"id": "x/y"})
    assert bare.free and bare.name == "x/y" and bare.context_length is None
    broken = normalise({"id": "c/d", "pricing": {"prompt": "NaN", "completion": "Infinity"}})
    assert broken.prompt_price_per_m is None and broken.completion_price_per_m is None
    priced = normalise({"id": "a/b", "pricing": {"prompt": "0.000003", "completion": 0.000015}})
    assert priced.to_json()["pricing"] == {"prompt_per_million": 3, "completion_per_million": 15}
