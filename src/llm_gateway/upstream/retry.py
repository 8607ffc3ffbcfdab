"""The retry policy: the only place the gateway decides to call the upstream again.

Rules (DESIGN.md "Request path"):
- retried: connect errors, timeouts before the first byte, and statuses 408, 429, 500, 502,
  503, 504; never 400/401/402/403/404/422, never a daily-quota 429, never a 200 carrying an
  error (the upstream may already have billed it);
- the wait is what the upstream asked for (`Retry-After`, `X-RateLimit-Reset`) when it said,
  else exponential backoff with full jitter, capped at `max_wait`;
- attempts and total time are bounded; if the upstream asks for a wait that would overrun the
  time budget, we give up at once and hand its wait to our client instead of sleeping;
- nothing here runs after the first byte has reached our client: callers wrap only the part of
  a call that happens before that (the stream pre-flight), never the forwarding.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from llm_gateway.errors import GatewayError, UpstreamError

T = TypeVar("T")

logger = logging.getLogger("llm_gateway.upstream")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, GatewayError) and exc.retryable


def _requested_wait(retry_state: RetryCallState) -> float | None:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    return exc.retry_after if isinstance(exc, UpstreamError) else None


class _UpstreamWait(wait_base):
    """The upstream's own wait when it gave one, else the fallback backoff."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        requested = _requested_wait(retry_state)
        return requested if requested is not None else self.fallback(retry_state)


class _OverBudget(stop_base):
    """Stop when the coming wait would end past the total time budget."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        elapsed = retry_state.seconds_since_start or 0.0
        return elapsed + retry_state.upcoming_sleep > self.budget


class RetryObserver(Protocol):
    """Told about every attempt and every retry (the metrics implement it)."""

    def on_attempt(self, endpoint: str, outcome: str) -> None: ...

    def on_retry(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries for one upstream call; `sleep` is injectable so tests need not wait."""

    attempts: int = 4
    base: float = 0.5
    max_wait: float = 8.0
    budget: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    observer: RetryObserver | None = None

    async def call(self, fn: Callable[[], Awaitable[T]], *, what: str) -> tuple[T, int]:
        """Run `fn` until it succeeds or the policy gives up; return its result and the attempts.

        A failure is re-raised as it was, with `attempts` set on it.
        """
        # The first attempt runs outside tenacity: nearly every call succeeds at once, and the
        # retry machinery costs more per call than the rest of the gateway's own work.
        started = time.monotonic()
        try:
            return await self._observed(fn, what), 1
        except GatewayError as exc:
            if not exc.retryable or self.attempts == 1:
                exc.attempts = 1
                raise
            first_failure: GatewayError | None = exc
        replay_budget = self.budget - (time.monotonic() - started)

        async def attempt_fn() -> T:
            # Tenacity's first attempt replays the failure already seen, so its waits, stops
            # and logs treat it like any other attempt.
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await self._observed(fn, what)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts) | _OverBudget(replay_budget),
            wait=_UpstreamWait(wait_random_exponential(multiplier=self.base, max=self.max_wait)),
            retry=retry_if_exception(_is_retryable),
            sleep=self.sleep,
            before_sleep=lambda state: self._before_sleep(state, what),
            reraise=True,
        )
        attempt_number = 0
        try:
            async for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt:
                    result = await attempt_fn()
        except GatewayError as exc:
            exc.attempts = attempt_number
            raise
        return result, attempt_number

    async def _observed(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        if self.observer is None:
            return await fn()
        try:
            result = await fn()
        except GatewayError as exc:
            self.observer.on_attempt(what, exc.code)
            raise
        self.observer.on_attempt(what, "ok")
        return result

    def _before_sleep(self, retry_state: RetryCallState, what: str) -> None:
        _log_retry(retry_state, what)
        if self.observer is not None:
            outcome = retry_state.outcome
            exc = outcome.exception() if outcome is not None else None
            self.observer.on_retry(getattr(exc, "code", type(exc).__name__))


def _log_retry(retry_state: RetryCallState, what: str) -> None:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    logger.warning(
        "retrying %s after attempt %d failed (%s); waiting %.2fs",
        what,
        retry_state.attempt_number,
        getattr(exc, "code", type(exc).__name__),
        retry_state.upcoming_sleep,
    )
