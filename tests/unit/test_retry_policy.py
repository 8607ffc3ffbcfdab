"""`RetryPolicy` alone, with an injected sleep: which failures are retried, how long it waits,
and when it gives up, with no wall clock involved."""

from __future__ import annotations

import pytest

from llm_gateway.errors import (
    GatewayError,
    UpstreamQuotaExhausted,
    UpstreamRateLimited,
    UpstreamStatusError,
    UpstreamTimeout,
)
from llm_gateway.upstream.retry import RetryPolicy

pytestmark = pytest.mark.anyio


class Script:
    """Raises the given errors in turn, then answers "ok"."""

    def __init__(self, *errors: GatewayError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _policy(sleeps: Sleeps, **overrides: float) -> RetryPolicy:
    values = {"attempts": 4, "base": 0.5, "max_wait": 8.0, "budget": 30.0, **overrides}
    return RetryPolicy(sleep=sleeps, **values)  # type: ignore[arg-type]


async def test_a_first_success_is_one_attempt_and_no_wait() -> None:
    sleeps = Sleeps()
    assert await _policy(sleeps).call(Script(), what="x") == ("ok", 1)
    assert sleeps.waits == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_with_capped_backoff(status: int) -> None:
    sleeps = Sleeps()
    error = (
        UpstreamRateLimited("slow down") if status == 429 else UpstreamStatusError(status, "boom")
    )
    script = Script(error, error)
    assert await _policy(sleeps).call(script, what="x") == ("ok", 3)
    assert len(sleeps.waits) == 2
    # Full jitter: anything from 0 up to base x 2^n, never above max_wait.
    assert all(0 <= wait <= 8.0 for wait in sleeps.waits)


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
async def test_client_errors_are_never_retried(status: int) -> None:
    sleeps = Sleeps()
    with pytest.raises(UpstreamStatusError) as failure:
        await _policy(sleeps).call(Script(UpstreamStatusError(status, "no")), what="x")
    assert failure.value.attempts == 1
    assert sleeps.waits == []


async def test_the_daily_quota_is_never_retried() -> None:
    sleeps = Sleeps()
    with pytest.raises(UpstreamQuotaExhausted):
        await _policy(sleeps).call(Script(UpstreamQuotaExhausted("per-day")), what="x")
    assert sleeps.waits == []


async def test_the_upstreams_own_wait_is_used() -> None:
    sleeps = Sleeps()
    script = Script(UpstreamRateLimited("wait", retry_after=2.5))
    assert await _policy(sleeps).call(script, what="x") == ("ok", 2)
    assert sleeps.waits == [2.5]


async def test_a_wait_beyond_the_budget_fails_at_once() -> None:
    sleeps = Sleeps()
    script = Script(UpstreamRateLimited("wait", retry_after=60))
    with pytest.raises(UpstreamRateLimited) as failure:
        await _policy(sleeps, budget=30).call(script, what="x")
    assert sleeps.waits == []  # no sleep that would end past the budget
    assert failure.value.attempts == 1
    assert failure.value.headers() == {"Retry-After": "60"}


async def test_attempts_are_bounded_and_reported_on_the_error() -> None:
    sleeps = Sleeps()
    script = Script(*[UpstreamTimeout("slow")] * 10)
    with pytest.raises(UpstreamTimeout) as failure:
        await _policy(sleeps, attempts=3).call(script, what="x")
    assert script.calls == 3
    assert failure.value.attempts == 3
    assert len(sleeps.waits) == 2


async def test_one_attempt_means_no_retry_machinery() -> None:
    sleeps = Sleeps()
    with pytest.raises(UpstreamTimeout):
        await _policy(sleeps, attempts=1).call(Script(UpstreamTimeout("slow")), what="x")
    assert sleeps.waits == []
