"""A client that leaves before its answer stops the work it started (issue 10): the upstream
call is cancelled at once (not billed to the end), the log says 499, and the metrics do not
count it as the gateway's failure. Under `llm-gateway serve`'s protocol, which tells the app
when the connection is lost, and under plain uvicorn, where the app listens for itself."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import GatewayFactory, read_log
from tests.sse import cancelled_record

pytestmark = pytest.mark.anyio

SLOW = {"model": "emulator/steady", "max_tokens": 60}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", {**SLOW, "prompt": "A long answer"}),
        ("/generate?stream=true", {**SLOW, "prompt": "A long answer"}),
        ("/v1/chat/completions", {**SLOW, "messages": [{"role": "user", "content": "Long"}]}),
    ],
    ids=["generate", "generate-stream-before-first-token", "v1"],
)
@pytest.mark.parametrize("plain_uvicorn", [False, True], ids=["serve", "plain-uvicorn"])
async def test_a_client_that_leaves_before_the_answer_cancels_the_upstream_call(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    log_file: Path,
    path: str,
    body: dict[str, object],
    plain_uvicorn: bool,
) -> None:
    emulator.config.time_scale = 1.0  # 0.3 s to the first token, ~1.3 s in all
    with start_gateway(plain_uvicorn=plain_uvicorn) as gateway:
        async with httpx.AsyncClient(base_url=gateway, timeout=0.15) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(path, json=body, headers={"X-Request-ID": "left-early"})
        record = await cancelled_record(emulator)
        assert not record.completed
        line = read_log(log_file, waiting_for="[left-early]")
        assert "status=499" in line
        async with httpx.AsyncClient(base_url=gateway) as client:
            metrics = (await client.get("/metrics")).text
    route = path.partition("?")[0]
    assert f'route="{route}",status="499"' in metrics
    assert f'route="{route}",status="500"' not in metrics
