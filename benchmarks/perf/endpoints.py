"""The endpoints under test and the requests the harness sends them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PROMPT = "Say hello"
MAX_TOKENS = 64


@dataclass(frozen=True)
class Target:
    """One endpoint under test."""

    key: str  # stable id in the JSON: direct, floor, gateway, gateway_generate, litellm, ...
    label: str
    url: str
    kind: Literal["chat", "generate"]  # OpenAI chat completions, or the gateway's /generate
    headers: dict[str, str] = field(default_factory=dict)


def body_for(target: Target, model: str, *, stream: bool = False) -> dict[str, Any]:
    if target.kind == "generate":
        generate: dict[str, Any] = {"prompt": PROMPT, "model": model, "max_tokens": MAX_TOKENS}
        if stream:
            generate["stream"] = True
        return generate
    chat: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
    }
    if stream:
        chat["stream"] = True
    return chat


def request_for(target: Target, model: str, *, stream: bool, expect: int = 0) -> dict[str, Any]:
    """A request as the Python generator takes it."""
    return {
        "url": target.url,
        "body": body_for(target, model, stream=stream),
        "headers": target.headers,
        "kind": target.kind,
        "stream": stream,
        "expect": expect,
    }
