"""The OpenAI-compatible routes over plain HTTP: passthrough, SSE framing, errors, cancellation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_gateway.emulator import Emulator
from tests.conftest import TEST_KEY, GatewayFactory, read_log
from tests.servers import serve
from tests.sse import cancelled_record, leave_after_first_event

pytestmark = pytest.mark.anyio

CHAT = {"model": "emulator/fast", "messages": [{"role": "user", "content": "Say hi"}]}


async def _post(gateway: str, body: Any, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway, timeout=20) as client:
        if isinstance(body, bytes):
            return await client.post("/v1/chat/completions", content=body, **kwargs)
        return await client.post("/v1/chat/completions", json=body, **kwargs)


def _events(text: str) -> list[str]:
    """The SSE events of a body, each checked to be one `data:` line or one comment line."""
    assert text.endswith("\n\n")
    blocks = text[:-2].split("\n\n")
    for block in blocks:
        assert "\n" not in block, block
        assert block.startswith(("data: ", ": ")), block
    return blocks


def _data(events: list[str]) -> list[Any]:
    return [json.loads(e[6:]) for e in events if e.startswith("data: ") and e != "data: [DONE]"]


def _assert_openai_error(response: httpx.Response, status: int, kind: str, code: str) -> str:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["X-Request-ID"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (kind, code)
    assert error["message"]
    assert TEST_KEY not in response.text
    return str(error["message"])


async def test_models_are_listed_in_openai_shape(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        listed = (await client.get("/v1/models")).json()
        plain = (await client.get("/models")).json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == plain
    fast = next(m for m in listed["data"] if m["id"] == "emulator/fast")
    assert set(fast) == {"id", "object", "created", "owned_by"}
    assert (fast["object"], fast["owned_by"]) == ("model", "emulator")
    assert isinstance(fast["created"], int)


async def test_the_upstream_answer_comes_back_byte_for_byte(
    gateway: str, emulator: Emulator
) -> None:
    response = await _post(gateway, CHAT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["X-Upstream-Attempts"] == "1"
    assert response.headers["X-Request-ID"]
    # OpenRouter's key order and compact encoding survive: nothing parsed and re-encoded them.
    assert response.content.startswith(b'{"id":"gen-')
    body = response.json()
    assert list(body) == [
        "id",
        "provider",
        "model",
        "object",
        "created",
        "choices",
        "system_fingerprint",
        "usage",
    ]
    # Fields an OpenAI-shaped re-serialiser would drop or rewrite.
    assert body["provider"] == "Emulator"
    assert body["system_fingerprint"] == ""
    assert "cost" in body["usage"] and "is_byok" in body["usage"]
    assert body["choices"][0]["native_finish_reason"] == body["choices"][0]["finish_reason"]
    [record] = emulator.chat_records()
    assert body["id"] == record.id == response.headers["X-Generation-Id"]


async def test_every_field_reaches_the_upstream_unchanged(gateway: str, emulator: Emulator) -> None:
    sent = {
        **CHAT,
        "models": ["emulator/fast", "emulator/steady"],
        "provider": {"order": ["Emulator"], "allow_fallbacks": False, "sort": "latency"},
        "reasoning": {"effort": "low", "exclude": True},
        "plugins": [{"id": "context-compression", "enabled": False}],
        "usage": {"include": True},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "temperature": 0.0,
        "max_tokens": 8,
        "x_unknown_field": {"nested": [1, 2.5, None, "é"]},
    }
    assert (await _post(gateway, sent)).status_code == 200
    assert (await _post(gateway, {**sent, "stream": True})).status_code == 200
    plain, streamed = emulator.chat_records()
    assert plain.body == sent
    assert streamed.body == {**sent, "stream": True}


async def test_a_stream_is_forwarded_as_sse_ending_with_done(
    gateway: str, emulator: Emulator
) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await _post(gateway, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["X-Request-ID"]
    [record] = emulator.chat_records()
    assert response.headers["X-Generation-Id"] == record.id
    events = _events(response.text)
    assert events[-1] == "data: [DONE]"
    chunks = _data(events)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {record.id}
    # Verbatim: OpenRouter's extra keys, in its order, and the separate usage chunk after finish.
    assert list(chunks[0])[:2] == ["id", "provider"]
    finish = next(i for i, c in enumerate(chunks) if c["choices"][0]["finish_reason"])
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert finish < len(chunks) - 1
    assert record.body is not None and record.body["stream_options"] == {"include_usage": True}


async def test_events_are_forwarded_as_they_arrive(gateway: str, emulator: Emulator) -> None:
    # The upstream sends its role chunk and first token, then goes silent for 0.6 s (measured
    # from the real send), then sends the rest. The margin is wide because the emulator, the
    # gateway and this client share one process, where a pause (e.g. a GC pass) hits all three.
    emulator.script(["stall:0.6"])
    arrivals: list[float] = []
    async with (
        httpx.AsyncClient(base_url=gateway, timeout=20) as client,
        client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                arrivals.append(asyncio.get_running_loop().time())
    # A buffering gateway would deliver the first events together with the last ones.
    assert len(arrivals) > 4
    assert arrivals[2] - arrivals[1] > 0.25


async def test_keepalives_are_forwarded_while_the_first_token_is_slow(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    emulator.script(["keepalive:0.6"])
    with start_gateway(stream_commit_after=0.1, idle_timeout=0.3) as gateway:
        response = await _post(gateway, {**CHAT, "stream": True})
    events = _events(response.text)
    first_data = next(i for i, e in enumerate(events) if e.startswith("data: "))
    assert first_data >= 2
    # The upstream's own comments, as it sent them.
    assert set(events[:first_data]) == {": OPENROUTER PROCESSING"}
    assert events[-1] == "data: [DONE]"


async def test_a_midstream_error_is_one_error_event_and_no_done(
    gateway: str, emulator: Emulator, log_file: Path
) -> None:
    emulator.script(["midstream:2"])
    response = await _post(gateway, {**CHAT, "stream": True})
    assert response.status_code == 200
    events = _events(response.text)
    assert "data: [DONE]" not in events
    *chunks, last = _data(events)
    assert len(chunks) >= 2 and all("choices" in c for c in chunks)
    assert set(last) == {"error"}
    assert last["error"]["type"] == "api_error"
    assert last["error"]["code"] == "upstream_bad_response"
    assert "Provider returned error" in last["error"]["message"]
    assert len(emulator.chat_records()) == 1  # under way: not retried
    log = read_log(log_file, waiting_for="stream_error=upstream_bad_response")
    assert "stream_error=upstream_bad_response" in log


@pytest.mark.parametrize(
    ("fault", "settings", "code"),
    [
        ("stall:2", {"idle_timeout": 0.3}, "upstream_timeout"),
        ("drop:2", {}, "upstream_unreachable"),
    ],
)
async def test_a_silent_or_cut_upstream_mid_stream_ends_with_an_error_event(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    fault: str,
    settings: dict[str, Any],
    code: str,
) -> None:
    emulator.script([fault])
    with start_gateway(**settings) as gateway:
        response = await _post(gateway, {**CHAT, "stream": True})
    assert response.status_code == 200
    last = _data(_events(response.text))[-1]
    assert last["error"]["code"] == code


@pytest.mark.parametrize(
    ("fault", "status", "kind", "code", "phrase"),
    [
        ("401", 401, "authentication_error", "upstream_unauthorized", "OPENROUTER_API_KEY"),
        ("402", 402, "insufficient_quota", "upstream_payment_required", "credits"),
        ("403", 403, "permission_error", "upstream_forbidden", "moderation"),
        ("404", 404, "not_found_error", "upstream_not_found", "No endpoints found"),
        ("429-day", 429, "rate_limit_error", "upstream_quota_exhausted", "per-day"),
        ("error-200", 502, "api_error", "upstream_bad_response", "Provider returned error"),
    ],
)
async def test_upstream_errors_keep_their_status_in_openai_shape(
    gateway: str, emulator: Emulator, fault: str, status: int, kind: str, code: str, phrase: str
) -> None:
    for stream in (False, True):
        emulator.script([fault])
        response = await _post(gateway, {**CHAT, "stream": stream})
        # Streamed or not: a failure before the first event is a real HTTP error, not SSE.
        assert phrase in _assert_openai_error(response, status, kind, code)
        assert "user_emulator" not in response.text
        if status == 429:
            assert int(response.headers["Retry-After"]) >= 1
    # None of these is retried; a daily quota is not asked again before it resets (the
    # second call fails at once, shared/waits.py).
    assert len(emulator.chat_records()) == (1 if fault == "429-day" else 2)


async def test_an_unknown_model_is_a_400(gateway: str) -> None:
    response = await _post(gateway, {**CHAT, "model": "nope/not-a-model"})
    message = _assert_openai_error(response, 400, "invalid_request_error", "upstream_bad_request")
    assert "nope/not-a-model is not a valid model ID" in message


async def test_unavailable_and_timed_out_upstreams(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    emulator.script(["503", "hang:2"])
    with start_gateway(retry_attempts=1, total_timeout=0.3) as gateway:
        _assert_openai_error(await _post(gateway, CHAT), 503, "api_error", "upstream_unavailable")
        _assert_openai_error(await _post(gateway, CHAT), 504, "api_error", "upstream_timeout")


async def test_transient_failures_are_retried(gateway: str, emulator: Emulator) -> None:
    for stream in (False, True):
        emulator.script(["429:50", "502"])
        response = await _post(gateway, {**CHAT, "stream": stream})
        assert response.status_code == 200
        assert response.headers["X-Upstream-Attempts"] == "3"


# One gateway serves all the cases of a test (starting one per case costs ~0.2 s).
NOT_AN_OBJECT = [
    (b"", "JSON body"),
    (b"{", "not valid JSON"),
    (b'{"model": "emulator/fast",}', "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"text"', "JSON object"),
]


async def test_bodies_that_are_not_a_json_object_are_400s(gateway: str, emulator: Emulator) -> None:
    for content, mentions in NOT_AN_OBJECT:
        response = await _post(gateway, content, headers={"content-type": "application/json"})
        message = _assert_openai_error(response, 400, "invalid_request_error", "invalid_json")
        assert mentions in message, content
    assert emulator.chat_records() == []


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"model": None}, "`model`"),
    ({"model": ""}, "`model`"),
    ({"model": 5}, "`model`"),
    ({"messages": None}, "`messages`"),
    ({"messages": []}, "`messages`"),
    ({"messages": "hi"}, "`messages`"),
    ({"stream": "yes"}, "`stream`"),
    ({"max_tokens": 0}, "`max_tokens`"),
    ({"max_tokens": "10"}, "`max_tokens`"),
    ({"max_tokens": True}, "`max_tokens`"),
    ({"max_tokens": 1.5}, "`max_tokens`"),
    ({"max_tokens": 32769}, "`max_tokens` must be at most 32768"),
    ({"max_completion_tokens": 10**9}, "`max_completion_tokens` must be at most"),
]


async def test_bad_fields_are_400s_naming_the_field(gateway: str, emulator: Emulator) -> None:
    for change, mentions in BAD_FIELDS:
        body = {k: v for k, v in {**CHAT, **change}.items() if v is not None}
        response = await _post(gateway, body)
        message = _assert_openai_error(response, 400, "invalid_request_error", "invalid_request")
        assert mentions in message, change
        # OpenAI's `param` names the field at fault, as the SDKs expect.
        assert response.json()["error"]["param"] == mentions.split("`")[1], change
    assert emulator.chat_records() == []


async def test_the_clients_bytes_reach_the_upstream_exactly(start_gateway: GatewayFactory) -> None:
    """Not re-encoded: integers beyond 64 bits, key order and spacing arrive as sent."""
    received: list[bytes] = []
    answer = b'{"id":"gen-1","object":"chat.completion","created":1,"model":"m","choices":[]}'

    async def chat(request: Request) -> Response:
        received.append(await request.body())
        return Response(answer, media_type="application/json")

    upstream = Starlette(routes=[Route("/chat/completions", chat, methods=["POST"])])
    sent = (
        b'{"seed": 1180591620717411303424, "model": "m",\n "messages": '
        b'[{"content": "hi", "role": "user"}], "zeta": 1.50, "alpha": {"b": 2, "a": 1}}'
    )
    with serve(upstream) as url, start_gateway(upstream_url=url) as gateway:
        response = await _post(gateway, sent, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.content == answer
    assert received == [sent]


async def test_client_disconnect_cancels_the_upstream_stream(
    gateway: str, emulator: Emulator
) -> None:
    emulator.config.time_scale = 1.0
    body = {**CHAT, "model": "emulator/steady", "max_tokens": 60, "stream": True}
    await leave_after_first_event(gateway, "/v1/chat/completions", body, first="data: {")
    record = await cancelled_record(emulator)
    assert not record.completed
    assert record.finished_at is not None
    assert record.finished_at - record.started_at < 0.9
