"""A web page the user visits must not be able to drive a gateway on their machine (issue 10):
no cross-site POSTs the CORS settings do not allow, no JSON endpoint taking `text/plain`, and
no `Host` name a rebinding page could use."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import GatewayFactory

pytestmark = pytest.mark.anyio

CHAT = b'{"model": "emulator/fast", "messages": [{"role": "user", "content": "hi"}]}'
EVIL = "http://evil.example"


async def test_a_simple_cross_site_request_is_refused(
    gateway: str, emulator: Emulator, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        # What a page's <form> or fetch(..., {mode: "no-cors"}) can send without a preflight.
        plain = await client.post(
            "/v1/chat/completions", content=CHAT, headers={"content-type": "text/plain"}
        )
        crossed = await client.post(
            "/v1/chat/completions",
            content=CHAT,
            headers={"content-type": "application/json", "origin": EVIL},
        )
        form = await client.post(
            "/benchmark?background=true",
            files={"prompt_file": ("p.txt", b"hi\n", "text/plain")},
            data={"model": "emulator/fast", "runs": "1"},
            headers={"origin": EVIL, "sec-fetch-site": "cross-site"},
        )
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "invalid_json"
    assert crossed.status_code == 403 and crossed.json()["error"]["code"] == "cross_site_request"
    assert form.status_code == 403 and form.json()["error"]["code"] == "cross_site_request"
    assert not (tmp_path / "benchmarks").exists()  # no run was started (the tests run in tmp_path)
    assert emulator.chat_records() == []


async def test_the_gateways_own_pages_and_allowed_origins_may_post(
    start_gateway: GatewayFactory,
) -> None:
    with start_gateway(cors_origins="https://app.example") as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            answers = [
                await client.post(
                    "/v1/chat/completions",
                    content=CHAT,
                    headers={"content-type": "application/json", "origin": origin},
                )
                # The gateway's own origin (its /docs page), and one CORS allows.
                for origin in (gateway, "https://app.example")
            ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[1].headers["access-control-allow-origin"] == "https://app.example"


async def test_without_inbound_keys_only_loopback_host_names_are_served(
    start_gateway: GatewayFactory, gateway: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        rebound = await client.get("/models", headers={"host": "attacker.example:8000"})
        local = [
            await client.get("/health", headers={"host": host})
            for host in ("localhost:8000", "127.0.0.1", "[::1]:8000")
        ]
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "host_not_allowed"
    assert [r.status_code for r in local] == [200, 200, 200]
    with start_gateway(allowed_hosts="gateway.internal") as named:
        async with httpx.AsyncClient(base_url=named) as client:
            assert (await client.get("/health", headers={"host": "gateway.internal"})).is_success
            assert (
                await client.get("/health", headers={"host": "other.example"})
            ).status_code == 403
    with start_gateway(api_keys="k1") as keyed:  # a rebinding page cannot present the key
        async with httpx.AsyncClient(base_url=keyed) as client:
            answer = await client.get("/health", headers={"host": "anything.example"})
    assert answer.status_code == 200
