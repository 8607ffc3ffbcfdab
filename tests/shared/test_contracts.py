"""The contract of each shared-state interface, against both implementations.

In-process, "two replicas" are two callers of one object (what workers of one process share);
with Redis they are two objects on two connections to a real `redis-server`, as two replicas
would have. The same test holds for both: that is the contract.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from llm_gateway.bench.jobs import JobQueue, Jobs, JobSpec
from llm_gateway.bench.prompts import Prompt, PromptFile
from llm_gateway.bench.queue import RedisJobs
from llm_gateway.bench.runner import BenchConfig
from llm_gateway.bench.store import RunDir, RunStore
from llm_gateway.errors import (
    RateLimited,
    TooManyConcurrent,
    TooManyJobs,
    UpstreamQuotaExhausted,
    UpstreamRateLimited,
    UpstreamUnreachable,
)
from llm_gateway.shared.catalog import MemoryCatalogStore, RedisCatalogStore
from llm_gateway.shared.limiter import InboundLimiter, RedisInboundLimiter
from llm_gateway.shared.redis import RedisLink
from llm_gateway.shared.waits import RedisWaits, UpstreamWaits
from llm_gateway.upstream.catalog import ModelCatalog

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["in-process", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest) -> str | None:
    """The session's Redis (emptied) for the Redis implementation; None in-process."""
    return str(request.getfixturevalue("redis_url")) if kind == "redis" else None


@asynccontextmanager
async def two_links(url: str) -> AsyncIterator[tuple[RedisLink, RedisLink]]:
    async with AsyncExitStack() as stack:
        links = []
        for _ in range(2):
            link = RedisLink(url, prefix="contract", timeout=0.5)
            await link.start()
            stack.push_async_callback(link.close)
            links.append(link)
        yield links[0], links[1]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# --- upstream waits -------------------------------------------------------------------------


@asynccontextmanager
async def waits(url: str | None) -> AsyncIterator[tuple[UpstreamWaits, UpstreamWaits]]:
    if url is None:
        shared = UpstreamWaits()
        yield shared, shared
        return
    async with two_links(url) as (link_a, link_b):
        a, b = RedisWaits(link_a, "ns"), RedisWaits(link_b, "ns")
        for w in (a, b):
            await w.start()
        await asyncio.wait_for(asyncio.gather(a.subscribed.wait(), b.subscribed.wait()), 5)
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()


async def test_a_wait_one_replica_was_asked_for_holds_for_the_other(url: str | None) -> None:
    async with waits(url) as (a, b):
        assert not b.in_force()
        await a.note("m/x", UpstreamRateLimited("slow down", retry_after=5))

        async def seen() -> bool:
            return b.in_force()

        await eventually(seen)
        wait = b.lookup("m/x")
        assert wait is not None and not wait.quota
        assert 4 < wait.until - time.time() <= 5
        assert b.lookup("m/y") is None  # another model is not held up


async def test_the_free_model_limit_holds_for_every_free_model(url: str | None) -> None:
    async with waits(url) as (a, b):
        limit = UpstreamRateLimited("Rate limit exceeded: free-models-per-min.", retry_after=5)
        await a.note("v/a:free", limit)
        await a.note("v/c", UpstreamQuotaExhausted("free-models-per-day", retry_after=9))

        async def seen() -> bool:
            return b.lookup("v/b:free") is not None and b.lookup("v/c") is not None

        await eventually(seen)
        assert b.lookup("v/b") is None  # not a free model
        quota = b.lookup("v/c")
        assert quota is not None and quota.quota  # a daily quota: fail fast


async def test_a_wait_ends_when_it_said(url: str | None) -> None:
    async with waits(url) as (a, b):
        await a.note("m/x", UpstreamRateLimited("slow down", retry_after=0.3))

        async def seen() -> bool:
            return b.lookup("m/x") is not None

        await eventually(seen)
        await asyncio.sleep(0.35)
        assert b.lookup("m/x") is None and not b.in_force()


# --- model catalogue ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Upstream:
    def __init__(self) -> None:
        self.fetches = 0
        self.down = False

    async def list_models(self) -> tuple[list[dict[str, Any]], int]:
        self.fetches += 1
        await asyncio.sleep(0.05)  # long enough for the other replica to find it cold too
        if self.down:
            raise UpstreamUnreachable("down")
        return [{"id": "a/b"}, {"id": "c/d:free"}], 1


@asynccontextmanager
async def catalogs(
    url: str | None, upstream: Upstream, clock: Clock
) -> AsyncIterator[tuple[ModelCatalog, ModelCatalog]]:
    def catalog(store: Any) -> ModelCatalog:
        return ModelCatalog(upstream.list_models, ttl=60, stale_retry=5, timer=clock, store=store)

    if url is None:
        store = MemoryCatalogStore()
        yield catalog(store), catalog(store)
        return
    async with two_links(url) as (link_a, link_b):
        yield catalog(RedisCatalogStore(link_a, "ns")), catalog(RedisCatalogStore(link_b, "ns"))


async def test_one_upstream_fetch_per_ttl_serves_every_replica(url: str | None) -> None:
    upstream, clock = Upstream(), Clock()
    async with catalogs(url, upstream, clock) as (a, b):
        answers = await asyncio.gather(*(c.models() for c in (a, b, a, b, a, b)))
        assert upstream.fetches == 1
        assert all([m.id for m in models] == ["a/b", "c/d:free"] for models in answers)
        clock.now += 59
        await asyncio.gather(a.models(), b.models())
        assert upstream.fetches == 1
        clock.now += 2
        await asyncio.gather(a.models(), b.models(), a.models())
        assert upstream.fetches == 2


