"""No silent queue, ever (issue 14): beyond GATEWAY_MAX_IN_FLIGHT a request is refused at
once, in the error shape, counted and logged; in-flight requests are a metric."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import GatewayFactory, read_log

pytestmark = pytest.mark.anyio

SLOW = {"model": "emulator/steady", "max_tokens": 40, "stream": True}


async def test_beyond_the_limit_requests_are_refused_at_once_and_counted(
    start_gateway: GatewayFactory, emulator: Emulator, log_file: Path
) -> None:
    emulator.config.time_scale = 1.0  # each stream lasts ~1 s
    with start_gateway(max_in_flight=2) as gateway:
        async with httpx.AsyncClient(base_url=gateway, timeout=20) as client:
            chat = {**SLOW, "messages": [{"role": "user", "content": "Long"}]}
            streams = [
                client.stream("POST", "/v1/chat/completions", json=chat),
                client.stream("POST", "/generate", json={**SLOW, "prompt": "Long"}),
            ]
            opened = await asyncio.gather(*(s.__aenter__() for s in streams))
            try:
                assert [r.status_code for r in opened] == [200, 200]
                during = (await client.get("/metrics")).text
                refused = await client.post("/generate", json={**SLOW, "prompt": "One more"})
                refused_v1 = await client.post("/v1/chat/completions", json=chat)
            finally:
                for stream, response in zip(streams, opened, strict=True):
                    await response.aread()
                    await stream.__aexit__(None, None, None)
            emulator.config.time_scale = 0.0
            after = await client.post("/generate", json={**SLOW, "prompt": "Again"})
            metrics = (await client.get("/metrics")).text
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    assert "GATEWAY_MAX_IN_FLIGHT" in refused.json()["error"]["message"]
    assert refused_v1.status_code == 503 and refused_v1.json()["error"]["type"] == "api_error"
    assert after.status_code == 200  # room again once the streams ended
    assert "llm_gateway_in_flight_requests 2.0" in during
    assert "llm_gateway_in_flight_requests 0.0" in metrics
    assert 'llm_gateway_rejected_requests_total{reason="overloaded"} 2.0' in metrics
    # Nothing was started upstream for the refused ones.
    assert len(emulator.chat_records()) == 3
    log = read_log(log_file, waiting_for="overloaded:")
    assert "WARNING" in log and "refused with 503" in log
