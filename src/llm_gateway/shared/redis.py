"""The gateway's one connection to Redis: a client with short timeouts, a health watch, and a
batcher that sends the calls of one event-loop turn in one pipelined round trip.

- Every call is bounded by GATEWAY_REDIS_TIMEOUT (connect and read), and redis-py's own
  retries are off: a request never waits on Redis longer than that.
- `healthy` says whether Redis answered lately. A failed call marks it down at once; a watch
  task pings it every second and marks it up again when it answers. Each change is logged once
  (a WARNING when it goes, an INFO line when it is back), never a traceback per request.
  While it is down, each user of the shared state does what docs/scale-out.md says (local
  limits, local catalogue, no new jobs) without trying Redis first.
- `Batcher` queues calls made during one turn of the event loop and sends them together in
  one pipeline: at 64 concurrent requests, one round trip serves all the limiter checks of a
  turn instead of one each (redis-py spends ~30 us of CPU per round trip; batched, ~5 us per
  call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

logger = logging.getLogger("llm_gateway.shared")

PING_INTERVAL_S = 1.0

# What a failed Redis call can raise besides redis-py's own errors: our timeout around it, and
# the OS's errors on a socket that went away.
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)


class RedisLink:
    """A Redis client for the app, its health, and key names under one prefix."""

    def __init__(self, url: str, *, prefix: str, timeout: float) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        # No socket timeout on this client: every call is bounded by an `asyncio.timeout` of
        # ours instead. redis-py sends with `asyncio.wait_for` when it has one, and on Python
        # 3.11 that can swallow the cancellation of the request waiting on it.
        self.client = self.make_client(None)
        self.healthy = False
        self._down_since: float | None = None
        self._watch: asyncio.Task[None] | None = None
        self._on_up: list[Callable[[], Awaitable[None]]] = []
        self.batch = Batcher(self)

    def make_client(self, read_timeout: float | None) -> aioredis.Redis:
        """A client of this Redis whose reads may take `read_timeout` (a blocking pop's wait,
        say; None: bounded by the caller); connecting is bounded by the link's timeout.
        redis-py's retries are off."""
        return aioredis.Redis.from_url(
            self.url,
            socket_timeout=read_timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=256,
        )

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def on_up(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` each time Redis becomes reachable (at start-up too)."""
        self._on_up.append(callback)

    async def start(self) -> None:
        """Ping once (a down Redis is logged, not fatal), then keep watching."""
        await self._ping()
        self._watch = asyncio.create_task(self._watch_forever(), name="redis-health")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.client.aclose()

    def failed(self, exc: BaseException, what: str) -> None:
        """A call failed: Redis is taken as down until a ping answers (logged once)."""
        if self.healthy or self._down_since is None:
            logger.warning(
                "Redis unreachable (%s: %s: %s); shared state degraded, see /ready. "
                "Local fallbacks apply until it is back.",
                what,
                type(exc).__name__,
                exc,
            )
            self._down_since = time.monotonic()
        self.healthy = False

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await cast(Awaitable[Any], self.client.ping())
        except REDIS_FAILURES as exc:
            self.failed(exc, "ping")
            return
        if not self.healthy:
            if self._down_since is not None:
                logger.info(
                    "Redis is back after %.1fs; shared state restored",
                    time.monotonic() - self._down_since,
                )
            self._down_since = None
            self.healthy = True
            for callback in self._on_up:
                try:
                    await callback()
                except REDIS_FAILURES as exc:
                    self.failed(exc, "resync")
                    return

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            await self._ping()


Step = Callable[[Pipeline], Any]


class Batcher:
    """Calls queued during one event-loop turn go to Redis together, in one pipeline.

    `call(step)` queues `step(pipeline)` (which adds one command) and returns a future of its
    reply; `fire(step)` queues it and forgets the reply. A reply that is an error (a script
    Redis has not loaded yet, say) is that future's exception; a failed round trip fails them
    all, and marks Redis down.
    """

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._pending: list[tuple[Step, asyncio.Future[Any] | None]] = []
        self._scripts: dict[str, str | bytes] = {}  # sha -> source, for loading on NOSCRIPT
        self._flushing: set[asyncio.Task[None]] = set()

    def script(self, source: str | bytes) -> str:
        """Register a Lua script; its SHA1 is what `evalsha` steps send."""
        sha = self._link.client.register_script(source).sha
        self._scripts[sha] = source
        return sha

    def call(self, step: Step) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(step, future)
        return future

    def fire(self, step: Step) -> None:
        self._queue(step, None)

    def evalsha(
        self, sha: str, keys: Sequence[str], args: Sequence[Any], *, wait: bool = True
    ) -> asyncio.Future[Any] | None:
        def step(pipe: Pipeline) -> Any:
            return pipe.evalsha(sha, len(keys), *keys, *args)

        if wait:
            return self.call(step)
        self.fire(step)
        return None

    def _queue(self, step: Step, future: asyncio.Future[Any] | None) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._start_flush)
        self._pending.append((step, future))

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[tuple[Step, asyncio.Future[Any] | None]]) -> None:
        try:
            async with asyncio.timeout(self._link.timeout):
                replies = await self._send(batch)
                missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:  # a restarted Redis has forgotten the scripts: load, send again
                    for source in self._scripts.values():
                        await self._link.client.script_load(source)
                    again = await self._send([batch[i] for i in missing])
                    for i, reply in zip(missing, again, strict=True):
                        replies[i] = reply
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "pipeline")
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                if future is not None and not future.done():
                    future.cancel()
            raise
        for (_, future), reply in zip(batch, replies, strict=True):
            if future is None or future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _send(self, batch: list[tuple[Step, asyncio.Future[Any] | None]]) -> list[Any]:
        pipe = self._link.client.pipeline(transaction=False)
        for step, _ in batch:
            step(pipe)
        return list(await pipe.execute(raise_on_error=False))
