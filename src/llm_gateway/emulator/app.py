"""The `Emulator`: routes, the read-only OpenRouter endpoints, and the control routes.

>>> emulator = Emulator(EmulatorConfig(time_scale=0.05))
>>> emulator.script(["429", "ok"], model="emulator/fast")   # next two requests to that model
>>> app = emulator.app                                       # serve with uvicorn; /api/v1/...
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_gateway.emulator import errors, payloads
from llm_gateway.emulator.catalog import build_catalog
from llm_gateway.emulator.chat import CHAT_PATH, ChatEndpoint
from llm_gateway.emulator.config import EmulatorConfig
from llm_gateway.emulator.faults import parse_steps
from llm_gateway.emulator.replies import (
    RecordedResponse,
    bearer_token,
    error_reply,
    json_reply,
)
from llm_gateway.emulator.state import (
    FaultBook,
    FreeTierWindow,
    GenerationStore,
    Recorder,
    RequestRecord,
)

API_PREFIX = "/api/v1"
_KEY_LABEL = "sk-or-v1-emu...tor"


class Emulator:
    """An OpenRouter look-alike for tests, offline use and benchmarks with a known ground truth.

    `app` is the Starlette application (`app.state.emulator` is this object); `records` lists
    the API requests in arrival order, the oldest dropped past `config.records_max_bytes`.
    Faults come, first match wins, from the `X-Emulator-Faults` header, then from `script()`,
    then from `config.free_rpm`.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.catalog = build_catalog(self.config.models)
        self._recorder = Recorder(self.config)
        self.records: list[RequestRecord] = self._recorder.records
        self._faults = FaultBook()
        self._free_window = FreeTierWindow()
        self._generations = GenerationStore(lambda: self.config.generation_lag_s)
        self._chat = ChatEndpoint(
            config=self.config,
            catalog=self.catalog,
            recorder=self._recorder,
            faults=self._faults,
            free_window=self._free_window,
            generations=self._generations,
        )
        models = [entry.to_json() for entry in self.catalog.values()]
        self._models_body = orjson.dumps(
            {"data": models, "total_count": len(models), "links": {"next": None}}
        )
        self.app = Starlette(
            routes=[
                Route("/", self._root, methods=["GET"]),
                Route(f"{API_PREFIX}/models", self._models, methods=["GET"]),
                Route(CHAT_PATH, self._chat.handle, methods=["POST"]),
                Route(f"{API_PREFIX}/generation", self._generation, methods=["GET"]),
                Route(f"{API_PREFIX}/key", self._key, methods=["GET"]),
                Route(f"{API_PREFIX}/auth/key", self._key, methods=["GET"]),
                Route("/_emulator/requests", self._control_requests, methods=["GET"]),
                Route("/_emulator/reset", self._control_reset, methods=["POST"]),
                Route("/_emulator/faults", self._control_faults, methods=["POST"]),
            ],
            exception_handlers={404: self._no_route, 405: self._no_route},
        )
        self.app.state.emulator = self

    def script(self, faults: list[str], model: str | None = None) -> None:
        """Queue fault steps: each following chat request (to `model`, or to any model when None)
        takes the next step; an empty queue means normal answers. An empty `faults` empties the
        queue of `model` (every queue when None). Raises ValueError on an unknown step or model."""
        parsed = parse_steps(faults)
        if model is not None and model not in self.catalog:
            raise ValueError(f"unknown model {model!r}; served: {', '.join(self.catalog)}")
        self._faults.script(parsed, model)

    def reset(self) -> None:
        """Forget records, queues, rate windows, header counters and generations."""
        self._recorder.clear()
        self._faults.clear()
        self._free_window.clear()
        self._generations.clear()
        self._chat.reset()

    def chat_records(self, model: str | None = None) -> list[RequestRecord]:
        """Records of POST /chat/completions, optionally only those for `model`."""
        return [
            record
            for record in list(self.records)
            if record.path == CHAT_PATH and (model is None or record.model == model)
        ]

    def _authorize(self, request: Request, path: str) -> tuple[RequestRecord, Response | None]:
        token = bearer_token(request)
        record = self._recorder.open(request.method, path, authorized=token is not None)
        if token is None:
            return record, error_reply(record, errors.no_credentials())
        if self.config.api_key is not None and token != self.config.api_key:
            return record, error_reply(record, errors.user_not_found())
        return record, None

    async def _root(self, _request: Request) -> Response:
        return json_reply(
            None,
            {
                "service": "llm-gateway OpenRouter emulator",
                "note": "This is a local emulator of the OpenRouter API, not OpenRouter.",
                "base_url": API_PREFIX,
                "models": list(self.catalog),
                "control": ["/_emulator/requests", "/_emulator/reset", "/_emulator/faults"],
            },
        )

    async def _models(self, request: Request) -> Response:
        path = f"{API_PREFIX}/models"
        record = self._recorder.open("GET", path, authorized=bearer_token(request) is not None)
        return RecordedResponse(record, self._models_body)

    async def _generation(self, request: Request) -> Response:
        record, denied = self._authorize(request, f"{API_PREFIX}/generation")
        if denied is not None:
            return denied
        generation_id = request.query_params.get("id")
        if not generation_id:
            return error_reply(record, errors.bad_request("Missing required parameter: id"))
        generation = self._generations.visible(generation_id)
        if generation is None:
            return error_reply(record, errors.generation_not_found(generation_id))
        return json_reply(record, {"data": payloads.generation_record(generation)})

    async def _key(self, request: Request) -> Response:
        record, denied = self._authorize(request, request.url.path)
        if denied is not None:
            return denied
        spent = self._generations.total_cost()
        data = {
            "label": _KEY_LABEL,
            "limit": None,
            "limit_remaining": None,
            "limit_reset": None,
            "include_byok_in_limit": False,
            "usage": spent,
            "usage_daily": spent,
            "usage_weekly": spent,
            "usage_monthly": spent,
            "byok_usage": 0,
            "is_free_tier": True,
            "is_management_key": False,
            "is_provisioning_key": False,
            "creator_user_id": errors.USER_ID,
            "expires_at": None,
            "rate_limit": {
                "requests": -1,
                "interval": "10s",
                "note": "This field is deprecated and safe to ignore.",
            },
        }
        return json_reply(record, {"data": data})

    async def _no_route(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        record = None
        if request.url.path.startswith(API_PREFIX):
            token = bearer_token(request)
            record = self._recorder.open(request.method, request.url.path, authorized=bool(token))
        message = "Not Found" if status == 404 else "Method Not Allowed"
        return error_reply(record, errors.plain_error(status, message))

    async def _control_requests(self, _request: Request) -> Response:
        return RecordedResponse(None, orjson.dumps(list(self.records)))

    async def _control_reset(self, _request: Request) -> Response:
        self.reset()
        return json_reply(None, {"reset": True})

    async def _control_faults(self, request: Request) -> Response:
        try:
            body: Any = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        faults = body.get("faults") if isinstance(body, dict) else None
        model = body.get("model") if isinstance(body, dict) else None
        if not (isinstance(faults, list) and all(isinstance(step, str) for step in faults)):
            message = 'expected JSON {"faults": ["429", "ok", ...], "model": "<id>" | null}'
            return error_reply(None, errors.plain_error(400, message))
        if model is not None and not isinstance(model, str):
            return error_reply(None, errors.plain_error(400, "model must be a string or null"))
        try:
            self.script(faults, model)
        except ValueError as exc:
            return error_reply(None, errors.plain_error(400, str(exc)))
        return json_reply(None, {"queued": len(faults), "model": model})


def create_emulator_app(config: EmulatorConfig | None = None) -> Starlette:
    """A new emulator's ASGI app; the `Emulator` is at `app.state.emulator`."""
    return Emulator(config).app
