"""Dependencies shared by the routes: the runtime built in the app's lifespan."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from llm_gateway.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
