"""Inbound keys: a gateway holding an upstream key must not spend it for strangers."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from llm_gateway.app import create_app
from llm_gateway.security import is_loopback, key_matches
from tests.conftest import CLI, GatewayFactory, gateway_settings, read_log
from tests.servers import serve

pytestmark = pytest.mark.anyio

BODY = {"prompt": "hi", "model": "emulator/fast", "max_tokens": 5}


async def test_routes_need_a_valid_key_when_keys_are_set(
    start_gateway: GatewayFactory, log_file: Path
) -> None:
    with start_gateway(api_keys="client-key-one,client-key-two") as gateway:
        async with httpx.AsyncClient(base_url=gateway) as client:
            missing = await client.post("/generate", json=BODY)
            wrong = await client.post(
                "/generate", json=BODY, headers={"Authorization": "Bearer not-a-key"}
            )
            basic = await client.get("/models", headers={"Authorization": "Basic client-key-one"})
            ok = await client.post(
                "/generate", json=BODY, headers={"Authorization": "Bearer client-key-two"}
            )
            openai = await client.get("/v1/models")
            metrics = await client.get("/metrics")
            public = [
                await client.get(path) for path in ("/health", "/ready", "/openapi.json", "/docs")
            ]
    for refused in (missing, wrong, basic, metrics):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "unauthorized"
    assert "No API key" in missing.json()["error"]["message"]
    assert "not valid" in wrong.json()["error"]["message"]
    assert openai.status_code == 401
    assert openai.json()["error"]["type"] == "authentication_error"  # OpenAI's shape under /v1
    assert ok.status_code == 200
    assert [r.status_code for r in public] == [200, 200, 200, 200]
    log = read_log(log_file, waiting_for="status=401")
    assert "client-key-one" not in log and "client-key-two" not in log
    assert "status=401" in log


async def test_keys_can_come_from_a_file(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# team A\nkey-from-file-a\n\n  key-from-file-b  \n")
    with start_gateway(api_keys_file=keys) as gateway, httpx.Client(base_url=gateway) as client:
        for key, status in (("key-from-file-b", 200), ("# team A", 401), ("key-from-file", 401)):
            response = client.get("/models", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == status, key


def test_key_comparison_checks_every_key() -> None:
    keys = (b"alpha", b"beta")
    assert key_matches(b"beta", keys)
    assert not key_matches(b"bet", keys)
    assert not key_matches(b"", keys)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_an_open_gateway_refuses_a_public_address(cli_env: dict[str, str]) -> None:
    result = subprocess.run(
        [CLI, "serve", "--host", "0.0.0.0", "--port", "1"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "GATEWAY_API_KEYS" in result.stderr and "GATEWAY_ALLOW_OPEN" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_public(env: dict[str, str]) -> int:
    """Start `serve --host 0.0.0.0` and return the status of /health reached over loopback."""
    port = _free_port()
    process = subprocess.Popen(
        [CLI, "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").status_code
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the gateway did not start")
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize("extra", [{"GATEWAY_API_KEYS": "k"}, {"GATEWAY_ALLOW_OPEN": "true"}])
def test_a_public_address_is_served_with_keys_or_explicit_consent(
    cli_env: dict[str, str], extra: dict[str, str]
) -> None:
    assert _serve_public({**cli_env, **extra}) == 200


async def test_behind_a_path_prefix_probes_stay_public_and_v1_keeps_its_shape(
    emulator_url: str, tmp_path: Path
) -> None:
    settings = gateway_settings(emulator_url, tmp_path / "logs", api_keys="client-key-one")
    # A proxy serves the gateway at /api and strips the prefix; uvicorn's --root-path.
    with serve(create_app(settings), root_path="/api") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            health = await client.get("/health")
            refused = await client.get("/v1/models")
    assert health.status_code == 200
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"


def _network_address() -> str:
    """An address of this machine that is not loopback (the one a route to the world uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: picks a route, sends nothing
        address = str(probe.getsockname()[0])
    if is_loopback(address):
        # Loud, not silent: this machine has no network interface to test from.
        pytest.skip(f"no non-loopback address on this machine (got {address})")
    return address


@pytest.mark.parametrize("allow_open", [False, True])
async def test_without_keys_the_app_itself_refuses_the_network(
    emulator_url: str, tmp_path: Path, allow_open: bool
) -> None:
    """However it is started (here as `uvicorn --factory ... --host 0.0.0.0` would, bypassing
    the CLI's check), an app without keys answers only requests that came in over loopback."""
    address = _network_address()
    settings = gateway_settings(
        emulator_url, tmp_path / "logs", allow_open=allow_open, allowed_hosts="*"
    )
    with serve(create_app(settings), host="0.0.0.0") as url:
        port = url.rsplit(":", 1)[1]
        async with httpx.AsyncClient() as client:
            remote = await client.post(f"http://{address}:{port}/generate", json=BODY)
            probe = await client.get(f"http://{address}:{port}/health")
            local = await client.post(f"http://127.0.0.1:{port}/generate", json=BODY)
    assert local.status_code == 200
    assert probe.status_code == 200  # probes stay public (load balancers check them)
    if allow_open:
        assert remote.status_code == 200
    else:
        assert remote.status_code == 403
        assert remote.json()["error"]["code"] == "network_access_refused"
        assert "GATEWAY_API_KEYS" in remote.json()["error"]["message"]
