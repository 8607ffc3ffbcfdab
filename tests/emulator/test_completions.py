"""Non-streaming chat completions: body shape, usage, deterministic text, validation, auth."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal

import httpx
import pytest

from llm_gateway.emulator import Emulator
from llm_gateway.emulator.answers import plan
from llm_gateway.emulator.catalog import build_catalog
from llm_gateway.emulator.options import Options
from tests.emulator.conftest import CHAT, StartEmulator, chat_body

pytestmark = pytest.mark.anyio

GEN_ID = re.compile(r"gen-\d{10}-[A-Za-z0-9]{20}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]


async def test_body_has_openrouters_shape_and_key_order(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    response = await client.post(CHAT, json={"model": "emulator/steady", "messages": MESSAGES})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == [
        "id",
        "provider",
        "model",
        "object",
        "created",
        "choices",
        "system_fingerprint",
        "usage",
    ]
    assert GEN_ID.fullmatch(body["id"]) and response.headers["X-Generation-Id"] == body["id"]
    assert (body["provider"], body["model"], body["object"]) == (
        "Emulator",
        "emulator/steady",
        "chat.completion",
    )
    [choice] = body["choices"]
    assert list(choice) == ["logprobs", "finish_reason", "native_finish_reason", "index", "message"]
    assert (choice["logprobs"], choice["index"], choice["finish_reason"]) == (None, 0, "stop")
    assert choice["native_finish_reason"] == "stop"
    assert list(choice["message"]) == ["role", "content", "refusal", "reasoning"]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["message"]["refusal"] is None and choice["message"]["reasoning"] is None
    [record] = emulator.chat_records()
    assert (record.id, record.status, record.fault, record.stream) == (body["id"], 200, "ok", False)
    assert record.body == {"model": "emulator/steady", "messages": MESSAGES}
    assert record.completed and not record.cancelled and record.finished_at is not None


async def test_usage_adds_up_with_the_catalogue_prices(client: httpx.AsyncClient) -> None:
    pricing = {m["id"]: m["pricing"] for m in (await client.get("/api/v1/models")).json()["data"]}
    body = (await client.post(CHAT, json={"model": "emulator/steady", "messages": MESSAGES})).json()
    usage = body["usage"]
    assert list(usage) == [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost",
        "is_byok",
        "prompt_tokens_details",
        "completion_tokens_details",
    ]
    # ceil(len("Be brief.") + len("Say hi")) / 4) + 3 per message
    assert usage["prompt_tokens"] == 4 + 6
    assert 20 <= usage["completion_tokens"] <= 60
    assert usage["completion_tokens"] == len(body["choices"][0]["message"]["content"].split(" "))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    price = pricing["emulator/steady"]
    expected = usage["prompt_tokens"] * Decimal(price["prompt"]) + usage[
        "completion_tokens"
    ] * Decimal(price["completion"])
    assert usage["cost"] == pytest.approx(float(expected), rel=1e-12)
    assert usage["is_byok"] is False
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0, "image_tokens": 0}
    free = await client.post(CHAT, json={"model": "emulator/steady:free", "messages": MESSAGES})
    assert free.json()["usage"]["cost"] == 0


async def test_text_is_deterministic_for_a_seed(start_emulator: StartEmulator) -> None:
    _, first = start_emulator(seed=3, time_scale=0)
    _, same = start_emulator(seed=3, time_scale=0)
    _, other = start_emulator(seed=4, time_scale=0)

    async def text(client: httpx.AsyncClient, prompt: str = "Say hello", **extra: object) -> str:
        body = chat_body("emulator/steady", prompt) | extra
        response = await client.post(CHAT, json=body)
        content: str = response.json()["choices"][0]["message"]["content"]
        return content

    reference = await text(first)
    assert await text(first) == reference
    assert await text(same) == reference
    assert await text(other) != reference
    assert await text(first, seed=11) != reference
    assert await text(first, seed=11) == await text(same, seed=11)
    assert await text(first, "Say goodbye") != reference


def test_text_is_identical_in_another_process() -> None:
    entry = build_catalog(None)["emulator/fast"]
    messages = [{"role": "user", "content": "Same in every process?"}]
    [choice] = plan(entry, messages, Options(), seed=5, request_seed=None, max_tokens=None).choices
    here = tuple(piece.text for piece in choice.pieces)
    script = (
        "import json; from llm_gateway.emulator.catalog import build_catalog;"
        "from llm_gateway.emulator.answers import plan;"
        "from llm_gateway.emulator.options import Options;"
        "entry = build_catalog(None)['emulator/fast'];"
        f"choice = plan(entry, {messages!r}, Options(), seed=5, request_seed=None, "
        "max_tokens=None).choices[0];"
        "print(json.dumps([piece.text for piece in choice.pieces]))"
    )
    there = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    ).stdout
    assert tuple(json.loads(there)) == here


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_truncates_with_finish_reason_length(
    client: httpx.AsyncClient, field: str
) -> None:
    body = (await client.post(CHAT, json=chat_body() | {field: 4})).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["native_finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 4
    assert len(body["choices"][0]["message"]["content"].split(" ")) == 4
    roomy = (await client.post(CHAT, json=chat_body() | {field: 1000})).json()
    assert roomy["choices"][0]["finish_reason"] == "stop"


async def test_echo_answers_the_last_user_message_verbatim(client: httpx.AsyncClient) -> None:
    prompt = '  <script>alert(1)</script>\n\t& "quotes" \\ {json} ünïcode  '
    messages = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": prompt},
    ]
    body = (await client.post(CHAT, json={"model": "emulator/echo", "messages": messages})).json()
    assert body["choices"][0]["message"]["content"] == prompt
    # six words, each with the whitespace before it, and the trailing whitespace
    assert body["usage"]["completion_tokens"] == 7


async def test_reasoning_model_fills_reasoning_and_counts_it(client: httpx.AsyncClient) -> None:
    body = (await client.post(CHAT, json=chat_body("emulator/reasoning"))).json()
    message, usage = body["choices"][0]["message"], body["usage"]
    assert message["reasoning"] and message["content"]
    reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning_tokens == len(message["reasoning"].split(" ")) > 0
    assert usage["completion_tokens"] == reasoning_tokens + len(message["content"].split(" "))


async def test_unknown_models_are_400_with_openrouters_body(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    for model in ("nope/model", "emulator/echo:free"):
        response = await client.post(CHAT, json=chat_body(model))
        assert response.status_code == 400
        assert response.json() == {
            "error": {"message": f"{model} is not a valid model ID", "code": 400},
            "user_id": "user_emulator",
        }
    assert [r.model for r in emulator.chat_records()] == ["nope/model", "emulator/echo:free"]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"model": "emulator/fast"}).encode(),
        json.dumps({"model": "emulator/fast", "messages": []}).encode(),
        json.dumps({"model": "emulator/fast", "messages": ["hi"]}).encode(),
        json.dumps(chat_body(max_tokens=0)).encode(),
    ],
)
async def test_malformed_requests_are_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(CHAT, content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and error["message"]


async def test_unused_openai_and_openrouter_fields_are_accepted(client: httpx.AsyncClient) -> None:
    body = chat_body(
        temperature=0.7,
        top_p=1,
        stop=["\n\n"],
        stream=False,
        stream_options={"include_usage": True},
        usage={"include": True},
        provider={"order": ["x"], "allow_fallbacks": True},
        models=["emulator/fast", "emulator/steady"],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        user="user-1",
    )
    assert (await client.post(CHAT, json=body)).status_code == 200


async def test_chat_needs_a_bearer_token(base_url: str, emulator: Emulator) -> None:
    async with httpx.AsyncClient(base_url=base_url) as anonymous:
        missing = await anonymous.post(CHAT, json=chat_body())
        empty = await anonymous.post(CHAT, json=chat_body(), headers={"Authorization": "Bearer"})
        basic = await anonymous.post(
            CHAT, json=chat_body(), headers={"Authorization": "Basic eA=="}
        )
    for response in (missing, empty, basic):
        assert response.status_code == 401
        assert response.json() == {"error": {"message": "No auth credentials found", "code": 401}}
    assert [r.authorized for r in emulator.chat_records()] == [False, False, False]
