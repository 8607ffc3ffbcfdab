"""No secret leaves the process, whatever the upstream says.

A misconfigured or hostile upstream echoes what it was sent: this one puts the request's
`Authorization` header (the gateway's upstream key) and the inbound key it may have been sent
into every error message, every stream event and its answers. None of it may reach a client
(answers, stream events, the public probe), a run file, a report or the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import TEST_KEY, GatewayFactory, read_log
from tests.servers import serve

pytestmark = pytest.mark.anyio

INBOUND = "inbound-client-key-9d2f61"
AUTH = {"Authorization": f"Bearer {INBOUND}"}


def _echo(request: Request) -> str:
    return f"bad header Authorization: {request.headers.get('authorization')} (key {TEST_KEY})"


async def _chat(request: Request) -> Response:
    body = orjson.loads(await request.body())
    mode = body["messages"][0]["content"]
    if mode == "error":
        error = {"error": {"message": _echo(request), "code": 400}}
        return Response(orjson.dumps(error), status_code=400, media_type="application/json")
    if mode == "echo":  # a 200 whose content repeats the secret
        text = f"your key is {TEST_KEY}"
        answer = {
            "id": "gen-1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
        }
        if not body.get("stream"):
            return Response(orjson.dumps(answer), media_type="application/json")

    async def events() -> AsyncIterator[bytes]:
        chunk = {"choices": [{"index": 0, "delta": {"content": "hello "}}]}
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        if mode == "echo":
            echoed = {"choices": [{"index": 0, "delta": {"content": f"key {TEST_KEY}"}}]}
            yield b"data: " + orjson.dumps(echoed) + b"\n\n"
            finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield b"data: " + orjson.dumps(finish) + b"\n\ndata: [DONE]\n\n"
            return
        failure = {"error": {"message": _echo(request), "code": 502}}
        yield b"data: " + orjson.dumps(failure) + b"\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _models(request: Request) -> Response:
    error = {"error": {"message": _echo(request), "code": 500}}
    return Response(orjson.dumps(error), status_code=500, media_type="application/json")


@pytest.fixture
def echoing_upstream() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/chat/completions", _chat, methods=["POST"]),
            Route("/models", _models, methods=["GET"]),
        ]
    )
    with serve(app) as url:
        yield url


def _assert_clean(text: str) -> None:
    assert TEST_KEY not in text
    assert INBOUND not in text


async def test_echoed_secrets_never_reach_a_client_a_file_or_the_log(
    start_gateway: GatewayFactory, echoing_upstream: str, log_file: Path, tmp_path: Path
) -> None:
    settings = {
        "upstream_url": echoing_upstream,
        "api_keys": INBOUND,
        "retry_attempts": 1,
        "benchmarks_dir": tmp_path / "runs",
    }
    generate = {"model": "m", "max_tokens": 5}
    chat = {"model": "m", "max_tokens": 5}
    with start_gateway(**settings) as gateway:
        async with httpx.AsyncClient(base_url=gateway, headers=AUTH, timeout=20) as client:
            answers = [
                await client.post("/generate", json={**generate, "prompt": "error"}),
                await client.post("/generate", json={**generate, "prompt": "echo"}),
                await client.post("/generate?stream=true", json={**generate, "prompt": "midway"}),
                await client.post("/generate?stream=true", json={**generate, "prompt": "echo"}),
            ]
            for mode in ("error", "echo"):
                for stream in (False, True):
                    messages = [{"role": "user", "content": mode}]
                    body = {**chat, "messages": messages, "stream": stream}
                    answers.append(await client.post("/v1/chat/completions", json=body))
            body = {**chat, "messages": [{"role": "user", "content": "midway"}], "stream": True}
            answers.append(await client.post("/v1/chat/completions", json=body))
            ready = await client.get("/ready", headers={"Authorization": ""})
            files = {"prompt_file": ("p.txt", b"error\nmidway\necho\n", "text/plain")}
            bench = await client.post(
                "/benchmark", files=files, data={"model": "m", "runs": "1", "max_tokens": "5"}
            )
            run_id = bench.json()["run_id"]
            report = await client.get(f"/benchmarks/{run_id}/report")
            csv = await client.get(f"/benchmarks/{run_id}/results.csv")
    # What the upstream said still gets through, scrubbed: the client can tell what happened.
    assert answers[0].status_code == 400 and "Authorization: Bearer ***" in answers[0].text
    assert "event: error" in answers[2].text
    assert "your key is ***" in answers[1].text
    for answer in [*answers, bench, report, csv]:
        _assert_clean(answer.text)
    # The probe is public: it says what kind of failure, not the upstream's words or addresses.
    assert ready.status_code == 503
    assert "upstream_server_error" in ready.text and "bad header" not in ready.text
    for path in (tmp_path / "runs" / run_id).iterdir():
        _assert_clean(path.read_text())
    _assert_clean(read_log(log_file, waiting_for="POST /benchmark"))
