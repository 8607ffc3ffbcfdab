"""What the OpenAI-compatible passthrough requires of a chat request, and nothing more.

`/v1/chat/completions` forwards the client's body to the upstream as sent: OpenRouter's extras
(`models`, `provider`, `reasoning`, `plugins`, `usage`, ...) and fields nobody knows yet must
all arrive. So the body is not validated against a model (that would drop or reject fields);
only the few fields the gateway itself relies on are checked, each with a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import InvalidRequest

_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


def _invalid(message: str, code: str = "invalid_request") -> InvalidRequest:
    return InvalidRequest(message, status=400, code=code)


def check_chat_request(
    raw: bytes, *, max_tokens_limit: int, max_prompt_chars: int
) -> dict[str, Any]:
    """The parsed request body, unchanged, once the fields the gateway depends on are sane.

    Checked: the body is a JSON object, `model` is a non-empty string, `messages` a non-empty
    array, `stream` a boolean when given (it picks JSON or SSE), and `max_tokens` /
    `max_completion_tokens` positive integers within the gateway's limit, and the text of the
    messages within the prompt-length limit. Anything else is the upstream's business. Raises
    `InvalidRequest` (400).
    """
    if not raw.strip():
        raise _invalid(
            'The request needs a JSON body, e.g. {"model": "...", "messages": [...]}.',
            "invalid_json",
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"The request body is not valid JSON ({exc}).", "invalid_json") from exc
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", "invalid_json")

    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("`model` is required: a non-empty string such as 'openai/gpt-4o-mini'.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("`messages` is required: a non-empty array of message objects.")
    chars = sum(_text_length(m.get("content")) for m in messages if isinstance(m, dict))
    if chars > max_prompt_chars:
        raise _invalid(
            f"`messages` hold {chars} characters of text; the limit is {max_prompt_chars} "
            "(GATEWAY_MAX_PROMPT_CHARS)."
        )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid(f"`stream` must be true or false (got {stream!r:.40}).")
    for field in _TOKEN_FIELDS:
        value = body.get(field)
        if value is None:
            continue
        # bool is an int subclass; `true` is not a token count.
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _invalid(f"`{field}` must be a positive integer (got {value!r:.40}).")
        if value > max_tokens_limit:
            raise _invalid(f"`{field}` must be at most {max_tokens_limit} (got {value}).")
    return body


def _text_length(content: Any) -> int:
    """Characters of text in a message's content: a string, or content parts with `text`."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0
