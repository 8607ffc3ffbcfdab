"""`PEER=litellm`: LiteLLM's proxy in its own virtualenv, pointed at the same upstream.

The virtualenv (`.venv-litellm`, git-ignored) is made on first use with
`pip install 'litellm[proxy]'` (override with LITELLM_SPEC, e.g. `litellm[proxy]==1.108.7`), so
LiteLLM's many dependencies never touch the project's environment. The configuration turns off
what would make the comparison unfair to it or to us: retries (ours are not exercised either,
the upstream never fails), callbacks, caching, the remote model-cost-map fetch; one worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-litellm"
MASTER_KEY = "sk-perf-master-key"
INSTALL_TIMEOUT_S = 1200


def ensure_litellm(log: Path) -> tuple[Path | None, str | None, str | None]:
    """(litellm binary, version, error): installs on first use; never raises."""
    binary = VENV / "bin" / "litellm"
    python = VENV / "bin" / "python"
    spec = os.environ.get("LITELLM_SPEC", "litellm[proxy]")
    try:
        with log.open("ab") as out:
            if not python.exists():
                subprocess.run(
                    [sys.executable, "-m", "venv", str(VENV)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=300,
                    check=True,
                )
            if not binary.exists():
                subprocess.run(
                    [str(python), "-m", "pip", "install", "--quiet", spec],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT_S,
                    check=True,
                )
        version = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return None, None, f"installing {spec!r} into {VENV} failed: {exc}; see {log}"
    if not binary.exists():
        return None, None, f"{binary} is missing after installing {spec!r}; see {log}"
    return binary, version, None


def write_config(path: Path, *, upstream_url: str, api_key: str, models: list[str]) -> None:
    """A LiteLLM proxy config with one OpenAI-compatible entry per model id the harness uses."""
    entries = []
    for model in models:
        entries.append(
            f'  - model_name: "{model}"\n'
            "    litellm_params:\n"
            f'      model: "openai/{model}"\n'
            f'      api_base: "{upstream_url}"\n'
            f'      api_key: "{api_key}"\n'
            # The OpenAI SDK underneath retries twice by default.
            "      max_retries: 0\n"
        )
    path.write_text(
        "model_list:\n" + "".join(entries) + "litellm_settings:\n"
        "  num_retries: 0\n"
        "  request_timeout: 60\n"
        "  cache: false\n"
        "  callbacks: []\n"
        "  success_callback: []\n"
        "  failure_callback: []\n"
        "  telemetry: false\n"
        "router_settings:\n"
        "  num_retries: 0\n"
        "general_settings:\n"
        "  master_key: os.environ/LITELLM_MASTER_KEY\n",
        encoding="utf-8",
    )


def environment(base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(
        LITELLM_MASTER_KEY=MASTER_KEY,
        # No download of the model price list at start-up (no internet, and not what we time).
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY="False",
    )
    return env


def argv(binary: Path, config: Path, port: int) -> list[str]:
    return [
        str(binary),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
