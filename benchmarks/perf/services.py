"""The servers a run starts, the endpoints they expose, and the model ids they are driven with.

Every server is its own process on a free loopback port, started through the run's `Stack`,
which stops it at the end (and on Ctrl-C or an error).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import peer
from endpoints import Target
from result import Setup
from stack import Service, Stack, free_port

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

UPSTREAM_KEY = "perf-key"
INSTANT = "perf/instant"
INSTANT_CHUNKS = 20
# TTFT/gap streams: short, so a few seconds give hundreds of streams.
STREAM_CHUNKS, STREAM_GAP_MS = 20, 5
# Ramp streams: long enough (~1.2 s) that the streams of one step overlap.
RAMP_CHUNKS, RAMP_GAP_MS = 40, 30
# Capacity streams (issue 14): ~10 s each, like a real completion, so thousands stay open.
CAPACITY_CHUNKS, CAPACITY_GAP_MS = 50, 200
STREAM_MODEL = f"perf/paced-{STREAM_CHUNKS}-{STREAM_GAP_MS}"
RAMP_MODEL = f"perf/paced-{RAMP_CHUNKS}-{RAMP_GAP_MS}"
CAPACITY_MODEL = f"perf/paced-{CAPACITY_CHUNKS}-{CAPACITY_GAP_MS}"

SETUP = Setup(
    wrk=None,
    stream_model=STREAM_MODEL,
    stream_gap_ms=STREAM_GAP_MS,
    ramp_model=RAMP_MODEL,
    ramp_chunks=RAMP_CHUNKS,
    ramp_gap_ms=RAMP_GAP_MS,
    capacity_model=CAPACITY_MODEL,
    capacity_chunks=CAPACITY_CHUNKS,
    capacity_gap_ms=CAPACITY_GAP_MS,
)


def clean_env() -> dict[str, str]:
    """The environment without any gateway settings of the person running the harness."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OPENROUTER_"))}


@dataclass
class Servers:
    """Starts the run's servers; every gateway gets `gateway_env` (the `--gateway-env` option)
    on top of the harness's own settings."""

    stack: Stack
    run_dir: Path
    gateway_env: Mapping[str, str] = field(default_factory=dict)
    _upstream: Service | None = field(default=None, init=False)

    @property
    def upstream(self) -> Service:
        if self._upstream is None:
            raise RuntimeError("start the perf upstream first")
        return self._upstream

    @property
    def upstream_api(self) -> str:
        return f"{self.upstream.url}/api/v1"

    def start_upstream(self, *, cpus: Collection[int] | None = None) -> Service:
        port = free_port()
        self._upstream = self.stack.start(
            "upstream",
            [sys.executable, str(HERE / "upstream.py"), "--port", str(port), "--chunks", "20"],
            port=port,
            health_path="/health",
            cpus=cpus,
        )
        return self._upstream

    def gateway(
        self,
        name: str = "gateway",
        *,
        env: Mapping[str, str] | None = None,
        drop: Sequence[str] | None = None,
        cpus: Collection[int] | None = None,
    ) -> Service:
        """`llm-gateway serve`, or with `drop` the what-if app without those middleware;
        `cpus` pins it to those cores."""
        home = self.run_dir / name
        home.mkdir(parents=True, exist_ok=True)
        full_env = clean_env()
        full_env.update(
            OPENROUTER_API_KEY=UPSTREAM_KEY,
            GATEWAY_UPSTREAM="openrouter",
            GATEWAY_UPSTREAM_URL=self.upstream_api,
            # INFO is the default and what users run: it is the level of the access log.
            GATEWAY_LOG_LEVEL="INFO",
            GATEWAY_LOG_DIR=str(home / "logs"),
            GATEWAY_BENCHMARKS_DIR=str(home / "benchmarks"),
        )
        full_env.update(self.gateway_env)
        full_env.update(env or {})
        port = free_port()
        argv = [str(BIN / "llm-gateway"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        if drop is not None:
            argv = [sys.executable, str(HERE / "whatif_app.py"), "--port", str(port)]
            argv += [arg for name in drop for arg in ("--drop", name)]
        # cwd is an empty folder so no `.env` of the person running this changes the settings.
        return self.stack.start(
            name, argv, port=port, health_path="/health", env=full_env, cwd=home, cpus=cpus
        )

    def floor(self, name: str = "floor") -> Service:
        port = free_port()
        argv = [sys.executable, str(HERE / "floor.py"), "--port", str(port)]
        argv += ["--upstream", self.upstream_api, "--api-key", UPSTREAM_KEY]
        return self.stack.start(name, argv, port=port, health_path="/health")

    def emulator(self) -> Service:
        port = free_port()
        argv = [str(BIN / "llm-gateway"), "emulator", "--port", str(port), "--time-scale", "0"]
        return self.stack.start("emulator", argv, port=port, health_path="/")

    def litellm(self, binary: Path) -> Service:
        config = self.run_dir / "litellm.yaml"
        peer.write_config(
            config,
            upstream_url=self.upstream_api,
            api_key=UPSTREAM_KEY,
            models=[INSTANT, STREAM_MODEL, RAMP_MODEL, CAPACITY_MODEL],
        )
        port = free_port()
        return self.stack.start(
            "litellm",
            peer.argv(binary, config, port),
            port=port,
            health_path="/health/liveliness",
            env=peer.environment(clean_env()),
            cwd=self.run_dir,
            timeout=180,
        )


def endpoints(services: Mapping[str, Service], upstream_api: str) -> dict[str, Target]:
    """The endpoints measured, in report order, for the services that are running."""
    found = {"direct": direct_target(upstream_api)}
    if "floor" in services:
        found["floor"] = floor_target(services["floor"])
    if "gateway" in services:
        found.update(gateway_targets(services["gateway"]))
    if "litellm" in services:
        found["litellm"] = Target(
            "litellm",
            "LiteLLM proxy, one worker",
            f"{services['litellm'].url}/v1/chat/completions",
            "chat",
            {"Authorization": f"Bearer {peer.MASTER_KEY}"},
        )
    return found


def direct_target(upstream_api: str) -> Target:
    return Target(
        "direct",
        "direct to the upstream",
        f"{upstream_api}/chat/completions",
        "chat",
        {"Authorization": f"Bearer {UPSTREAM_KEY}"},
    )


def floor_target(floor: Service) -> Target:
    return Target(
        "floor",
        "bare Python ASGI proxy, aiohttp client (the floor)",
        f"{floor.url}/v1/chat/completions",
        "chat",
    )


def gateway_targets(gateway: Service) -> dict[str, Target]:
    """Both of a gateway's hot routes."""
    return {
        "gateway": Target(
            "gateway",
            "llm-gateway `/v1/chat/completions`",
            f"{gateway.url}/v1/chat/completions",
            "chat",
        ),
        "gateway_generate": Target(
            "gateway_generate", "llm-gateway `/generate`", f"{gateway.url}/generate", "generate"
        ),
    }
