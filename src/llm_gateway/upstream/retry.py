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
  a call that happens before that (the stream pre-flight), never the forwarding;
- a wait the upstream asked for holds for every call about the same model, here and in every
  replica (`shared/waits.py`): before each attempt, a call inside such a wait sleeps it out when
  it fits the budget, and fails at once with the 429 otherwise, without calling the upstream.
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

from llm_gateway.errors import (
    GatewayError,
    UpstreamError,
    UpstreamQuotaExhausted,
    UpstreamRateLimited,
)
from llm_gateway.shared.waits import UpstreamWaits

T = TypeVar("T")

logger = logging.getLogger("llm_gateway.upstream")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, GatewayError) and exc.retryable


def _requested_wait(retry_state: RetryCallState) -> float | None:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    return exc.retry_after if isinstance(exc, UpstreamError) else None


class _UpstreamWait(wait_base):
    """The upstream's own wait when it gave one, else the fallback backoff; never less than
    what is left of a wait the upstream asked of any caller for the same model."""

    def __init__(self, fallback: wait_base, shared: Callable[[], float]) -> None:
        self.fallback = fallback
        self.shared = shared

    def __call__(self, retry_state: RetryCallState) -> float:
        requested = _requested_wait(retry_state)
        wait = requested if requested is not None else self.fallback(retry_state)
        return max(wait, self.shared())


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
    waits: UpstreamWaits | None = None

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        what: str,
        model: Callable[[], str | None] | None = None,
    ) -> tuple[T, int]:
        """Run `fn` until it succeeds or the policy gives up; return its result and the attempts.

        `model` names what the call is about (looked up only while a wait is in force, or
        after a 429), for the upstream's waits. A failure is re-raised as it was, with
        `attempts` set on it.
        """
        # The first attempt runs outside tenacity: nearly every call succeeds at once, and the
        # retry machinery costs more per call than the rest of the gateway's own work.
        started = time.monotonic()
        waits = self.waits
        if waits is not None and waits.in_force():
            await self._respect(waits, model, started)  # may fail at once: no call made
        try:
            return await self._attempt(fn, what, model), 1
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
            return await self._attempt(fn, what, model)

        def shared_wait() -> float:
            """What is left of a wait running for this call's model (another replica's 429,
            say), so a retry never goes before it ends."""
            if waits is None or not waits.in_force():
                return 0.0
            wait = waits.lookup(model() if model is not None else None)
            return max(0.0, wait.until - time.time()) if wait is not None else 0.0

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts) | _OverBudget(replay_budget),
            wait=_UpstreamWait(
                wait_random_exponential(multiplier=self.base, max=self.max_wait), shared_wait
            ),
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

    async def _attempt(
        self, fn: Callable[[], Awaitable[T]], what: str, model: Callable[[], str | None] | None
    ) -> T:
        """One call; a 429 that says how long to wait is remembered for every caller."""
        if self.waits is None:
            return await self._observed(fn, what)
        try:
            return await self._observed(fn, what)
        except UpstreamRateLimited as exc:
            await self.waits.note(model() if model is not None else None, exc)
            raise

    async def _respect(
        self, waits: UpstreamWaits, model: Callable[[], str | None] | None, started: float
    ) -> None:
        """Sleep out a wait the upstream asked for, or fail at once when it does not fit."""
        name = model() if model is not None else None
        wait = waits.lookup(name)
        if wait is None:
            return
        remaining = wait.until - time.time()
        if remaining <= 0:
            return
        if wait.quota or remaining > self.budget - (time.monotonic() - started):
            # Not the upstream's own message (it may carry what redaction removes later, and
            # a wait can come from another replica): what kind of limit, and until when.
            if wait.quota:
                raise UpstreamQuotaExhausted(
                    f"Upstream daily quota exhausted (per-day) for {name}, as the upstream said "
                    f"to this gateway or another replica; not calling it again for "
                    f"{remaining:.0f}s",
                    retry_after=remaining,
                )
            raise UpstreamRateLimited(
                f"Upstream rate limit: the upstream asked to wait {remaining:.1f}s more for "
                f"{name} (a 429 this gateway or another replica received); not calling it "
                "again before then",
                retry_after=remaining,
            )
        logger.info("waiting %.2fs before calling %s: the upstream asked for it", remaining, name)
        await self.sleep(remaining)

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
