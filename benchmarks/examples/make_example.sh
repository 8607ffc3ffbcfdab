#!/usr/bin/env bash
# Regenerates benchmarks/examples/emulator-run: a benchmark against the BUILT-IN EMULATOR (not
# real models), its report, and a screenshot of the report. Run from the repository root after
# `make install`; Chromium comes from Debian (`apt-get install chromium`).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
GATEWAY_UPSTREAM=emulator GATEWAY_LOG_DIR="$out/logs" .venv/bin/llm-gateway bench \
    benchmarks/examples/prompts.txt \
    -m emulator/fast -m emulator/steady:free -m emulator/slow -m emulator/echo \
    --runs 5 --concurrency 2 --out "$out"
rm -rf benchmarks/examples/emulator-run
mv "$out"/2*/ benchmarks/examples/emulator-run
.venv/bin/python - <<'PY'
from pathlib import Path

from playwright.sync_api import sync_playwright

run = Path("benchmarks/examples/emulator-run").resolve()
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((run / "report.html").as_uri())
    page.screenshot(path=str(run / "report.png"), full_page=True)
    browser.close()
PY
echo "wrote benchmarks/examples/emulator-run"
