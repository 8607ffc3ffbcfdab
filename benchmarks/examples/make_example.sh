#!/usr/bin/env bash
# Regenerates benchmarks/examples/: a benchmark served by a gateway in front of its BUILT-IN
# EMULATOR (not real models), with that gateway's log, screenshots of the report at 1280 and
# 390 px wide, and the `llm-gateway bench` summary as it reads at 80 columns. Run from the
# repository root after `make install`; Chromium comes from Debian (`apt-get install
# chromium`), driven by Playwright (no browser is downloaded).
set -euo pipefail
cd "$(dirname "$0")/../.."
examples=benchmarks/examples
out=$(mktemp -d)
port=${PORT:-8799}

# A gateway of its own: no key, so it serves the emulator; its log and runs in $out.
env -u OPENROUTER_API_KEY GATEWAY_UPSTREAM=emulator GATEWAY_LOG_DIR="$out/logs" \
    GATEWAY_BENCHMARKS_DIR="$out/runs" .venv/bin/llm-gateway serve --port "$port" \
    2>"$out/serve.stderr" &
gateway=$!
trap 'kill "$gateway" 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.2; done

# 3 prompts x 3 models x 3 runs, streamed (the default), two in flight.
curl -sf -F prompt_file=@$examples/prompts.txt \
    -F model=emulator/fast -F model=emulator/steady:free -F model=emulator/slow \
    -F runs=3 -F concurrency=2 -F max_tokens=256 \
    "http://127.0.0.1:$port/benchmark" >"$out/answer.json"
# What a reader does next, so the log shows it too: the run's status, its report, its CSV.
run_id=$(.venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["run_id"])' \
    <"$out/answer.json")
for path in "benchmarks/$run_id" "benchmarks/$run_id/report" "benchmarks/$run_id/results.csv"; do
    curl -sf "http://127.0.0.1:$port/$path" >/dev/null
done
kill -TERM "$gateway"
wait "$gateway" || true
trap - EXIT

rm -rf $examples/emulator-run
mv "$out"/runs/2*/ $examples/emulator-run
cp "$out/logs/server_logs.txt" $examples/emulator-run/server_logs.txt

.venv/bin/python - <<'PY'
import io
import re
from pathlib import Path

from playwright.sync_api import sync_playwright
from rich.console import Console

from llm_gateway.bench.store import RunDir
from llm_gateway.cli.tables import print_summary

examples = Path("benchmarks/examples")
run = (examples / "emulator-run").resolve()
shots = examples / "screenshots"
shots.mkdir(exist_ok=True)

summary = RunDir(run).summary()
assert summary is not None
console = Console(width=80, record=True, file=io.StringIO())
print_summary(console, summary)
svg = console.export_svg(title="llm-gateway bench, 80 columns")
# Without rich's web fonts (a CDN): the picture loads nothing, like the report.
svg = re.sub(r"@font-face \{.*?\}\s*", "", svg, flags=re.S)
(shots / "cli-summary-80.svg").write_text(svg, encoding="utf-8")

with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    for width in (1280, 390):
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto((run / "report.html").as_uri())
        page.screenshot(path=str(shots / f"report-{width}.png"), full_page=True)
        page.close()
    browser.close()
PY
echo "wrote $examples/emulator-run (with the gateway's server_logs.txt) and $examples/screenshots"
