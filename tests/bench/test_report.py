"""The HTML report: escaping, self-containment, edge cases, and a real browser rendering it."""

from __future__ import annotations

import random
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from llm_gateway.bench import charts
from llm_gateway.bench.documents import Manifest
from llm_gateway.bench.records import RequestRecord
from llm_gateway.bench.report import fmt_cost, fmt_rate, fmt_seconds, render_report
from llm_gateway.bench.stats import summarize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "meta-llama/llama-3.1-8b:free"]
PROMPTS = [
    "Explain the CAP theorem in two sentences.",
    'Repeat this exactly: <script>alert("x")</script>',
    "Write a haiku about latency. " * 6,  # longer than the table shows
]
NOT_A_NUMBER = re.compile(r"\b(?:nan|inf|infinity)\b", re.I)
XSS_ERROR = "upstream said <img src=x onerror=alert(1)> and gave up"
# A table row's key cells: its mean latency, then its std dev.
KEY_CELLS = re.compile(r'<td class="num key">([^<]*)</td>\s*<td class="num key">([^<]*)</td>')


def record(**overrides: Any) -> RequestRecord:
    """A successful streamed request with plausible numbers; override what a test needs."""
    values: dict[str, Any] = {
        "model": MODELS[0],
        "prompt_index": 0,
        "prompt": PROMPTS[0],
        "run": 1,
        "step": None,
        "warmup": False,
        "status": "ok",
        "error": None,
        "http_status": 200,
        "finish_reason": "stop",
        "started_at": "2025-05-01T12:00:00+00:00",
        "offset_seconds": 0.0,
        "queue_seconds": 0.0,
        "ttft_seconds": 0.3,
        "ttfc_seconds": 0.3,
        "latency_seconds": 1.2,
        "done_seconds": 1.21,
        "tokens_used": 150,
        "prompt_tokens": 30,
        "completion_tokens": 120,
        "tokens_source": "usage",
        "chunks": 40,
        "tokens_per_second": 100.0,
        "decode_tokens_per_second": 132.2,
        "decode_seconds_per_token": 0.0076,
        "inter_chunk_p50_seconds": 0.02,
        "inter_chunk_p95_seconds": 0.05,
        "inter_chunk_max_seconds": 0.08,
        "stalls": 0,
        "cost_usd": 0.000042,
        "attempts": 1,
        "retry_wait_seconds": 0.0,
        "provider": "Example",
        "model_served": None,
        "generation_id": "gen-1",
        "output_preview": 'Model says <img src=y onerror=alert("out")> & <b>bold</b>',
    }
    values.update(overrides)
    return RequestRecord(**values)


def failure(status: str, error: str, **overrides: Any) -> RequestRecord:
    """A failed request: no timings past t0, no tokens."""
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "http_status": {"http_429": 429, "http_5xx": 502}.get(status),
        "finish_reason": None,
        "ttft_seconds": None,
        "ttfc_seconds": None,
        "latency_seconds": None,
        "done_seconds": None,
        "completion_tokens": None,
        "tokens_per_second": None,
        "cost_usd": None,
    }
    values.update(overrides)
    return record(**values)


def run_records(
    models: list[str] = MODELS, runs: int = 5, *, stream: bool = True, seed: int = 3
) -> list[RequestRecord]:
    """Round-robin runs over prompts and models, as the runner schedules them, with failures."""
    rng = random.Random(seed)
    base = {m: 0.6 + 0.5 * i for i, m in enumerate(models)}
    rows, offset = [], 0.0
    failures = {
        (1, 1, 2): ("http_429", "rate limited by the upstream (free model)"),
        (2, 0, 3): ("timeout", "no response within 30 s"),
        (0, 2, 4): ("midstream_error", XSS_ERROR),
    }
    for run in range(1, runs + 1):
        for index, prompt in enumerate(PROMPTS):
            for m, model in enumerate(models):
                offset += rng.uniform(0.05, 0.4)
                where = {"model": model, "prompt_index": index, "prompt": prompt, "run": run}
                if (m, index, run) in failures:
                    status, error = failures[(m, index, run)]
                    rows.append(failure(status, error, offset_seconds=offset, **where))
                    continue
                latency = base[model] * (1 + 0.4 * index) * rng.uniform(0.8, 1.3)
                ttft = latency * rng.uniform(0.15, 0.3) if stream else None
                tokens = rng.randint(60, 240)
                rows.append(
                    record(
                        **where,
                        offset_seconds=offset,
                        latency_seconds=latency,
                        done_seconds=latency + 0.002,
                        ttft_seconds=ttft,
                        ttfc_seconds=ttft,
                        completion_tokens=tokens,
                        tokens_per_second=tokens / latency,
                        cost_usd=tokens * 3e-7,
                    )
                )
    return rows


