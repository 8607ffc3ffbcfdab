"""Tool calls and JSON answers: which tools a reply calls, with which arguments, and the content
of a `response_format` answer. Values come from `schema_values`, drawn from the choice's rng.

Which tools a reply calls (the rule the README documents):
* `tool_choice: "none"`, or no tools: none; the reply is text (or JSON).
* a named function: that function, alone.
* `"auto"` (the default with tools): call when the last message is the user's; otherwise (after
  a tool result, say) answer in text, as a model does once it has what it asked for.
* `"required"`: always call.
The tools called are those whose names appear as words in the last user message (all of them,
in one answer, unless `parallel_tool_calls` is false), else the first tool. Under `"required"`
tools already called since the last user message are passed over while others remain, so an
agent loop that must call a tool every turn moves on to its final (output) tool.
"""

from __future__ import annotations

import json
import random
import re
import string
from typing import Any

from llm_gateway.emulator.options import Options, Tool
from llm_gateway.emulator.schema_values import json_text
from llm_gateway.emulator.text import content_text, last_user_text

_ID_ALPHABET = string.ascii_letters + string.digits
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
# Bounds on looking for a JSON Schema inside messages: prompts can be megabytes.
_SCAN_CHARS = 200_000
_SCAN_TRIES = 200


def _called_since_user(messages: list[dict[str, Any]]) -> set[str]:
    """Names of the functions the assistant called after the last user message."""
    names: set[str] = set()
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names.add(function["name"])
    return names


def called(options: Options, messages: list[dict[str, Any]]) -> tuple[Tool, ...]:
    """The tools one reply calls, in the order of `tools` (see the module docstring)."""
    tools, choice = options.tools, options.tool_choice
    if not tools or choice == "none":
        return ()
    if choice == "function":
        return tuple(tool for tool in tools if tool.name == options.forced_tool)[:1]
    if choice == "auto" and messages[-1].get("role") != "user":
        return ()
    said = last_user_text(messages)
    named = [tool for tool in tools if re.search(rf"(?<!\w){re.escape(tool.name)}(?!\w)", said)]
    candidates = named or [tools[0]]
    if choice == "required":
        done = _called_since_user(messages)
        fresh = [tool for tool in named or tools if tool.name not in done]
        candidates = (fresh if named else fresh[:1]) or candidates
    return tuple(candidates if options.parallel_tool_calls else candidates[:1])


def call_id(rng: random.Random) -> str:
    """`call_` and 24 alphanumerics, the form OpenAI-compatible providers use."""
    return "call_" + "".join(rng.choices(_ID_ALPHABET, k=24))


def arguments(tool: Tool, rng: random.Random, budget: int) -> tuple[str, bool]:
    """The JSON arguments of a call, a value of the tool's parameters schema, and True; or their
    first `budget` characters and False (see `schema_values.json_text`)."""
    return json_text(tool.parameters, rng, budget)


def _described_schema(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last JSON Schema written into a message: JSON mode clients (instructor's, for one)
    put the schema in the prompt, and a real model answers with an instance of it."""
    decoder = json.JSONDecoder()
    for message in reversed(messages):
        said = content_text(message.get("content"))[:_SCAN_CHARS]
        found: dict[str, Any] | None = None
        start, tries = said.find("{"), 0
        while start >= 0 and tries < _SCAN_TRIES:
            tries += 1
            try:
                value, end = decoder.raw_decode(said, start)
            except (ValueError, RecursionError):  # not JSON there, or nested too deep to read
                start = said.find("{", start + 1)
                continue
            if isinstance(value, dict) and isinstance(value.get("properties"), dict):
                found = value
            start = said.find("{", end)
        if found is not None:
            return found
    return None


def json_content(
    options: Options, messages: list[dict[str, Any]], rng: random.Random, budget: int
) -> tuple[str, bool]:
    """The content of a JSON answer, an instance of the json_schema, or of a schema the
    messages describe, or else an object with a few keys; and whether it is whole (False: cut
    at `budget` characters, see `schema_values.json_text`)."""
    schema = options.schema or _described_schema(messages) or _ANY_OBJECT
    return json_text(schema, rng, budget)
