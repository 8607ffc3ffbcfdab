"""What the OpenAI-compatible passthrough requires of a chat request, and nothing more.

`/v1/chat/completions` forwards the client's body bytes to the upstream as sent: OpenRouter's
extras (`models`, `provider`, `reasoning`, `plugins`, `usage`, ...), fields nobody knows yet,
key order and numbers of any size must all arrive. So the body is not validated against a model
(that would drop or reject fields) nor re-encoded; only the few fields the gateway itself
relies on are checked, each with a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json

from llm_gateway.errors import BadRequest, InvalidJSON
from llm_gateway.prompt_size import prompt_chars

_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


def check_chat_request(
    raw: bytes, *, max_tokens_limit: int, max_prompt_chars: int
) -> dict[str, Any]:
    """The parsed request body, once the fields the gateway depends on are sane.

    Checked: the body is a JSON object, `model` is a non-empty string, `messages` a non-empty
    array, `stream` a boolean when given (it picks JSON or SSE), and `max_tokens` /
    `max_completion_tokens` positive integers within the gateway's limit, and the text of the
    messages within the prompt-length limit. Anything else is the upstream's business. Raises
    `InvalidJSON` or `BadRequest` (400).
    """
    if not raw.strip():
        raise InvalidJSON(
            'The request needs a JSON body, e.g. {"model": "...", "messages": [...]}.'
        )
    try:
        # pydantic's parser: integers of any size (a 70-bit `seed` is the upstream's to judge)
        # and a nesting limit, so no body can crash it.
        # NaN and Infinity are not JSON: an upstream would choke on them, or worse.
        body = from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidJSON(f"The request body is not valid JSON ({exc}).") from None
    if not isinstance(body, dict):
        raise InvalidJSON("The request body must be a JSON object.")

    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(
            "`model` is required: a non-empty string such as 'openai/gpt-4o-mini'.", param="model"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(
            "`messages` is required: a non-empty array of message objects.", param="messages"
        )
    chars = prompt_chars(messages, tools=body.get("tools"), stop=body.get("stop"))
    if chars > max_prompt_chars:
        raise BadRequest(
            f"The prompt is {chars} characters (messages, tool calls and definitions, stop "
            f"strings); the limit is {max_prompt_chars} "
            "(GATEWAY_MAX_PROMPT_CHARS).",
            param="messages",
        )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest(f"`stream` must be true or false (got {stream!r:.40}).", param="stream")
    for field in _TOKEN_FIELDS:
        value = body.get(field)
        if value is None:
            continue
        # bool is an int subclass; `true` is not a token count.
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(
                f"`{field}` must be a positive integer (got {value!r:.40}).", param=field
            )
        if value > max_tokens_limit:
            raise BadRequest(
                f"`{field}` must be at most {max_tokens_limit} (got {value}).", param=field
            )
    return body