def manifest(**overrides: Any) -> Manifest:
    values: dict[str, Any] = {
        "id": "20250501T120000Z-a1b2c3",
        "created_at": "2025-05-01T12:00:00+00:00",
        "finished_at": "2025-05-01T12:00:19+00:00",
        "status": "done",
        "upstream": {"url": "https://openrouter.ai/api/v1", "kind": "openrouter"},
        "models": MODELS,
        "prompt_file": {"name": "prompts.txt", "sha256": "ab" * 32, "prompts": len(PROMPTS)},
        "config": {
            "runs": 5,
            "concurrency": 4,
            "rate": None,
            "max_tokens": 256,
            "temperature": 0.0,
            "stream": True,
            "warmup": 0,
            "timeout": 30.0,
        },
        "versions": {"llm-gateway": "0.1.0", "python": "3.11.9", "aiohttp": "3.10.5"},
        "client": {"loop_lag_max_s": 0.0042, "loop_lag_p99_s": 0.0011},
    }
    values.update(overrides)
    return Manifest.model_validate(values)


def render(records: list[RequestRecord], **manifest_overrides: Any) -> str:
    return render_report(summarize(records), records, manifest(**manifest_overrides))


def chart_svg(html: str, kind: str) -> str:
    match = re.search(rf'<svg class="chart" data-chart="{kind}".*?</svg>', html, re.S)
    assert match, f"no {kind} chart"
    return match.group(0)


@pytest.fixture(scope="module")
def records() -> list[RequestRecord]:
    return run_records()


@pytest.fixture(scope="module")
def html(records: list[RequestRecord]) -> str:
    return render(records)


def test_untrusted_strings_are_escaped_everywhere(html: str) -> None:
    assert "&lt;script&gt;alert(" in html
    # Model output is shown (a sample answer per prompt and model) as text, never as markup.
    assert "Model says &lt;img src=y onerror=alert(" in html
    assert "<img src=y" not in html and "<b>bold" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "<script" not in html  # the report needs no script at all


def test_model_ids_are_escaped_inside_svg() -> None:
    evil = 'x/<svg onload=alert(1)>"quoted"'
    rows = [replace(r, model=evil) if r.model == MODELS[0] else r for r in run_records(runs=2)]
    html = render(rows, models=[evil, *MODELS[1:]])
    assert "<svg onload" not in html
    assert "&lt;svg onload=alert(1)&gt;" in chart_svg(html, "latency")
    assert "&lt;svg onload=alert(1)&gt;" in chart_svg(html, "timeline")


