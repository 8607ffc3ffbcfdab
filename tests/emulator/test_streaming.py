"""Streaming: event sequence and framing, keep-alives, timing against the profile, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import orjson
import pytest

from llm_gateway.emulator import Emulator, EmulatorConfig, ModelProfile
from tests.emulator import events
from tests.emulator.conftest import CHAT, StartEmulator, chat_body

pytestmark = pytest.mark.anyio

CHUNK_KEYS = ["id", "provider", "model", "object", "created", "choices", "system_fingerprint"]
CHOICE_KEYS = ["index", "delta", "finish_reason", "native_finish_reason", "logprobs"]
DUMMY_CHOICE = {
    "index": 0,
    "delta": {"role": "assistant", "content": ""},
    "finish_reason": None,
    "native_finish_reason": None,
    "logprobs": None,
}


async def test_stream_follows_openrouters_event_sequence(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    response, stream = await events.post(client, chat_body("emulator/fast", max_tokens=5))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert stream[0].text == events.COMMENT
    assert stream[-1].done
    chunks = events.data_chunks(stream)
    generation_id = response.headers["X-Generation-Id"]
    for chunk in chunks:
        assert list(chunk)[: len(CHUNK_KEYS)] == CHUNK_KEYS
        assert chunk["id"] == generation_id and chunk["object"] == "chat.completion.chunk"
        assert (chunk["provider"], chunk["model"]) == ("Emulator", "emulator/fast")
        assert chunk["system_fingerprint"] == ""
    role, *tokens, finish, usage = chunks
    assert role["choices"] == [DUMMY_CHOICE]
    assert len(tokens) == 5
    for chunk in tokens:
        [choice] = chunk["choices"]
        assert list(choice) == CHOICE_KEYS
        assert choice["delta"]["role"] == "assistant" and choice["delta"]["content"]
        assert choice["finish_reason"] is None
    [done] = finish["choices"]
    assert done["delta"] == {"role": "assistant", "content": ""}
    assert (done["finish_reason"], done["native_finish_reason"]) == ("length", "length")
    assert "usage" not in finish
    assert usage["usage"]["completion_tokens"] == 5
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 5
    [record] = emulator.chat_records()
    assert record.stream and record.completed and record.id == generation_id


async def test_streamed_text_matches_the_non_streamed_text(client: httpx.AsyncClient) -> None:
    whole = (await client.post(CHAT, json=chat_body("emulator/steady"))).json()
    _, stream = await events.post(client, chat_body("emulator/steady"))
    assert events.text_of(stream) == whole["choices"][0]["message"]["content"]
    assert events.data_chunks(stream)[-1]["usage"] == whole["usage"]


@pytest.mark.parametrize(("style", "choices"), [("dummy", [DUMMY_CHOICE]), ("empty", [])])
async def test_usage_chunk_styles(
    start_emulator: StartEmulator, style: str, choices: list[Any]
) -> None:
    _, client = start_emulator(time_scale=0, usage_chunk_style=style)
    for _ in range(2):
        _, stream = await events.post(client, chat_body(max_tokens=3))
        usage = events.data_chunks(stream)[-1]
        assert usage["choices"] == choices
        assert list(usage)[-2:] == ["system_fingerprint", "usage"]


async def test_usage_chunk_style_alternates_by_default(client: httpx.AsyncClient) -> None:
    shapes = []
    for _ in range(3):
        _, stream = await events.post(client, chat_body(max_tokens=2))
        shapes.append(events.data_chunks(stream)[-1]["choices"])
    assert shapes == [[DUMMY_CHOICE], [], [DUMMY_CHOICE]]


async def test_each_event_is_its_own_asgi_body_message() -> None:
    emulator = Emulator(EmulatorConfig(time_scale=0, keepalive_every_n_chunks=2))
    request = orjson.dumps(chat_body(max_tokens=6, stream=True))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT,
        "raw_path": CHAT.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", b"Bearer k"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    messages = iter([{"type": "http.request", "body": request, "more_body": False}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = next(messages, None)
        if message is None:
            await asyncio.Event().wait()  # the client never leaves
        assert message is not None
        return message

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await emulator.app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[-1] == b"" and sent[-1]["more_body"] is False
    for body in bodies[:-1]:
        assert body.count(b"\n\n") == 1 and body.endswith(b"\n\n"), body
        assert body.startswith((b"data: ", b": OPENROUTER PROCESSING"))
    assert bodies.count(events.COMMENT.encode() + b"\n\n") == 1 + 2  # prelude + after 2 and 4


async def test_keepalive_comments_come_between_chunks(start_emulator: StartEmulator) -> None:
    _, client = start_emulator(time_scale=0.01, keepalive_every_n_chunks=3)
    _, stream = await events.post(client, chat_body(max_tokens=10))
    layout = "".join(
        "c" if e.comment else "t" if e.token_bearing else "-" for e in stream if not e.done
    )
    # prelude, role chunk, 10 tokens with a comment after every third, finish, usage
    assert layout == "c-tttctttctttct--"


async def test_keepalive_comments_while_waiting_for_the_first_token(
    start_emulator: StartEmulator,
) -> None:
    _, client = start_emulator(
        models={"test/patient": ModelProfile(ttft_s=0.25, tokens_per_s=1000)},
        keepalive_interval_s=0.1,
    )
    await client.get("/api/v1/models")  # connect first: only the stream is timed
    _, stream = await events.post(client, chat_body("test/patient", max_tokens=3))
    before_first = stream[: next(i for i, e in enumerate(stream) if not e.comment)]
    assert len(before_first) == 3  # at 0, 0.1 and 0.2 s
    prelude = before_first[0].at
    assert [round(e.at - prelude, 1) for e in before_first] == [0.0, 0.1, 0.2]


async def test_timing_follows_the_profile(start_emulator: StartEmulator) -> None:
    _, client = start_emulator(
        models={"emulator/steady": ModelProfile(ttft_s=0.3, tokens_per_s=60.0)},
        keepalive_interval_s=10,
    )
    # Warm the connection so the measurement holds no TCP set-up.
    await client.get("/api/v1/models")
    _, stream = await events.post(client, chat_body("emulator/steady", max_tokens=13))
    tokens = [e.at for e in stream if e.token_bearing]
    assert len(tokens) == 13
    assert tokens[0] == pytest.approx(0.3, abs=0.04)
    assert tokens[-1] == pytest.approx(0.3 + 12 / 60, abs=0.04)
    gaps = [b - a for a, b in itertools.pairwise(tokens)]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 60, abs=0.003)
    finish = next(e.at for e in stream if not e.comment and e.data["choices"][0]["finish_reason"])
    assert finish == pytest.approx(0.3 + 13 / 60, abs=0.04)

    started = time.perf_counter()
    await client.post(CHAT, json=chat_body("emulator/steady", max_tokens=12))
    assert time.perf_counter() - started == pytest.approx(0.3 + 12 / 60, abs=0.04)


async def test_time_scale_zero_answers_at_once(start_emulator: StartEmulator) -> None:
    _, client = start_emulator(time_scale=0)
    await client.get("/api/v1/models")
    started = time.perf_counter()
    await client.post(CHAT, json=chat_body("emulator/slow", max_tokens=50))
    _, stream = await events.post(client, chat_body("emulator/slow", max_tokens=50))
    assert time.perf_counter() - started < 0.1
    assert stream[-1].done


async def test_reasoning_streams_reasoning_deltas_first(client: httpx.AsyncClient) -> None:
    _, stream = await events.post(client, chat_body("emulator/reasoning"))
    deltas = [e.delta for e in stream if e.token_bearing]
    kinds = ["r" if d.get("reasoning") else "c" for d in deltas]
    reasoning = kinds.count("r")
    assert reasoning > 0 and kinds == ["r"] * reasoning + ["c"] * (len(kinds) - reasoning)
    assert all(d["content"] == "" for d in deltas[:reasoning])
    usage = events.data_chunks(stream)[-1]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == reasoning
    assert usage["completion_tokens"] == len(deltas)


async def test_echo_streams_the_prompt_verbatim(client: httpx.AsyncClient) -> None:
    prompt = "<script>alert(1)</script>  spaced\nout "
    _, stream = await events.post(client, chat_body("emulator/echo", content=prompt))
    assert events.text_of(stream) == prompt


async def test_client_disconnect_cancels_the_generation(start_emulator: StartEmulator) -> None:
    emulator, client = start_emulator(
        models={"test/slow": ModelProfile(ttft_s=0.02, tokens_per_s=20.0)}, generation_lag_s=0
    )
    async with client.stream("POST", CHAT, json=chat_body("test/slow", stream=True)) as response:
        seen = 0
        async for line in response.aiter_lines():
            seen += '"content":"' in line and '"content":""' not in line
            if seen == 3:
                break
    left_at = time.monotonic()
    [record] = emulator.chat_records()
    for _ in range(50):
        if record.finished_at is not None:
            break
        await asyncio.sleep(0.01)
    assert record.cancelled and not record.completed
    assert record.finished_at is not None and record.finished_at - left_at < 0.1
    generation = await client.get("/api/v1/generation", params={"id": record.id})
    data = generation.json()["data"]
    assert data["cancelled"] is True and data["streamed"] is True
    assert 3 <= data["tokens_completion"] <= 4
