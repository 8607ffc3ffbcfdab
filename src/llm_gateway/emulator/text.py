"""Deterministic text: a model's plain reply, the seeded generators behind it, prompt sizes.

Everything drawn for a request is a pure function of (emulator seed, request seed, model id,
messages), seeded through SHA-256 rather than `hash()`, so it is byte-identical across runs and
processes.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

import orjson

from llm_gateway.emulator.catalog import CatalogEntry

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


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
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
    chars = sum(len(content_text(message.get("content"))) for message in messages)
    return -(-chars // 4) + _PER_MESSAGE_TOKENS * len(messages)


def seeded(
    seed: int,
    request_seed: int | None,
    model: str,
    messages: list[dict[str, Any]],
    salt: str = "",
) -> random.Random:
    """The generator of one request's choices; `salt` tells apart what else is drawn for it (the
    other choices, logprobs) while the unsalted one keeps the first choice's text stable."""
    parts = [
        str(seed).encode(),
        str(request_seed).encode(),
        model.encode(),
        orjson.dumps(messages, option=orjson.OPT_SORT_KEYS),
    ]
    if salt:
        parts.append(salt.encode())
    material = b"|".join(parts)
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
            return content_text(message.get("content"))
    return content_text(messages[-1].get("content"))


def draft(
    entry: CatalogEntry, messages: list[dict[str, Any]], rng: random.Random
) -> tuple[list[str], int]:
    """A plain reply as tokens, and how many of them (at the start) are reasoning."""
    if entry.behaviour == "echo":
        return _ECHO_TOKEN.findall(last_user_text(messages)), 0
    count = rng.randint(*entry.profile.output_tokens)
    if entry.behaviour != "reasoning":
        return _sentences(rng, count), 0
    # Reasoning comes first and counts against max_tokens, as with real reasoning models.
    reasoning = min(_MAX_REASONING_TOKENS, count // 3)
    return _sentences(rng, reasoning) + _sentences(rng, count - reasoning), reasoning
