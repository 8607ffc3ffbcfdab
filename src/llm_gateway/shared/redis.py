"""The gateway's one connection to Redis: a client with short timeouts, a health watch, and a
batcher that sends the calls of one event-loop turn in one pipelined round trip.

- Every call is bounded by GATEWAY_REDIS_TIMEOUT (connect and read), and redis-py's own
  retries are off: a request never waits on Redis longer than that.
- `healthy` says whether Redis answered lately. A failed call marks it down at once; a watch
  task pings it every second and marks it up again when it answers. Each change is logged once
  (a WARNING when it goes, an INFO line when it is back), never a traceback per request.
  While it is down, each user of the shared state does what docs/scale-out.md says (local
  limits, local catalogue, no new jobs) without trying Redis first.
- `Batcher` sends calls in batches, pipelined on one connection of its own: the calls made
  while a batch is on its way go together in the next one. At 64 concurrent requests one round
  trip serves many limiter checks instead of one each (redis-py spends ~30 us of CPU per round
  trip; batched, a few us per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

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

    async def start(self) -> None:
        """Ping once (a down Redis is logged, not fatal), then keep watching."""
        await self._ping()
        self._watch = asyncio.create_task(self._watch_forever(), name="redis-health")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.batch.close()
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

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            await self._ping()


Command = tuple[Any, ...]


class Batcher:
    """Calls queued while the previous batch is on its way go to Redis together, pipelined on
    one connection of their own.

    `call(command)` queues one Redis command (a tuple of its words) and returns a future of
    its reply; `fire(command)` queues it and forgets the reply, and does not send a batch by
    itself: it goes with the next batch, or within `FIRE_DELAY_S`. A reply that is an error
    (a script Redis has not loaded yet, say) is that future's exception; a failed round trip
    fails them all, and marks Redis down.

    One connection, one batch in flight: at high concurrency, the calls that arrive during a
    round trip all go in the next one, so the cost per call falls as the load rises; and no
    connection-pool bookkeeping (a health-check read per checkout) is paid per batch.
    """

    FIRE_DELAY_S = 0.005

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._pending: list[tuple[Command, asyncio.Future[Any] | None]] = []
        self._scripts: dict[str, str | bytes] = {}  # sha -> source, for loading on NOSCRIPT
        self._flushing: asyncio.Task[None] | None = None
        self._waiting = 0  # pending calls whose caller waits for the reply
        self._timer: asyncio.TimerHandle | None = None
        self._connection: Connection | None = None

    def script(self, source: str | bytes) -> str:
        """Register a Lua script; its SHA1 is what `evalsha` calls send."""
        sha = self._link.client.register_script(source).sha
        self._scripts[sha] = source
        return sha

    def call(self, command: Command) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        self._waiting += 1
        self._kick()
        return future

    def fire(self, command: Command) -> None:
        self._pending.append((command, None))
        if self._timer is None and self._flushing is None:
            self._timer = asyncio.get_running_loop().call_later(self.FIRE_DELAY_S, self._kick)

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        return self.call(("EVALSHA", sha, len(keys), *keys, *args))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing
        await self._drop_connection()

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is None and self._pending:
            self._flushing = asyncio.ensure_future(self._flush_all())

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self._waiting = 0
                await self._flush(batch)
                if not self._waiting:  # only fire-and-forget left: they can wait a little
                    break
        finally:
            self._flushing = None
            if self._pending and self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self.FIRE_DELAY_S, self._kick)

    async def _flush(self, batch: list[tuple[Command, asyncio.Future[Any] | None]]) -> None:
        try:
            async with asyncio.timeout(self._link.timeout):
                replies = await self._send([command for command, _ in batch])
                missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:  # a restarted Redis has forgotten the scripts: load, send again
                    await self._send([("SCRIPT", "LOAD", s) for s in self._scripts.values()])
                    again = await self._send([batch[i][0] for i in missing])
                    for i, reply in zip(missing, again, strict=True):
                        replies[i] = reply
        except REDIS_FAILURES as exc:
            await self._drop_connection()
            self._link.failed(exc, "pipeline")
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            await self._drop_connection()
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

    async def _send(self, commands: list[Command]) -> list[Any]:
        connection = self._connection
        if connection is None:
            connection = self._link.client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            await connection.connect()
            self._connection = connection
        await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:  # that command's error; the rest still come
                replies.append(error)
        return replies

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*REDIS_FAILURES):
                await connection.disconnect(nowait=True)
