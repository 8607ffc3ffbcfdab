"""Tool calling: the answer's shape (JSON and SSE), which tools are called, unsupported models."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema
import pytest

from llm_gateway.emulator.answers import PIECE_CHARS
from tests.emulator import events
from tests.emulator.conftest import CHAT, chat_body
from tests.emulator.test_schema_values import HUGE

pytestmark = pytest.mark.anyio

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
CLOCK: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "format": "uri"}},
            "required": ["zone"],
        },
    },
}
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in (WEATHER, CLOCK)}
CALL_ID = re.compile(r"call_[A-Za-z0-9]{24}")


def tools_body(content: str = "What is the weather?", **extra: Any) -> dict[str, Any]:
    return chat_body(content=content, tools=[WEATHER, CLOCK], seed=3, **extra)


async def complete(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def called(answer: dict[str, Any]) -> list[str]:
    return [call["function"]["name"] for call in answer["choices"][0]["message"]["tool_calls"]]


async def test_a_tool_call_has_openais_shape_and_valid_arguments(
    client: httpx.AsyncClient,
) -> None:
    answer = await complete(client, tools_body(tool_choice="required"))
    [choice] = answer["choices"]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("tool_calls",) * 2
    message = choice["message"]
    assert list(message) == ["role", "content", "refusal", "reasoning", "tool_calls"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert list(call) == ["id", "type", "function"] and CALL_ID.fullmatch(call["id"])
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, SCHEMAS["get_weather"])
    # The name is a token, and so is every PIECE_CHARS characters of the arguments.
    pieces = -(-len(call["function"]["arguments"]) // PIECE_CHARS)
    assert answer["usage"]["completion_tokens"] == 1 + pieces


async def test_streamed_tool_call_deltas_add_up_to_the_same_calls(
    client: httpx.AsyncClient,
) -> None:
    body = tools_body("Use get_weather and get_time", tool_choice="required")
    whole = await complete(client, body)
    _, stream = await events.post(client, body)
    assert events.tool_calls_of(stream) == whole["choices"][0]["message"]["tool_calls"]
    deltas = [d for d in events.choice_deltas(stream) if "tool_calls" in d]
    for number in (0, 1):
        mine = [d["tool_calls"][0] for d in deltas if d["tool_calls"][0]["index"] == number]
        first, *fragments = mine
        assert list(first) == ["index", "id", "type", "function"]
        assert first["function"]["arguments"] == "" and first["function"]["name"]
        assert fragments and all(list(f) == ["index", "function", "type"] for f in fragments)
        assert all(list(f["function"]) == ["arguments"] for f in fragments)
    assert all(d["content"] is None and d["role"] == "assistant" for d in deltas)
    chunks = events.data_chunks(stream)
    *_, finish, usage = chunks
    assert finish["choices"][0]["finish_reason"] == "tool_calls"
    assert usage["usage"] == whole["usage"]
    # Every piece is one timed token: one chunk each, as many as completion_tokens.
    assert len(deltas) == whole["usage"]["completion_tokens"]


@pytest.mark.parametrize(
    ("messages", "extra", "expected"),
    [
        ([{"role": "user", "content": "Hello"}], {}, ["get_weather"]),
        ([{"role": "user", "content": "Hello"}], {"tool_choice": "auto"}, ["get_weather"]),
        ([{"role": "user", "content": "get_time please"}], {}, ["get_time"]),
        ([{"role": "user", "content": "get_time, get_weather"}], {}, ["get_weather", "get_time"]),
        (
            [{"role": "user", "content": "get_time, get_weather"}],
            {"parallel_tool_calls": False},
            ["get_weather"],
        ),
        (
            [{"role": "user", "content": "get_weather"}],
            {"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
            ["get_time"],
        ),
        ([{"role": "user", "content": "get_weathers"}], {}, ["get_weather"]),  # a word, not part
        ([{"role": "user", "content": "Hello"}], {"tool_choice": "none"}, []),
        ([{"role": "system", "content": "get_time"}], {}, []),
    ],
)
async def test_which_tools_are_called(
    client: httpx.AsyncClient,
    messages: list[dict[str, Any]],
    extra: dict[str, Any],
    expected: list[str],
) -> None:
    answer = await complete(client, {**tools_body(), "messages": messages, **extra})
    [choice] = answer["choices"]
    if expected:
        assert called(answer) == expected
        assert choice["finish_reason"] == "tool_calls"
    else:
        assert "tool_calls" not in choice["message"] and choice["message"]["content"]
        assert choice["finish_reason"] == "stop"


def after_a_call(name: str) -> list[dict[str, Any]]:
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}
    return [
        {"role": "user", "content": "What is the weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]


async def test_auto_answers_in_text_after_a_tool_result(client: httpx.AsyncClient) -> None:
    answer = await complete(client, {**tools_body(), "messages": after_a_call("get_weather")})
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["choices"][0]["message"]["content"]


async def test_required_moves_on_to_a_tool_not_called_yet(client: httpx.AsyncClient) -> None:
    body = {**tools_body(tool_choice="required"), "messages": after_a_call("get_weather")}
    assert called(await complete(client, body)) == ["get_time"]
    # Once every tool was called, `required` still has to call one: the first.
    messages = after_a_call("get_weather") + after_a_call("get_time")[1:]
    assert called(await complete(client, {**body, "messages": messages})) == ["get_weather"]


async def test_the_reasoning_model_reasons_before_calling(client: httpx.AsyncClient) -> None:
    body = {**tools_body(), "model": "emulator/reasoning"}
    message = (await complete(client, body))["choices"][0]["message"]
    assert message["reasoning"] and message["content"] is None
    _, stream = await events.post(client, body)
    deltas = [d for d in events.choice_deltas(stream) if d.get("reasoning") or d.get("tool_calls")]
    kinds = ["reasoning" if d.get("reasoning") else "call" for d in deltas]
    assert kinds == sorted(kinds, key=["reasoning", "call"].index)


async def test_max_tokens_cuts_the_arguments(client: httpx.AsyncClient) -> None:
    answer = await complete(client, tools_body(max_tokens=3))
    [choice] = answer["choices"]
    assert choice["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 3
    [call] = choice["message"]["tool_calls"]
    assert len(call["function"]["arguments"]) == 2 * PIECE_CHARS


async def test_huge_argument_schemas_are_cut_at_max_tokens_at_once(
    client: httpx.AsyncClient,
) -> None:
    parameters = {"type": "object", "properties": {"lines": HUGE}, "required": ["lines"]}
    huge = {"type": "function", "function": {"name": "huge", "parameters": parameters}}
    body = chat_body(content="huge and get_time", tools=[huge, CLOCK], max_tokens=16, n=128)
    answer = await complete(client, body)
    assert answer["usage"]["completion_tokens"] == 128 * 16
    for choice in answer["choices"]:
        assert choice["finish_reason"] == "length"
        [call] = choice["message"]["tool_calls"]  # get_time, after the cut, is not called
        assert call["function"]["name"] == "huge"
        assert call["function"]["arguments"].startswith('{"lines":["')
        assert len(call["function"]["arguments"]) == 15 * PIECE_CHARS  # the call itself is one


async def test_a_model_without_tool_use_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.post(CHAT, json={**tools_body(), "model": "emulator/echo"})
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No endpoints found that support tool use. To learn more about provider "
            "routing, visit: https://openrouter.ai/docs/guides/routing/provider-selection",
            "code": 404,
        }
    }


async def test_models_list_what_they_support(client: httpx.AsyncClient) -> None:
    models = {m["id"]: m for m in (await client.get("/api/v1/models")).json()["data"]}
    tool_use = {"tools", "tool_choice", "parallel_tool_calls", "response_format"}
    everywhere = {"stop", "logprobs", "top_logprobs", "seed", "max_tokens"}
    for model_id, model in models.items():
        parameters = model["supported_parameters"]
        assert parameters == sorted(parameters) and everywhere <= set(parameters)
        assert "structured_outputs" in parameters or model_id == "emulator/echo"
        assert tool_use <= set(parameters) or model_id == "emulator/echo"
    assert not tool_use & set(models["emulator/echo"]["supported_parameters"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tools": {"name": "x"}}, '"tools" must be an array'),
        ({"tools": [{"type": "retrieval"}]}, 'tools[0].type must be "function"'),
        ({"tools": [{"type": "function", "function": {}}]}, "function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "parameters must be a JSON Schema object",
        ),
        ({"tool_choice": "always"}, "tool_choice must be"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope'"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"$ref": 1}}}]},
            "Invalid JSON Schema",
        ),
    ],
)
async def test_malformed_tool_requests_are_400(
    client: httpx.AsyncClient, extra: dict[str, Any], message: str
) -> None:
    body = {**chat_body(tools=[WEATHER]), **extra}
    response = await client.post(CHAT, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and message in error["message"]
