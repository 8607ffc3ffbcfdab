"""`GET /models?details=true`: the normalised model objects (documentation of the answer)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Pricing(BaseModel):
    prompt_per_million: float | None = Field(description="USD per million prompt tokens.")
    completion_per_million: float | None = Field(
        description="USD per million completion tokens (null: dynamic, e.g. router models)."
    )


class ModelDetails(BaseModel):
    id: str
    name: str
    context_length: int | None
    pricing: Pricing
    free: bool
    supported_parameters: list[str]
    created: int | None
