"""Fast JSON answers (errors have their own renderer, `rendering.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response

_JSON = (b"content-type", b"application/json")


class JSONBytesResponse(Response):
    """JSON already encoded, as a complete answer.

    Starlette's `Response.__init__` builds the headers from a dict, checks the media type for
    a charset and encodes each name and value: the most of the microseconds an answer costs
    past its body, and both hot routes answer with one per call. Here the two fixed headers
    are prebuilt; only what the route adds is encoded.
    """

    media_type = "application/json"

    def __init__(
        self, body: bytes, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [_JSON, (b"content-length", b"%d" % len(body))]
        if headers:
            self.raw_headers += [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ]


def json_response(
    content: BaseModel | Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """orjson-encoded JSON (pydantic models dumped first, None fields kept). Bytes are sent as
    they are: JSON encoded already (an upstream's answer passed on, or a benchmark's
    statistics encoded in a thread because they are big)."""
    if isinstance(content, bytes):
        body = content
    else:
        body = orjson.dumps(
            content.model_dump(mode="json") if isinstance(content, BaseModel) else content
        )
    return JSONBytesResponse(body, status=status, headers=headers)
