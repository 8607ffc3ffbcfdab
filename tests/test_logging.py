"""The log file: one access line per request, upstream errors without tracebacks, our own
bugs with them, and never the API key."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from llm_gateway import generation
from llm_gateway.emulator import Emulator
from llm_gateway.logging import RedactFilter, _RotatingFile
from tests.conftest import TEST_KEY, GatewayFactory, read_log

pytestmark = pytest.mark.anyio


def _lines(log_file: Path, needle: str) -> list[str]:
    return [line for line in read_log(log_file, waiting_for=needle).splitlines() if needle in line]


async def test_one_access_line_per_request(gateway: str, log_file: Path) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.post(
            "/generate",
            json={"prompt": "hi", "model": "emulator/fast"},
            headers={"X-Request-ID": "trace-me-1"},
        )
    assert response.status_code == 200
    [line] = _lines(log_file, "llm_gateway.access [trace-me-1]")
    assert " INFO " in line
    assert "POST /generate handler=generate_text status=200" in line
    assert "duration_ms=" in line
    assert "upstream_attempts=1" in line


async def test_streams_are_logged_when_they_end_with_their_outcome(
    gateway: str, emulator: Emulator, log_file: Path
) -> None:
    emulator.script(["midstream:1"])
    async with httpx.AsyncClient(base_url=gateway) as client:
        await client.post(
            "/generate?stream=true",
            json={"prompt": "hi", "model": "emulator/fast"},
            headers={"X-Request-ID": "stream-1"},
        )
    [line] = _lines(log_file, "llm_gateway.access [stream-1]")
    assert "status=200" in line and "stream_error=upstream_bad_response" in line
    [error] = _lines(log_file, "llm_gateway.errors [stream-1]")
    assert "ERROR" in error and "mid-stream" in error


async def test_upstream_errors_are_logged_without_traceback(
    gateway: str, emulator: Emulator, log_file: Path
) -> None:
    emulator.script(["402"])
    async with httpx.AsyncClient(base_url=gateway) as client:
        await client.post("/generate", json={"prompt": "hi", "model": "emulator/fast"})
    [line] = _lines(log_file, "upstream error on POST /generate")
    text = read_log(log_file)
    assert "ERROR" in line and "402" in line
    assert "Traceback" not in text


async def test_our_own_bugs_are_logged_with_traceback_and_answer_500(
    gateway: str, log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_data: object) -> None:
        raise RuntimeError("a bug in the gateway")

    # The server runs in this process, so the patch reaches the route's call.
    monkeypatch.setattr(generation, "parse_completion", broken)
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.post("/generate", json={"prompt": "hi", "model": "emulator/fast"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "RuntimeError" not in response.text  # no traceback in the answer
    text = read_log(log_file)
    assert "Traceback" in text and "RuntimeError: a bug in the gateway" in text
    assert _lines(log_file, "status=500")


async def test_the_key_never_reaches_logs_or_answers(
    start_gateway: GatewayFactory, emulator: Emulator, log_file: Path
) -> None:
    emulator.script(["401", "500", "429-day"])
    with start_gateway(log_level="DEBUG") as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            answers = [
                await client.post("/generate", json={"prompt": "hi", "model": "emulator/fast"})
                for _ in range(4)
            ]
            answers.append(await client.get("/models"))
            answers.append(await client.get("/"))
        logging.getLogger("llm_gateway.test").error(
            "upstream said: invalid header Authorization: Bearer %s", TEST_KEY
        )
    # The emulator did receive it: the gateway does send the key upstream.
    assert all(r.authorized for r in emulator.chat_records())
    for answer in answers:
        assert TEST_KEY not in answer.text
        assert TEST_KEY not in str(answer.headers)
    text = read_log(log_file, waiting_for="Bearer ***")
    assert TEST_KEY not in text
    assert "Bearer ***" in text


async def test_a_key_in_the_request_target_is_redacted_in_the_access_line(
    gateway: str, log_file: Path
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        await client.get("/models", params={"api_key": TEST_KEY})
    [line] = _lines(log_file, "GET /models?")
    assert TEST_KEY not in line
    assert "GET /models?api_key=*** handler=list_models status=200" in line


def test_redaction_covers_bearer_tokens_and_tracebacks() -> None:
    redact = RedactFilter(["s3cret"])
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "key=%s auth=%s", ("s3cret", "Bearer abc.def"), None
    )
    try:
        raise ValueError("boom s3cret")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert redact.filter(record)
    assert record.msg == "key=*** auth=Bearer ***"
    assert record.exc_text is not None and "s3cret" not in record.exc_text


def test_the_log_file_rolls_over_and_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "server_logs.txt"
    log = _RotatingFile(path, max_bytes=100, backups=2)
    written = [f"line {i:02d} " + "x" * 20 + "\n" for i in range(12)]
    for line in written:
        log.write(line)
    log.close()
    files = [path.with_name(f"{path.name}.2"), path.with_name(f"{path.name}.1"), path]
    assert not path.with_name(f"{path.name}.3").exists()  # only `backups` are kept
    kept = "".join(f.read_text() for f in files)
    assert all(f.stat().st_size <= 100 for f in files)
    # Oldest lines rolled off the end; the rest are all there, in order.
    assert written[-len(kept.splitlines()) :] == kept.splitlines(keepends=True)
    assert len(kept.splitlines()) >= 8
