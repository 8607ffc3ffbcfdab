"""Streaming behaviour: unbuffered forwarding, usage, in-band errors, keep-alives, cancellation."""

from __future__ import annotations

import time

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import GatewayFactory
from tests.sse import Frame, cancelled_record, leave_after_first_event, parse_frames

pytestmark = pytest.mark.anyio


async def _stream(gateway: str, body: dict[str, object]) -> tuple[httpx.Response, list[Frame]]:
    async with httpx.AsyncClient(base_url=gateway, timeout=20) as client:
        response = await client.post("/generate", params={"stream": "true"}, json=body)
        return response, parse_frames(response.text) if response.status_code == 200 else []


async def test_events_are_forwarded_as_they_arrive(gateway: str, emulator: Emulator) -> None:
    # Real-time profile: 0.3 s to the first token, then 60 tokens a second.
    emulator.config.time_scale = 1.0
    arrivals: list[tuple[float, str]] = []
    body = {"prompt": "Count slowly", "model": "emulator/steady", "max_tokens": 30}
    async with (
        httpx.AsyncClient(base_url=gateway, timeout=20) as client,
        client.stream("POST", "/generate", params={"stream": "true"}, json=body) as response,
    ):
        started = time.perf_counter()
        async for line in response.aiter_lines():
            if line.startswith(("data:", "event:")):
                arrivals.append((time.perf_counter() - started, line))
    first_delta = next(t for t, line in arrivals if line.startswith('data: {"delta"'))
    done = next(t for t, line in arrivals if line == "event: done")
    # 29 more tokens at 60/s take ~0.48 s upstream; a buffering gateway would deliver the
    # first delta together with the last one.
    assert done - first_delta > 0.3
    delta_times = [t for t, line in arrivals if line.startswith('data: {"delta"')]
    assert len(delta_times) == 30
    assert delta_times[15] - delta_times[0] > 0.15


@pytest.mark.parametrize("style", ["empty", "dummy"])
async def test_usage_is_read_from_the_chunk_after_finish_reason(
    gateway: str, emulator: Emulator, style: str
) -> None:
    emulator.config.usage_chunk_style = style  # type: ignore[assignment]
    try:
        _, frames = await _stream(
            gateway, {"prompt": "Usage?", "model": "emulator/fast", "max_tokens": 12}
        )
    finally:
        emulator.config.usage_chunk_style = "alternate"
    done = frames[-1]
    assert done.event == "done"
    assert done.data["usage"]["completion_tokens"] == 12
    assert done.data["usage"]["prompt_tokens"] > 0
    assert done.data["finish_reason"] == "length"


async def test_a_midstream_error_ends_the_stream_with_an_error_event(
    gateway: str, emulator: Emulator
) -> None:
    emulator.script(["midstream:3"])
    response, frames = await _stream(gateway, {"prompt": "x", "model": "emulator/fast"})
    assert response.status_code == 200
    events = [f for f in frames if not f.comment]
    assert [f.event for f in events] == [None, None, None, "error"]
    error = events[-1].data["error"]
    assert error["code"] == "upstream_bad_response"
    assert error["status"] == 502
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert "Provider returned error" in error["message"]
    assert not any(f.event == "done" for f in frames)
    # The stream was already under way: it is not retried.
    assert len(emulator.chat_records()) == 1


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("402", 402, "upstream_payment_required"),
        ("error-200", 502, "upstream_bad_response"),
        ("400", 400, "upstream_bad_request"),
    ],
)
async def test_failures_before_the_first_event_are_http_errors(
    gateway: str, emulator: Emulator, fault: str, status: int, code: str
) -> None:
    emulator.script([fault])
    response, _ = await _stream(gateway, {"prompt": "x", "model": "emulator/fast"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


async def test_a_stream_is_retried_until_its_first_event(gateway: str, emulator: Emulator) -> None:
    emulator.script(["429:50", "502", "ok"])
    response, frames = await _stream(gateway, {"prompt": "x", "model": "emulator/fast"})
    assert response.status_code == 200
    assert response.headers["X-Upstream-Attempts"] == "3"
    assert frames[-1].event == "done"


async def test_client_disconnect_cancels_the_upstream_stream(
    gateway: str, emulator: Emulator
) -> None:
    emulator.config.time_scale = 1.0
    body = {"prompt": "A long answer", "model": "emulator/steady", "max_tokens": 60}
    await leave_after_first_event(
        gateway, "/generate", body, first='data: {"delta"', params={"stream": "true"}
    )
    record = await cancelled_record(emulator)
    assert not record.completed
    # Cancelled long before the ~1.3 s the full answer takes.
    assert record.finished_at is not None
    assert record.finished_at - record.started_at < 0.9


async def test_keepalives_are_sent_while_the_first_token_is_slow(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    emulator.script(["keepalive:0.6"])
    with start_gateway(stream_commit_after=0.1, idle_timeout=0.3) as gateway:
        response, frames = await _stream(gateway, {"prompt": "x", "model": "emulator/fast"})
    assert response.status_code == 200
    first_data = next(i for i, f in enumerate(frames) if not f.comment)
    # Committed after 0.1 s, then the upstream's keep-alives were passed on; and they kept
    # the 0.3 s idle timeout from firing during the 0.6 s wait.
    assert first_data >= 2
    assert frames[-1].event == "done"


async def test_a_silent_upstream_mid_stream_hits_the_idle_timeout(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    emulator.script(["stall:2"])
    with start_gateway(idle_timeout=0.3) as gateway:
        response, frames = await _stream(gateway, {"prompt": "x", "model": "emulator/fast"})
    # The stall (2 s) would have ended without an error had the 0.3 s idle timeout not cut it.
    assert response.status_code == 200
    assert frames[-1].event == "error"
    assert frames[-1].data["error"]["code"] == "upstream_timeout"


async def test_a_cut_connection_mid_stream_is_reported(gateway: str, emulator: Emulator) -> None:
    emulator.script(["drop:2"])
    response, frames = await _stream(gateway, {"prompt": "x", "model": "emulator/fast"})
    assert response.status_code == 200
    assert frames[-1].event == "error"
    assert frames[-1].data["error"]["code"] == "upstream_unreachable"
    assert len(emulator.chat_records()) == 1
