"""Nothing a client sends produces a 500: every bad input is a 4xx that says what to fix."""

from __future__ import annotations

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import GatewayFactory

pytestmark = pytest.mark.anyio

GOOD = {"prompt": "hello", "model": "emulator/fast"}


@pytest.mark.parametrize(
    ("content", "headers", "mentions"),
    [
        (b"{", {"content-type": "application/json"}, "not valid JSON"),
        (b'{"prompt": "x",}', {"content-type": "application/json"}, "not valid JSON"),
        (b"[1, 2]", {"content-type": "application/json"}, "JSON object"),
        (b"", {"content-type": "application/json"}, "JSON body"),
        (b"prompt=hi", {"content-type": "text/plain"}, "application/json"),
    ],
)
async def test_bodies_that_are_not_a_json_object(
    gateway: str, emulator: Emulator, content: bytes, headers: dict[str, str], mentions: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.post("/generate", content=content, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert mentions in error["message"]
    assert emulator.chat_records() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": None}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": 123}, "prompt"),
        ({"prompt": ["a"]}, "prompt"),
        ({"model": ""}, "model"),
        ({"model": 5}, "model"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": "12"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_token": 10}, "max_token"),
        ({"seed": 2**64}, "seed"),  # found by the fuzz: used to pass, then fail to encode (500)
    ],
)
async def test_invalid_fields_are_named_in_the_message(
    gateway: str, emulator: Emulator, change: dict[str, object], field: str
) -> None:
    body = {**GOOD, **change}
    if change.get("prompt", "") is None:
        del body["prompt"]
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.post("/generate", json=body)
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"]
    assert emulator.chat_records() == []


async def test_a_number_sent_as_a_string_says_so(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.post("/generate", json={**GOOD, "max_tokens": "100"})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "max_tokens" in message and "not a string" in message and "without quotes" in message


@pytest.mark.parametrize("field", ["prompt", "system", "model"])
async def test_unpaired_surrogates_are_refused(
    gateway: str, emulator: Emulator, field: str
) -> None:
    # Valid JSON, but not valid Unicode: it could never be encoded for the upstream.
    body = b'{"prompt": "hi", "model": "emulator/fast", "%s": "x \\ud800 y"}' % field.encode()
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.post(
            "/generate", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and "send valid Unicode text" in error["message"]
    assert emulator.chat_records() == []


async def test_a_bad_stream_flag_is_a_422(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.post("/generate", params={"stream": "maybe"}, json=GOOD)
    assert response.status_code == 422
    assert "stream" in response.json()["error"]["message"]


async def test_a_prompt_over_the_limit_is_refused(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    with start_gateway(max_prompt_chars=10) as gateway, httpx.Client(base_url=gateway) as client:
        long_prompt = client.post("/generate", json={**GOOD, "prompt": "x" * 11})
        long_system = client.post("/generate", json={**GOOD, "prompt": "x", "system": "y" * 10})
        chat = {"model": "emulator/fast", "messages": [{"role": "user", "content": "z" * 11}]}
        long_messages = client.post("/v1/chat/completions", json=chat)
    for response in (long_prompt, long_system):
        assert response.status_code == 422
        assert "the limit is 10" in response.json()["error"]["message"]
    assert long_messages.status_code == 400
    assert "the limit is 10" in long_messages.json()["error"]["message"]
    assert emulator.chat_records() == []


DEEP = b'{"prompt": "hi", "model": "emulator/fast", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE = b'{"prompt": "hi", "model": "emulator/fast", "seed": ' + b"9" * 5000 + b"}"


@pytest.mark.parametrize("body", [DEEP, HUGE], ids=["deeply-nested", "5000-digit-integer"])
@pytest.mark.parametrize("path", ["/generate", "/generate?stream=true", "/v1/chat/completions"])
async def test_bodies_the_parser_cannot_take_are_400s(
    gateway: str, emulator: Emulator, body: bytes, path: str
) -> None:
    """Found by review: these were a RecursionError and a ValueError (500 and a traceback)."""
    if path.startswith("/v1"):
        body = body.replace(b'"prompt": "hi"', b'"messages": [{"role": "user", "content": "hi"}]')
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert emulator.chat_records() == []