async def test_a_failed_refresh_serves_the_stale_list_everywhere(url: str | None) -> None:
    upstream, clock = Upstream(), Clock()
    async with catalogs(url, upstream, clock) as (a, b):
        fresh = await a.models()
        upstream.down = True
        clock.now += 61
        assert await a.models() == fresh
        assert await b.models() == fresh  # the other replica neither fails nor asks again
        assert upstream.fetches == 2
        clock.now += 6  # past the back-off: asked once more, for everyone
        upstream.down = False
        await asyncio.gather(b.models(), a.models())
        assert upstream.fetches == 3


# --- inbound limits -------------------------------------------------------------------------


@asynccontextmanager
async def limiters(
    url: str | None, rate: str | None, concurrent: int | None
) -> AsyncIterator[tuple[InboundLimiter, InboundLimiter]]:
    if url is None:
        shared = InboundLimiter(rate, concurrent)
        yield shared, shared
        return
    async with two_links(url) as (link_a, link_b):
        a = RedisInboundLimiter(link_a, rate, concurrent)
        b = RedisInboundLimiter(link_b, rate, concurrent)
        yield a, b


async def test_the_rate_limit_counts_every_replica_s_requests(url: str | None) -> None:
    async with limiters(url, "3/minute", None) as (a, b):
        for limiter in (a, b, a):
            assert await limiter.acquire("key:k") is None
        with pytest.raises(RateLimited) as refused:
            await b.acquire("key:k")
        headers = refused.value.headers()
        assert headers["x-ratelimit-limit-requests"] == "3"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(headers["Retry-After"]) <= 60
        await a.acquire("key:other")  # another key has its own window


async def test_open_calls_are_counted_across_replicas_until_released(url: str | None) -> None:
    async with limiters(url, None, 2) as (a, b):
        first = await a.acquire("key:k")
        second = await b.acquire("key:k")
        assert first is not None and second is not None
        with pytest.raises(TooManyConcurrent):
            await a.acquire("key:k")
        first.release()

        async def room() -> bool:
            try:
                lease = await b.acquire("key:k")
            except TooManyConcurrent:
                return False
            assert lease is not None
            lease.release()
            return True

        await eventually(room)
        second.release()


# --- benchmark jobs -------------------------------------------------------------------------


class Work:
    """A benchmark stand-in that runs until released (or cancelled), writing its status."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, run: RunDir, spec: JobSpec) -> None:
        total = spec.config.total
        await asyncio.to_thread(run.write_status, "running", done=0, total=total)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            await asyncio.to_thread(run.write_status, "interrupted", done=0, total=total)
            raise
        await asyncio.to_thread(run.write_status, "done", done=total, total=total)


SPEC = JobSpec(
    BenchConfig(models=("m/x",), prompts=(Prompt("hi", ({"role": "user", "content": "hi"},)),)),
    PromptFile("p.txt", "0" * 64, (Prompt("hi", ({"role": "user", "content": "hi"},)),)),
)


@asynccontextmanager
async def queues(
    url: str | None, runs: RunStore, work: Work
) -> AsyncIterator[tuple[JobQueue, JobQueue]]:
    if url is None:
        shared = Jobs(max_running=1, max_waiting=1, execute=work)
        yield shared, shared
        await shared.shutdown()
        return
    async with two_links(url) as links:
        pair = [
            RedisJobs(link, runs=runs, execute=work, max_running=1, max_waiting=1, stale_after=3)
            for link in links
        ]
        for jobs in pair:
            await jobs.start()
        try:
            yield pair[0], pair[1]
        finally:
            for jobs in pair:
                await jobs.shutdown()


async def _submit(jobs: JobQueue, runs: RunStore) -> RunDir:
    async with jobs.admit() as place:
        run = await asyncio.to_thread(runs.create, status="queued", models=["m/x"], total=1)
        await place.submit(run, SPEC)
    return run


def _status(run: RunDir) -> Callable[[str], Awaitable[bool]]:
    async def check(expected: str) -> bool:
        return (await asyncio.to_thread(run.status)).status == expected

    return check


async def test_one_limit_one_queue_and_cancel_from_anywhere(
    url: str | None, tmp_path: Path
) -> None:
    runs, work = RunStore(tmp_path / "runs"), Work()
    async with queues(url, runs, work) as (a, b):
        first = await _submit(a, runs)
        await eventually(lambda: _status(first)("running"))
        with pytest.raises(TooManyJobs):  # the one slot is taken, whichever replica asks
            async with b.inline():
                pass
        second = await _submit(b, runs)  # waits for the slot
        with pytest.raises(TooManyJobs):  # one running + one waiting: the queue is full
            await _submit(a, runs)
        await asyncio.sleep(0.3)
        assert (await asyncio.to_thread(second.status)).status == "queued"
        await b.cancel(second)  # never started: ends at once
        await eventually(lambda: _status(second)("interrupted"))
        await b.cancel(first)  # running, maybe in the other replica: stopped there
        await eventually(lambda: _status(first)("interrupted"))
        await eventually(lambda: _slot_free(a))  # given back as the job unwinds


async def _slot_free(jobs: JobQueue) -> bool:
    try:
        async with jobs.inline():
            return True
    except TooManyJobs:
        return False


async def test_a_finished_job_frees_its_slot(url: str | None, tmp_path: Path) -> None:
    runs, work = RunStore(tmp_path / "runs"), Work()
    async with queues(url, runs, work) as (a, b):
        run = await _submit(a, runs)
        await eventually(lambda: _status(run)("running"))
        work.release.set()
        await eventually(lambda: _status(run)("done"))
        await eventually(lambda: _slot_free(b))
