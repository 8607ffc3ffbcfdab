"""Structured output: `response_format` json_object and json_schema, streamed and not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from pydantic import BaseModel, Field

from llm_gateway.emulator import answers, options
from llm_gateway.emulator.answers import MAX_REQUEST_TOKENS, PIECE_CHARS
from llm_gateway.emulator.catalog import build_catalog
from llm_gateway.emulator.options import Options
from tests.emulator import events
from tests.emulator.conftest import CHAT, chat_body
from tests.emulator.test_schema_values import HUGE

pytestmark = pytest.mark.anyio


class Line(BaseModel):
    product: str
    quantity: int = Field(ge=1, le=99)


class Invoice(BaseModel):
    number: str = Field(min_length=6, max_length=6)
    lines: list[Line] = Field(min_length=1)
    paid: bool
    note: str | None = None


INVOICE = Invoice.model_json_schema()  # with $defs and $ref, as pydantic writes it
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "invoice", "schema": INVOICE}}


async def content_of(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "stop"
    content: str = choice["message"]["content"]
    return content


async def test_json_object_content_is_an_object(client: httpx.AsyncClient) -> None:
    content = await content_of(client, chat_body(response_format={"type": "json_object"}))
    parsed = json.loads(content)
    assert isinstance(parsed, dict) and parsed


async def test_json_schema_content_validates_streamed_or_not(client: httpx.AsyncClient) -> None:
    body = chat_body(response_format={**JSON_SCHEMA, "strict": True}, seed=9)
    content = await content_of(client, body)
    jsonschema.validate(json.loads(content), INVOICE)
    Invoice.model_validate_json(content)
    _, stream = await events.post(client, body)
    pieces = [d["content"] for d in events.choice_deltas(stream) if d.get("content")]
    assert len(pieces) > 1 and "".join(pieces) == content
    assert events.data_chunks(stream)[-2]["choices"][0]["finish_reason"] == "stop"


async def test_json_object_follows_a_schema_given_in_the_prompt(
    client: httpx.AsyncClient,
) -> None:
    # JSON mode clients (instructor's, for one) describe the schema in the system message.
    system = "Answer in JSON matching this schema:\n" + json.dumps(INVOICE, indent=2) + "\nThanks."
    body = chat_body(response_format={"type": "json_object"})
    body["messages"].insert(0, {"role": "system", "content": system})
    for seed in range(5):
        Invoice.model_validate_json(await content_of(client, {**body, "seed": seed}))


async def test_json_answers_are_json_with_tools_declined(client: httpx.AsyncClient) -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    body = chat_body(response_format=JSON_SCHEMA, tools=[tool], tool_choice="none")
    Invoice.model_validate_json(await content_of(client, body))


async def test_max_tokens_cuts_json_like_a_real_model(client: httpx.AsyncClient) -> None:
    body = chat_body(response_format=JSON_SCHEMA, max_tokens=2)
    [choice] = (await client.post(CHAT, json=body)).json()["choices"]
    assert choice["finish_reason"] == "length" and len(choice["message"]["content"]) == 8


async def test_a_cut_answer_is_the_start_of_the_whole_one(client: httpx.AsyncClient) -> None:
    body = chat_body(response_format=JSON_SCHEMA, seed=4)
    whole = await content_of(client, {**body, "max_tokens": 10**9})
    assert whole == await content_of(client, body)
    Invoice.model_validate_json(whole)
    for max_tokens in (1, 5, (len(whole) - 1) // PIECE_CHARS):
        response = await client.post(CHAT, json={**body, "max_tokens": max_tokens})
        [choice] = response.json()["choices"]
        assert choice["finish_reason"] == "length"
        assert choice["message"]["content"] == whole[: max_tokens * PIECE_CHARS]


async def test_a_huge_schema_is_cut_at_max_tokens_at_once(client: httpx.AsyncClient) -> None:
    huge = {"type": "json_schema", "json_schema": {"name": "huge", "schema": HUGE}}
    body = chat_body(response_format=huge, max_tokens=16, n=128)
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["usage"]["completion_tokens"] == 128 * 16
    for choice in answer["choices"]:
        assert choice["finish_reason"] == "length"
        assert len(choice["message"]["content"]) == 16 * PIECE_CHARS
        assert choice["message"]["content"].startswith('["')
    _, stream = await events.post(client, {**body, "n": 1})
    assert len(events.text_of(stream)) == 16 * PIECE_CHARS


def plan(body: dict[str, Any], max_tokens: int | None) -> answers.Plan:
    entry = build_catalog(None)["emulator/fast"]
    asked = options.parse(body)
    assert isinstance(asked, Options)
    messages = [{"role": "user", "content": "hello"}]
    return answers.plan(entry, messages, asked, seed=0, request_seed=1, max_tokens=max_tokens)


@pytest.mark.parametrize(("max_tokens", "n"), [(None, 1), (10**9, 128)])
def test_a_request_says_at_most_max_request_tokens_whatever_max_tokens(
    max_tokens: int | None, n: int
) -> None:
    huge = {"type": "json_schema", "json_schema": {"name": "huge", "schema": HUGE}}
    planned = plan({"response_format": huge, "n": n}, max_tokens)
    assert planned.finish_reason == "length"
    assert planned.completion_tokens(planned.steps) == MAX_REQUEST_TOKENS
    assert {len(choice.pieces) for choice in planned.choices} == {MAX_REQUEST_TOKENS // n}


async def test_a_model_without_json_mode_ignores_response_format(
    client: httpx.AsyncClient,
) -> None:
    body = chat_body("emulator/echo", content="not json", response_format=JSON_SCHEMA)
    assert await content_of(client, body) == "not json"
    strict = {**body, "provider": {"require_parameters": True}}
    response = await client.post(CHAT, json=strict)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No endpoints found that can handle the requested parameters.",
            "code": 404,
        }
    }
    assert (await client.post(CHAT, json={**strict, "model": "emulator/fast"})).status_code == 200


@pytest.mark.parametrize(
    "response_format",
    [
        "json_object",
        {"type": 7},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"schema": {}}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}},
    ],
)
async def test_malformed_response_formats_are_400(
    client: httpx.AsyncClient, response_format: Any
) -> None:
    response = await client.post(CHAT, json=chat_body(response_format=response_format))
    assert response.status_code == 400
    assert "response_format" in response.json()["error"]["message"]


async def test_text_and_other_formats_answer_in_text(client: httpx.AsyncClient) -> None:
    plain = await content_of(client, chat_body())
    for kind in ("text", "grammar"):
        body = chat_body(response_format={"type": kind})
        assert await content_of(client, body) == plain
