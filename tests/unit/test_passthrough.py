"""What `/v1/chat/completions` checks before passing a body through, and nothing more."""

from __future__ import annotations

import pytest

from llm_gateway.errors import BadRequest, InvalidJSON
from llm_gateway.passthrough import check_chat_request

MESSAGES = '[{"role": "user", "content": "hi"}]'


def _check(raw: str | bytes) -> dict[str, object]:
    data = raw.encode() if isinstance(raw, str) else raw
    return check_chat_request(data, max_tokens_limit=100, max_prompt_chars=10)


def test_a_valid_body_comes_back_parsed_with_everything_in_it() -> None:
    body = _check(
        f'{{"model": "m", "messages": {MESSAGES}, "seed": 18446744073709551621, "x": {{}}}}'
    )
    assert body["seed"] == 18446744073709551621  # beyond 64 bits: the upstream's to judge
    assert body["x"] == {}


@pytest.mark.parametrize(
    ("raw", "error", "param"),
    [
        ("", InvalidJSON, None),
        ("{", InvalidJSON, None),
        ("[1]", InvalidJSON, None),
        ("[" * 5000 + "]" * 5000, InvalidJSON, None),
        ('{"messages": ' + MESSAGES + "}", BadRequest, "model"),
        ('{"model": " ", "messages": ' + MESSAGES + "}", BadRequest, "model"),
        ('{"model": "m", "messages": []}', BadRequest, "messages"),
        ('{"model": "m", "messages": ' + MESSAGES + ', "stream": "yes"}', BadRequest, "stream"),
        ('{"model": "m", "messages": ' + MESSAGES + ', "max_tokens": 0}', BadRequest, "max_tokens"),
        (
            '{"model": "m", "messages": ' + MESSAGES + ', "max_tokens": true}',
            BadRequest,
            "max_tokens",
        ),
        (
            '{"model": "m", "messages": ' + MESSAGES + ', "max_completion_tokens": 101}',
            BadRequest,
            "max_completion_tokens",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "01234567890"}]}',
            BadRequest,
            "messages",
        ),
        # Found by review: only `content` was counted, so long tool arguments went through.
        (
            '{"model": "m", "messages": [{"role": "assistant", "content": null, "tool_calls": '
            '[{"id": "c", "type": "function", "function": {"name": "f", "arguments": '
            '"{\\"a\\": \\"0123456789\\"}"}}]}]}',
            BadRequest,
            "messages",
        ),
    ],
)
def test_each_field_the_gateway_relies_on_is_checked_and_named(
    raw: str, error: type[Exception], param: str | None
) -> None:
    with pytest.raises(error) as refused:
        _check(raw)
    assert getattr(refused.value, "param", None) == param


def test_tool_definitions_and_stop_strings_count_towards_the_prompt() -> None:
    """Found by review: 50,000 characters of tool descriptions passed a 1,000 limit."""
    tools = '[{"type": "function", "function": {"name": "f", "description": "0123456789"}}]'
    with pytest.raises(BadRequest):
        _check('{"model": "m", "messages": ' + MESSAGES + ', "tools": ' + tools + "}")
    with pytest.raises(BadRequest):
        _check('{"model": "m", "messages": ' + MESSAGES + ', "stop": ["0123456789"]}')
    with pytest.raises(BadRequest):  # content that is not text or parts still counts
        _check('{"model": "m", "messages": [{"role": "user", "content": {"x": "0123456789"}}]}')
