"""Request records: bodies kept only when asked, and the whole list bounded in bytes."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import orjson
import pytest

from llm_gateway.emulator import EmulatorConfig
from llm_gateway.emulator.state import RECORD_BYTES
from tests.conftest import CLI
from tests.emulator.conftest import AUTH, CHAT, StartEmulator, chat_body

pytestmark = pytest.mark.anyio


async def test_bodies_are_not_kept_by_default(start_emulator: StartEmulator) -> None:
    emulator, client = start_emulator(time_scale=0)
    sent = orjson.dumps(chat_body("emulator/steady", stream=True))
    async with client.stream("POST", CHAT, content=sent) as response:
        await response.aread()
    [record] = emulator.chat_records()
    assert record.body is None and record.body_bytes == len(sent)
    assert (record.model, record.stream, record.status) == ("emulator/steady", True, 200)
    [listed] = (await client.get("/_emulator/requests")).json()
    assert listed["body"] is None and listed["model"] == "emulator/steady"


async def test_records_stay_within_the_byte_bound(start_emulator: StartEmulator) -> None:
    bound = 64 * 1024
    emulator, client = start_emulator(time_scale=0, keep_bodies=True, records_max_bytes=bound)
    prompt = "x" * 20_000
    for number in range(12):
        body = chat_body(content=f"{number} {prompt}", max_tokens=1)
        assert (await client.post(CHAT, json=body)).status_code == 200
    records = emulator.chat_records()
    kept = sum(RECORD_BYTES + (r.body_bytes if r.body is not None else 0) for r in records)
    assert kept <= bound
    assert 2 <= len(records) < 12  # the oldest went, the newest stayed, with their bodies
    assert records[-1].body is not None
    assert records[-1].body["messages"][0]["content"].startswith("11 ")
    listed = await client.get("/_emulator/requests")
    assert len(listed.content) < bound


async def test_a_body_larger_than_the_bound_is_not_kept(start_emulator: StartEmulator) -> None:
    emulator, client = start_emulator(time_scale=0, keep_bodies=True, records_max_bytes=16_384)
    await client.post(CHAT, json=chat_body(content="y" * 32_768, max_tokens=1))
    await client.post(CHAT, json=chat_body(max_tokens=1))
    large, small = emulator.chat_records()
    assert large.body is None and large.body_bytes > 32_768
    assert small.body is not None and small.body["messages"][0]["content"] == "Say hello"


async def test_records_without_bodies_are_bounded_too(start_emulator: StartEmulator) -> None:
    emulator, client = start_emulator(time_scale=0, records_max_bytes=10 * RECORD_BYTES)
    for _ in range(25):
        await client.get("/api/v1/models")
    assert 1 <= len(emulator.records) <= 10
    emulator.reset()
    assert emulator.records == []
    await client.get("/api/v1/models")
    assert len(emulator.records) == 1


def test_the_bound_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="records_max_bytes"):
        EmulatorConfig(records_max_bytes=-1)


async def test_the_session_emulator_keeps_bodies(client: httpx.AsyncClient) -> None:
    sent = orjson.dumps(chat_body(max_tokens=1))
    await client.post(CHAT, content=sent)
    [listed] = (await client.get("/_emulator/requests")).json()
    assert listed["body"] == orjson.loads(sent) and listed["body_bytes"] == len(sent)


def test_the_command_keeps_bodies_when_asked() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    args = [CLI, "emulator", "--port", str(port), "--time-scale", "0", "--keep-bodies"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.post(CHAT, json=chat_body(max_tokens=1))
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the emulator did not start"
                    time.sleep(0.1)
            [listed] = client.get("/_emulator/requests").json()
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert listed["body"] == chat_body(max_tokens=1)
