"""Every fault step on the wire, and where steps come from: header, script, free_rpm."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from llm_gateway.emulator import Emulator, EmulatorConfig, ModelProfile
from llm_gateway.emulator.faults import parse_header, parse_step
from tests.emulator import events
from tests.emulator.conftest import CHAT, chat_body

pytestmark = pytest.mark.anyio

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
UPSTREAM_RAW = (
    "emulator/fast is temporarily rate-limited upstream. Please retry shortly, or add your own "
    "key to accumulate your rate limits: https://openrouter.ai/settings/integrations"
)
PROVIDER_ERROR = {"raw": "upstream connect error", "provider_name": "Emulator"}


async def _faulted(
    client: httpx.AsyncClient, step: str, *, stream: bool = False, **extra: Any
) -> httpx.Response:
    body = chat_body(stream=stream, **extra)
    return await client.post(CHAT, json=body, headers={"X-Emulator-Faults": step})


@pytest.mark.parametrize(
    ("step", "body"),
    [
        (
            "400",
            {
                "error": {"message": "emulator/fast is not a valid model ID", "code": 400},
                "user_id": "user_emulator",
            },
        ),
        ("401", {"error": {"message": "User not found.", "code": 401}}),
        (
            "404",
            {
                "error": {"message": "No endpoints found for emulator/fast.", "code": 404},
                "user_id": "user_emulator",
            },
        ),
        (
            "408",
            {"error": {"code": 408, "message": "Operation timed out. Please try again later."}},
        ),
        ("500", {"error": {"code": 500, "message": "Internal Server Error"}}),
        (
            "502",
            {
                "error": {
                    "code": 502,
                    "message": "Provider returned error",
                    "metadata": PROVIDER_ERROR,
                }
            },
        ),
        ("503", {"error": {"code": 503, "message": "Service temporarily unavailable"}}),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_status_faults_answer_with_the_captured_bodies(
    client: httpx.AsyncClient, emulator: Emulator, step: str, body: dict[str, Any], stream: bool
) -> None:
    response = await _faulted(client, step, stream=stream)
    assert response.status_code == int(step)
    assert response.headers["content-type"] == "application/json"
    assert response.json() == body
    assert "X-Generation-Id" not in response.headers
    [record] = emulator.chat_records()
    assert (record.status, record.fault, record.completed) == (int(step), step, True)


async def test_402_names_its_limit_source(client: httpx.AsyncClient) -> None:
    response = await _faulted(client, "402")
    assert response.status_code == 402
    body = response.json()
    assert body["error"]["code"] == 402 and "requires more credits" in body["error"]["message"]
    assert body["error"]["metadata"]["limit_source"] == "openrouter_credits"
    assert body["user_id"] == "user_emulator"


async def test_403_is_a_moderation_flag(client: httpx.AsyncClient) -> None:
    response = await _faulted(client, "403", content="something flagged")
    assert response.status_code == 403
    error = response.json()["error"]
    assert list(error) == ["code", "message", "metadata"]
    assert error["metadata"]["reasons"] == ["harassment"]
    assert error["metadata"]["flagged_input"] == "something flagged"
    assert error["metadata"]["model_slug"] == "emulator/fast"


@pytest.mark.parametrize(("step", "delay_ms"), [("429", 1000), ("429:2500", 2500)])
async def test_per_minute_429_carries_its_reset_as_headers_and_metadata(
    client: httpx.AsyncClient, step: str, delay_ms: int
) -> None:
    now_ms = time.time() * 1000
    response = await _faulted(client, step)
    assert response.status_code == 429
    body = response.json()
    assert body["error"]["message"] == "Rate limit exceeded: free-models-per-min. "
    assert body["user_id"] == "user_emulator"
    metadata = body["error"]["metadata"]
    assert metadata["provider_name"] is None
    assert metadata["headers"] == {name: response.headers[name] for name in RATE_HEADERS}
    assert metadata["headers"]["X-RateLimit-Limit"] == "20"
    assert metadata["headers"]["X-RateLimit-Remaining"] == "0"
    assert int(metadata["headers"]["X-RateLimit-Reset"]) == pytest.approx(
        now_ms + delay_ms, abs=300
    )


async def test_daily_429_resets_at_midnight_utc(client: httpx.AsyncClient) -> None:
    response = await _faulted(client, "429-day")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["message"].startswith("Rate limit exceeded: free-models-per-day. Add 10 credits")
    assert (
        response.headers["X-RateLimit-Limit"]
        == error["metadata"]["headers"]["X-RateLimit-Limit"]
        == "50"
    )
    reset_s = int(response.headers["X-RateLimit-Reset"]) / 1000
    assert reset_s % 86400 == 0 and 0 < reset_s - time.time() <= 86400


async def test_upstream_429_has_no_rate_limit_headers(client: httpx.AsyncClient) -> None:
    response = await _faulted(client, "429-upstream")
    assert response.status_code == 429
    assert not any(name in response.headers for name in RATE_HEADERS)
    assert "retry-after" not in response.headers
    assert response.json() == {
        "error": {
            "message": "Provider returned error",
            "code": 429,
            "metadata": {"raw": UPSTREAM_RAW, "provider_name": "Emulator"},
        },
        "user_id": "user_emulator",
    }


@pytest.mark.parametrize(
    ("step", "status", "header"),
    [("429-retry-after:1.5", 429, "1.5"), ("503-retry-after:2", 503, "2")],
)
async def test_retry_after_faults(
    client: httpx.AsyncClient, step: str, status: int, header: str
) -> None:
    response = await _faulted(client, step)
    assert response.status_code == status
    assert response.headers["Retry-After"] == header
    assert response.json()["error"]["code"] == status


async def test_error_200_without_streaming_is_an_error_body(client: httpx.AsyncClient) -> None:
    response = await _faulted(client, "error-200")
    assert response.status_code == 200
    assert response.json() == {
        "error": {"message": "Provider returned error", "code": 502, "metadata": PROVIDER_ERROR},
        "user_id": "user_emulator",
    }


async def _stream_events(client: httpx.AsyncClient, step: str) -> list[events.Event]:
    started = time.perf_counter()
    body = chat_body(stream=True)
    async with client.stream("POST", CHAT, json=body, headers={"X-Emulator-Faults": step}) as r:
        assert r.status_code == 200
        return await events.read(r, started)


def _error_event(event: events.Event) -> dict[str, Any]:
    chunk = event.data
    assert list(chunk) == [
        "id",
        "provider",
        "model",
        "object",
        "created",
        "error",
        "choices",
        "system_fingerprint",
    ]
    [choice] = chunk["choices"]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("error", "error")
    error: dict[str, Any] = chunk["error"]
    return error


async def test_error_200_when_streaming_is_the_first_data_event(client: httpx.AsyncClient) -> None:
    stream = await _stream_events(client, "error-200")
    assert [e.comment for e in stream] == [True, False]
    assert _error_event(stream[1]) == {
        "message": "Provider returned error",
        "code": 502,
        "metadata": PROVIDER_ERROR,
    }


@pytest.mark.parametrize(
    ("step", "tokens"), [("midstream:3", 3), ("midstream", 2), ("error-choice", 1)]
)
async def test_midstream_error_after_n_chunks_and_no_done(
    client: httpx.AsyncClient, emulator: Emulator, step: str, tokens: int
) -> None:
    stream = await _stream_events(client, step)
    data = [e for e in stream if not e.comment]
    assert sum(e.token_bearing for e in data) == tokens
    assert len(data) == 1 + tokens + 1  # role chunk, tokens, error
    assert _error_event(data[-1]) == {
        "code": 502,
        "message": "Provider returned error",
        "metadata": PROVIDER_ERROR,
    }
    assert not any(e.done for e in stream)
    [record] = emulator.chat_records()
    assert record.completed and record.fault == step


@pytest.mark.parametrize(("step", "tokens"), [("error-choice", 1), ("midstream:3", 3)])
async def test_error_inside_a_choice_without_streaming(
    client: httpx.AsyncClient, step: str, tokens: int
) -> None:
    response = await _faulted(client, step)
    assert response.status_code == 200
    body = response.json()
    [choice] = body["choices"]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("error", "error")
    assert choice["error"] == {
        "code": 502,
        "message": "Provider disconnected mid-stream",
        "metadata": {"error_type": "provider_unavailable"},
    }
    assert len(choice["message"]["content"].split(" ")) == tokens
    assert body["usage"]["completion_tokens"] == tokens


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_sends_nothing_at_all_for_its_duration(
    client: httpx.AsyncClient, stream: bool
) -> None:
    body = chat_body(stream=stream)
    started = time.perf_counter()
    async with client.stream(
        "POST", CHAT, json=body, headers={"X-Emulator-Faults": "hang:0.3"}
    ) as r:
        headers_at = time.perf_counter() - started
        await r.aread()
    assert 0.3 <= headers_at < 0.4
    assert r.status_code == 200


async def test_hang_trips_a_first_byte_timeout(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            CHAT, json=chat_body(), headers={"X-Emulator-Faults": "hang:0.5"}, timeout=0.1
        )
    for _ in range(60):
        if emulator.chat_records()[0].finished_at is not None:
            break
        await asyncio.sleep(0.01)
    [record] = emulator.chat_records()
    assert record.cancelled and not record.completed


async def test_keepalive_streams_only_comments_for_its_duration(
    client: httpx.AsyncClient,
) -> None:
    started = time.perf_counter()
    body = chat_body(stream=True)
    async with client.stream(
        "POST", CHAT, json=body, headers={"X-Emulator-Faults": "keepalive:0.3"}
    ) as r:
        assert time.perf_counter() - started < 0.1
        stream = await events.read(r, started)
    first_data = next(i for i, e in enumerate(stream) if not e.comment)
    assert first_data >= 6  # a comment every 50 ms (the session emulator's cadence)
    assert stream[first_data].at >= 0.3
    assert stream[-1].done


async def test_keepalive_without_streaming_delays_like_hang(client: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    response = await _faulted(client, "keepalive:0.2")
    assert response.status_code == 200 and time.perf_counter() - started >= 0.2


async def test_stall_goes_silent_after_the_first_token(client: httpx.AsyncClient) -> None:
    stream = await _stream_events(client, "stall:0.3")
    first = next(i for i, e in enumerate(stream) if e.token_bearing)
    assert stream[first + 1].token_bearing  # nothing, not even a comment, in between
    # Both times are taken by the client, whose reads can lag by a few ms.
    assert stream[first + 1].at - stream[first].at >= 0.3 - 0.015
    assert stream[-1].done


async def test_drop_cuts_a_stream_after_n_chunks(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    lines: list[str] = []
    body = chat_body(stream=True)
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST", CHAT, json=body, headers={"X-Emulator-Faults": "drop:2"}
        ) as r:
            async for line in r.aiter_lines():
                lines.append(line)
    received = [events.Event(line) for line in lines if line]
    assert sum(e.token_bearing for e in received) == 2
    assert not any(e.done for e in received)
    assert all(e.comment or "error" not in e.data for e in received)
    [record] = emulator.chat_records()
    assert (record.status, record.fault) == (200, "drop:2")
    assert not record.completed and not record.cancelled


async def test_drop_cuts_a_json_body(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await _faulted(client, "drop:0")


async def test_header_sequences_are_walked_by_retries(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    headers = {"X-Emulator-Faults": "429, 502,ok"}
    statuses = [
        (await client.post(CHAT, json=chat_body(), headers=headers)).status_code for _ in range(4)
    ]
    assert statuses == [429, 502, 200, 200]
    assert [r.fault for r in emulator.chat_records()] == ["429", "502", "ok", "ok"]


async def test_fault_keys_give_independent_sequences(client: httpx.AsyncClient) -> None:
    def headers(key: str) -> dict[str, str]:
        return {"X-Emulator-Faults": "503,ok", "X-Emulator-Fault-Key": key}

    order = ["a", "b", "a", "b", "a"]
    statuses = [
        (await client.post(CHAT, json=chat_body(), headers=headers(key))).status_code
        for key in order
    ]
    assert statuses == [503, 503, 200, 200, 200]


async def test_invalid_fault_headers_are_400(client: httpx.AsyncClient) -> None:
    response = await _faulted(client, "429,teapot")
    assert response.status_code == 400
    assert "teapot" in response.json()["error"]["message"]


async def test_scripted_queues_model_queue_first(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.script(["503"])
    emulator.script(["402", "429-day"], model="emulator/fast")
    steady = await client.post(CHAT, json=chat_body("emulator/steady"))
    fast = [(await client.post(CHAT, json=chat_body())).status_code for _ in range(3)]
    assert steady.status_code == 503
    assert fast == [402, 429, 200]
    # A header sequence wins over the queue; once used up, the queue applies again.
    emulator.script(["500"])
    header = {"X-Emulator-Faults": "ok", "X-Emulator-Fault-Key": "queue-test"}
    walked = [
        (await client.post(CHAT, json=chat_body(), headers=header)).status_code for _ in range(3)
    ]
    assert walked == [200, 500, 200]


async def test_an_empty_fault_list_clears_the_queues(client: httpx.AsyncClient) -> None:
    async def statuses(model: str = "emulator/fast") -> list[int]:
        return [(await client.post(CHAT, json=chat_body(model))).status_code for _ in range(2)]

    for model in (None, "emulator/fast"):
        await client.post("/_emulator/faults", json={"faults": ["503", "503"], "model": model})
        cleared = await client.post("/_emulator/faults", json={"faults": [], "model": model})
        assert cleared.json() == {"queued": 0, "model": model}
        assert await statuses() == [200, 200]
    # Without a model, every queue goes; with one, only that model's.
    await client.post("/_emulator/faults", json={"faults": ["503"], "model": "emulator/fast"})
    await client.post("/_emulator/faults", json={"faults": ["502"], "model": "emulator/steady"})
    await client.post("/_emulator/faults", json={"faults": [], "model": "emulator/steady"})
    assert await statuses("emulator/steady") == [200, 200]
    await client.post("/_emulator/faults", json={"faults": []})
    assert await statuses() == [200, 200]


def test_script_rejects_unknown_steps_and_models() -> None:
    emulator = Emulator(EmulatorConfig(time_scale=0))
    with pytest.raises(ValueError, match="unknown fault step 'teapot'"):
        emulator.script(["ok", "teapot"])
    with pytest.raises(ValueError, match="unknown model"):
        emulator.script(["ok"], model="emulator/fast:nitro")


async def test_free_rpm_limits_free_models_per_rolling_minute(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.config.free_rpm = 2
    first_ms = time.time() * 1000
    statuses = [
        (await client.post(CHAT, json=chat_body("emulator/fast:free"))).status_code
        for _ in range(2)
    ]
    limited = await client.post(CHAT, json=chat_body("emulator/fast:free"))
    paid = await client.post(CHAT, json=chat_body("emulator/fast"))
    assert statuses == [200, 200] and paid.status_code == 200
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Limit"] == "2"
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert reset == pytest.approx(first_ms + 60_000, abs=300)
    assert limited.json()["error"]["metadata"]["headers"]["X-RateLimit-Reset"] == str(reset)
    assert [r.fault for r in emulator.chat_records()] == ["ok", "ok", "429", "ok"]
    emulator.reset()
    assert (await client.post(CHAT, json=chat_body("emulator/fast:free"))).status_code == 200


def test_free_rpm_and_instant_profiles_validate() -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(free_rpm=0)
    with pytest.raises(ValueError):
        ModelProfile(ttft_s=-1, tokens_per_s=10)
    with pytest.raises(ValueError):
        ModelProfile(ttft_s=0, tokens_per_s=10, output_tokens=(5, 2))


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("ok", ("ok", 200, 0.0, 0, "")),
        ("503", ("status", 503, 0.0, 0, "")),
        ("429", ("rate-minute", 429, 1.0, 0, "")),
        ("429:250", ("rate-minute", 429, 0.25, 0, "")),
        ("429-retry-after:0.5", ("retry-after", 429, 0.0, 0, "0.5")),
        ("midstream", ("midstream", 200, 0.0, 2, "")),
        ("drop:0", ("drop", 200, 0.0, 0, "")),
        (" stall:1.5 ", ("stall", 200, 1.5, 0, "")),
    ],
)
def test_fault_steps_parse(step: str, expected: tuple[object, ...]) -> None:
    fault = parse_step(step)
    assert (fault.kind, fault.status, fault.seconds, fault.count, fault.retry_after) == expected


@pytest.mark.parametrize(
    "step", ["", "418", "429:-1", "hang", "hang:soon", "drop:1.5", "midstream:-2", "stall:nan"]
)
def test_invalid_fault_steps_raise(step: str) -> None:
    with pytest.raises(ValueError):
        parse_step(step)


def test_header_parsing_skips_blank_steps() -> None:
    assert [f.step for f in parse_header("429,, ok")] == ["429", "ok"]
