"""How long a prompt is: one definition for every route that sends one to the upstream, held
against GATEWAY_MAX_PROMPT_CHARS.

A prompt's size is the number of characters of text the model is given to read:
- in each chat message: its `content` when it is a string, else the `text` of each of its
  content parts (content of any other shape counts as the length of its JSON); the `arguments`
  of its `tool_calls` (and of the older `function_call`); and the other text a message hands
  the model, `reasoning` and `refusal`;
- the tool definitions of a request (`tools`, each counted as the length of its JSON: names,
  descriptions and parameter schemas are all read by the model);
- the stop strings (`stop`).
Images, audio and files are not text and do not count, nor do roles, names and ids. Requests
come from clients as parsed JSON, so a list of another shape counts as no text rather than
failing here (validating requests is the caller's business).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

_TEXT_FIELDS = ("content", "reasoning", "refusal")


def prompt_chars(messages: Iterable[Any], *, tools: Any = None, stop: Any = None) -> int:
    """Characters of text in `messages` (chat messages as parsed JSON), `tools` and `stop`."""
    # Loops rather than sum(<generator>): every call on both hot routes counts its prompt, and
    # a generator per message and per field cost three times the counting (~1 us a call).
    chars = 0
    for message in messages:
        if isinstance(message, dict):
            chars += _message_chars(message)
    if isinstance(tools, list):
        for tool in tools:
            chars += _json_chars(tool)
    if isinstance(stop, str):
        chars += len(stop)
    elif isinstance(stop, list):
        for s in stop:
            if isinstance(s, str):
                chars += len(s)
    return chars


def _message_chars(message: dict[str, Any]) -> int:
    chars = 0
    for field in _TEXT_FIELDS:
        value = message.get(field)
        if value is not None:
            chars += len(value) if isinstance(value, str) else _text_chars(value)
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                chars += _arguments_chars(call.get("function"))
    return chars + _arguments_chars(message.get("function_call"))


def _text_chars(value: Any) -> int:
    """A string, or a list of content parts of which those with a `text` string count; any
    other value but null counts as its JSON (an upstream may well read it as text)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(
            len(part["text"])
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return _json_chars(value)


def _json_chars(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:  # what orjson will not encode (an integer past 64 bits): its text
        return len(str(value))


def _arguments_chars(function: Any) -> int:
    arguments = function.get("arguments") if isinstance(function, dict) else None
    return len(arguments) if isinstance(arguments, str) else 0
