"""Read completions, whole or streamed, into one typed result.

Tolerant of everything OpenRouter varies: `choices` may be empty (usage and debug chunks),
usage arrives in a chunk *after* the one with `finish_reason` (with `choices: []` or with a
dummy choice), `content` may be null, and `cost` is present only on some upstreams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_gateway.errors import UpstreamBadResponse


@dataclass(slots=True)  # not frozen: built per call (see SSEEvent)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None = None

    @classmethod
    def parse(cls, data: Any) -> Usage | None:
        if not isinstance(data, dict):
            return None
        prompt = _int(data.get("prompt_tokens"))
        completion = _int(data.get("completion_tokens"))
        total = _int(data.get("total_tokens")) or prompt + completion
        cost = data.get("cost")
        return cls(
            prompt, completion, total, float(cost) if isinstance(cost, int | float) else None
        )


@dataclass(slots=True)  # not frozen: built per call (see SSEEvent)
class Completion:
    """What a completion produced, however it was delivered."""

    id: str | None
    model: str | None
    text: str
    finish_reason: str | None
    usage: Usage | None
    provider: str | None = None
    reasoning: str | None = None
    tool_calls: bool = False  # the answer called tools (its content may be empty)


def _str(value: Any) -> str | None:
    """Strings from the upstream as they are; anything else (a number id, ...) as text."""
    return value if isinstance(value, str) or value is None else str(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _first_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def parse_completion(data: dict[str, Any]) -> Completion:
    """A non-streaming `chat.completion` body (already checked for in-band errors)."""
    choice = _first_choice(data)
    if choice is None:
        raise UpstreamBadResponse("The upstream completion has no choices")
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content") if isinstance(message, dict) else None
    reasoning = message.get("reasoning") if isinstance(message, dict) else None
    return Completion(
        id=_str(data.get("id")),
        model=_str(data.get("model")),
        text=content if isinstance(content, str) else "",
        finish_reason=_str(choice.get("finish_reason")),
        usage=Usage.parse(data.get("usage")),
        provider=_str(data.get("provider")),
        reasoning=reasoning if isinstance(reasoning, str) else None,
        tool_calls=isinstance(message, dict) and bool(message.get("tool_calls")),
    )


@dataclass(slots=True)
class StreamAccumulator:
    """Fold `chat.completion.chunk`s into a Completion; `feed` returns each chunk's new text."""

    id: str | None = None
    model: str | None = None
    provider: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    content_chunks: int = 0
    tool_calls: bool = False
    # The text so far as UTF-8, not a list of the pieces: a piece is a token or two, and as a
    # str object each costs ~50 bytes more than its text (a 1,000-token answer: ~50 KB more per
    # open stream). "surrogatepass": JSON can carry a lone surrogate escape, and it is kept.
    _text: bytearray = field(default_factory=bytearray)
    _reasoning: bytearray = field(default_factory=bytearray)

    def feed(self, chunk: dict[str, Any]) -> tuple[str, str]:
        """Take one chunk; return its (content, reasoning) pieces, either possibly empty."""
        self.id = self.id or _str(chunk.get("id"))
        self.model = self.model or _str(chunk.get("model"))
        self.provider = self.provider or _str(chunk.get("provider"))
        usage = Usage.parse(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choice = _first_choice(chunk)
        if choice is None:
            return "", ""
        # Keep the first finish_reason: the usage chunk after it carries a dummy null one.
        self.finish_reason = self.finish_reason or _str(choice.get("finish_reason"))
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return "", ""
        if delta.get("tool_calls"):
            self.tool_calls = True
        content = delta.get("content")
        reasoning = delta.get("reasoning")
        content = content if isinstance(content, str) else ""
        reasoning = reasoning if isinstance(reasoning, str) else ""
        if content:
            self._text += content.encode("utf-8", "surrogatepass")
            self.content_chunks += 1
        if reasoning:
            self._reasoning += reasoning.encode("utf-8", "surrogatepass")
        return content, reasoning

    def result(self) -> Completion:
        return Completion(
            id=self.id,
            model=self.model,
            text=self._text.decode("utf-8", "surrogatepass"),
            finish_reason=self.finish_reason,
            usage=self.usage,
            provider=self.provider,
            reasoning=self._reasoning.decode("utf-8", "surrogatepass") or None,
            tool_calls=self.tool_calls,
        )
