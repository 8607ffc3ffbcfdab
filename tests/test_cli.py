"""The `llm-gateway` command, run as a user runs it: a real process against the emulator."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from llm_gateway.emulator import Emulator
from tests.conftest import CLI, TEST_KEY


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_models_lists_ids_and_filters(cli_env: dict[str, str]) -> None:
    result = _run(["models", "--free"], cli_env)
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert "emulator/fast:free" in ids and all(i.endswith(":free") for i in ids)
    as_json = json.loads(_run(["models", "--json", "--details", "-q", "echo"], cli_env).stdout)
    assert [m["id"] for m in as_json] == ["emulator/echo"]


def test_generate_prints_the_answer(cli_env: dict[str, str], emulator: Emulator) -> None:
    result = _run(["generate", "Echo this back", "--model", "emulator/echo"], cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Echo this back\n"
    assert "emulator/echo" in result.stderr and "tokens" in result.stderr
    assert emulator.chat_records()[0].authorized


def test_generate_streams_and_reports_json(cli_env: dict[str, str]) -> None:
    streamed = _run(["generate", "Stream it", "-m", "emulator/echo", "--stream"], cli_env)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "Stream it\n"
    assert "ttft" in streamed.stderr
    whole = json.loads(_run(["generate", "JSON", "-m", "emulator/fast", "--json"], cli_env).stdout)
    assert whole["tokens_used"] == whole["usage"]["total_tokens"]


def test_upstream_errors_exit_non_zero_with_the_message(
    cli_env: dict[str, str], emulator: Emulator
) -> None:
    emulator.script(["402"])
    result = _run(["generate", "hi", "-m", "emulator/fast"], cli_env)
    assert result.returncode == 1
    assert "upstream_payment_required" in result.stderr
    unknown = _run(["generate", "hi", "-m", "no/such-model"], cli_env)
    assert unknown.returncode == 1 and "not a valid model ID" in unknown.stderr
    assert TEST_KEY not in result.stderr + unknown.stderr


def test_a_bad_configuration_exits_2_with_a_reason(cli_env: dict[str, str]) -> None:
    bad = {**cli_env, "GATEWAY_UPSTREAM": "openrouter", "OPENROUTER_API_KEY": ""}
    result = _run(["serve", "--port", "1"], bad)
    assert result.returncode == 2
    assert "OPENROUTER_API_KEY is not set" in result.stderr


def test_serving_the_built_in_emulator_still_says_where_the_gateway_is(tmp_path: Path) -> None:
    """Found by a newcomer: with no key, uvicorn's "running on" and shutdown lines were missing
    (the embedded emulator's server lowered the shared logger) and the only URL on screen was
    the emulator's internal one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("OPENROUTER_API_KEY", None)
    env["GATEWAY_LOG_DIR"] = str(tmp_path)
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert f"Uvicorn running on http://127.0.0.1:{port}" in stderr
    assert "Application startup complete" in stderr and "Shutting down" in stderr
    assert stderr.count("Uvicorn running on") == 1  # not the emulator's own
    assert "BUILT-IN EMULATOR" in stderr
