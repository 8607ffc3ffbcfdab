"""The long-lived parts of a running gateway, opened once and closed once.

`open_runtime` resolves which upstream to talk to (OpenRouter with a key, or the built-in
emulator without one), starts the emulator when needed (or uses the one `serve --workers`
started for all its workers), opens the shared state (in-process, or Redis with
GATEWAY_REDIS_URL: shared/), and builds the upstream client, the model catalogue and the
benchmark job queue on it. The app's lifespan and the CLI both use it, so they behave the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from llm_gateway.bench import pipeline
from llm_gateway.bench.jobs import JobQueue, Jobs, JobSpec
from llm_gateway.bench.queue import RedisJobs
from llm_gateway.bench.store import RunDir, RunStore
from llm_gateway.bench.target import Target
from llm_gateway.config import EMULATOR_KEY, Settings
from llm_gateway.embedded import BackgroundServer
from llm_gateway.emulator import Emulator, EmulatorConfig
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.shared import Shared, open_shared, upstream_namespace
from llm_gateway.shared.waits import UpstreamWaits
from llm_gateway.upstream.catalog import ModelCatalog
from llm_gateway.upstream.client import UpstreamClient
from llm_gateway.upstream.retry import RetryObserver

logger = logging.getLogger("llm_gateway")


def display_url(url: str) -> str:
    """The URL without credentials (user:password@, or a query string that may hold a key),
    for answers, logs and manifests."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    upstream: Literal["openrouter", "emulator"]
    upstream_url: str
    client: UpstreamClient
    catalog: ModelCatalog
    runs: RunStore
    jobs: JobQueue
    shared: Shared
    # What benchmarks measure with: a client of their own to the same upstream (bench/target.py).
    bench_target: Target


def build_client(
    settings: Settings,
    *,
    base_url: str,
    api_key: str,
    observer: RetryObserver | None = None,
    waits: UpstreamWaits | None = None,
) -> UpstreamClient:
    """The gateway's upstream client, configured from settings (timeouts, retries, pool,
    attribution, bounds): the benchmark's recipe, untraced, pooled as set."""
    target = Target.from_settings(settings, base_url=base_url, api_key=api_key)
    return target.client(concurrency=None, trace_send_times=False, observer=observer, waits=waits)


@asynccontextmanager
async def open_runtime(
    settings: Settings, metrics: GatewayMetrics | None = None, *, serving: bool = False
) -> AsyncIterator[Runtime]:
    """Everything a gateway needs to serve requests; closed when the block ends.

    Only a server (`serving`) joins the shared state of GATEWAY_REDIS_URL: a command-line run
    is one short process, which must not take benchmark jobs from the cluster's queue."""
    mode = settings.resolved_upstream()
    if not serving and settings.redis_url is not None:
        settings = settings.model_copy(update={"redis_url": None})
    async with AsyncExitStack() as stack:
        if mode == "emulator" and settings.emulator_url is not None:
            url, key = f"{settings.emulator_url}/api/v1", EMULATOR_KEY  # `serve --workers`'
        elif mode == "emulator":
            emulator = Emulator(
                EmulatorConfig(seed=settings.emulator_seed, time_scale=settings.emulator_time_scale)
            )
            server = BackgroundServer(emulator.app)
            base = await asyncio.to_thread(server.start)
            stack.callback(server.stop)
            url, key = f"{base}/api/v1", EMULATOR_KEY
        else:
            assert settings.openrouter_api_key is not None  # resolved_upstream() checked it
            url, key = settings.upstream_url, settings.openrouter_api_key.get_secret_value()
        # Replicas serving the built-in emulator each have their own, but the same one.
        namespace = upstream_namespace("emulator" if mode == "emulator" else url, key)
        shared = await stack.enter_async_context(open_shared(settings, namespace))
        client = build_client(
            settings, base_url=url, api_key=key, observer=metrics, waits=shared.waits
        )
        stack.push_async_callback(client.aclose)
        catalog = ModelCatalog(
            client.list_models,
            ttl=settings.models_cache_ttl,
            on_lookup=metrics.on_cache if metrics else None,
            store=shared.catalog,
        )
        runs = RunStore(
            settings.benchmarks_dir,
            keep_runs=settings.bench_keep_runs,
            max_bytes=settings.bench_max_bytes,
            stale_after=settings.bench_stale_after,
        )
        where = pipeline.Upstream(display_url(url), mode)
        target = Target.from_settings(settings, base_url=url, api_key=key)

        async def execute(run: RunDir, spec: JobSpec) -> None:
            await pipeline.execute(run, spec.config, spec.prompts, target, where)

        on_change = metrics.set_jobs if metrics is not None else None
        jobs: JobQueue
        if shared.link is not None:
            jobs = RedisJobs(
                shared.link,
                runs=runs,
                execute=execute,
                max_running=settings.bench_max_jobs,
                stale_after=settings.bench_stale_after,
                on_change=on_change,
            )
        else:
            jobs = Jobs(
                max_running=settings.bench_max_jobs,
                execute=execute,
                on_change=on_change,
                waiting_beat=min(5.0, settings.bench_stale_after / 4),
            )
        await jobs.start()
        # Registered after the client, so it runs first: jobs still need the client to finish.
        stack.push_async_callback(jobs.shutdown)
        yield Runtime(settings, mode, display_url(url), client, catalog, runs, jobs, shared, target)
