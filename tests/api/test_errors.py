"""Every error answer has one shape, a stable code and a status a client can act on."""

from __future__ import annotations

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.anyio


def _assert_error_shape(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "status", "request_id"}
    assert error["code"] == code
    assert error["status"] == status
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert error["message"]
    assert TEST_KEY not in response.text
    return error  # type: ignore[no-any-return]


async def _generate(gateway: str, model: str = "emulator/fast", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway, timeout=20) as client:
        return await client.post("/generate", json={"prompt": "x", "model": model}, headers=headers)


async def test_unknown_model_is_a_400_with_the_upstream_message(gateway: str) -> None:
    error = _assert_error_shape(
        await _generate(gateway, "nope/not-a-model"), 400, "upstream_bad_request"
    )
    assert "nope/not-a-model is not a valid model ID" in str(error["message"])


@pytest.mark.parametrize(
    ("fault", "status", "code", "phrase"),
    [
        ("401", 401, "upstream_unauthorized", "OPENROUTER_API_KEY"),
        ("402", 402, "upstream_payment_required", "credits"),
        ("403", 403, "upstream_forbidden", "moderation"),
        ("404", 404, "upstream_not_found", "No endpoints found"),
        ("error-200", 502, "upstream_bad_response", "Provider returned error"),
        ("error-choice", 502, "upstream_bad_response", "Provider disconnected"),
    ],
)
async def test_upstream_failures_map_to_documented_statuses(
    gateway: str, emulator: Emulator, fault: str, status: int, code: str, phrase: str
) -> None:
    emulator.script([fault])
    error = _assert_error_shape(await _generate(gateway), status, code)
    assert phrase in str(error["message"])
    assert "user_emulator" not in str(error["message"])  # upstream user ids are scrubbed


async def test_request_ids_are_taken_from_the_client_when_sane(gateway: str) -> None:
    response = await _generate(gateway, "nope/x", **{"X-Request-ID": "client-id-42"})
    assert response.headers["X-Request-ID"] == "client-id-42"
    assert response.json()["error"]["request_id"] == "client-id-42"
    weird = await _generate(gateway, **{"X-Request-ID": "bad id\twith spaces"})
    assert weird.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(weird.headers["X-Request-ID"]) == 32


async def test_unknown_routes_and_methods_use_the_error_shape(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        _assert_error_shape(await client.get("/nope"), 404, "not_found")
        _assert_error_shape(await client.get("/generate"), 405, "method_not_allowed")
