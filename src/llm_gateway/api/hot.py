"""The hot routes: each declared once, served by a dict lookup ahead of FastAPI's router.

`POST /v1/chat/completions` and `POST /generate` carry nearly all of a gateway's traffic.
Served through FastAPI's routing they paid, per call, for its route matching, dependency
solving (query parameters and cookies parsed for routes that read neither), a request object
and its exception middleware: measured in-process, a dict lookup costs ~40 us per call where
FastAPI's `APIRoute` costs ~220 us.

A `HotRoute` is the whole declaration of such a route: path, handler, the pydantic models of
its body and answer, its documented errors. `HotRoutes` (the innermost middleware, so the
access log, metrics, keys and body limit apply) serves it: the body read, the handler called,
405 with `Allow` for other methods, errors rendered like every other route's. The OpenAPI
document describes the same declarations (`openapi.py`); there is no second implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.admission import Admission
from llm_gateway.api.error_handlers import NOT_JSON, answer, invalid_request
from llm_gateway.asgi import route_path
from llm_gateway.errors import GatewayError, InvalidJSON, MethodNotAllowed
from llm_gateway.rendering import CarriedError
from llm_gateway.runtime import Runtime

Handler = Callable[[Runtime, bytes, Scope], Awaitable[Response]]
Model = TypeVar("Model", bound=BaseModel)

_FLAG = TypeAdapter(bool)


@dataclass(frozen=True, slots=True)
class QueryFlag:
    """A boolean query parameter a hot route reads (documented in OpenAPI)."""

    name: str
    description: str


@dataclass(frozen=True, slots=True)
class HotRoute:
    """A `POST` route served by `HotRoutes`, and everything its documentation needs.

    `handler(runtime, body, scope)` gets the raw body; the access log and the metrics name the
    route by `path` and the code that ran by the handler's `__name__`.
    """

    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    request_model: type[BaseModel]
    response_model: type[BaseModel]
    error_model: type[BaseModel]
    errors: Mapping[int, str]
    success: str  # what the 200 carries (JSON, and when it streams, the events)
    query: tuple[QueryFlag, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.handler.__name__


class HotRoutes:
    """Serves each `HotRoute`'s path, within `admission`; passes everything else on to `app`."""

    def __init__(self, app: ASGIApp, *, routes: Iterable[HotRoute], admission: Admission) -> None:
        self.app = app
        self.routes = {route.path: route for route in routes}
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(route_path(scope)) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        # What FastAPI's router sets: the access log and metrics name the route and the code.
        scope["route"] = route
        scope["endpoint"] = route.handler
        method: str = scope["method"]
        try:
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed on {route.path}.", allow=("POST",))
            self.admission.enter()  # at once, before the body: a full gateway does no work
        except GatewayError as exc:
            await answer(exc, method=method, path=route.path)(scope, receive, send)
            return
        try:
            try:
                body = await _read_body(receive)
                response = await route.handler(scope["app"].state.runtime, body, scope)
                del body  # not held for as long as a stream lasts (a prompt can be megabytes)
            except ClientDisconnect:
                return  # nobody is left to answer
            except CarriedError as exc:  # the body limit's 413, raised from `receive`
                response = answer(exc.error, method=method, path=route.path)
            except GatewayError as exc:
                response = answer(exc, method=method, path=route.path)
            await response(scope, receive, send)  # a stream counts until it ends
        finally:
            self.admission.leave()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json_body(model: type[Model], body: bytes, scope: Scope) -> Model:
    """`body` validated as `model`: 400 `invalid_json` for a body that is missing, not sent as
    JSON, not JSON (whatever breaks the parser: syntax, nesting, huge numbers) or not an
    object; 422 naming each field that does not validate."""
    if not body:
        raise InvalidJSON('The request needs a JSON body, e.g. {"prompt": "...", "model": "..."}.')
    require_json(scope)
    try:
        # pydantic's own parser: one pass from bytes to the model, with a nesting limit and
        # arbitrary-size integers (so a huge number is a field error, not a crash).
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False)) from None


def require_json(scope: Scope) -> None:
    """400 unless the body is declared JSON. Not a formality: a browser sends `text/plain` or a
    form cross-site without asking first (no CORS preflight), JSON only after asking."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            mime: bytes = value.partition(b";")[0].strip().lower()
            if mime == b"application/json" or (
                mime.startswith(b"application/") and mime.endswith(b"+json")
            ):
                return
            break
    raise InvalidJSON(NOT_JSON)


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
