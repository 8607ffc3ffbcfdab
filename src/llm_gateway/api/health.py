"""`GET /` and `GET /health`: what this gateway is, and whether it is alive."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from llm_gateway import __version__
from llm_gateway.api.deps import RuntimeDep
from llm_gateway.api.responses import json_response

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(runtime: RuntimeDep) -> Response:
    """Liveness: answers without calling the upstream."""
    return json_response({"status": "ok", "upstream": runtime.upstream})


@router.get("/", include_in_schema=False)
async def index(runtime: RuntimeDep) -> Response:
    """A signpost for someone who opens the gateway's URL."""
    return json_response(
        {
            "service": "llm-gateway",
            "version": __version__,
            "upstream": runtime.upstream,
            "upstream_url": runtime.upstream_url,
            "endpoints": ["GET /models", "POST /generate", "GET /health", "GET /docs"],
        }
    )
