"""`llm-gateway serve --workers 2`: two processes on one port that a client cannot tell apart.

One scrape shows every worker's requests, the log file takes every worker's lines whole (and
stays whole when several processes roll it over), the banner and the emulator are there once,
and SIGTERM stops them all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.services import gateway_process, wait_for

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) [\w.]+ \[[^\]\s]+\] \S"
)
BATCH = 20


def _children(pid: int) -> list[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_two_workers_are_one_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("OPENROUTER_API_KEY", None)  # the built-in emulator: started once, for both
    env |= {
        "GATEWAY_LOG_DIR": str(tmp_path / "logs"),
        "GATEWAY_EMULATOR_TIME_SCALE": "0.02",
        "GATEWAY_SHUTDOWN_GRACE": "1",
    }
    body = {"prompt": "hi", "model": "emulator/fast", "max_tokens": 5}
    log_path = tmp_path / "logs" / "server_logs.txt"

    def log() -> str:
        return log_path.read_text() if log_path.exists() else ""

    def served_by() -> set[str]:
        """The request-id prefixes in the access lines: one per worker."""
        return set(re.findall(r"\[([0-9a-f]{16})[0-9a-f]{16}\] POST /generate", log()))

    with gateway_process(env, workers=2, log=tmp_path / "out.txt") as (url, supervisor):
        workers = _children(supervisor.pid)
        wait_for(lambda: log().count("serving upstream") == 2, timeout=20, what="both workers")
        sent = 0
        with ThreadPoolExecutor(8) as pool:  # a new connection each: either worker accepts it
            while len(served_by()) < 2 and sent < 10 * BATCH:
                answers = list(
                    pool.map(lambda _: httpx.post(url + "/generate", json=body), range(BATCH))
                )
                assert [a.status_code for a in answers] == [200] * BATCH
                sent += BATCH
                time.sleep(0.1)  # the access lines reach the file in batches
        assert len(served_by()) == 2  # both workers served
        labels = 'method="POST",route="/generate",status="200"'
        expected = f"llm_gateway_requests_total{{{labels}}} {sent}.0"
        scrapes = [httpx.get(url + "/metrics").text for _ in range(6)]
        assert all(expected in scrape for scrape in scrapes)  # whichever worker answers
        signposts = {httpx.get(url + "/").json()["upstream_url"] for _ in range(6)}
        assert len(signposts) == 1  # one emulator for both
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=15) == 0
    wait_for(
        lambda: not any(Path(f"/proc/{p}").exists() for p in workers), timeout=5, what="workers"
    )
    text = log()
    lines = text.splitlines()
    assert all(LINE.match(line) for line in lines), [x for x in lines if not LINE.match(x)][:3]
    access = [line for line in lines if "POST /generate handler=generate status=200" in line]
    assert len(access) == sent  # every worker's every line, whole
    assert text.count("NO OPENROUTER_API_KEY SET") == 1
    assert text.count("serving upstream emulator") == 2  # each worker's start-up line
    assert "llm-gateway stopped (2 workers)" in text


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from llm_gateway.logging import _RotatingFile

    log = _RotatingFile(Path(sys.argv[1]), max_bytes=4000, backups=200)
    for batch in range(100):
        lines = [f"{sys.argv[2]} {batch} {i} " + "x" * 40 for i in range(3)]
        log.write(("\\n".join(lines) + "\\n").encode())
    log.close()
    """
)


def test_processes_sharing_the_log_roll_it_over_without_losing_a_line(tmp_path: Path) -> None:
    path = tmp_path / "server_logs.txt"
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name]) for name in ("a", "b")
    ]
    assert [w.wait(timeout=30) for w in writers] == [0, 0]
    files = sorted(tmp_path.glob("server_logs.txt*"))
    assert len(files) > 5  # rolled over many times, by both
    lines = [line for f in files for line in f.read_text().splitlines()]
    expected = {
        f"{n} {b} {i} " + "x" * 40 for n in ("a", "b") for b in range(100) for i in range(3)
    }
    assert sorted(lines) == sorted(expected)  # every line once, none cut or merged
