"""`GET /models`: the catalogue shape, filters, and the cache (single flight, TTL, stale)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import read_log

pytestmark = pytest.mark.anyio


def _model_fetches(emulator: Emulator) -> int:
    return sum(1 for r in emulator.records if r.path == "/api/v1/models")


async def test_models_is_a_list_of_ids(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        ids = (await client.get("/models")).json()
    assert isinstance(ids, list) and all(isinstance(i, str) for i in ids)
    assert {"emulator/fast", "emulator/fast:free", "emulator/echo"} <= set(ids)


async def test_details_are_normalised(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        models = {m["id"]: m for m in (await client.get("/models?details=true")).json()}
    free, paid = models["emulator/fast:free"], models["emulator/fast"]
    assert free["free"] is True and paid["free"] is False
    assert free["pricing"] == {"prompt_per_million": 0, "completion_per_million": 0}
    # Per-token decimal strings upstream, per-million numbers here.
    assert isinstance(paid["pricing"]["prompt_per_million"], int | float)
    assert paid["pricing"]["prompt_per_million"] > 0
    assert paid["context_length"] > 0
    assert paid["name"]


async def test_filters(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        free = (await client.get("/models", params={"free": "true"})).json()
        echo = (await client.get("/models", params={"q": "ECHO"})).json()
    assert free and all(i.endswith(":free") for i in free)
    assert echo == ["emulator/echo"]


async def test_a_cold_cache_fetches_once_however_many_ask(
    gateway: str, emulator: Emulator, log_file: Path
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        answers = await asyncio.gather(*(client.get("/models") for _ in range(20)))
        again = await client.get("/models")
    assert {r.status_code for r in answers} == {200}
    assert len({r.text for r in answers}) == 1
    assert again.text == answers[0].text
    assert _model_fetches(emulator) == 1
    log = read_log(log_file, waiting_for="models cache hit", count=20)
    assert log.count("models cache miss") == 1
    assert log.count("models cache hit") == 20
