"""Shapes of the OpenAI-compatible `/v1` routes, for the OpenAPI docs.

The chat route forwards bodies untouched, so these models document the wire format; they are
never used to validate or re-serialise a chat request or answer (that would drop the fields
OpenRouter adds). They are kept flat (no nested models) so their JSON schema can be inlined.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIModel(BaseModel):
    """One entry of `GET /v1/models`."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the upstream lists for the model, else 0.")
    owned_by: str = Field(description="The vendor part of the id (before `/`).")


class OpenAIModelList(BaseModel):
    """`GET /v1/models`: OpenAI's list envelope."""

    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class ChatCompletionRequest(BaseModel):
    """A Chat Completions request. Only the fields below are checked; every field, these and
    any other (`tools`, `response_format`, OpenRouter's `models`, `provider`, `reasoning`,
    `plugins`, `usage`, ...), is forwarded to the upstream exactly as sent."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "model": "openai/gpt-4o-mini",
                "messages": [{"role": "user", "content": "Say hi"}],
                "max_tokens": 64,
                "stream": False,
                "provider": {"sort": "latency"},
            }
        },
    )

    model: str = Field(min_length=1, description="The upstream model id.")
    messages: list[dict[str, Any]] = Field(min_length=1, description="The conversation.")
    stream: bool = Field(default=False, description="Answer as Server-Sent Events.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="At most `GATEWAY_MAX_TOKENS_LIMIT`."
    )
    max_completion_tokens: int | None = Field(
        default=None, ge=1, description="At most `GATEWAY_MAX_TOKENS_LIMIT`."
    )


class ChatCompletion(BaseModel):
    """A `chat.completion` as the upstream sent it (OpenRouter adds `provider`, `usage.cost`,
    `native_finish_reason`, ...; all of it is passed on)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="OpenAI's error type, e.g. `rate_limit_error`, `api_error`.")
    param: str | None = None
    code: str | None = Field(description="The gateway's stable code, e.g. `upstream_timeout`.")


class OpenAIErrorResponse(BaseModel):
    """Every error under `/v1`, in OpenAI's shape so OpenAI SDKs raise their usual classes."""

    error: OpenAIErrorDetail
