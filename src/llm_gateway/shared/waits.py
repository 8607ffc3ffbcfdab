"""The upstream's "wait until T": once the upstream answers 429 with a time to come back, no
caller asks it again for the same thing before then, in this process or any replica.

A wait has a scope: the model the 429 was about, or every `:free` model of the key when
OpenRouter says the account's free-model limit is reached (`free-models-per-min`,
`free-models-per-day`). The retry layer asks `lookup(model)` before each upstream call: inside
a wait it sleeps until T when that fits its budget, and fails at once with the upstream's 429
otherwise (a daily quota always fails at once), without calling the upstream.

- `UpstreamWaits` keeps the waits in this process.
- `RedisWaits` also writes each wait to Redis (a key that expires at T) and publishes it; every
  replica subscribes and keeps a local copy, so the request path never calls Redis: it reads
  the local copy (`in_force()` is one float comparison while nothing is waited for). On
  (re)connection a replica reloads the keys, so a wait published while it was away is not
  missed. When Redis is down, each process keeps its own waits (fail-open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from llm_gateway.errors import UpstreamQuotaExhausted, UpstreamRateLimited
from llm_gateway.shared.redis import REDIS_FAILURES, RedisLink

logger = logging.getLogger("llm_gateway.upstream")

FREE_SCOPE = "free"
_FREE_LIMITS = ("free-models-per-min", "free-models-per-day")


@dataclass(frozen=True, slots=True)
class Wait:
    until: float  # epoch seconds
    quota: bool  # a daily quota: failed fast, never waited out


def scope_of(model: str | None, error: UpstreamRateLimited) -> str | None:
    """What a 429 applies to: every free model of the key (the account's free-model limit,
    met by a free model), one model, or (no model named) nothing."""
    if not model:
        return None
    if model.endswith(":free") and any(name in error.message for name in _FREE_LIMITS):
        return FREE_SCOPE
    return f"model:{model}"


def _scopes(model: str | None) -> tuple[str, ...]:
    if not model:
        return ()
    return (f"model:{model}", FREE_SCOPE) if model.endswith(":free") else (f"model:{model}",)


class UpstreamWaits:
    """The waits the upstream asked for, in this process; `clock` is epoch seconds."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._waits: dict[str, Wait] = {}
        self._latest = 0.0  # the end of the longest wait: nothing to look up after it

    def in_force(self) -> bool:
        """Whether any wait may still be running (cheap: the request path asks every time)."""
        return self._latest > self._clock()

    def lookup(self, model: str | None) -> Wait | None:
        """The longest wait running for `model`, if any."""
        now = self._clock()
        found: Wait | None = None
        for scope in _scopes(model):
            wait = self._waits.get(scope)
            if (
                wait is not None
                and wait.until > now
                and (found is None or wait.until > found.until)
            ):
                found = wait
        return found

    async def note(self, model: str | None, error: UpstreamRateLimited) -> None:
        """Remember the wait a 429 asked for (and share it, where there is sharing)."""
        scope = scope_of(model, error)
        if scope is None or error.retry_after is None or error.retry_after <= 0:
            return
        wait = Wait(self._clock() + error.retry_after, isinstance(error, UpstreamQuotaExhausted))
        self.remember(scope, wait)
        await self._share(scope, wait)

    def remember(self, scope: str, wait: Wait) -> None:
        now = self._clock()
        if wait.until <= now:
            return
        current = self._waits.get(scope)
        if current is None or current.until < wait.until:
            self._waits[scope] = wait
        for name in [s for s, w in self._waits.items() if w.until <= now]:
            del self._waits[name]
        self._latest = max(w.until for w in self._waits.values())

    async def _share(self, scope: str, wait: Wait) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisWaits(UpstreamWaits):
    """Waits shared by every replica through Redis (keys + pub/sub), cached locally.

    `namespace` names the upstream and its key (a hash of them): gateways with other keys
    sharing the Redis do not wait for one another.
    """

    def __init__(
        self, link: RedisLink, namespace: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock=clock)
        self._link = link
        self._channel = link.key("waits", namespace)
        self._prefix = link.key("waits", namespace) + ":"
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="upstream-waits")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _share(self, scope: str, wait: Wait) -> None:
        if not self._link.healthy:
            return
        payload = orjson.dumps({"scope": scope, "until": wait.until, "quota": wait.quota})
        ttl_ms = max(1, int((wait.until - self._clock()) * 1000))
        try:
            async with asyncio.timeout(self._link.timeout):
                pipe = self._link.client.pipeline(transaction=False)
                pipe.set(self._prefix + scope, payload, px=ttl_ms)
                pipe.publish(self._channel, payload)
                await pipe.execute()
        except REDIS_FAILURES as exc:
            self._link.failed(exc, "sharing an upstream wait")

    def _take(self, payload: bytes) -> None:
        try:
            data = orjson.loads(payload)
            self.remember(str(data["scope"]), Wait(float(data["until"]), bool(data["quota"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("ignored a malformed upstream wait from Redis")

    async def _follow(self) -> None:
        """Subscribe, load the waits already set, then take each one published; start over
        whenever the connection fails (the health watch says when Redis is back)."""
        while True:
            if not self._link.healthy:
                await asyncio.sleep(0.2)
                continue
            pubsub = self._link.client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self._link.timeout):
                    await pubsub.subscribe(self._channel)
                    await self._load()
                self.subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._take(message["data"])
            except REDIS_FAILURES as exc:
                self._link.failed(exc, "following upstream waits")
            finally:
                self.subscribed.clear()
                with contextlib.suppress(*REDIS_FAILURES):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0.2)

    async def _load(self) -> None:
        keys = [key async for key in self._link.client.scan_iter(match=self._prefix + "*")]
        if keys:
            for payload in await self._link.client.mget(keys):
                if payload is not None:
                    self._take(payload)
