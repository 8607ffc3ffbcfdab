"""Two gateway processes sharing one Redis, behind nginx round-robin: they behave as one.

Everything is real and on loopback: `llm-gateway serve` processes, Debian's `redis-server` and
`nginx` (which adds `X-Served-By`, so a test can see that both replicas answered), and the
session's emulator as the upstream. Each test uses its own client key, so the per-key limits
of one do not spill into another.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_gateway.emulator import Emulator
from tests.conftest import TEST_KEY
from tests.services import RedisServer, free_port, gateway_process, nginx_round_robin, wait_for

STALE_AFTER_S = 2.0
RATE = 40  # requests per minute per key
KEYS = [
    f"key-{name}" for name in ("models", "429", "rate", "other", "open", "jobs", "kill", "redis")
]
PROMPTS = {"prompt_file": ("p.txt", b"hi\n", "text/plain")}


class Cluster:
    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.ports = [free_port(), free_port()]
        self.processes: list[subprocess.Popen[bytes] | None] = [None, None]
        self._stacks = [ExitStack(), ExitStack()]
        self.lb = ""

    def start(self, i: int) -> None:
        env = {**self.env, "GATEWAY_LOG_DIR": str(self.log_dir(i))}
        (self.folder / f"r{i}").mkdir(exist_ok=True)
        log = self.folder / f"r{i}" / "out.txt"
        _, process = self._stacks[i].enter_context(
            gateway_process(env, log=log, port=self.ports[i])
        )
        self.processes[i] = process

    def stop(self, i: int) -> None:
        self._stacks[i].close()
        self.processes[i] = None

    def kill(self, i: int) -> None:
        process = self.processes[i]
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=5)
        self.stop(i)

    def log_dir(self, i: int) -> Path:
        return self.folder / f"r{i}" / "logs"

    def log(self, i: int) -> str:
        path = self.log_dir(i) / "server_logs.txt"
        return path.read_text() if path.exists() else ""

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.lb, headers={"Authorization": f"Bearer {key}"}, timeout=15
        )


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer,
    _emulator_server: tuple[Emulator, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("cluster")
    if redis_server.process is None:
        redis_server.start()
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    base.pop("OPENROUTER_API_KEY", None)
    env = {
        **base,
        "OPENROUTER_API_KEY": TEST_KEY,
        "GATEWAY_UPSTREAM": "openrouter",
        "GATEWAY_UPSTREAM_URL": _emulator_server[1] + "/api/v1",
        "GATEWAY_REDIS_URL": redis_server.url,
        "GATEWAY_REDIS_PREFIX": f"cluster-{os.getpid()}",
        "GATEWAY_API_KEYS": ",".join(KEYS),
        "GATEWAY_RATE_LIMIT": f"{RATE}/minute",
        "GATEWAY_MAX_CONCURRENT_PER_KEY": "2",
        "GATEWAY_BENCHMARKS_DIR": str(folder / "runs"),  # the shared volume
        "GATEWAY_BENCH_STALE_AFTER": str(STALE_AFTER_S),
        "GATEWAY_MODELS_CACHE_TTL": "1",
        "GATEWAY_RETRY_BUDGET": "1",
        "GATEWAY_RETRY_BASE": "0.01",
        "GATEWAY_RETRY_MAX_WAIT": "0.05",
        "GATEWAY_SHUTDOWN_GRACE": "1",
    }
    cluster = Cluster(env, folder)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(cluster.start, range(2)))
    try:
        backends = [f"127.0.0.1:{port}" for port in cluster.ports]
        with nginx_round_robin(backends, folder / "nginx") as lb:
            cluster.lb = lb
            yield cluster
    finally:
        for i in range(2):
            cluster.stop(i)


def _served_by(responses: list[httpx.Response]) -> set[str]:
    return {r.headers["x-served-by"] for r in responses}


def _chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def test_one_catalogue_fetch_serves_both_replicas(cluster: Cluster, emulator: Emulator) -> None:
    time.sleep(1.1)  # past GATEWAY_MODELS_CACHE_TTL: every copy of the list is due
    emulator.reset()
    with cluster.client("key-models") as client:
        answers = [client.get("/models") for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert len(_served_by(answers)) == 2
    fetches = [r for r in emulator.records if r.path == "/api/v1/models"]
    assert len(fetches) == 1


def test_a_429_with_a_reset_time_holds_every_replica_back(
    cluster: Cluster, emulator: Emulator
) -> None:
    # The upstream's 429 says: come back in 30 s (X-RateLimit-Reset), beyond the retry budget.
    emulator.script(["429:30000"], model="emulator/instant")
    with cluster.client("key-429") as client:
        first = client.post("/v1/chat/completions", json=_chat("emulator/instant"))
        time.sleep(0.05)  # the wait reaches the other replica (published) within milliseconds
        others = [
            client.post("/v1/chat/completions", json=_chat("emulator/instant")) for _ in range(3)
        ]
    assert [r.status_code for r in (first, *others)] == [429] * 4
    assert len(_served_by([first, *others])) == 2
    assert all(20 <= int(r.headers["retry-after"]) <= 30 for r in others)
    assert len(emulator.chat_records("emulator/instant")) == 1


def test_the_rate_limit_of_a_key_holds_across_replicas(cluster: Cluster) -> None:
    with cluster.client("key-rate") as client:
        allowed = [client.get("/v1/models") for _ in range(RATE)]
        refused = client.get("/v1/models")
    assert [a.status_code for a in allowed] == [200] * RATE
    assert len(_served_by(allowed)) == 2
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"  # OpenAI's shape under /v1
    assert refused.headers["x-ratelimit-limit-requests"] == str(RATE)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    with cluster.client("key-other") as client:
        assert client.get("/v1/models").status_code == 200


def test_open_calls_of_a_key_are_counted_across_replicas(
    cluster: Cluster, emulator: Emulator
) -> None:
    emulator.script(["hang:1.5", "hang:1.5"], model="emulator/steady")
    body = {"prompt": "hi", "model": "emulator/steady", "max_tokens": 5}
    with cluster.client("key-open") as client, ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(client.post, "/generate", json=body) for _ in range(2)]
        time.sleep(0.5)
        refused = client.post("/generate", json=body)
        finished = [future.result() for future in slow]
        after = client.post("/generate", json=body)
    assert len(_served_by(finished)) == 2
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_concurrent_requests"
    assert [r.status_code for r in finished] == [200, 200]
    assert after.status_code == 200


def _start_job(client: httpx.Client, model: str) -> str:
    data = {"model": model, "runs": "1", "stream": "false"}
    started = client.post("/benchmark?background=true", files=PROMPTS, data=data)
    assert started.status_code == 202, started.text
    run_id: str = started.json()["id"]
    wait_for(
        lambda: client.get(f"/benchmarks/{run_id}").json()["status"] == "running",
        timeout=10,
        what="the job to run",
        every=0.2,  # the key's rate limit counts these too
    )
    return run_id


def test_a_job_is_polled_and_cancelled_from_either_replica(
    cluster: Cluster, emulator: Emulator
) -> None:
    emulator.script(["hang:10"], model="emulator/slow")  # keeps the job running
    with cluster.client("key-jobs") as client:
        run_id = _start_job(client, "emulator/slow")
        polls = [client.get(f"/benchmarks/{run_id}") for _ in range(2)]
        assert len(_served_by(polls)) == 2
        assert polls[0].json()["status"] == polls[1].json()["status"] == "running"
        assert polls[0].json()["progress"] == polls[1].json()["progress"]
        cancelled = client.delete(f"/benchmarks/{run_id}")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "interrupted"
        after = [client.get(f"/benchmarks/{run_id}") for _ in range(2)]
        assert {r.json()["status"] for r in after} == {"interrupted"}
        listed = [client.get("/benchmarks").json()["runs"][0] for _ in range(2)]
        assert listed[0] == listed[1] and listed[0]["id"] == run_id


def test_a_replica_dying_mid_job_leaves_it_interrupted(
    cluster: Cluster, emulator: Emulator
) -> None:
    emulator.script(["hang:20"], model="emulator/reasoning")
    with cluster.client("key-kill") as client:
        run_id = _start_job(client, "emulator/reasoning")
        # Log lines reach the file in batches (every 50 ms): wait for the runner's.
        wait_for(
            lambda: any(f"benchmark {run_id} running" in cluster.log(i) for i in range(2)),
            timeout=3,
            what="the log line of the replica running the job",
        )
        runner = next(i for i in range(2) if f"benchmark {run_id} running" in cluster.log(i))
        cluster.kill(runner)
        died = time.monotonic()
        wait_for(
            lambda: client.get(f"/benchmarks/{run_id}").json()["status"] == "interrupted",
            timeout=STALE_AFTER_S + 3,
            what="the job to show as interrupted",
            every=0.2,
        )
        assert time.monotonic() - died <= STALE_AFTER_S + 2
    cluster.start(runner)


def test_redis_going_away_and_coming_back(cluster: Cluster, redis_server: RedisServer) -> None:
    body = {"prompt": "hi", "model": "emulator/fast", "max_tokens": 5}
    with cluster.client("key-redis") as client:
        # Redis stops answering (SIGSTOP): no request waits on it beyond its short timeout.
        redis_server.pause()
        try:
            started = time.monotonic()
            answers = [client.post("/generate", json=body) for _ in range(2)]
            assert time.monotonic() - started < 2.5
        finally:
            redis_server.resume()
        assert [a.status_code for a in answers] == [200, 200]
        redis_server.stop()
        try:
            answers = [client.post("/generate", json=body) for _ in range(4)]
            assert [a.status_code for a in answers] == [200] * 4  # served, limits per process
            ready = [client.get("/ready") for _ in range(2)]
            assert {r.json()["status"] for r in ready} == {"degraded"}
            refused = client.post("/benchmark?background=true", files=PROMPTS, data=body)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "shared_state_unavailable"
        finally:
            redis_server.start()
        wait_for(
            lambda: {client.get("/ready").json()["status"] for _ in range(2)} == {"ready"},
            timeout=5,
            what="both replicas to reconnect",
            every=0.2,
        )
        accepted = client.post("/benchmark?background=true", files=PROMPTS, data=body)
        assert accepted.status_code == 202
    for i in range(2):
        log = cluster.log(i)
        assert log.count("Redis unreachable") <= 2  # once per outage, not once per request
        assert "Redis is back" in log
        assert "Traceback" not in log
