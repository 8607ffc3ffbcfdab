"""Deterministic completion text: what a model says, how many tokens, and why it stopped.

The output is a pure function of (emulator seed, request seed, model id, messages), seeded
through SHA-256 rather than `hash()`, so it is byte-identical across runs and processes.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from llm_gateway.emulator.catalog import CatalogEntry

FinishReason = Literal["stop", "length"]

VOCABULARY = (
    "the", "model", "answer", "token", "gateway", "stream", "request", "latency", "because",
    "system", "data", "value", "result", "simple", "quick", "careful", "every", "network", "with",
    "about", "should", "could", "would", "often", "rarely", "always", "clear", "small", "large",
    "first", "second", "next", "then", "also", "therefore", "however", "which", "where", "when",
    "after", "before", "during", "through", "across", "under", "over", "between", "each", "other",
    "user", "server", "client", "prompt", "reply", "message", "signal", "pattern", "measure",
    "time", "rate", "limit", "retry", "error", "cache", "queue", "route", "field", "number",
    "text", "word", "line", "list", "table", "report", "chart", "test", "check", "build", "run",
    "is", "are", "was", "be", "has", "have", "makes", "takes", "gives", "shows", "keeps", "moves",
    "a", "an", "this", "that", "these", "those", "it", "they", "we", "you", "of", "to", "in",
    "on", "for", "by", "and", "or", "but", "not", "more", "less", "most", "some", "many", "few",
    "good", "fast", "slow", "steady", "stable", "honest", "useful", "known", "exact", "plain",
)  # fmt: skip

# A token keeps the whitespace in front of it, so joining the tokens restores the text exactly.
_ECHO_TOKEN = re.compile(r"\s*\S+|\s+")
_MAX_REASONING_TOKENS = 16
_PER_MESSAGE_TOKENS = 3


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a generation will say: `tokens[:reasoning_tokens]` are reasoning, the rest
    content. `completion_tokens` counts both, as OpenAI and OpenRouter do."""

    tokens: tuple[str, ...]
    reasoning_tokens: int
    finish_reason: FinishReason
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        """Length of the completion in tokens."""
        return len(self.tokens)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A stable prompt-size estimate: a token per 4 characters, plus 3 per message."""
    chars = sum(len(_content_text(message.get("content"))) for message in messages)
    return -(-chars // 4) + _PER_MESSAGE_TOKENS * len(messages)


def _rng(
    seed: int, request_seed: int | None, model: str, messages: list[dict[str, Any]]
) -> random.Random:
    material = b"|".join(
        (
            str(seed).encode(),
            str(request_seed).encode(),
            model.encode(),
            orjson.dumps(messages, option=orjson.OPT_SORT_KEYS),
        )
    )
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))


def _sentences(rng: random.Random, count: int) -> list[str]:
    """`count` words as tokens forming capitalised sentences, the first without leading space."""
    tokens = rng.choices(VOCABULARY, k=count)
    start = 0
    while start < count:
        end = min(start + rng.randint(5, 14), count)
        tokens[start] = tokens[start].capitalize()
        tokens[end - 1] += "."
        start = end
    for index in range(1, count):
        tokens[index] = " " + tokens[index]
    return tokens


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """Text of the last user message (or of the last message when no user spoke)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return _content_text(messages[-1].get("content"))


def plan(
    entry: CatalogEntry,
    messages: list[dict[str, Any]],
    *,
    seed: int,
    request_seed: int | None,
    max_tokens: int | None,
) -> Plan:
    """Decide the completion for one request (see the module docstring for what it depends on)."""
    reasoning = 0
    if entry.behaviour == "echo":
        tokens = _ECHO_TOKEN.findall(last_user_text(messages))
    else:
        rng = _rng(seed, request_seed, entry.id, messages)
        count = rng.randint(*entry.profile.output_tokens)
        if entry.behaviour == "reasoning":
            # Reasoning comes first and counts against max_tokens, as with real reasoning models.
            reasoning = min(_MAX_REASONING_TOKENS, count // 3)
            tokens = _sentences(rng, reasoning) + _sentences(rng, count - reasoning)
        else:
            tokens = _sentences(rng, count)
    finish: FinishReason = "stop"
    if max_tokens is not None and max_tokens < len(tokens):
        tokens = tokens[:max_tokens]
        reasoning = min(reasoning, max_tokens)
        finish = "length"
    return Plan(tuple(tokens), reasoning, finish, prompt_tokens(messages))
