"""The emulated model catalogue: built-in models, their prices, and their /models JSON objects."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from llm_gateway.emulator.config import ModelProfile

Behaviour = Literal["text", "reasoning", "echo"]

FREE_SUFFIX = ":free"
PROVIDER_NAME = "Emulator"

_DEFAULT_PRICES = ("0.0000005", "0.0000015")
_CREATED = 1767225600  # 2026-01-01T00:00:00Z: fixed, so the catalogue is identical on every run
_SLUG_DATE = "20260101"
_COMMON_PARAMETERS = (
    "frequency_penalty",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "presence_penalty",
    "repetition_penalty",
    "seed",
    "stop",
    "temperature",
    "top_k",
    "top_logprobs",
    "top_p",
)
# Every model but echo calls tools and answers in JSON: the tests' default models need to.
_TOOL_PARAMETERS = (
    "parallel_tool_calls",
    "response_format",
    "structured_outputs",
    "tool_choice",
    "tools",
)
_REASONING_PARAMETERS = ("include_reasoning", "reasoning", "reasoning_effort")


@dataclass(frozen=True)
class _Builtin:
    name: str
    profile: ModelProfile
    prompt_price: str
    completion_price: str
    context_length: int
    max_completion_tokens: int
    behaviour: Behaviour
    has_free_variant: bool
    description: str


_BUILTINS: dict[str, _Builtin] = {
    "emulator/fast": _Builtin(
        "Emulator: Fast",
        ModelProfile(ttft_s=0.05, tokens_per_s=400.0, jitter=0.1),
        "0.0000001",
        "0.0000004",
        131072,
        16384,
        "text",
        True,
        "Emulated fast model: 50 ms to first token, 400 tokens/s.",
    ),
    "emulator/steady": _Builtin(
        "Emulator: Steady",
        ModelProfile(ttft_s=0.3, tokens_per_s=60.0, jitter=0.1),
        "0.0000005",
        "0.0000015",
        65536,
        8192,
        "text",
        True,
        "Emulated mid-range model: 300 ms to first token, 60 tokens/s.",
    ),
    "emulator/slow": _Builtin(
        "Emulator: Slow",
        ModelProfile(ttft_s=1.2, tokens_per_s=20.0, jitter=0.1),
        "0.000001",
        "0.000003",
        32768,
        4096,
        "text",
        True,
        "Emulated slow model: 1.2 s to first token, 20 tokens/s.",
    ),
    "emulator/reasoning": _Builtin(
        "Emulator: Reasoning",
        ModelProfile(ttft_s=0.2, tokens_per_s=80.0, jitter=0.1),
        "0.0000008",
        "0.0000024",
        131072,
        32768,
        "reasoning",
        True,
        "Emulated reasoning model: streams its first tokens as `reasoning` before the answer.",
    ),
    "emulator/echo": _Builtin(
        "Emulator: Echo",
        ModelProfile(ttft_s=0.05, tokens_per_s=200.0, jitter=0.1),
        "0.0000001",
        "0.0000001",
        32768,
        32768,
        "echo",
        False,
        "Emulated model that answers with the last user message verbatim (no tools, no JSON mode).",
    ),
    "emulator/instant": _Builtin(
        "Emulator: Instant",
        ModelProfile(ttft_s=0.0, tokens_per_s=math.inf),
        "0.0000001",
        "0.0000001",
        131072,
        16384,
        "text",
        False,
        "Emulated model with zero latency, for measuring a gateway's own overhead.",
    ),
}


@dataclass(frozen=True)
class CatalogEntry:
    """One model id the emulator serves, with everything needed to answer for it."""

    id: str
    canonical_slug: str
    name: str
    description: str
    profile: ModelProfile
    behaviour: Behaviour
    free: bool
    prompt_price: str
    completion_price: str
    context_length: int
    max_completion_tokens: int

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | int:
        """USD cost of a generation; an int 0 for free models, as OpenRouter sends `"cost":0`."""
        if self.free:
            return 0
        return float(
            Decimal(self.prompt_price) * prompt_tokens
            + Decimal(self.completion_price) * completion_tokens
        )

    @property
    def supported_parameters(self) -> tuple[str, ...]:
        """The request parameters this model honours, sorted, as /models lists them."""
        parameters = list(_COMMON_PARAMETERS)
        if self.behaviour != "echo":
            parameters += _TOOL_PARAMETERS
        if self.behaviour == "reasoning":
            parameters += _REASONING_PARAMETERS
        return tuple(sorted(parameters))

    def to_json(self) -> dict[str, Any]:
        """The model object in OpenRouter's 2026 /models shape (keys in the captured order)."""
        return {
            "id": self.id,
            "canonical_slug": self.canonical_slug,
            "hugging_face_id": None,
            "name": self.name,
            "created": _CREATED,
            "description": self.description,
            "context_length": self.context_length,
            "architecture": {
                "modality": "text->text",
                "input_modalities": ["text"],
                "output_modalities": ["text"],
                "tokenizer": "Other",
                "instruct_type": None,
            },
            "pricing": {
                "prompt": "0" if self.free else self.prompt_price,
                "completion": "0" if self.free else self.completion_price,
            },
            "top_provider": {
                "context_length": self.context_length,
                "max_completion_tokens": self.max_completion_tokens,
                "is_moderated": False,
            },
            "per_request_limits": None,
            "supported_parameters": list(self.supported_parameters),
            "default_parameters": {},
            "supported_voices": None,
            "knowledge_cutoff": "2025-06-30",
            "expiration_date": None,
            "links": {"details": f"/api/v1/models/{self.id}/endpoints"},
        }


def _entry(model_id: str, profile: ModelProfile) -> CatalogEntry:
    free = model_id.endswith(FREE_SUFFIX)
    base = model_id.removesuffix(FREE_SUFFIX)
    builtin = _BUILTINS.get(base)
    if builtin is not None:
        name, description = builtin.name, builtin.description
        prices = (builtin.prompt_price, builtin.completion_price)
        context, max_completion = builtin.context_length, builtin.max_completion_tokens
        behaviour = builtin.behaviour
    else:
        slug = base.rsplit("/", 1)[-1]
        name = f"Emulator: {slug.replace('-', ' ').title()}"
        description = f"Emulated model {base}."
        prices, context, max_completion, behaviour = _DEFAULT_PRICES, 65536, 8192, "text"
    return CatalogEntry(
        id=model_id,
        canonical_slug=f"{base}-{_SLUG_DATE}",
        name=f"{name} (free)" if free else name,
        description=description,
        profile=profile,
        behaviour=behaviour,
        free=free,
        prompt_price=prices[0],
        completion_price=prices[1],
        context_length=context,
        max_completion_tokens=max_completion,
    )


def build_catalog(models: dict[str, ModelProfile] | None) -> dict[str, CatalogEntry]:
    """The served models by id, in listing order.

    `None` gives the built-ins, each followed by its ':free' variant where it has one. A dict
    replaces them: exactly those ids are served (an id ending in ':free' is free); ids of built-ins
    keep their behaviour (echo, reasoning) and prices, so tests can retime them.
    """
    if models is None:
        ids: list[tuple[str, ModelProfile]] = []
        for base, builtin in _BUILTINS.items():
            ids.append((base, builtin.profile))
            if builtin.has_free_variant:
                ids.append((base + FREE_SUFFIX, builtin.profile))
    else:
        ids = list(models.items())
    return {model_id: _entry(model_id, profile) for model_id, profile in ids}
