"""The OpenAPI document: FastAPI's, plus the hot routes described from their declarations.

The hot routes are served by `hot.HotRoutes`, not by FastAPI, so FastAPI does not know them;
`install` overrides `app.openapi` (FastAPI's documented way to extend the schema) to add an
operation for each `HotRoute`, generated from the same pydantic models that validate its body
and define its answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from llm_gateway.api.hot import HotRoute

_REF = "#/components/schemas/{model}"


def install(app: FastAPI, routes: Sequence[HotRoute]) -> None:
    fastapis = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _add(fastapis(), routes)  # FastAPI's builds and caches the document; extended here
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add(schema: dict[str, Any], routes: Sequence[HotRoute]) -> None:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for route in routes:
        models += [
            (route.request_model, "validation"),
            (route.response_model, "serialization"),
            (route.error_model, "serialization"),
        ]
    refs, definitions = models_json_schema(models, ref_template=_REF)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault(name, definition)
    paths = schema.setdefault("paths", {})
    for route in routes:
        paths.setdefault(route.path, {})["post"] = _operation(route, refs)


def _operation(route: HotRoute, refs: Mapping[tuple[Any, JsonSchemaMode], Any]) -> dict[str, Any]:
    error = {"application/json": {"schema": refs[(route.error_model, "serialization")]}}
    responses: dict[str, Any] = {
        "200": {
            "description": route.success,
            "content": {
                "application/json": {"schema": refs[(route.response_model, "serialization")]},
                "text/event-stream": {},
            },
        }
    }
    for status, description in sorted(route.errors.items()):
        responses[str(status)] = {"description": description, "content": error}
    operation: dict[str, Any] = {
        "tags": list(route.tags),
        "summary": route.summary,
        "operationId": route.name,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": refs[(route.request_model, "validation")]}},
        },
        "responses": responses,
    }
    if route.query:
        operation["parameters"] = [
            {
                "name": flag.name,
                "in": "query",
                "required": False,
                "description": flag.description,
                "schema": {"type": "boolean", "default": False},
            }
            for flag in route.query
        ]
    return operation
