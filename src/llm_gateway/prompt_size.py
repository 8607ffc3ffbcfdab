"""How long a prompt is: one definition for every route that sends one to the upstream, held
against GATEWAY_MAX_PROMPT_CHARS.

A prompt's size is the number of characters of text in the chat messages sent: a message's
`content` when it is a string, else the `text` of each of its content parts; the `arguments`
of its `tool_calls` (and of the older `function_call`); and the other text a message hands the
model, `reasoning` and `refusal`. Images, audio and files are not text and do not count, nor do
roles, names and ids. Messages come from clients as parsed JSON, so anything of another shape
counts as no text rather than failing here (validating messages is the caller's business).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_TEXT_FIELDS = ("content", "reasoning", "refusal")


def prompt_chars(messages: Iterable[Any]) -> int:
    """Characters of text in `messages` (chat messages as parsed JSON)."""
    return sum(_message_chars(m) for m in messages if isinstance(m, dict))


def _message_chars(message: dict[str, Any]) -> int:
    chars = sum(_text_chars(message.get(field)) for field in _TEXT_FIELDS)
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        chars += sum(_arguments_chars(c.get("function")) for c in calls if isinstance(c, dict))
    return chars + _arguments_chars(message.get("function_call"))


def _text_chars(value: Any) -> int:
    """A string, or a list of content parts of which those with a `text` string count."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(
            len(part["text"])
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def _arguments_chars(function: Any) -> int:
    arguments = function.get("arguments") if isinstance(function, dict) else None
    return len(arguments) if isinstance(arguments, str) else 0
