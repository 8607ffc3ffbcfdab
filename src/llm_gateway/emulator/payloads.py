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

from llm_gateway.emulator.answers import Choice, Piece
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


def _logprobs(choice: Choice, pieces: tuple[Piece, ...]) -> dict[str, Any] | None:
    if not choice.logprobs:
        return None
    return {"content": [piece.logprob for piece in pieces if piece.logprob is not None]}


def choice_body(
    choice: Choice, steps: int, finish_reason: str, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A non-streamed choice as far as its first `steps` pieces; `error` makes it the 'error
    inside a choice' form. With tool calls, `content` is null, as OpenAI-style providers send."""
    pieces = choice.pieces[:steps]
    arguments: dict[int, list[str]] = {}
    for piece in pieces:
        if piece.kind == "call":
            arguments[piece.call] = []
        elif piece.kind == "arguments":
            arguments[piece.call].append(piece.text)
    content = "".join(piece.text for piece in pieces if piece.kind == "content")
    reasoning = "".join(piece.text for piece in pieces if piece.kind == "reasoning")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if arguments and not content else content,
        "refusal": None,
        "reasoning": reasoning or None,
    }
    if arguments:
        message["tool_calls"] = [
            {
                "id": choice.calls[number].id,
                "type": "function",
                "function": {"name": choice.calls[number].name, "arguments": "".join(parts)},
            }
            for number, parts in arguments.items()
        ]
    body: dict[str, Any] = {
        "logprobs": _logprobs(choice, pieces),
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "index": choice.index,
        "message": message,
    }
    if error is not None:
        body["error"] = error
    return body


def completion(
    *,
    generation_id: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage: dict[str, Any],
) -> bytes:
    """A non-streaming chat completion of `choice_body` choices."""
    return orjson.dumps(
        {
            "id": generation_id,
            "provider": PROVIDER_NAME,
            "model": model,
            "object": "chat.completion",
            "created": created,
            "choices": choices,
            "system_fingerprint": "",
            "usage": usage,
        }
    )


def error_body(error: dict[str, Any]) -> bytes:
    """A 200 body that is only an error, as OpenRouter sends when a provider fails late."""
    return orjson.dumps({"error": error, "user_id": USER_ID})


def _choice(
    delta: dict[str, Any],
    finish_reason: str | None,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "delta": delta,
        "finish_reason": finish_reason,
        "native_finish_reason": finish_reason,
        "logprobs": logprobs,
    }


def _delta(choice: Choice, piece: Piece) -> dict[str, Any]:
    """A piece as a delta. OpenRouter repeats the role in every delta; tool-call deltas carry
    `content: null`, the first one of a call its id and name, the others argument fragments."""
    if piece.kind == "content":
        return {"role": "assistant", "content": piece.text}
    if piece.kind == "reasoning":
        detail = {"type": "reasoning.text", "text": piece.text, "format": "unknown", "index": 0}
        return {
            "role": "assistant",
            "content": "",
            "reasoning": piece.text,
            "reasoning_details": [detail],
        }
    if piece.kind == "call":
        call = choice.calls[piece.call]
        head = {
            "index": piece.call,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        return {"role": "assistant", "content": None, "tool_calls": [head]}
    fragment = {"index": piece.call, "function": {"arguments": piece.text}, "type": "function"}
    return {"role": "assistant", "content": None, "tool_calls": [fragment]}


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

    def role(self, index: int = 0) -> bytes:
        """The first chunk of a choice: the assistant role with empty content."""
        return self._frame([_choice({"role": "assistant", "content": ""}, None, index)])

    def piece(self, choice: Choice, piece: Piece) -> bytes:
        """One piece of a choice, with its logprobs entry when asked for."""
        logprobs = {"content": [piece.logprob]} if piece.logprob is not None else None
        return self._frame([_choice(_delta(choice, piece), None, choice.index, logprobs)])

    def finish(self, finish_reason: str, index: int = 0) -> bytes:
        """The chunk carrying a choice's finish_reason; usage follows in a separate chunk."""
        return self._frame([_choice({"role": "assistant", "content": ""}, finish_reason, index)])

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
