"""Tools and structured output through the gateway's `/v1`, with the clients people use for them.

The openai SDK (tool calls, their streamed deltas, `parse`), instructor (TOOLS and JSON modes),
pydantic-ai (structured output in its default, output-tool mode) and LangChain's `bind_tools`,
each against the emulator behind the gateway, as a user would point them at OpenRouter. SDK
retries are off (`max_retries=0`) so a failure shows as sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import instructor
import jsonschema
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from llm_gateway.emulator import Emulator

MODEL = "emulator/fast"
PROMPT: list[Any] = [{"role": "user", "content": "Ann (31) lives at 5 Main St, 90210."}]


class Address(BaseModel):
    street: str
    zip_code: str = Field(min_length=5, max_length=5)


class Person(BaseModel):
    """A person and where they live."""

    name: str = Field(min_length=1)
    age: int = Field(ge=0, le=130)
    addresses: list[Address] = Field(min_length=1)
    nickname: str | None = None


@pytest.fixture
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key="anything", max_retries=0) as client:
        yield client


def test_openai_tool_calls_streamed_or_not(client: openai.OpenAI) -> None:
    tools = [openai.pydantic_function_tool(Person)]
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": PROMPT,
        "tools": tools,
        "tool_choice": "required",
        "seed": 3,
    }
    completion = client.chat.completions.create(**request)
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "Person"
    Person.model_validate_json(call.function.arguments)

    # Assembled from the deltas as the SDK's users do: by index, fragments appended.
    calls: dict[int, dict[str, str]] = {}
    for chunk in client.chat.completions.create(**request, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assembled = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            assembled["id"] += delta.id or ""
            if delta.function is not None:
                assembled["name"] += delta.function.name or ""
                assembled["arguments"] += delta.function.arguments or ""
    assert calls == {0: {"id": call.id, "name": "Person", "arguments": call.function.arguments}}

    # The SDK's own helpers parse strict tools and response formats into the model.
    with client.chat.completions.stream(**request) as stream:
        final = stream.get_final_completion()
    [streamed_call] = final.choices[0].message.tool_calls or []
    assert isinstance(streamed_call.function.parsed_arguments, Person)
    parsed = client.chat.completions.parse(model=MODEL, messages=PROMPT, response_format=Person)
    assert isinstance(parsed.choices[0].message.parsed, Person)


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON])
def test_instructor(client: openai.OpenAI, emulator: Emulator, mode: instructor.Mode) -> None:
    structured = instructor.from_openai(client, mode=mode)
    person = structured.chat.completions.create(
        model=MODEL, messages=PROMPT, response_model=Person, max_retries=0
    )
    assert isinstance(person, Person)
    [record] = emulator.chat_records()
    assert record.body is not None
    if mode is instructor.Mode.TOOLS:
        assert record.body["tool_choice"]["function"]["name"] == "Person"
    else:
        # JSON mode puts the schema in the prompt; the emulator answers with an instance of it.
        assert record.body["response_format"] == {"type": "json_object"}


@pytest.mark.anyio
async def test_pydantic_ai_structured_output(gateway: str, emulator: Emulator) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway + "/v1", api_key="anything", max_retries=0
    ) as client:
        model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
        agent = Agent(model, output_type=Person)
        result = await agent.run("Ann (31) lives at 5 Main St, 90210.")
    assert isinstance(result.output, Person)
    [record] = emulator.chat_records()
    assert record.body is not None
    assert [t["function"]["name"] for t in record.body["tools"]] == ["final_result"]


@tool
def get_weather(city: str, days: int) -> str:
    """The weather forecast for a city, for some days."""
    return f"Sunny in {city} for {days} days."


def test_langchain_bind_tools(gateway: str) -> None:
    chat = ChatOpenAI(
        base_url=gateway + "/v1",
        api_key="anything",  # type: ignore[arg-type]
        model=MODEL,
        seed=5,
        max_retries=0,
    ).bind_tools([get_weather])
    answer = chat.invoke("What's the weather in Paris?")
    assert isinstance(answer, AIMessage)
    [call] = answer.tool_calls
    assert call["name"] == "get_weather"
    schema = get_weather.tool_call_schema
    assert isinstance(schema, type) and issubclass(schema, BaseModel)
    jsonschema.validate(call["args"], schema.model_json_schema())
    assert get_weather.invoke(call["args"]).startswith("Sunny in ")

    total: AIMessageChunk | None = None
    for chunk in chat.stream("What's the weather in Paris?"):
        assert isinstance(chunk, AIMessageChunk)
        total = chunk if total is None else total + chunk
    assert total is not None
    assert [(c["name"], c["args"], c["id"]) for c in total.tool_calls] == [
        (call["name"], call["args"], call["id"])
    ]
