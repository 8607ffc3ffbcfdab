"""The read-only OpenRouter routes (/models, /generation, /key), the root page, control routes."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from llm_gateway.emulator import Emulator, EmulatorConfig, create_emulator_app
from tests.emulator.conftest import AUTH, CHAT, StartEmulator, chat_body
from tests.servers import serve

pytestmark = pytest.mark.anyio

MODEL_KEYS = [
    "id",
    "canonical_slug",
    "hugging_face_id",
    "name",
    "created",
    "description",
    "context_length",
    "architecture",
    "pricing",
    "top_provider",
    "per_request_limits",
    "supported_parameters",
    "default_parameters",
    "supported_voices",
    "knowledge_cutoff",
    "expiration_date",
    "links",
]


async def test_models_list_has_the_2026_shape_and_needs_no_key(
    base_url: str, emulator: Emulator
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as anonymous:
        response = await anonymous.get("/api/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["data", "total_count", "links"]
    assert body["links"] == {"next": None}
    assert body["total_count"] == len(body["data"]) == 10
    for model in body["data"]:
        assert list(model) == MODEL_KEYS
        assert set(model["architecture"]) == {
            "modality",
            "input_modalities",
            "output_modalities",
            "tokenizer",
            "instruct_type",
        }
        assert list(model["top_provider"]) == [
            "context_length",
            "max_completion_tokens",
            "is_moderated",
        ]
        assert model["per_request_limits"] is None and model["default_parameters"] == {}
        prices = [Decimal(model["pricing"][key]) for key in ("prompt", "completion")]
        assert all(isinstance(model["pricing"][key], str) for key in ("prompt", "completion"))
        assert all(Decimal("1e-7") <= price <= Decimal("3e-6") for price in prices) or (
            model["id"].endswith(":free") and prices == [0, 0]
        )
        assert model["links"]["details"] == f"/api/v1/models/{model['id']}/endpoints"
    [record] = emulator.records
    assert (record.path, record.status, record.authorized) == ("/api/v1/models", 200, False)


async def test_free_variants_share_the_canonical_slug(client: httpx.AsyncClient) -> None:
    models = {m["id"]: m for m in (await client.get("/api/v1/models")).json()["data"]}
    free = sorted(model_id for model_id in models if model_id.endswith(":free"))
    assert free == [
        "emulator/fast:free",
        "emulator/reasoning:free",
        "emulator/slow:free",
        "emulator/steady:free",
    ]
    for model_id in free:
        paid = models[model_id.removesuffix(":free")]
        assert models[model_id]["canonical_slug"] == paid["canonical_slug"]
        assert models[model_id]["name"] == paid["name"] + " (free)"
        assert models[model_id]["pricing"] == {"prompt": "0", "completion": "0"}
        assert paid["pricing"]["prompt"] != "0"
    assert models["emulator/fast"]["name"] == "Emulator: Fast"
    assert {"emulator/instant", "emulator/echo"} <= set(models)


async def test_generation_is_404_until_the_lag_has_passed(
    start_emulator: StartEmulator,
) -> None:
    emulator, client = start_emulator(time_scale=0.01, generation_lag_s=0.2)
    response = await client.post(CHAT, json=chat_body(max_tokens=5))
    generation_id = response.headers["X-Generation-Id"]
    early = await client.get("/api/v1/generation", params={"id": generation_id})
    assert early.status_code == 404
    assert early.json() == {
        "error": {"message": f"Generation {generation_id} not found", "code": 404}
    }
    await asyncio.sleep(0.25)
    data = (await client.get("/api/v1/generation", params={"id": generation_id})).json()["data"]
    usage = response.json()["usage"]
    assert data["id"] == generation_id
    assert (data["model"], data["streamed"], data["cancelled"]) == ("emulator/fast", False, False)
    assert (data["finish_reason"], data["native_finish_reason"]) == ("length", "length")
    assert data["provider_name"] == "Emulator"
    assert data["tokens_prompt"] == data["native_tokens_prompt"] == usage["prompt_tokens"]
    assert data["tokens_completion"] == data["native_tokens_completion"] == 5
    assert data["total_cost"] == pytest.approx(usage["cost"])
    assert isinstance(data["latency"], int) and isinstance(data["generation_time"], int)
    assert data["created_at"].endswith("+00:00")
    assert emulator.records[-1].path == "/api/v1/generation"


async def test_generation_needs_a_key_and_an_id(base_url: str, client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=base_url) as anonymous:
        denied = await anonymous.get("/api/v1/generation", params={"id": "gen-1-x"})
    assert denied.status_code == 401
    missing = await client.get("/api/v1/generation")
    assert missing.status_code == 400
    unknown = await client.get("/api/v1/generation", params={"id": "gen-1-nope"})
    assert unknown.status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/key", "/api/v1/auth/key"])
async def test_key_reports_the_usage_so_far(
    base_url: str, client: httpx.AsyncClient, path: str
) -> None:
    costs = [(await client.post(CHAT, json=chat_body())).json()["usage"]["cost"] for _ in range(2)]
    data = (await client.get(path)).json()["data"]
    assert data["label"].startswith("sk-or-v1-emu")
    assert data["limit"] is None and data["limit_remaining"] is None
    assert data["usage"] == pytest.approx(sum(costs))
    assert data["usage_daily"] == pytest.approx(sum(costs))
    assert data["is_free_tier"] is True
    assert isinstance(data["rate_limit"], dict)
    async with httpx.AsyncClient(base_url=base_url) as anonymous:
        denied = await anonymous.get(path)
    assert denied.status_code == 401
    assert denied.json() == {"error": {"message": "No auth credentials found", "code": 401}}


async def test_a_configured_key_is_enforced(start_emulator: StartEmulator) -> None:
    emulator, client = start_emulator(time_scale=0, api_key="sk-or-v1-right")
    wrong = await client.post(CHAT, json=chat_body())
    assert wrong.status_code == 401
    assert wrong.json() == {"error": {"message": "User not found.", "code": 401}}
    assert (await client.get("/api/v1/key")).status_code == 401
    right = {"Authorization": "Bearer sk-or-v1-right"}
    assert (await client.post(CHAT, json=chat_body(), headers=right)).status_code == 200
    assert (await client.get("/api/v1/key", headers=right)).status_code == 200
    assert [r.status for r in emulator.chat_records()] == [401, 200]
    assert all(r.authorized for r in emulator.chat_records())


async def test_root_says_it_is_an_emulator(client: httpx.AsyncClient) -> None:
    body = (await client.get("/")).json()
    assert "emulator" in body["service"] and "not OpenRouter" in body["note"]
    assert body["base_url"] == "/api/v1"
    assert "emulator/fast:free" in body["models"]


async def test_unknown_api_routes_are_json_404s(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    response = await client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Not Found", "code": 404}}
    assert (await client.get(CHAT)).status_code == 405
    assert [r.status for r in emulator.records] == [404, 405]


async def test_control_routes_list_reset_and_script(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await client.post(CHAT, json=chat_body(), headers={"X-Emulator-Faults": "503"})
    [listed] = (await client.get("/_emulator/requests")).json()
    assert (listed["path"], listed["status"], listed["fault"]) == (CHAT, 503, "503")
    assert listed["body"]["model"] == "emulator/fast" and listed["id"].startswith("gen-")

    queued = await client.post("/_emulator/faults", json={"faults": ["402", "ok"], "model": None})
    assert queued.json() == {"queued": 2, "model": None}
    assert (await client.post(CHAT, json=chat_body())).status_code == 402
    assert (await client.post(CHAT, json=chat_body())).status_code == 200

    for bad in ({"faults": ["nope"]}, {"faults": "429"}, {"faults": ["429"], "model": "x/y"}):
        rejected = await client.post("/_emulator/faults", json=bad)
        assert rejected.status_code == 400, bad
        assert rejected.json()["error"]["code"] == 400

    assert (await client.post("/_emulator/reset")).json() == {"reset": True}
    assert emulator.records == []
    assert (await client.get("/_emulator/requests")).json() == []


async def test_create_emulator_app_keeps_the_emulator_on_state() -> None:
    app = create_emulator_app(EmulatorConfig(time_scale=0))
    emulator = app.state.emulator
    assert isinstance(emulator, Emulator) and emulator.app is app
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
            assert (await client.post(CHAT, json=chat_body())).status_code == 200
    [record] = emulator.chat_records()
    assert record.completed and not record.cancelled
