"""`POST /generate`: the request a client sends and the answer it gets."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

ModelId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class GenerateRequest(BaseModel):
    """A prompt for one model. Unknown fields are rejected so a typo is not silently ignored."""

    # NaN and Infinity: "must be a finite number" rather than a confusing range error.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    prompt: str = Field(description="The user message. Must contain more than whitespace.")
    model: ModelId = Field(description="An upstream model id, e.g. `openai/gpt-4o-mini`.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Completion length limit (default 512)."
    )
    system: str | None = Field(default=None, description="An optional system message.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = Field(default=None, description="Up to 4 stop sequences.")
    # The upstream (and JSON encoders) take 64-bit integers at most.
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stream: bool = Field(default=False, description="Same as `?stream=true`.")

    @field_validator("prompt", "model", "system", "stop")
    @classmethod
    def _encodable(cls, value: str | list[str] | None) -> str | list[str] | None:
        # JSON allows lone UTF-16 surrogates ("\ud800"); UTF-8, and so the upstream, does not.
        for text in [value] if isinstance(value, str) else value or []:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError("contains an unpaired surrogate; send valid Unicode text") from exc
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty or only whitespace")
        return value

    @field_validator("temperature", "top_p", mode="before")
    @classmethod
    def _ints_are_floats(cls, value: object) -> object:
        # Strict mode would refuse `"temperature": 1`; a JSON integer is a fine float.
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None = Field(default=None, description="USD, when the upstream reports it.")


class GenerateResponse(BaseModel):
    """The answer of `POST /generate` (and the `done` event of a stream)."""

    response: str
    tokens_used: int | None = Field(description="Total tokens (prompt + completion).")
    latency_seconds: float = Field(
        description="Time from the gateway receiving the request to having the whole answer."
    )
    model: str | None = Field(description="The model that actually answered.")
    id: str | None = Field(description="The upstream generation id.")
    finish_reason: str | None
    usage: UsageOut | None
    cost: float | None = None
    ttft_seconds: float | None = Field(
        default=None, description="Streams only: time to the first content token."
    )
