"""`GET /` and `GET /health`: what this gateway is, and whether it is alive."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from llm_gateway import __version__
from llm_gateway.api.deps import RuntimeDep
from llm_gateway.api.responses import json_response
from llm_gateway.errors import GatewayError, NotReady
from llm_gateway.metrics import CONTENT_TYPE, GatewayMetrics

router = APIRouter(tags=["operations"])
logger = logging.getLogger("llm_gateway.errors")

# A readiness probe must answer quickly even when the upstream hangs.
_READY_TIMEOUT_S = 5.0


@router.get("/health")
async def health(runtime: RuntimeDep) -> Response:
    """Liveness: answers without calling the upstream."""
    return json_response({"status": "ok", "upstream": runtime.upstream})


@router.get("/ready", responses={503: {"description": "Not ready (see the error message)"}})
async def ready(runtime: RuntimeDep) -> Response:
    """Readiness: a key is configured (or the emulator is served) and the upstream answers its
    model list (a free call, cached). 503 with the reason otherwise. With Redis configured
    (GATEWAY_REDIS_URL) and unreachable, 200 with `"status": "degraded"`: the gateway still
    serves (with limits per process), but benchmarks cannot start.

    The probe is public (no key needed), so its answer names the kind of failure only: the
    upstream's own message and the addresses in it go to the log, not to whoever asks."""
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S):
            models = await runtime.catalog.models()
    except (GatewayError, TimeoutError) as exc:
        code = exc.code if isinstance(exc, GatewayError) else "upstream_timeout"
        detail = exc.message if isinstance(exc, GatewayError) else "timed out"
        logger.warning("not ready: the upstream model list failed (%s): %s", code, detail)
        raise NotReady(
            f"The upstream did not answer its model list ({code}); the gateway's log says why."
        ) from None
    shared = runtime.shared.state
    return json_response(
        {
            "status": "degraded" if shared == "degraded" else "ready",
            "upstream": runtime.upstream,
            "models": len(models),
            "shared_state": shared,
        }
    )


# Probes use HEAD as often as GET; the same answers, undocumented twice.
for _path, _probe in (("/health", health), ("/ready", ready)):
    router.add_api_route(_path, _probe, methods=["HEAD"], include_in_schema=False)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, upstream attempts and retries, cache, streams,
    benchmark jobs."""
    registry: GatewayMetrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE)


@router.get("/", include_in_schema=False)
async def index(runtime: RuntimeDep) -> Response:
    """A signpost for someone who opens the gateway's URL."""
    return json_response(
        {
            "service": "llm-gateway",
            "version": __version__,
            "upstream": runtime.upstream,
            "upstream_url": runtime.upstream_url,
            "endpoints": [
                "GET /models",
                "POST /generate",
                "POST /benchmark",
                "GET /benchmarks",
                "GET /v1/models",
                "POST /v1/chat/completions",
                "GET /health",
                "GET /ready",
                "GET /metrics",
                "GET /docs",
            ],
        }
    )
