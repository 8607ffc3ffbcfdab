"""The log file: one access line per request, upstream errors without tracebacks, our own
bugs with them, and never the API key."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from llm_gateway import generation
from llm_gateway.app import create_app
from llm_gateway.emulator import Emulator
from llm_gateway.logging import LogSink, _RotatingFile
from llm_gateway.redaction import Redactor
from tests.conftest import TEST_KEY, GatewayFactory, gateway_settings, read_log
from tests.servers import serve

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
    assert "POST /generate handler=generate status=200" in line
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
    text = read_log(log_file, waiting_for="status=402")
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
    text = read_log(log_file, waiting_for="status=500")
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
    # The emulator did receive it: the gateway does send the key upstream.
    assert all(r.authorized for r in emulator.chat_records())
    for answer in answers:
        assert TEST_KEY not in answer.text
        assert TEST_KEY not in str(answer.headers)
    text = read_log(log_file, waiting_for="GET /")
    assert TEST_KEY not in text


async def test_a_key_in_the_request_target_is_redacted_in_the_access_line(
    gateway: str, log_file: Path
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        await client.get("/models", params={"api_key": TEST_KEY})
    [line] = _lines(log_file, "GET /models?")
    assert TEST_KEY not in line
    assert "GET /models?api_key=*** handler=list_models status=200" in line


def test_redaction_and_escaping_cover_messages_and_tracebacks(tmp_path: Path) -> None:
    sink = LogSink(tmp_path, "INFO", Redactor(["s3cret"]))
    sink.start()
    record = logging.LogRecord(
        "llm_gateway.x",
        logging.ERROR,
        __file__,
        1,
        "key=%s auth=%s path=%s",
        ("s3cret", "Bearer abc.def", "/a\x1b[2J\x08\x00\nforged"),
        None,
    )
    try:
        raise ValueError("boom s3cret")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    sink.emit(record)
    sink.stop()
    text = (tmp_path / "server_logs.txt").read_text()
    first, *traceback = text.splitlines()
    assert first.endswith(r"key=*** auth=Bearer *** path=/a\x1b[2J\x08\x00\nforged")
    assert "ValueError: boom ***" in traceback
    assert "s3cret" not in text


async def test_a_second_app_in_the_process_leaves_the_first_apps_log_alone(
    emulator_url: str, tmp_path: Path
) -> None:
    first_log, second_log = tmp_path / "first", tmp_path / "second"
    with serve(create_app(gateway_settings(emulator_url, first_log))) as first:
        with serve(create_app(gateway_settings(emulator_url, second_log))) as second:
            async with httpx.AsyncClient() as client:
                await client.get(f"{first}/health", headers={"X-Request-ID": "to-first"})
                await client.get(f"{second}/health", headers={"X-Request-ID": "to-second"})
        # The second app has stopped; the first still logs, to its own file.
        async with httpx.AsyncClient() as client:
            await client.get(f"{first}/health", headers={"X-Request-ID": "after-second"})
        first_text = read_log(first_log / "server_logs.txt", waiting_for="[after-second]")
    second_text = (second_log / "server_logs.txt").read_text()
    assert "[to-first]" in first_text and "[to-second]" not in first_text
    assert "[to-second]" in second_text and "[to-first]" not in second_text


async def test_handlers_added_to_the_access_logger_see_every_access_line(gateway: str) -> None:
    seen: list[logging.LogRecord] = []

    class Mine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Mine()
    logging.getLogger("llm_gateway.access").addHandler(handler)
    try:
        async with httpx.AsyncClient(base_url=gateway) as client:
            await client.get("/health", headers={"X-Request-ID": "seen-by-mine"})
    finally:
        logging.getLogger("llm_gateway.access").removeHandler(handler)
    [record] = [r for r in seen if getattr(r, "request_id", None) == "seen-by-mine"]
    assert "GET /health handler=health status=200" in record.getMessage()


def test_the_log_file_rolls_over_and_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "server_logs.txt"
    log = _RotatingFile(path, max_bytes=100, backups=2)
    # Multi-byte characters: the limit is in bytes, not characters.
    written = [f"line {i:02d} é" + "x" * 20 + "\n" for i in range(12)]
    for line in written:
        log.write(line.encode())
    log.close()
    files = [path.with_name(f"{path.name}.2"), path.with_name(f"{path.name}.1"), path]
    assert not path.with_name(f"{path.name}.3").exists()  # only `backups` are kept
    kept = "".join(f.read_text() for f in files)
    assert all(f.stat().st_size <= 100 for f in files)
    # Oldest lines rolled off the end; the rest are all there, in order.
    assert written[-len(kept.splitlines()) :] == kept.splitlines(keepends=True)
    assert len(kept.splitlines()) >= 8


async def test_control_characters_are_escaped_and_long_paths_capped(
    gateway: str, log_file: Path
) -> None:
    """Terminal escapes, NULs and backspaces from a client reach the log escaped, and one
    anonymous request cannot write a 60,000-character line (found by review)."""
    async with httpx.AsyncClient(base_url=gateway) as client:
        await client.get("/nope%1b%5b2J%00%08", headers={"X-Request-ID": "controls"})
        await client.post("/generate", json={"prompt": "hi", "model": "x\x1b[31m\bred"})
        await client.get("/" + "a" * 60_000, headers={"X-Request-ID": "long-path"})
    text = read_log(log_file, waiting_for="[long-path]")
    assert not any(c in text for c in "\x1b\x00\x08")
    assert "/nope\\x1b[2J\\x00\\x08" in text
    assert "x\\x1b[31m\\x08red" in text
    [line] = [ln for ln in text.splitlines() if "[long-path]" in ln]
    assert len(line) < 1_000 and "(60001 chars)" in line
