"""Start-up: which upstream is served, and the loud notice when it is the emulator."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llm_gateway.app import SERVING_GC_THRESHOLDS, create_app
from llm_gateway.config import Settings
from llm_gateway.errors import ConfigError
from llm_gateway.runtime import display_url
from tests.conftest import read_log
from tests.servers import serve


def test_without_a_key_the_built_in_emulator_is_served_and_labelled(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, log_dir=tmp_path)  # type: ignore[call-arg]
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as client:
        index = client.get("/")
        models = client.get("/models")
        answer = client.post("/generate", json={"prompt": "hi", "model": "emulator/fast"})
    for response in (index, models, answer):
        assert response.headers["X-Upstream"] == "emulator"
    assert index.json()["upstream"] == "emulator"
    assert all(model.startswith("emulator/") for model in models.json())
    assert answer.status_code == 200
    log = read_log(tmp_path / "server_logs.txt", waiting_for="BUILT-IN EMULATOR")
    assert "BUILT-IN EMULATOR" in log and "OPENROUTER_API_KEY" in log


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored")
def test_a_serving_gateway_freezes_its_heap_and_spares_open_streams_full_collections(
    tmp_path: Path,
) -> None:
    gc.set_threshold(700, 10, 10)  # Python's default, whatever an earlier test left
    settings = Settings(_env_file=None, log_dir=tmp_path)  # type: ignore[call-arg]
    with serve(create_app(settings)) as url:
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert gc.get_threshold() == SERVING_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0


def test_with_a_key_openrouter_is_the_default_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-abc")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.resolved_upstream() == "openrouter"
    assert settings.upstream_url == "https://openrouter.ai/api/v1"


def test_openrouter_without_a_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_UPSTREAM", "openrouter")
    monkeypatch.setenv("OPENROUTER_API_KEY", "  ")
    with pytest.raises(ConfigError, match="OPENROUTER_API_KEY is not set"):
        create_app()


def test_settings_come_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "OPENROUTER_API_KEY=sk-or-v1-fromfile\nGATEWAY_RETRY_ATTEMPTS=7\nGATEWAY_UPSTREAM_URL=http://x/api/v1/\n"
    )
    settings = Settings()  # the test runs in tmp_path
    assert settings.openrouter_api_key is not None
    assert settings.openrouter_api_key.get_secret_value() == "sk-or-v1-fromfile"
    assert settings.retry_attempts == 7
    assert settings.upstream_url == "http://x/api/v1"
    assert "sk-or-v1-fromfile" not in repr(settings)


def test_env_example_documents_every_setting_with_placeholders_only() -> None:
    example = (Path(__file__).parents[1] / ".env.example").read_text()
    names = {
        "OPENROUTER_API_KEY" if field == "openrouter_api_key" else f"GATEWAY_{field.upper()}"
        for field in Settings.model_fields
    }
    documented = {
        line.split("=")[0]
        for line in example.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert names == documented
    assert "\nOPENROUTER_API_KEY=\n" in example  # never a real key


def test_urls_are_shown_without_credentials() -> None:
    assert display_url("https://user:pw@example.com:8443/api/v1?key=secret") == (
        "https://example.com:8443/api/v1"
    )
    assert display_url("https://openrouter.ai/api/v1") == "https://openrouter.ai/api/v1"


@pytest.mark.usefixtures("collector_restored")
def test_requests_leave_no_reference_cycles_behind(gateway: str) -> None:
    """A request's objects are freed by reference counting when it ends. One left in a
    reference cycle waits for the collector, and under thousands of requests the collector's
    passes (and the memory they hold meanwhile) are the gateway's tail latency."""
    chat = {"model": "emulator/fast", "messages": [{"role": "user", "content": "hi"}]}
    generate = {"model": "emulator/fast", "prompt": "hi", "max_tokens": 5}
    with httpx.Client(base_url=gateway, timeout=10) as client:
        client.get("/health")
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept to be looked at
        try:
            for _ in range(5):
                assert client.post("/v1/chat/completions", json=chat).status_code == 200
                assert client.post("/generate", json=generate).status_code == 200
                streamed = client.post("/generate", json=generate, params={"stream": "true"})
                assert streamed.status_code == 200
            gc.collect()
            left = [
                type(o).__qualname__
                for o in gc.garbage
                if type(o).__module__.startswith(("llm_gateway", "uvicorn.protocols"))
                and not type(o).__module__.startswith("llm_gateway.emulator")
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert left == []
