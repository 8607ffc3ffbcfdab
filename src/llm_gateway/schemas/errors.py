"""The one error shape every gateway route answers with."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    status: int
    request_id: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