def test_report_references_nothing_external(html: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", html, re.I)
    assert not re.search(r"<link[^>]*stylesheet", html, re.I)
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert not re.search(r"@import|url\(", html, re.I)


def test_header_and_tables(html: str, records: list[RequestRecord]) -> None:
    assert "20250501T120000Z-a1b2c3" in html
    assert html.count('class="model-row') == len(MODELS)
    assert html.count('class="prompt-row') == len(MODELS) * len(PROMPTS)
    assert html.count('class="failure-row"') == sum(r.status != "ok" for r in records)
    assert "ab" * 32 in html and "4.2 ms" in html  # prompt-file hash and the client's loop lag
    assert "emulator-warning" not in html and "status-notice" not in html
    # A long prompt is shortened in the cell, with the full text in the title attribute.
    assert f'title="{PROMPTS[2]}"' in html and PROMPTS[2][:79] + "…<" in html


def test_fastest_mean_latency_is_highlighted(html: str, records: list[RequestRecord]) -> None:
    means = {m: g.latency.avg for m, g in summarize(records).models.items() if g.latency}
    fastest = min(means, key=lambda m: means[m] or 0.0)
    best = re.findall(r'<tr class="model-row best">\s*<td class="model">([^<]+)<', html)
    assert best == [fastest]


def test_chart_marks_match_the_data(html: str, records: list[RequestRecord]) -> None:
    ok = [r for r in records if r.status == "ok"]
    latency, timeline = chart_svg(html, "latency"), chart_svg(html, "timeline")
    assert latency.count('class="mark point"') == len(ok)
    assert latency.count('class="mark box"') == len(MODELS)
    assert chart_svg(html, "ttft").count('class="mark point"') == len(ok)
    assert timeline.count('class="mark point"') == len(ok)
    assert timeline.count('class="mark fail"') == len(records) - len(ok)
    assert not NOT_A_NUMBER.search(html)


def test_number_formats() -> None:
    assert fmt_seconds(1.23456) == "1.235"
    assert fmt_seconds(None) == fmt_rate(None) == fmt_cost(None) == "—"
    assert fmt_seconds(float("nan")) == "—"
    assert fmt_rate(123.456) == "123.5"
    assert fmt_cost(0.0000123456789) == "$0.0000123457"
    assert fmt_cost(12.5) == "$12.5"


def test_interrupted_run_says_so(records: list[RequestRecord]) -> None:
    html = render(records[:10], status="interrupted", finished_at=None)
    assert 'id="status-notice"' in html
    assert re.search(r"<strong>Interrupted\.</strong>.*only the requests that finished", html)


def test_emulator_upstream_is_flagged(records: list[RequestRecord]) -> None:
    html = render(records, upstream={"url": "http://127.0.0.1:9010/api/v1", "kind": "emulator"})
    assert 'id="emulator-warning"' in html
    assert "not from real models" in html


def test_no_successful_requests() -> None:
    rows = [
        failure("http_5xx", "bad gateway", model=m, run=r, offset_seconds=r + i / 10)
        for i, m in enumerate(MODELS)
        for r in (1, 2)
    ]
    html = render(rows)
    assert 'data-missing-chart="latency"' in html and 'data-missing-chart="ttft"' in html
    assert chart_svg(html, "timeline").count('class="mark fail"') == len(rows)
    assert 'class="best-tag"' not in html


def test_single_request() -> None:
    html = render([record()])
    assert html.count('class="model-row') == 1
    assert chart_svg(html, "latency").count('class="mark point"') == 1
    assert 'class="mark box"' in chart_svg(html, "latency")
    assert 'class="best-tag"' not in html  # nothing to compare with


def test_non_streamed_run_has_no_ttft() -> None:
    rows = run_records(runs=2, stream=False)
    html = render(rows, config={"runs": 2, "concurrency": 2, "stream": False})
    assert 'data-missing-chart="ttft"' in html and "not streamed" in html
    assert 'data-chart="ttft"' not in html
    assert 'data-chart="latency"' in html and 'data-chart="timeline"' in html


def test_ten_models_and_equal_values() -> None:
    models = [f"vendor-{i}/model-with-a-rather-long-name-{i}" for i in range(10)]
    rows = [
        record(model=m, run=r, offset_seconds=0.0, latency_seconds=1.0, ttft_seconds=0.25)
        for m in models
        for r in (1, 2, 3)
    ]
    html = render(rows, models=models)
    assert html.count('class="model-row') == 10
    assert chart_svg(html, "latency").count('class="mark box"') == 10
    assert len(set(charts.model_colors(models).values())) == 10
    assert not NOT_A_NUMBER.search(html)


def test_missing_manifest_and_warmup() -> None:
    rows = [record(warmup=True, latency_seconds=9.0), record(run=1), record(run=2)]
    html = render_report(summarize(rows), rows, Manifest())
    assert "1 warm-up request(s) excluded" in html
    assert chart_svg(html, "timeline").count('class="mark point"') == 2
    assert "Manifest" in html


def test_failures_are_capped() -> None:
    rows = [failure("connect", f"refused {i}", run=i, offset_seconds=i) for i in range(1, 61)]
    html = render(rows)
    assert html.count('class="failure-row"') == 50
    assert "… and 10 more failed request(s)" in html


def test_the_comparison_and_charts_come_first_and_long_per_prompt_tables_fold(html: str) -> None:
    sections = re.findall(r'<section id="([a-z]+)">', html)
    assert sections == ["models", "charts", "failures", "prompts", "definitions", "manifest"]
    # 3 prompts x 3 models: open. 11 x 3 = 33 rows: folded, so the page does not run on.
    assert re.search(r'<details id="prompt-details" open>\s*<summary>3 prompt\(s\) \u00d7 3', html)
    rows = [
        record(prompt_index=i, prompt=f"p{i}", model=m, run=1) for i in range(11) for m in MODELS
    ]
    folded = render(rows)
    assert '<details id="prompt-details">' in folded and "33 rows (show)" in folded
    assert folded.count('class="prompt-row') == 33  # all there, one click away


def test_std_dev_of_a_single_request_is_a_dash_with_the_reason() -> None:
    def std_devs(html: str, table: str) -> list[str]:
        body = html[html.index(f'<table id="{table}"') :]
        pairs = re.findall(KEY_CELLS, body[: body.index("</table>")])
        return [std_dev for _mean, std_dev in pairs]

    once = run_records(runs=1)  # each prompt once per model; each model three times
    html = render(once)
    assert set(std_devs(html, "prompt-table")) == {"—"}
    assert "—" not in std_devs(html, "model-table")
    assert html.count('class="muted sd-note"') == 1 and "with one run per prompt" in html
    alone = render([record(), *[record(model=MODELS[1], run=r) for r in (1, 2)]])
    assert std_devs(alone, "model-table") == ["—", "0.000"]
    assert "for a model with a single successful request" in alone


def test_a_model_without_a_successful_request_is_flagged_with_its_errors() -> None:
    wrong = "upstream_bad_request: foo/bar is not a valid model ID"
    rows = [record(run=r) for r in (1, 2)]
    rows += [failure("http_4xx", wrong, model="foo/bar", run=r) for r in (1, 2)]
    html = render(rows, models=[MODELS[0], "foo/bar"])
    flagged = re.findall(
        r'<tr class="model-row[^"]*no-success">\s*<td class="model">([^<]+)<', html
    )
    assert flagged == ["foo/bar"]
    assert f'<small class="top-error">{wrong} \u00d7 2</small>' in html
    assert re.search(rf'id="no-success".*foo/bar</span> \({wrong}\)', html, re.S)
    assert 'id="no-success"' not in render(run_records(runs=2))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_in_a_real_browser(tmp_path: Path, records: list[RequestRecord], html: str) -> None:
    from playwright.sync_api import ConsoleMessage, Dialog, sync_playwright

    report = tmp_path / "report.html"
    report.write_text(html, encoding="utf-8")
    dialogs: list[str] = []
    errors: list[str] = []
    requests: list[str] = []
    ok = sum(r.status == "ok" for r in records)
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})

            def on_dialog(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(message.text)

            page.on("dialog", on_dialog)
            page.on("console", on_console)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            expected = {"latency": ok, "ttft": ok, "timeline": len(records)}
            for kind, marks in expected.items():
                svg = page.locator(f'svg.chart[data-chart="{kind}"]')
                assert svg.is_visible()
                box = svg.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 100
                assert svg.locator("circle.mark, path.mark").count() == marks
            assert page.locator("#model-table tbody tr").count() == len(MODELS)
            assert page.locator("svg.chart[data-chart=latency] rect.box").count() == len(MODELS)
            assert page.locator("#failure-table td.error").first.inner_text()  # rendered as text
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            # On a phone, the mean latency and std dev of every model are on screen.
            page.set_viewport_size({"width": 390, "height": 844})
            keys = page.locator("#model-table tbody td.key")
            assert keys.count() == 2 * len(MODELS)
            for i in range(keys.count()):
                box = keys.nth(i).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        finally:
            browser.close()
    assert dialogs == []
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert shot.exists() and shot.stat().st_size > 10_000
    assert time.monotonic() - started < 10


def test_the_clients_lag_warning_retries_and_load_are_shown(records: list[RequestRecord]) -> None:
    quiet = render(records)
    assert 'id="lag-warning"' not in quiet and 'id="fact-retries">none' in quiet
    retried = [*records[:-1], record(attempts=3, retry_wait_seconds=1.5)]
    warning = "The client's event loop ran 30.0 ms late at p99 <b>"
    html = render(
        retried,
        client={"loop_lag_p99_s": 0.03, "loop_lag_max_s": 0.05, "warning": warning},
        config={"runs": 5, "concurrency": 16, "rate": 4.0, "arrivals": "poisson"},
    )
    assert 'id="lag-warning"' in html and "30.0 ms late at p99 &lt;b&gt;" in html
    assert "1 request(s) retried" in html and "30.0 ms / 50.0 ms" in html
    assert "4 requests/s, poisson arrivals (at most 16 in flight)" in html


def test_a_sweep_gets_its_section() -> None:
    steps = [
        record(model=model, step=step, latency_seconds=0.5 * step, ttft_seconds=0.1 * step)
        for step in (1, 2, 3)
        for model in ("m/a", "m/b")
        for _ in range(3)
    ]
    config = {"runs": 3, "concurrency": 4, "sweep": [1, 2, 4], "slo": {"latency_p99": 1.2}}
    html = render_report(
        summarize(steps, manifest(config=config).config), steps, manifest(config=config)
    )
    assert 'id="sweep"' in html and "m/a: 2" in html and "m/b: 2" in html  # the knees
    assert len(re.findall(r'class="sweep-row', html)) == 6
    latency = chart_svg(html, "sweep-latency")
    assert latency.count('class="mark point"') == 12 and 'class="bound"' in latency
    assert "sweep 1 → 2 → 4 (in flight)" in html
