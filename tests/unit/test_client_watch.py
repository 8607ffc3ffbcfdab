"""The server's side of the disconnect watch (`llm-gateway serve`'s protocol, server.py): a
request whose client goes before its answer is complete is cancelled, even one whose task had
not yet started when the connection went; a complete answer is left alone."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from llm_gateway.server import _ClientWatch

pytestmark = pytest.mark.anyio


def _watch(*, complete: bool = False) -> _ClientWatch:
    cycle: Any = SimpleNamespace(response_complete=complete, response_started=complete)
    return _ClientWatch(cycle)


async def _sleeper() -> None:
    await asyncio.sleep(30)


async def test_a_connection_lost_mid_answer_cancels_the_request() -> None:
    watch, task = _watch(), asyncio.ensure_future(_sleeper())
    watch.watch(task)
    watch.connection_lost()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watch.client_left


async def test_a_request_whose_client_went_before_it_started_is_cancelled_at_once() -> None:
    watch, task = _watch(), asyncio.ensure_future(_sleeper())
    watch.connection_lost()
    watch.watch(task)
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_connection_closed_after_a_complete_answer_is_not_a_client_leaving() -> None:
    watch, task = _watch(complete=True), asyncio.ensure_future(_sleeper())
    watch.watch(task)
    watch.connection_lost()
    await asyncio.sleep(0)
    assert not task.cancelled() and not watch.client_left
    task.cancel()
