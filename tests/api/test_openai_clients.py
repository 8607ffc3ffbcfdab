"""Real OpenAI clients against `/v1`: the official SDK (sync and async) and langchain-openai.

Each points at the gateway in front of the emulator, the way a user would point it at
OpenRouter. The SDK's own retries are off (`max_retries=0`) so every status is seen as sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from llm_gateway.emulator import Emulator

MODEL = "emulator/fast"
MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about gateways"}]
# The emulator's text is a function of model, messages and seed: same request, same answer.
SEED = 11


@pytest.fixture
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key="anything", max_retries=0) as client:
        yield client


def test_sync_completion_and_stream_agree(client: openai.OpenAI, emulator: Emulator) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, seed=SEED, max_tokens=24
    )
    content = completion.choices[0].message.content
    assert content
    assert completion.id.startswith("gen-")
    assert completion.model == MODEL
    assert completion.usage is not None and completion.usage.completion_tokens == 24

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            seed=SEED,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == completion.usage.total_tokens
    assert {c.id for c in chunks} == {emulator.chat_records()[1].id}


@pytest.mark.anyio
async def test_async_completion_and_stream_agree(gateway: str) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway + "/v1", api_key="anything", max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, seed=SEED, max_tokens=24
        )
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            seed=SEED,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert completion.choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == completion.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 24


def test_models_list(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert "emulator/fast" in models
    assert models["emulator/fast"].owned_by == "emulator"


def test_models_retrieve(client: openai.OpenAI) -> None:
    model = client.models.retrieve("emulator/steady:free")
    assert (model.id, model.object, model.owned_by) == ("emulator/steady:free", "model", "emulator")
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("nope/not-a-model")
    assert missing.value.code == "model_not_found"


def test_extra_body_tools_and_response_format_reach_the_upstream(
    client: openai.OpenAI, emulator: Emulator
) -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    extra = {
        "provider": {"order": ["Emulator"], "allow_fallbacks": False},
        "models": [MODEL, "emulator/steady"],
        "reasoning": {"effort": "low"},
    }
    client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        extra_body=extra,
    )
    body = emulator.chat_records()[0].body
    assert body is not None
    assert {k: body[k] for k in extra} == extra
    assert body["tools"] == tools
    assert body["tool_choice"] == "auto"
    assert body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("fault", "model", "error_class", "status"),
    [
        ("402", MODEL, openai.APIStatusError, 402),  # the SDK has no subclass for 402
        ("429-day", MODEL, openai.RateLimitError, 429),
        ("401", MODEL, openai.AuthenticationError, 401),
        ("403", MODEL, openai.PermissionDeniedError, 403),
        ("ok", "nope/not-a-model", openai.BadRequestError, 400),
        ("error-200", MODEL, openai.InternalServerError, 502),
    ],
)
def test_upstream_errors_raise_the_sdk_classes(
    client: openai.OpenAI,
    emulator: Emulator,
    fault: str,
    model: str,
    error_class: type[openai.APIStatusError],
    status: int,
) -> None:
    for stream in (False, True):
        emulator.script([fault])
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model=model, messages=MESSAGES, stream=stream)
        assert type(raised.value) is error_class
        assert raised.value.status_code == status
        assert raised.value.code is not None and raised.value.code.startswith("upstream_")
        assert raised.value.response.headers["X-Request-ID"]


def test_a_midstream_failure_raises_api_error_after_the_first_deltas(
    client: openai.OpenAI, emulator: Emulator
) -> None:
    emulator.script(["midstream:2"])
    received: list[str] = []
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received)  # content arrived before the failure
    assert not isinstance(raised.value, openai.APIStatusError)  # in-band, after the 200
    assert "Provider returned error" in raised.value.message
    assert raised.value.code == "upstream_bad_response"


def test_langchain_invoke_and_stream(gateway: str) -> None:
    chat = ChatOpenAI(
        base_url=gateway + "/v1",
        api_key="anything",  # type: ignore[arg-type]
        model=MODEL,
        seed=5,
        max_retries=0,
        stream_usage=True,
    )
    answer = chat.invoke("Tell me about gateways")
    assert isinstance(answer.content, str) and answer.content
    total: AIMessageChunk | None = None
    for chunk in chat.stream("Tell me about gateways"):
        total = chunk if total is None else total + chunk
    assert total is not None
    assert total.content == answer.content
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] > 0
