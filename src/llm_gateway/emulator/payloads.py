"""Success bodies on the wire: completions, SSE chunks, usage, /generation records.

Dicts are built in OpenRouter's observed key order and encoded with orjson, which keeps
insertion order; every SSE event is one `data: <json>\\n\\n` frame.
"""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from llm_gateway.emulator.catalog import PROVIDER_NAME
from llm_gateway.emulator.errors import USER_ID
from llm_gateway.emulator.state import Generation

UsageShape = Literal["dummy", "empty"]

KEEPALIVE = b": OPENROUTER PROCESSING\n\n"
DONE = b"data: [DONE]\n\n"

_ID_ALPHABET = string.ascii_letters + string.digits
# Ids need uniqueness, not reproducibility, so they come from an unseeded generator.
_ids = random.Random()


def new_generation_id(created: int) -> str:
    """`gen-<unix seconds>-<20 alphanumerics>`, the live API's id format."""
    return f"gen-{created}-{''.join(_ids.choices(_ID_ALPHABET, k=20))}"


def usage_object(
    *, prompt: int, completion: int, reasoning: int, cost: float | int
) -> dict[str, Any]:
    """The `usage` object, sent whether or not the client asked for it."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": cost,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "image_tokens": 0},
    }


def completion(
    *,
    generation_id: str,
    model: str,
    created: int,
    content: str,
    reasoning: str | None,
    finish_reason: str,
    usage: dict[str, Any],
    choice_error: dict[str, Any] | None = None,
) -> bytes:
    """A non-streaming chat completion; `choice_error` makes it the 'error inside a choice' form."""
    choice: dict[str, Any] = {
        "logprobs": None,
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "index": 0,
        "message": {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "reasoning": reasoning,
        },
    }
    if choice_error is not None:
        choice["error"] = choice_error
    return orjson.dumps(
        {
            "id": generation_id,
            "provider": PROVIDER_NAME,
            "model": model,
            "object": "chat.completion",
            "created": created,
            "choices": [choice],
            "system_fingerprint": "",
            "usage": usage,
        }
    )


def error_body(error: dict[str, Any]) -> bytes:
    """A 200 body that is only an error, as OpenRouter sends when a provider fails late."""
    return orjson.dumps({"error": error, "user_id": USER_ID})


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {
        "index": 0,
        "delta": delta,
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "logprobs": None,
    }


class ChunkFramer:
    """Frames the SSE events of one streamed generation."""

    def __init__(self, *, generation_id: str, model: str, created: int) -> None:
        self._head: dict[str, Any] = {
            "id": generation_id,
            "provider": PROVIDER_NAME,
            "model": model,
            "object": "chat.completion.chunk",
            "created": created,
        }

    def _frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**self._head, "choices": choices, "system_fingerprint": "", **extra}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def role(self) -> bytes:
        """The first chunk: the assistant role with empty content."""
        return self._frame([_choice({"role": "assistant", "content": ""}, None)])

    def content(self, token: str) -> bytes:
        """One content token; OpenRouter repeats the role in every delta."""
        return self._frame([_choice({"role": "assistant", "content": token}, None)])

    def reasoning(self, token: str) -> bytes:
        """One reasoning token (content stays empty), with its `reasoning_details` twin."""
        detail = {"type": "reasoning.text", "text": token, "format": "unknown", "index": 0}
        delta = {
            "role": "assistant",
            "content": "",
            "reasoning": token,
            "reasoning_details": [detail],
        }
        return self._frame([_choice(delta, None)])

    def finish(self, finish_reason: str) -> bytes:
        """The chunk carrying finish_reason; usage follows in a separate chunk."""
        return self._frame([_choice({"role": "assistant", "content": ""}, finish_reason)])

    def usage(self, usage: dict[str, Any], shape: UsageShape) -> bytes:
        """The usage chunk: a dummy choice (as captured) or `choices: []` (as documented)."""
        choices = [_choice({"role": "assistant", "content": ""}, None)] if shape == "dummy" else []
        return self._frame(choices, usage=usage)

    def error(self, error: dict[str, Any]) -> bytes:
        """An in-band error event: top-level `error` and a choice finished with "error"."""
        chunk = {
            **self._head,
            "error": error,
            "choices": [_choice({"role": "assistant", "content": ""}, "error")],
            "system_fingerprint": "",
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def generation_record(generation: Generation) -> dict[str, Any]:
    """The /generation `data` object; `latency` is total time, both times in milliseconds."""
    generating_from = generation.first_token_at or generation.finished_at
    return {
        "id": generation.id,
        "upstream_id": None,
        "total_cost": generation.cost,
        "cache_discount": None,
        "upstream_inference_cost": None,
        "created_at": datetime.fromtimestamp(generation.created_at, UTC).isoformat(),
        "model": generation.model,
        "app_id": None,
        "streamed": generation.streamed,
        "cancelled": generation.cancelled,
        "provider_name": PROVIDER_NAME,
        "latency": _ms(generation.finished_at - generation.started_at),
        "moderation_latency": None,
        "generation_time": _ms(generation.finished_at - generating_from),
        "finish_reason": generation.finish_reason,
        "native_finish_reason": generation.finish_reason,
        "tokens_prompt": generation.tokens_prompt,
        "tokens_completion": generation.tokens_completion,
        "native_tokens_prompt": generation.tokens_prompt,
        "native_tokens_completion": generation.tokens_completion,
        "native_tokens_reasoning": generation.tokens_reasoning,
        "native_tokens_cached": 0,
        "usage": generation.cost,
        "is_byok": False,
        "api_type": "completions",
    }
