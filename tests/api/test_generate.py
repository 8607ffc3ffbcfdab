"""`POST /generate` end to end: client -> gateway -> emulator, all over loopback HTTP."""

from __future__ import annotations

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.sse import deltas, parse_frames

pytestmark = pytest.mark.anyio


async def _post(gateway: str, body: dict[str, object], **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway, timeout=20) as client:
        return await client.post("/generate", json=body, params=params)


@pytest.mark.parametrize("model", ["emulator/fast", "emulator/steady:free", "emulator/reasoning"])
async def test_generate_answers_with_text_usage_and_latency(gateway: str, model: str) -> None:
    response = await _post(gateway, {"prompt": "Say hello", "model": model, "max_tokens": 100})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "response",
        "tokens_used",
        "latency_seconds",
        "model",
        "id",
        "finish_reason",
        "usage",
        "cost",
    }
    assert body["response"] and isinstance(body["response"], str)
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["tokens_used"] == usage["total_tokens"]  # total, not prompt tokens
    assert body["latency_seconds"] > 0
    assert body["model"] == model
    assert body["id"].startswith("gen-")
    assert body["finish_reason"] == "stop"
    assert response.headers["X-Upstream-Attempts"] == "1"
    assert response.headers["X-Request-ID"]
    if model.endswith(":free"):
        assert body["cost"] == 0
    else:
        assert body["cost"] > 0


async def test_the_default_request_forwards_the_right_fields(
    gateway: str, emulator: Emulator
) -> None:
    response = await _post(gateway, {"prompt": "Hi", "model": "emulator/fast"})
    assert response.status_code == 200
    [record] = emulator.chat_records()
    assert record.authorized
    assert record.body == {
        "model": "emulator/fast",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 512,
    }


async def test_optional_fields_reach_the_upstream(gateway: str, emulator: Emulator) -> None:
    body = {
        "prompt": "Hi",
        "model": "emulator/fast",
        "system": "Be brief.",
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 42,
        "max_tokens": 64,
    }
    assert (await _post(gateway, body)).status_code == 200
    sent = emulator.chat_records()[0].body
    assert sent is not None
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["seed"], sent["max_tokens"]) == (
        0.2,
        0.9,
        ["\n\n"],
        42,
        64,
    )


async def test_max_tokens_bounds_the_completion(gateway: str) -> None:
    body = (
        await _post(
            gateway, {"prompt": "Tell me a story", "model": "emulator/fast", "max_tokens": 5}
        )
    ).json()
    assert body["usage"]["completion_tokens"] == 5
    assert body["finish_reason"] == "length"


async def test_same_seed_same_answer_and_prompts_come_back_verbatim(gateway: str) -> None:
    request = {"prompt": "Pick words", "model": "emulator/fast", "seed": 3}
    first, second = (await _post(gateway, request)).json(), (await _post(gateway, request)).json()
    assert first["response"] == second["response"]
    echo = await _post(gateway, {"prompt": "Ünïcode <b>ok</b> ✓", "model": "emulator/echo"})
    assert echo.json()["response"] == "Ünïcode <b>ok</b> ✓"


@pytest.mark.parametrize("how", ["query", "body"])
async def test_streaming_sends_deltas_then_done(gateway: str, how: str) -> None:
    request: dict[str, object] = {
        "prompt": "Stream please",
        "model": "emulator/steady",
        "max_tokens": 20,
    }
    params = {"stream": "true"} if how == "query" else {}
    if how == "body":
        request["stream"] = True
    response = await _post(gateway, request, **params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    frames = parse_frames(response.text)
    data_frames = [f for f in frames if not f.comment]
    assert all(f.event is None for f in data_frames[:-1])
    done = data_frames[-1]
    assert done.event == "done"
    assert done.data["response"] == deltas(frames)
    assert done.data["usage"]["completion_tokens"] == 20
    assert done.data["tokens_used"] == done.data["usage"]["total_tokens"]
    assert 0 < done.data["ttft_seconds"] <= done.data["latency_seconds"]
    assert done.data["finish_reason"] == "length"
    # One event per upstream content piece: 20 tokens, 20 deltas.
    assert sum(1 for f in data_frames if f.event is None) == 20


async def test_streamed_and_whole_answers_agree(gateway: str) -> None:
    request = {"prompt": "Same thing twice", "model": "emulator/fast", "seed": 9}
    whole = (await _post(gateway, request)).json()
    streamed = parse_frames((await _post(gateway, request, stream="true")).text)[-1].data
    for key in ("response", "usage", "tokens_used", "finish_reason", "model"):
        assert streamed[key] == whole[key], key
