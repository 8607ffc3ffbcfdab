"""The machine a run measures on: what it is, how busy it is, and wrk."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from cli import say
from measure import find_wrk
from result import Machine, Quiet
from stack import BUSY_CORES, cpu_sample, foreign_cores

REPO = Path(__file__).resolve().parent.parent.parent
PACKAGES = (
    "llm-gateway",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "orjson",
    "pydantic",
    "pydantic-core",
    "prometheus-client",
)


def ensure_wrk(*, install: bool) -> str | None:
    """wrk's path; on a fresh Debian machine (as root) it is installed from Debian's archive."""
    found = find_wrk()
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    say("wrk not found: installing it with apt-get (Debian package `wrk`) ...")
    # Without a package list (a fresh container) the install fails: update once, then retry.
    for argv in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"]):
        subprocess.run(argv, capture_output=True, timeout=600, check=False)
        if found := find_wrk():
            return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, timeout=600)
    return find_wrk()


def wait_quiet(max_wait: float) -> Quiet:
    """How busy other processes keep the machine; waits (bounded) for it to calm down."""
    started = time.monotonic()
    while True:
        before = cpu_sample()
        time.sleep(2.0)
        busy = foreign_cores(before, cpu_sample())
        waited = time.monotonic() - started
        if busy < BUSY_CORES or waited >= max_wait:
            break
        say(f"machine busy: {busy:.2f} cores used by other processes; waiting ({waited:.0f} s)")
        time.sleep(min(10.0, max(0.0, max_wait - waited)))
    return Quiet(
        foreign_cores=round(busy, 3),
        loadavg=[round(x, 2) for x in os.getloadavg()],
        waited_s=round(time.monotonic() - started, 1),
        busy=busy >= BUSY_CORES,
    )


def machine_info(wrk: str | None) -> Machine:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((x.split(":", 1)[1].strip() for x in info if x.startswith("model name")), "?")
    memory_gb: float | None = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as mem:
        memory_gb = round(int(mem.readline().split()[1]) / 1024 / 1024, 1)
    packages: dict[str, str] = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            packages[name] = importlib.metadata.version(name)
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        words = (out.stdout or out.stderr).split()
        packages["wrk"] = words[1] if len(words) > 1 else "?"
    return Machine(
        cpu_model=cpu,
        cores=os.cpu_count(),
        memory_gb=memory_gb,
        kernel=platform.release(),
        python=platform.python_version(),
        git=_git_version(),
        packages=packages,
    )


def _git_version() -> str:
    # Read-only git: which commit was measured, and whether the tree had local changes.
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "(no git)"
    return f"{commit}{' + local changes' if dirty else ''}"
