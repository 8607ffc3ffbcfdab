"""Fast JSON answers (errors have their own renderer, `rendering.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response


def json_response(
    content: BaseModel | Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """orjson-encoded JSON (pydantic models dumped first, None fields kept). Bytes are sent as
    they are: JSON encoded already, in a thread when it is big (a benchmark's statistics)."""
    if isinstance(content, bytes):
        body = content
    else:
        body = orjson.dumps(
            content.model_dump(mode="json") if isinstance(content, BaseModel) else content
        )
    return Response(body, status_code=status, headers=headers, media_type="application/json")
