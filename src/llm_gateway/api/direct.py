"""The hot routes served as plain ASGI, ahead of FastAPI's router.

`POST /v1/chat/completions` and `POST /generate` carry nearly all of a gateway's traffic.
Served through FastAPI they paid, on every call, for its routing, its dependency solving (query
parameters and cookies parsed for routes that read neither), a request object and three more
middleware layers: about half the CPU time of a proxied call (`benchmarks/perf/profile.md`).

`DirectRoutes` is the innermost of the gateway's middleware, so the access log, metrics, CORS,
inbound keys and the body limit apply as before. On a `POST` to one of its paths it reads the
body and calls the same function the FastAPI route calls, and renders errors with the same
functions as the app's exception handlers. FastAPI keeps the routes: they define the OpenAPI
docs and answer other methods (405), and an app without `DirectRoutes` is served by them alone,
which is how the tests hold both paths to the same answers and the perf what-if prices this.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.api.error_handlers import (
    NO_BODY,
    NOT_JSON,
    gateway_error_response,
    http_error_response,
    invalid_json,
    invalid_request,
    not_json,
)
from llm_gateway.asgi import route_path
from llm_gateway.errors import GatewayError
from llm_gateway.runtime import Runtime

Handler = Callable[[Runtime, bytes, Scope], Awaitable[Response]]
Model = TypeVar("Model", bound=BaseModel)

_FLAG = TypeAdapter(bool)


class DirectRoutes:
    """Serves `POST <path>` with `handler` for each `(route, handler)` of `routes`."""

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, tuple[APIRoute, Handler]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        match = self.routes.get(path) if scope.get("method") == "POST" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        route, handler = match
        # What FastAPI's router would have set: the access log and metrics name the route.
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        try:
            raw = await _read_body(receive)
            response = await handler(scope["app"].state.runtime, raw, scope)
        except ClientDisconnect:
            return  # nobody is left to answer
        except GatewayError as exc:
            response = gateway_error_response(exc, method="POST", path=path)
        except HTTPException as exc:  # the body limit's 413, raised from `receive`
            response = http_error_response(exc, method="POST", path=path)
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_body(model: type[Model], raw: bytes, scope: Scope) -> Model:
    """`raw` validated as `model`, as FastAPI would for a JSON body parameter (the same
    content-type rule, the same error messages)."""
    if not raw:
        raise invalid_json(NO_BODY)
    if not _is_json(scope):
        raise invalid_json(NOT_JSON)
    try:
        # The standard library's parser, as FastAPI uses: it takes lone surrogates (`"\ud800"`),
        # so the model's validator can name the field instead of a bare "invalid JSON".
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise not_json(exc.msg) from None
    except UnicodeDecodeError as exc:
        raise not_json(str(exc)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False)) from None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            mime: bytes = value.partition(b";")[0].strip().lower()
            return mime == b"application/json" or (
                mime.startswith(b"application/") and mime.endswith(b"+json")
            )
    return False


def query_flag(scope: Scope, name: str) -> bool:
    """A boolean query parameter (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`), False
    when absent, a 422 naming it when it is none of those."""
    query: bytes = scope["query_string"]
    value: str | None = QueryParams(query).get(name) if query else None
    if value is None:
        return False
    try:
        return bool(_FLAG.validate_python(value))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise invalid_request([{**e, "loc": ("query", name)} for e in errors]) from None
