"""`prompt_chars`: the one definition of a prompt's size (benchmark prompt files use it; the
`/generate` and `/v1` checks are meant to)."""

from __future__ import annotations

from typing import Any

from llm_gateway.prompt_size import prompt_chars


def test_every_kind_of_message_text_counts() -> None:
    messages: list[Any] = [
        {"role": "system", "content": "12345"},  # 5
        {
            "role": "user",
            "name": "not counted",
            "content": [
                {"type": "text", "text": "123"},  # 3
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 999}},
                {"type": "text", "text": 7},  # not text
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning": "12",  # 2
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "1234"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],  # 4 + 2
        },
        {"role": "assistant", "function_call": {"name": "h", "arguments": "123"}},  # 3
        {"role": "assistant", "content": "", "refusal": "1"},  # 1
        {"role": "tool", "tool_call_id": "c1", "content": "123456"},  # 6
    ]
    assert prompt_chars(messages) == 5 + 3 + 2 + 4 + 2 + 3 + 1 + 6


def test_any_other_shape_counts_as_no_text() -> None:
    odd: list[Any] = [
        "a string, not a message",
        None,
        {"role": "user", "content": ["a bare string part"]},
        {"role": "assistant", "tool_calls": [{"function": "f"}, "x", {"function": None}]},
        {"role": "assistant", "tool_calls": {"function": {"arguments": "not a list"}}},
        {"role": "assistant", "function_call": {"arguments": {"a": 1}}},
    ]
    assert prompt_chars(odd) == 0
    assert prompt_chars([]) == 0
    # Content that is neither text nor parts may still be read as text upstream: its JSON.
    content = {"text": "an object, not parts"}
    assert prompt_chars([{"role": "user", "content": content}]) == len(
        '{"text":"an object, not parts"}'
    )
