"""The typed run documents read what older versions wrote, and write the documented keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_gateway.bench.documents import Manifest
from llm_gateway.bench.report import render_report
from llm_gateway.bench.stats import summarize
from llm_gateway.bench.store import MANIFEST, SUMMARY, RunDir

# A run as an older version wrote it (the example run of 27 November 2026, before issue 12).
OLDER = Path(__file__).parent / "data" / "run-20261127"
# The example run as this version writes it.
EXAMPLE = Path(__file__).parents[2] / "benchmarks" / "examples" / "emulator-run"

# Keys added since the older run was made (issues 12 and 13): a document written now has them
# too, with their defaults when it was read from an older file.
ADDED = {
    "retries", "client", "sweep",  # summary, and each group in it; manifest config too
    "top_errors",  # each model of the summary
    "arrivals", "arrival_seed", "processes", "slo",  # manifest config
    "loop_lag_p50_s", "samples", "interval_s", "warning", "steps",  # manifest client
}  # fmt: skip


def _unchanged(written: Any, stored: Any, where: str = "") -> list[str]:
    """Where `written` differs from `stored`, other than by the keys in ADDED."""
    if isinstance(stored, dict) and isinstance(written, dict):
        differences = [f"{where}.{k} added" for k in written.keys() - stored.keys() - ADDED]
        differences += [f"{where}.{k} lost" for k in stored.keys() - written.keys()]
        for key in stored.keys() & written.keys():
            differences += _unchanged(written[key], stored[key], f"{where}.{key}")
        return differences
    if isinstance(stored, list) and isinstance(written, list) and len(stored) == len(written):
        return [
            d
            for i, (w, s) in enumerate(zip(written, stored, strict=True))
            for d in _unchanged(w, s, f"{where}[{i}]")
        ]
    return [] if written == stored else [f"{where}: {written!r} != {stored!r}"]


def test_an_older_run_reads_and_writes_the_same_keys() -> None:
    run = RunDir(OLDER)
    summary, manifest = run.summary(), run.manifest()
    assert summary is not None
    assert (summary.requests, summary.ok, len(summary.models), len(summary.per_prompt)) == (
        80, 80, 4, 16,
    )  # fmt: skip
    assert manifest.status == "done" and manifest.config.runs == 5
    assert run.status().progress is not None
    # Serialised again, each is the file it was read from: same keys, same values (and the
    # keys added since, with their defaults).
    for name, document in ((SUMMARY, summary), (MANIFEST, manifest)):
        stored = json.loads((OLDER / name).read_text())
        assert _unchanged(document.model_dump(mode="json"), stored) == []
    html = render_report(summary, run.records(), manifest)
    assert "emulator/steady:free" in html and "20261127T165122Z-2588f4" in html


def test_partial_and_older_documents_read_with_defaults(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "20250101T000000Z-abcdef")
    run.path.mkdir()
    # An older manifest: a few keys, one unknown, one of the wrong type.
    run.file(MANIFEST).write_text(
        '{"id": "20250101T000000Z-abcdef", "status": "done", "config": {"runs": "many"},'
        ' "upstream": "not an object", "retired_key": [1, 2]}'
    )
    run.file(SUMMARY).write_text(
        '{"requests": 2, "ok": 2, "latency": {"n": 2, "avg": 1.5},'
        ' "models": {"m/a": {"requests": 2, "ok": 2}}, "per_prompt": "?"}'
    )
    manifest, summary = run.manifest(), run.summary()
    assert manifest.status == "done" and manifest.config.runs is None
    assert manifest.upstream.url == "" and manifest.models == []
    assert summary is not None and summary.latency is not None
    assert (summary.latency.avg, summary.latency.p95, summary.per_prompt) == (1.5, None, [])
    assert summary.models["m/a"].latency is None
    html = render_report(summary, [], manifest)
    assert "m/a" in html and "—" in html
    # A file cut short is no document at all: the run has no summary (yet), its manifest
    # falls back to its id.
    run.file(SUMMARY).write_text('{"requests": 2, "ok"')
    run.file(MANIFEST).write_text("[]")
    assert run.summary() is None
    assert run.manifest() == Manifest(id=run.id)


def test_the_older_summary_is_what_its_csv_summarises_to() -> None:
    """The typed statistics compute what the untyped ones stored, number for number."""
    stored = json.loads((OLDER / SUMMARY).read_text())
    computed = summarize(RunDir(OLDER).records())
    assert _unchanged(computed.model_dump(mode="json"), stored) == []
    assert computed.retries.attempts == computed.requests == 80  # nothing was retried


def test_the_committed_example_is_what_its_csv_and_its_gateway_say() -> None:
    run = RunDir(EXAMPLE)
    stored = json.loads((EXAMPLE / SUMMARY).read_text())
    stored.pop("client")  # the client's own loop lag, measured during the run: not in the CSV
    assert _unchanged(summarize(run.records()).model_dump(mode="json"), stored) == []
    manifest = run.manifest()
    assert (manifest.status, manifest.upstream.kind, manifest.config.stream) == (
        "done", "emulator", True,
    )  # fmt: skip
    assert (stored["prompts"], len(stored["models"]), manifest.config.runs) == (3, 3, 3)
    log = (EXAMPLE / "server_logs.txt").read_text()
    assert f"benchmark {manifest.id} done" in log and "POST /benchmark" in log
