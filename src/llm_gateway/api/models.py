"""`GET /models`: the upstream's model catalogue, cached."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.responses import Response

from llm_gateway.api.deps import RuntimeDep
from llm_gateway.api.responses import json_response
from llm_gateway.schemas.errors import ErrorResponse
from llm_gateway.schemas.models import ModelDetails
from llm_gateway.upstream.catalog import select

router = APIRouter(tags=["models"])


@router.get(
    "/models",
    response_model=list[str] | list[ModelDetails],
    responses={
        200: {"description": "Model ids; with `details=true`, normalised model objects."},
        502: {"model": ErrorResponse, "description": "The upstream failed and nothing is cached"},
    },
)
async def list_models(
    runtime: RuntimeDep,
    details: bool = Query(
        default=False,
        description="Objects with name, context length, prices per million tokens, free flag.",
    ),
    free: bool = Query(default=False, description="Only free models (`:free` ids, zero price)."),
    q: str | None = Query(default=None, max_length=200, description="Search in ids and names."),
) -> Response:
    """The models the upstream offers, from a cache refreshed every `GATEWAY_MODELS_CACHE_TTL`."""
    models = select(await runtime.catalog.models(), free=free, query=q)
    if details:
        return json_response([m.to_json() for m in models])
    return json_response([m.id for m in models])
