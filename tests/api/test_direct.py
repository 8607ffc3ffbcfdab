"""The hot routes have two implementations of their plumbing: `DirectRoutes` serves them in the
gateway as built, FastAPI's routes (which define the docs) serve them in an app without it.
Both must answer alike, errors included; and the direct path must still apply behind a proxy
that mounts the gateway under a prefix (`root_path`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from llm_gateway.api.direct import DirectRoutes
from llm_gateway.app import create_app
from llm_gateway.emulator import Emulator
from tests.conftest import gateway_settings, read_log
from tests.servers import serve

pytestmark = pytest.mark.anyio

CHAT = {"model": "emulator/fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
GENERATE = {"model": "emulator/fast", "prompt": "hi", "max_tokens": 5}


def _app(emulator_url: str, log_dir: Path, *, direct: bool) -> FastAPI:
    app = create_app(gateway_settings(emulator_url, log_dir))
    if not direct:
        # Starlette builds the middleware stack on the first request: the list can still change.
        app.user_middleware = [m for m in app.user_middleware if m.cls is not DirectRoutes]
    return app


@pytest.fixture
def fastapi_only(emulator_url: str, tmp_path: Path) -> Iterator[str]:
    with serve(_app(emulator_url, tmp_path / "logs", direct=False)) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/generate", b'{"prompt": "x",}', "application/json"),
        ("/generate", b"[1, 2]", "application/json"),
        ("/generate", b'"just a string"', "application/json"),
        ("/generate", b"", "application/json"),
        ("/generate", b"prompt=hi", "text/plain"),
        ("/generate", b'{"prompt": "hi", "model": "emulator/fast", "temperature": 9}', None),
        ("/generate", b'{"prompt": "hi \\ud800", "model": "emulator/fast"}', None),
        ("/generate?stream=maybe", b'{"prompt": "hi", "model": "emulator/fast"}', None),
        ("/v1/chat/completions", b"{", None),
        ("/v1/chat/completions", b'{"model": "emulator/fast"}', None),
    ],
)
async def test_bad_requests_get_the_same_answer_on_both_paths(
    gateway: str,
    fastapi_only: str,
    emulator: Emulator,
    path: str,
    body: bytes,
    content_type: str | None,
) -> None:
    headers = {"content-type": content_type or "application/json", "x-request-id": "same-id"}
    async with httpx.AsyncClient() as client:
        direct = await client.post(gateway + path, content=body, headers=headers)
        routed = await client.post(fastapi_only + path, content=body, headers=headers)
    assert 400 <= direct.status_code < 500
    assert (routed.status_code, routed.json()) == (direct.status_code, direct.json())
    assert emulator.chat_records() == []


async def test_answers_and_log_lines_match_on_both_paths(
    gateway: str, fastapi_only: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as client:
        for base in (gateway, fastapi_only):
            chat = await client.post(base + "/v1/chat/completions", json=CHAT)
            assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
            generated = await client.post(base + "/generate", json=GENERATE)
            assert generated.status_code == 200 and generated.json()["response"]
            async with client.stream("POST", base + "/generate?stream=true", json=GENERATE) as s:
                assert s.headers["content-type"].startswith("text/event-stream")
                assert "event: done" in "".join([line async for line in s.aiter_lines()])
    log = read_log(tmp_path / "logs" / "server_logs.txt", waiting_for="handler=generate_text")
    # Both apps log to the same file, and both name the route's handler.
    assert log.count("POST /v1/chat/completions handler=chat_completions status=200") == 2
    assert log.count("POST /generate handler=generate_text status=200") == 2
    assert log.count("POST /generate?stream=true handler=generate_text status=200") == 2


async def test_behind_a_path_prefix_the_direct_routes_still_apply(
    emulator_url: str, tmp_path: Path
) -> None:
    # A proxy serves the gateway at /api and strips the prefix; uvicorn's --root-path.
    app = _app(emulator_url, tmp_path / "logs", direct=True)
    with serve(app, root_path="/api") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            chat = await client.post("/v1/chat/completions", json=CHAT)
            bad = await client.post("/v1/chat/completions", content=b"{")
    assert chat.status_code == 200
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    log = read_log(tmp_path / "logs" / "server_logs.txt", waiting_for="status=400")
    assert "POST /api/v1/chat/completions handler=chat_completions status=200" in log
