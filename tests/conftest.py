"""Shared fixtures: a real emulator and real gateways on loopback ports, isolated settings."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from llm_gateway.app import create_app
from llm_gateway.config import Settings
from llm_gateway.emulator import Emulator, EmulatorConfig
from llm_gateway.server import limited_protocol
from tests.servers import serve
from tests.services import RedisServer

# The installed `llm-gateway` command, next to the interpreter running the tests.
CLI = str(Path(sys.executable).with_name("llm-gateway"))

# A distinctive upstream key (not shaped like a real one), so tests can prove it never leaks.
TEST_KEY = "test-upstream-key-not-a-real-one-7f3a9c2e5b1d4086"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's key, settings or `.env` (tests run in a temp folder)."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_") or name == "OPENROUTER_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def _emulator_server() -> Iterator[tuple[Emulator, str]]:
    emulator = Emulator(
        EmulatorConfig(seed=7, time_scale=0.05, keepalive_interval_s=0.05, keep_bodies=True)
    )
    with serve(emulator.app) as url:
        yield emulator, url


@pytest.fixture
def emulator(_emulator_server: tuple[Emulator, str]) -> Iterator[Emulator]:
    """The session's emulator, reset and back at its default settings for each test."""
    emulator, _ = _emulator_server
    emulator.reset()
    saved = (emulator.config.time_scale, emulator.config.free_rpm)
    yield emulator
    emulator.config.time_scale, emulator.config.free_rpm = saved
    emulator.reset()


@pytest.fixture
def emulator_url(
    _emulator_server: tuple[Emulator, str],
    emulator: Emulator,  # noqa: ARG001 (asked for so the emulator is reset for this test)
) -> str:
    """Base URL of the emulated OpenRouter API (`.../api/v1`)."""
    return _emulator_server[1] + "/api/v1"


def gateway_settings(upstream_url: str, log_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "upstream": "openrouter",
        "openrouter_api_key": TEST_KEY,
        "upstream_url": upstream_url,
        "log_dir": log_dir,
        "retry_base": 0.01,
        "retry_max_wait": 0.05,
        "retry_budget": 5.0,
        "stream_commit_after": 0.5,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


GatewayFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def start_gateway(emulator_url: str, tmp_path: Path) -> GatewayFactory:
    """`with start_gateway(**settings) as url:` a gateway in front of the emulator, served
    with `llm-gateway serve`'s own protocol (its connection limits and disconnect watch), or
    with `plain_uvicorn=True` as `uvicorn --factory llm_gateway.app:create_app` serves it."""

    @contextmanager
    def start(*, plain_uvicorn: bool = False, **overrides: Any) -> Iterator[str]:
        upstream_url = overrides.pop("upstream_url", emulator_url)
        settings = gateway_settings(upstream_url, tmp_path / "logs", **overrides)
        config = {} if plain_uvicorn else {"http": limited_protocol(settings)}
        with serve(create_app(settings), **config) as url:
            yield url

    return start


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> Iterator[str]:
    """Base URL of a gateway with default test settings in front of the emulator."""
    with start_gateway() as url:
        yield url


@pytest.fixture
def cli_env(emulator_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the `llm-gateway` command against the emulator."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    clean.pop("OPENROUTER_API_KEY", None)
    return {
        **clean,
        "OPENROUTER_API_KEY": TEST_KEY,
        "GATEWAY_UPSTREAM_URL": emulator_url,
        "GATEWAY_LOG_DIR": str(tmp_path / "logs"),
        "COLUMNS": "200",
    }


def read_log(path: Path, *, waiting_for: str, count: int = 1) -> str:
    """The log file once `waiting_for` is in it (`count` times). Lines reach the file in batches
    (every 50 ms), in the order they were logged, and a request's access line is logged when
    its response has ended, which can be just after the client has read it. A stopped gateway
    has written everything."""
    deadline = time.monotonic() + 3
    while True:
        text = path.read_text() if path.exists() else ""
        if text.count(waiting_for) >= count or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "server_logs.txt"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real `redis-server` for the session (Debian's package), on a free loopback port."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test (and running, should a test have stopped it)."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A test skipped for want of a browser is said loudly at the end, not only in -ra's list:
    without Chromium the HTML report is never opened, and a broken one would pass unseen."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "chromium" in str(report.longrepr).lower()
    ]
    if skipped:
        terminalreporter.section("NOT TESTED: the report in a browser", sep="!", yellow=True)
        terminalreporter.line(
            f"{len(skipped)} test(s) need Debian's Chromium at /usr/bin/chromium and were skipped."
            " Install it with `apt-get install chromium` (.ci/run does), then run make test again.",
            yellow=True,
        )
