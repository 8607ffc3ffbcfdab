"""`llm-gateway bench` and `llm-gateway report`, run as real processes against the emulator."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import CLI, TEST_KEY


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("What is 2+2?\nName a colour.\nSay <b>hi</b>\n")
    return path


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _bench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _cli(["bench", *args], env)


def _run_dir(out: Path) -> Path:
    [run] = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_bench_end_to_end(cli_env: dict[str, str], prompt_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = [str(prompt_file), "-m", "emulator/fast", "-m", "emulator/echo", "--runs", "2"]
    result = _bench([*args, "--concurrency", "2", "--out", str(out)], cli_env)
    assert result.returncode == 0, result.stderr
    assert "Latency per model" in result.stdout
    assert "emulator/fast" in result.stdout and "emulator/echo" in result.stdout
    assert "12 ok, 0 failed" in result.stdout
    run = _run_dir(out)
    for name in ("benchmark_results.csv", "summary.json", "manifest.json", "report.html"):
        assert (run / name).exists() and str(run / name) in result.stdout.replace("\n", "")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["concurrency"] == 2 and manifest["status"] == "done"
    assert manifest["upstream"]["url"] == cli_env["GATEWAY_UPSTREAM_URL"]
    assert TEST_KEY not in (run / "manifest.json").read_text() + result.stdout + result.stderr


def test_a_model_without_a_successful_request_exits_1_saying_why(
    cli_env: dict[str, str], prompt_file: Path, tmp_path: Path
) -> None:
    # In a pipe, 80 columns wide (rich's default without a terminal; COLUMNS says so here).
    args = [str(prompt_file), "-m", "emulator/fast", "-m", "foo/bar", "--runs", "1"]
    args += ["--retries", "0", "--out", str(tmp_path / "runs")]
    result = _bench(args, {**cli_env, "COLUMNS": "80"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert max(map(len, result.stdout.splitlines())) <= 80
    assert "foo/bar is not a valid model" in result.stdout
    assert "No successful request from foo/bar" in result.stdout
    summary = json.loads((_run_dir(tmp_path / "runs") / "summary.json").read_text())
    fast = summary["models"]["emulator/fast"]["latency"]
    assert f" {fast['avg']:.3f} " in result.stdout and f" {fast['std_dev']:.3f} " in result.stdout


def test_base_url_points_the_benchmark_anywhere(
    cli_env: dict[str, str], prompt_file: Path, tmp_path: Path, emulator: Emulator
) -> None:
    out = tmp_path / "runs"
    custom = {**cli_env, "GATEWAY_UPSTREAM_URL": "http://127.0.0.1:9/unused"}
    args = [str(prompt_file), "-m", "emulator/fast", "--runs", "1", "--no-stream"]
    result = _bench(
        [*args, "--base-url", cli_env["GATEWAY_UPSTREAM_URL"], "--out", str(out)], custom
    )
    assert result.returncode == 0, result.stderr
    assert len(emulator.chat_records()) == 3
    manifest = json.loads((_run_dir(out) / "manifest.json").read_text())
    assert manifest["upstream"]["kind"] == "custom" and manifest["config"]["stream"] is False


def test_a_bad_prompt_file_exits_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    result = _bench([str(empty), "-m", "emulator/fast"], cli_env)
    assert result.returncode == 2
    assert "no prompts" in result.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_stops_cleanly_and_keeps_the_measurements(
    cli_env: dict[str, str], prompt_file: Path, tmp_path: Path, emulator: Emulator, processes: str
) -> None:
    # With worker processes too: they ignore the Ctrl-C the whole group gets, and send what
    # they measured before the parent ends them.
    emulator.config.time_scale = 1.0
    out = tmp_path / "runs"
    process = subprocess.Popen(
        [
            CLI,
            "bench",
            str(prompt_file),
            "-m",
            "emulator/steady",
            "--runs",
            "100",
            "--concurrency",
            processes,
            "--processes",
            processes,
            "--out",
            str(out),
        ],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    csv_path = None
    while time.monotonic() < deadline:
        runs = [p for p in out.glob("*/benchmark_results.csv")] if out.exists() else []
        if runs and len(runs[0].read_text().splitlines()) >= 3:  # header + 2 requests
            csv_path = runs[0]
            break
        time.sleep(0.05)
    assert csv_path is not None
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=20)
    assert process.returncode == 130
    assert "Interrupted" in stdout
    rows = csv_path.read_text().splitlines()[1:]
    assert 2 <= len(rows) < 300
    run = csv_path.parent
    summary = json.loads((run / "summary.json").read_text())
    assert summary["requests"] == len(rows)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["config"]["processes"] == int(processes)


def test_report_rerenders_a_stored_run(
    cli_env: dict[str, str], prompt_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    args = [str(prompt_file), "-m", "emulator/fast", "--runs", "1", "--out", str(out)]
    assert _bench(args, cli_env).returncode == 0
    run = _run_dir(out)
    (run / "report.html").unlink()
    (run / "summary.json").unlink()
    result = _cli(["report", str(run)], cli_env)
    assert result.returncode == 0, result.stderr
    assert (run / "report.html").exists()
    assert json.loads((run / "summary.json").read_text())["requests"] == 3
    missing = _cli(["report", str(tmp_path)], cli_env)
    assert missing.returncode == 2 and "No results" in missing.stdout


def test_a_sweep_over_two_processes(
    cli_env: dict[str, str], prompt_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    args = [str(prompt_file), "-m", "emulator/fast", "-m", "emulator/instant", "--runs", "1"]
    args += ["--concurrency", "4", "--sweep", "--slo", "latency_p99=5,error_rate=0"]
    args += ["--processes", "2", "--retries", "0", "--max-tokens", "4", "--out", str(out)]
    result = _bench(args, cli_env)
    assert result.returncode == 0, result.stderr
    assert "Sweep (concurrency" in result.stdout and "2 processes" in result.stdout
    assert "emulator/fast: concurrency 4" in result.stdout.replace("\n", " ")
    run = _run_dir(out)
    summary = json.loads((run / "summary.json").read_text())
    sweep = summary["sweep"]
    assert [s["concurrency"] for s in sweep["steps"]] == [1, 2, 4]
    assert all(s["slo_met"] and s["requests"] == 6 for s in sweep["steps"])
    assert sweep["knee"] == {"emulator/fast": 4, "emulator/instant": 4}
    assert summary["client"]["processes"] == 2 and summary["client"]["samples"] > 0
    assert len(summary["client"]["steps"]) == 3
    config = json.loads((run / "manifest.json").read_text())["config"]
    assert (config["processes"], config["retries"], config["sweep"]) == (2, 0, [1, 2, 4])
    with (run / "benchmark_results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(Counter(r["step"] for r in rows).items()) == [("1", 6), ("2", 6), ("3", 6)]
    report = (run / "report.html").read_text()
    assert 'id="sweep"' in report and 'data-chart="sweep-latency"' in report


def test_impossible_options_exit_2(cli_env: dict[str, str], prompt_file: Path) -> None:
    # What is impossible is checked where the options are parsed (test_fidelity); here, that
    # the command says so and exits 2 before anything runs.
    args = [str(prompt_file), "-m", "emulator/fast", "--sweep", "--concurrency", "2"]
    args += ["--slo", "ttft_p42=1"]
    result = _bench(args, cli_env)
    assert result.returncode == 2 and "ttft_p42" in result.stderr, result.stderr
