"""`POST /benchmark` and `/benchmarks` over HTTP, as the brief's reviewer calls them."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_gateway.app import create_app
from llm_gateway.emulator import Emulator
from tests.conftest import TEST_KEY, GatewayFactory, gateway_settings
from tests.servers import serve

pytestmark = pytest.mark.anyio

PROMPTS = b"What is 2+2?\nName a colour.\n\nWrite a haiku about <script>alert(1)</script>\n"


@pytest.fixture
def bench_gateway(start_gateway: GatewayFactory, tmp_path: Path) -> Any:
    with start_gateway(benchmarks_dir=tmp_path / "benchmarks") as url:
        yield url


async def _post(
    gateway: str,
    fields: list[tuple[str, str]],
    prompts: bytes = PROMPTS,
    name: str = "prompts.txt",
    **params: str,
) -> httpx.Response:
    form: dict[str, list[str]] = {}
    for key, value in fields:  # a field may repeat, as `model` does
        form.setdefault(key, []).append(value)
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
        return await client.post(
            "/benchmark",
            params=params,
            data=form,
            files={"prompt_file": (name, prompts, "text/plain")},
        )


def _csv_rows(path: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


async def test_three_prompts_two_runs(bench_gateway: str) -> None:
    response = await _post(bench_gateway, [("model", "emulator/fast"), ("runs", "2")])
    assert response.status_code == 200
    body = response.json()
    assert (body["runs"], body["prompts"], body["requests"], body["ok"], body["failed"]) == (
        2, 3, 6, 6, 0,
    )  # fmt: skip
    for key in ("avg", "min", "max", "std_dev", "p50", "p90", "p95", "p99"):
        assert isinstance(body["latency"][key], float)
    assert body["latency"]["min"] <= body["latency"]["avg"] <= body["latency"]["max"]
    assert body["ttft"]["avg"] < body["latency"]["avg"]
    model = body["models"]["emulator/fast"]
    assert (model["requests"], model["ok"], model["errors"]) == (6, 6, {})
    assert model["tokens_per_s"]["avg"] > 0
    assert len(body["per_prompt"]) == 3
    rows = _csv_rows(body["files"]["results_csv"])
    assert len(rows) == 6  # one row per request, not one aggregate row
    for column in (
        "model", "prompt_index", "prompt", "run", "status", "error", "latency_seconds",
        "ttft_seconds", "tokens_used", "prompt_tokens", "completion_tokens",
        "tokens_per_second", "attempts", "started_at",
    ):  # fmt: skip
        assert column in rows[0]
    assert int(rows[0]["tokens_used"]) == int(rows[0]["prompt_tokens"]) + int(
        rows[0]["completion_tokens"]
    )
    assert Path(body["files"]["report"]).exists() and Path(body["files"]["summary"]).exists()


async def test_one_run_per_prompt_has_zero_std_dev(bench_gateway: str) -> None:
    body = (await _post(bench_gateway, [("model", "emulator/fast"), ("runs", "1")])).json()
    assert body["requests"] == 3
    assert all(cell["latency"]["std_dev"] == 0 for cell in body["per_prompt"])


async def test_several_models_repeated_or_comma_separated(bench_gateway: str) -> None:
    fields = [
        ("model", "emulator/fast, emulator/echo"),
        ("model", "emulator/steady:free"),
        ("runs", "3"),
    ]
    body = (await _post(bench_gateway, fields)).json()
    assert list(body["models"]) == ["emulator/fast", "emulator/echo", "emulator/steady:free"]
    assert body["requests"] == 3 * 3 * 3
    assert all(group["ok"] == 9 for group in body["models"].values())
    assert len(body["per_prompt"]) == 9


async def test_visualize_answers_the_html_report_with_output_escaped(bench_gateway: str) -> None:
    response = await _post(
        bench_gateway, [("model", "emulator/echo"), ("runs", "2")], visualize="true"
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert "emulator/echo" in html and "<table" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_failures_are_counted_not_dropped(bench_gateway: str, emulator: Emulator) -> None:
    emulator.script(["402", "429-day"], model="emulator/fast")
    body = (
        await _post(bench_gateway, [("model", "emulator/fast"), ("runs", "1"), ("stream", "false")])
    ).json()
    # A benchmark measures with a client of its own (bench/target.py): what the upstream says
    # is what is measured, without the gateway's own waits for its rate limits.
    assert (body["requests"], body["ok"], body["failed"]) == (3, 1, 2)
    assert body["models"]["emulator/fast"]["errors"] == {"http_429": 1, "http_4xx": 1}
    assert len(emulator.chat_records("emulator/fast")) == 3
    assert body["ttft"] is None  # not streamed: no TTFT claimed


async def test_a_wrong_model_id_says_why_in_the_answer(bench_gateway: str) -> None:
    fields = [("model", "emulator/fast,foo/bar"), ("runs", "1"), ("retries", "0")]
    body = (await _post(bench_gateway, fields)).json()
    assert body["status"] == "done"  # the benchmark ran; one model never answered
    wrong, right = body["models"]["foo/bar"], body["models"]["emulator/fast"]
    assert (wrong["ok"], wrong["errors"]) == (0, {"http_4xx": 3})
    assert wrong["top_errors"] == [
        {
            "status": "http_4xx",
            "message": "upstream_bad_request: foo/bar is not a valid model ID",
            "count": 3,
        }
    ]
    assert right["ok"] == 3 and right["top_errors"] == []


async def test_background_job_lifecycle(bench_gateway: str, emulator: Emulator) -> None:
    emulator.config.time_scale = 0.5
    response = await _post(
        bench_gateway, [("model", "emulator/steady"), ("runs", "2")], background="true"
    )
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and job["status_url"] == f"/benchmarks/{job['id']}"
    async with httpx.AsyncClient(base_url=bench_gateway, timeout=10) as client:
        seen = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = (await client.get(job["status_url"])).json()
            seen.add(status["status"])
            if status["status"] == "done":
                break
            assert status["summary"] is None
            await asyncio_sleep(0.05)
        assert status["status"] == "done"
        assert "running" in seen
        assert status["progress"] == {"done": 6, "total": 6}
        assert status["summary"]["requests"] == 6 and status["summary"]["run_id"] == job["id"]
        listed = (await client.get("/benchmarks")).json()["runs"]
        assert listed[0]["id"] == job["id"] and listed[0]["status"] == "done"
        assert (listed[0]["requests"], listed[0]["ok"], listed[0]["models"]) == (
            6, 6, ["emulator/steady"],
        )  # fmt: skip
        report = await client.get(f"/benchmarks/{job['id']}/report")
        assert report.status_code == 200 and "emulator/steady" in report.text
        results = await client.get(f"/benchmarks/{job['id']}/results.csv")
        assert results.headers["content-type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(results.text)))) == 6


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@pytest.mark.parametrize(
    ("fields", "prompts", "name", "status", "mentions"),
    [
        ([("runs", "2")], PROMPTS, "p.txt", 422, "model"),
        ([("model", " , "), ("runs", "2")], PROMPTS, "p.txt", 422, "at least one model"),
        ([("model", "emulator/fast"), ("runs", "0")], PROMPTS, "p.txt", 422, "runs"),
        ([("model", "emulator/fast"), ("runs", "many")], PROMPTS, "p.txt", 422, "runs"),
        ([("model", "emulator/fast"), ("runs", "1000")], PROMPTS, "p.txt", 422, "at most 100"),
        (
            [("model", "emulator/fast"), ("concurrency", "999")],
            PROMPTS,
            "p.txt",
            422,
            "concurrency",
        ),
        # Every model is a column of the report and a list entry in the runs index.
        (
            [("model", ",".join(f"m/{i}" for i in range(10_000)))],
            PROMPTS,
            "p.txt",
            422,
            "at most 20 models",
        ),
        ([("model", "emulator/fast")], b"", "p.txt", 400, "no prompts"),
        ([("model", "emulator/fast")], b"\xff\xfe\x00bad", "p.txt", 400, "not UTF-8"),
        ([("model", "emulator/fast")], b"x" * (1024 * 1024 + 1), "p.txt", 413, "limit"),
        ([("model", "emulator/fast")], b"%PDF-1.4", "p.pdf", 400, "unsupported"),
        ([("model", "emulator/fast"), ("runs", "100")], b"a\n" * 200, "p.txt", 422, "the limit is"),
        # GATEWAY_MAX_PROMPT_CHARS holds for benchmark prompts too.
        ([("model", "emulator/fast")], b"hi\n" + b"x" * 200_001, "p.txt", 400, "(line 2)"),
    ],
)
async def test_bad_input_is_refused_before_anything_runs(
    bench_gateway: str,
    emulator: Emulator,
    tmp_path: Path,
    fields: list[tuple[str, str]],
    prompts: bytes,
    name: str,
    status: int,
    mentions: str,
) -> None:
    response = await _post(bench_gateway, fields, prompts, name)
    assert response.status_code == status
    assert mentions in response.json()["error"]["message"]
    assert emulator.chat_records() == []
    assert not list((tmp_path / "benchmarks").glob("*/benchmark_results.csv"))


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        # `curl -F prompt_file=prompts.txt`: the `@` forgotten, the file name sent as text
        (
            {"data": {"model": "m"}, "files": {"prompt_file": (None, "prompts.txt")}},
            "a text field, not a file; send the file with `-F prompt_file=@path`",
        ),
        (
            {"json": {"prompt_file": "prompts.txt", "model": "m"}},
            "POST /benchmark takes multipart/form-data, not application/json",
        ),
        (
            {"data": {"model": "m"}},
            "takes multipart/form-data, not application/x-www-form-urlencoded",
        ),
        (
            {"data": {"model": "m"}, "files": {"other": ("p.txt", b"hi")}},
            "prompt_file: missing; send the file with `-F prompt_file=@path`",
        ),
    ],
)
async def test_a_body_that_is_not_a_form_with_a_file_says_how_to_send_one(
    bench_gateway: str, sent: dict[str, Any], says: str
) -> None:
    async with httpx.AsyncClient(base_url=bench_gateway) as client:
        response = await client.post("/benchmark", **sent)
    assert response.status_code == 422
    assert says in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "run_id", ["nope", "%2E%2E", "20261127T000000Z-abcdef", "..%2F..%2Fetc%2Fpasswd"]
)
async def test_unknown_or_malicious_ids_are_404(bench_gateway: str, run_id: str) -> None:
    async with httpx.AsyncClient(base_url=bench_gateway) as client:
        for suffix in ("", "/report", "/results.csv"):
            response = await client.get(f"/benchmarks/{run_id}{suffix}")
            assert response.status_code == 404, (run_id, suffix)
            assert "root:" not in response.text  # no file content leaked


def test_stopping_the_server_marks_running_jobs_interrupted(
    emulator: Emulator, emulator_url: str, tmp_path: Path
) -> None:
    emulator.config.time_scale = 1.0
    settings = gateway_settings(emulator_url, tmp_path / "logs", benchmarks_dir=tmp_path / "b")
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as client:
        job = client.post(
            "/benchmark?background=true",
            data={"model": "emulator/steady", "runs": "50"},
            files={"prompt_file": ("p.txt", b"one\ntwo\n", "text/plain")},
        ).json()
        deadline = time.monotonic() + 10
        while client.get(f"/benchmarks/{job['id']}").json()["progress"]["done"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # The server has stopped. What it measured is on disk, and the run says how it ended.
    run_dir = tmp_path / "b" / job["id"]
    status = (run_dir / "status.json").read_text()
    assert '"interrupted"' in status
    rows = list(csv.DictReader(io.StringIO((run_dir / "benchmark_results.csv").read_text())))
    assert 2 <= len(rows) < 100
    assert (run_dir / "summary.json").exists() and (run_dir / "report.html").exists()
    manifest = (run_dir / "manifest.json").read_text()
    assert TEST_KEY not in manifest and '"interrupted"' in manifest


async def test_a_full_job_queue_refuses_without_leaving_runs_behind(
    start_gateway: GatewayFactory, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.time_scale = 1.0
    with start_gateway(benchmarks_dir=tmp_path / "runs", bench_max_jobs=1) as gateway:
        fields = [("model", "emulator/slow"), ("runs", "1")]
        codes = [(await _post(gateway, fields, background="true")).status_code for _ in range(4)]
        async with httpx.AsyncClient(base_url=gateway) as client:
            listed = (await client.get("/benchmarks")).json()["runs"]
    assert codes == [202, 202, 429, 429]  # one running, one queued, then full
    assert len(listed) == 2 and len([p for p in (tmp_path / "runs").iterdir() if p.is_dir()]) == 2
    assert {item["status"] for item in listed} <= {"running", "queued"}


async def test_results_csv_cells_cannot_run_as_formulas(bench_gateway: str) -> None:
    prompts = b'=HYPERLINK("http://evil.example","x")\n@SUM(1+1)\n-2+3\n'
    body = (await _post(bench_gateway, [("model", "emulator/echo"), ("runs", "1")], prompts)).json()
    async with httpx.AsyncClient(base_url=bench_gateway) as client:
        served = (await client.get(body["links"]["results_csv"])).text
    rows = list(csv.DictReader(io.StringIO(served)))
    assert [row["prompt"] for row in rows] == ["'" + p for p in prompts.decode().splitlines()]
    # The echo model answers with the prompt: the model's text is protected the same way.
    assert all(row["output_preview"].startswith("'") for row in rows)
    assert body["per_prompt"][0]["prompt"].startswith("=HYPERLINK")  # the JSON is unchanged


async def test_results_csv_ignores_a_range_header(bench_gateway: str) -> None:
    # Starlette would answer a bad Range in plain text (400, 416), outside the error shape.
    body = (await _post(bench_gateway, [("model", "emulator/echo"), ("runs", "1")])).json()
    async with httpx.AsyncClient(base_url=bench_gateway) as client:
        whole = await client.get(body["links"]["results_csv"])
        assert "accept-ranges" not in whole.headers
        for asked in ("bytes=abc", "bytes=5-1", "bytes=999999-", "items=0-1", "bytes=0-10"):
            answer = await client.get(body["links"]["results_csv"], headers={"Range": asked})
            assert (answer.status_code, answer.content) == (200, whole.content), asked
    assert len(list(csv.DictReader(io.StringIO(whole.text)))) == 3


async def test_load_shapes_retries_and_sweeps_are_form_fields(bench_gateway: str) -> None:
    fields = [("model", "emulator/fast"), ("runs", "2"), ("rate", "50"), ("arrivals", "poisson")]
    fields += [("arrival_seed", "5"), ("retries", "0"), ("concurrency", "4")]
    response = await _post(bench_gateway, fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["retries"]["attempts"] == body["requests"] == 6
    assert body["client"]["processes"] == 1 and body["client"]["samples"] > 0
    config = json.loads(Path(body["files"]["manifest"]).read_text())["config"]
    assert (config["rate"], config["arrivals"], config["arrival_seed"]) == (50.0, "poisson", 5)
    assert (config["retries"], config["processes"], config["concurrency"]) == (0, 1, 4)
    sweep = [("model", "emulator/fast"), ("runs", "1"), ("concurrency", "2"), ("sweep", "true")]
    response = await _post(bench_gateway, [*sweep, ("slo", "latency_p99=10")])
    assert response.status_code == 200, response.text
    assert response.json()["sweep"]["knee"] == {"emulator/fast": 2}
    for bad, says in (
        ([("slo", "nonsense=1")], "nonsense"),
        ([("arrivals", "poisson")], "need a rate"),
        ([("processes", "2")], "GATEWAY_BENCH_MAX_PROCESSES"),
    ):
        refused = await _post(bench_gateway, [*sweep, *bad])
        assert refused.status_code == 422 and says in refused.json()["error"]["message"]


async def test_worker_processes_when_the_gateway_allows_them(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    fields = [("model", "emulator/fast"), ("runs", "2"), ("concurrency", "2"), ("processes", "2")]
    with start_gateway(benchmarks_dir=tmp_path / "runs", bench_max_processes=2) as gateway:
        response = await _post(gateway, fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["client"]["processes"]) == (6, 2)
