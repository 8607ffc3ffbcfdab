"""Playing a planned generation onto the wire, on time, as JSON or as SSE.

Timing: every event has an absolute deadline measured from the request's arrival (`t0`): the
first token at `t0 + ttft`, token i at `t0 + ttft + gap_0 + ... + gap_{i-1}`, the finish chunk
(and the non-streaming body) one more gap later, i.e. `t0 + ttft + n / tokens_per_s`. With
several choices, step i sends token i of each choice still going: they run side by side.
Sleeping to deadlines instead of sleeping fixed gaps keeps timer overshoot from accumulating.
With a zero schedule (time_scale 0) no deadline is in the future, so nothing sleeps.

Without streaming, the timed faults (hang, keepalive, stall) all delay the whole answer, and a drop
sends half the body under a full Content-Length before the connection is cut.

Cancellation: a task watches `receive()` for `http.disconnect` and cancels the playback, so a
client that goes away stops the generation at once and the record says `cancelled`.

Bookkeeping (record, /generation entry, key usage) is done just before the last event is sent,
so a client that has read the whole response never finds it still open.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llm_gateway.emulator import errors, payloads
from llm_gateway.emulator.answers import Plan
from llm_gateway.emulator.catalog import CatalogEntry
from llm_gateway.emulator.config import ModelProfile
from llm_gateway.emulator.faults import Fault
from llm_gateway.emulator.state import Generation, RequestRecord

Outcome = Literal["completed", "dropped"]

# Below this a timer wake-up counts as on time; re-arming for less would only spin the loop.
_ON_TIME_S = 0.0005
_CUT_KINDS = frozenset({"midstream", "error-choice", "drop"})
_DELAY_KINDS = frozenset({"hang", "keepalive", "stall"})


def schedule(
    profile: ModelProfile, tokens: int, *, time_scale: float, rng: random.Random
) -> tuple[float, ...]:
    """Offsets from t0: `[i]` is when token i is due (i < tokens), `[tokens]` when it finishes.

    Jitter draws one uniform factor for the TTFT and one per gap, from the emulator's seeded rng.
    """
    if time_scale == 0:
        return (0.0,) * (tokens + 1)
    jitter = profile.jitter
    at = profile.ttft_s * time_scale
    gap = time_scale / profile.tokens_per_s
    if jitter:
        at *= 1 + jitter * (2 * rng.random() - 1)
    offsets = [at]
    for _ in range(tokens):
        at += gap * (1 + jitter * (2 * rng.random() - 1)) if jitter else gap
        offsets.append(at)
    return tuple(offsets)


async def _sleep_until(deadline: float) -> None:
    while (delay := deadline - time.monotonic()) > _ON_TIME_S:
        await anyio.sleep(delay)


@dataclass(frozen=True, slots=True)
class Playback:
    """Everything decided about one accepted chat request before its response starts."""

    record: RequestRecord
    entry: CatalogEntry
    plan: Plan
    fault: Fault
    stream: bool
    generation_id: str
    created: int
    offsets: tuple[float, ...]
    usage_shape: payloads.UsageShape
    keepalive_interval_s: float
    keepalive_every: int
    on_finish: Callable[[Generation], None]


class PlaybackResponse(Response):
    """ASGI response that plays a `Playback`, then completes its record and generation."""

    def __init__(self, playback: Playback) -> None:
        super().__init__(status_code=200)
        self._p = playback
        self._steps = 0
        self._first_token_at: float | None = None
        self._finish_reason: str | None = None
        self._finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Play the generation, stopping at once if the client disconnects."""
        outcome: Outcome | None = None
        play = self._stream if self._p.stream else self._json
        try:
            if self._p.offsets[-1] == 0 and self._p.fault.kind not in _DELAY_KINDS:
                # Nothing will sleep, so the playback never yields to a disconnect; skipping the
                # watcher keeps zero-latency answers cheap for overhead measurements.
                outcome = await play(send)
                return
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
                outcome = await play(send)
                group.cancel_scope.cancel()
        finally:
            self._finish(outcome)

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    def _finish(self, outcome: Outcome | None) -> None:
        if self._finished:
            return
        self._finished = True
        p, now = self._p, time.monotonic()
        p.record.finished_at = now
        p.record.completed = outcome == "completed"
        p.record.cancelled = outcome is None
        if outcome == "dropped":
            self._finish_reason = "error"
        completion = p.plan.completion_tokens(self._steps)
        p.on_finish(
            Generation(
                id=p.generation_id,
                model=p.entry.id,
                streamed=p.stream,
                created_at=float(p.created),
                started_at=p.record.started_at,
                first_token_at=self._first_token_at,
                finished_at=now,
                finish_reason=self._finish_reason,
                tokens_prompt=p.plan.prompt_tokens,
                tokens_completion=completion,
                tokens_reasoning=p.plan.reasoning_tokens(self._steps),
                cost=p.entry.cost(p.plan.prompt_tokens, completion),
                cancelled=outcome is None,
            )
        )

    async def _start(
        self, send: Send, content_type: bytes, extra: list[tuple[bytes, bytes]]
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"x-generation-id", self._p.generation_id.encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    @staticmethod
    async def _body(send: Send, data: bytes, *, more: bool = True) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": more})

    async def _last(self, send: Send, data: bytes) -> Outcome:
        self._finish("completed")
        await self._body(send, data, more=False)
        return "completed"

    def _usage(self) -> dict[str, Any]:
        plan = self._p.plan
        completion = plan.completion_tokens(self._steps)
        return payloads.usage_object(
            prompt=plan.prompt_tokens,
            completion=completion,
            reasoning=plan.reasoning_tokens(self._steps),
            cost=self._p.entry.cost(plan.prompt_tokens, completion),
        )

    async def _json(self, send: Send) -> Outcome:
        p = self._p
        kind = p.fault.kind
        t0 = p.record.started_at + (p.fault.seconds if kind in _DELAY_KINDS else 0.0)
        if kind == "error-200":
            await _sleep_until(t0 + p.offsets[0])
            self._finish_reason = "error"
            body = payloads.error_body(errors.PROVIDER_ERROR_200)
            await self._start(send, b"application/json", [(b"content-length", b"%d" % len(body))])
            return await self._last(send, body)
        cut = kind in ("midstream", "error-choice")
        produced = min(p.fault.count, p.plan.steps) if cut else p.plan.steps
        await _sleep_until(t0 + p.offsets[produced])
        self._steps = produced
        self._first_token_at = t0 + p.offsets[0] if produced else None
        self._finish_reason = "error" if cut else p.plan.finish_reason
        error = errors.CHOICE_ERROR if cut else None
        choices = [
            payloads.choice_body(choice, produced, "error" if cut else choice.finish_reason, error)
            for choice in p.plan.choices
        ]
        body = payloads.completion(
            generation_id=p.generation_id,
            model=p.entry.id,
            created=p.created,
            choices=choices,
            usage=self._usage(),
        )
        await self._start(send, b"application/json", [(b"content-length", b"%d" % len(body))])
        if kind == "drop":
            # Half a body under a full Content-Length: the client sees a broken transfer.
            await self._body(send, body[: len(body) // 2])
            return "dropped"
        return await self._last(send, body)

    async def _stream(self, send: Send) -> Outcome:
        p = self._p
        fault = p.fault
        t0 = p.record.started_at
        if fault.kind == "hang":
            await _sleep_until(t0 + fault.seconds)
            t0 = time.monotonic()
        await self._start(send, b"text/event-stream", [(b"cache-control", b"no-cache")])
        await self._body(send, payloads.KEEPALIVE)
        base = t0 + (fault.seconds if fault.kind == "keepalive" else 0.0)
        next_comment = t0 + p.keepalive_interval_s
        while next_comment < base + p.offsets[0]:
            await _sleep_until(next_comment)
            await self._body(send, payloads.KEEPALIVE)
            next_comment += p.keepalive_interval_s
        framer = payloads.ChunkFramer(
            generation_id=p.generation_id, model=p.entry.id, created=p.created
        )
        if fault.kind == "error-200":
            await _sleep_until(base + p.offsets[0])
            self._finish_reason = "error"
            self._finish("completed")
            await self._body(send, framer.error(errors.PROVIDER_ERROR_200))
            return await self._last(send, b"")
        choices, steps = p.plan.choices, p.plan.steps
        stop = min(fault.count, steps) if fault.kind in _CUT_KINDS else steps
        shift = 0.0
        for step in range(stop):
            await _sleep_until(base + p.offsets[step] + shift)
            if step == 0:
                for choice in choices:
                    await self._body(send, framer.role(choice.index))
                self._first_token_at = time.monotonic()
            for choice in choices:
                # A choice shorter than the longest finishes when its next piece would be due.
                if step < len(choice.pieces):
                    await self._body(send, framer.piece(choice, choice.pieces[step]))
                elif step == len(choice.pieces):
                    await self._body(send, framer.finish(choice.finish_reason, choice.index))
            self._steps = step + 1
            if step == 0 and fault.kind == "stall":
                # Measured from the first chunk's real send time, so a late timer cannot
                # shorten the silence.
                shift = time.monotonic() - (base + p.offsets[0]) + fault.seconds
            elif p.keepalive_every and self._steps % p.keepalive_every == 0 and self._steps < stop:
                await self._body(send, payloads.KEEPALIVE)
        await _sleep_until(base + p.offsets[stop] + shift)
        if fault.kind == "drop":
            return "dropped"
        if fault.kind in _CUT_KINDS:
            self._finish_reason = "error"
            self._finish("completed")
            await self._body(send, framer.error(errors.MIDSTREAM_ERROR))
            return await self._last(send, b"")
        self._finish_reason = p.plan.finish_reason
        for choice in choices:
            if not steps:
                await self._body(send, framer.role(choice.index))
            if len(choice.pieces) == steps:
                await self._body(send, framer.finish(choice.finish_reason, choice.index))
        await self._body(send, framer.usage(self._usage(), p.usage_shape))
        self._finish("completed")
        await self._body(send, payloads.DONE)
        return await self._last(send, b"")
