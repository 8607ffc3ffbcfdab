"""The hot routes (`POST /generate`, `POST /v1/chat/completions`): declared once, served by
the dispatcher, documented from the same models, named truthfully in the log and metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llm_gateway.app import HOT_ROUTES, create_app
from llm_gateway.schemas.generate import GenerateResponse
from tests.conftest import gateway_settings, read_log
from tests.servers import serve

pytestmark = pytest.mark.anyio

CHAT = {"model": "emulator/fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
GENERATE = {"model": "emulator/fast", "prompt": "hi", "max_tokens": 5}


@pytest.mark.parametrize(
    ("path", "code"),
    [("/generate", "method_not_allowed"), ("/v1/chat/completions", "method_not_allowed")],
)
async def test_other_methods_are_a_405_with_allow(gateway: str, path: str, code: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.get(path)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["error"]["code"] == code
    if path.startswith("/v1/"):  # OpenAI's shape under /v1
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_the_log_and_metrics_name_the_code_that_ran(gateway: str, log_file: Path) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert (await client.post("/generate", json=GENERATE)).status_code == 200
        metrics = (await client.get("/metrics")).text
    log = read_log(log_file, waiting_for="handler=generate ")
    assert "POST /v1/chat/completions handler=chat_completions status=200" in log
    assert "POST /generate handler=generate status=200" in log
    assert 'route="/generate",status="200"' in metrics
    assert 'route="/v1/chat/completions",status="200"' in metrics


async def test_every_generate_answer_holds_to_its_schema(gateway: str) -> None:
    """The answer is built without a pydantic object per call; the model still defines it."""
    async with httpx.AsyncClient(base_url=gateway) as client:
        for model in ("emulator/fast", "emulator/reasoning", "emulator/steady:free"):
            body = (await client.post("/generate", json={**GENERATE, "model": model})).json()
            assert "ttft_seconds" not in body
            GenerateResponse.model_validate(body, strict=True)
            async with client.stream(
                "POST", "/generate?stream=true", json={**GENERATE, "model": model}
            ) as stream:
                lines = [line async for line in stream.aiter_lines()]
            done = lines[lines.index("event: done") + 1].removeprefix("data: ")
            answer = GenerateResponse.model_validate_json(done, strict=True)
            # No content yet within 5 tokens (a reasoning model's first tokens): no TTFT.
            assert (answer.ttft_seconds is not None) == bool(answer.response)


async def test_the_openapi_document_describes_the_hot_routes(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    for route in HOT_ROUTES:
        operation = schema["paths"][route.path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{route.request_model.__name__}"}
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].rsplit("/", 1)[1] in components
        assert {"405", "502"} <= set(operation["responses"])
    assert "prompt" in components["GenerateRequest"]["properties"]
    stream = schema["paths"]["/generate"]["post"]["parameters"][0]
    assert (stream["name"], stream["in"]) == ("stream", "query")


async def test_behind_a_path_prefix_the_hot_routes_still_apply(
    emulator_url: str, tmp_path: Path
) -> None:
    # A proxy serves the gateway at /api and strips the prefix; uvicorn's --root-path.
    app = create_app(gateway_settings(emulator_url, tmp_path / "logs"))
    with serve(app, root_path="/api") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            chat = await client.post("/v1/chat/completions", json=CHAT)
            bad = await client.post("/v1/chat/completions", content=b"{")
    assert chat.status_code == 200
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    log = read_log(tmp_path / "logs" / "server_logs.txt", waiting_for="status=400")
    assert "POST /api/v1/chat/completions handler=chat_completions status=200" in log
