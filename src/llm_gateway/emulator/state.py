"""Mutable server state: request records, finished generations, fault queues and rate windows.

Handlers run on the server's event loop while tests call `Emulator.script()`, `reset()` and read
`records` from their own thread, so every structure touched from both sides is guarded by a lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_gateway.emulator.config import EmulatorConfig
from llm_gateway.emulator.faults import Fault

# Bounds the generations kept when the emulator serves a long benchmark (each is a few hundred
# bytes); far above what any test produces.
MAX_KEPT = 100_000
# What a record without its body takes in memory, about: the object, its dict, its strings.
RECORD_BYTES = 512


@dataclass
class RequestRecord:
    """One API request as the emulator saw and answered it.

    `body` is the parsed JSON body of a chat request when `EmulatorConfig.keep_bodies` is on
    (and it fits the records' byte bound), else None; `body_bytes` is its size as received.
    """

    id: str | None
    method: str
    path: str
    model: str | None
    stream: bool
    status: int
    fault: str
    authorized: bool
    body: dict[str, Any] | None
    started_at: float
    finished_at: float | None = None
    completed: bool = False
    cancelled: bool = False
    body_bytes: int = 0


@dataclass
class Generation:
    """Statistics of one generation, served by GET /generation once `generation_lag_s` passed.

    Times are `time.monotonic()` values, except `created_at` (epoch seconds). `finish_reason` is
    None for a generation cut short by its client.
    """

    id: str
    model: str
    streamed: bool
    created_at: float
    started_at: float
    first_token_at: float | None
    finished_at: float
    finish_reason: str | None
    tokens_prompt: int
    tokens_completion: int
    tokens_reasoning: int
    cost: float | int
    cancelled: bool


class Recorder:
    """The ordered list of request records, shared as `Emulator.records`, bounded in bytes.

    A record counts `RECORD_BYTES`, plus its body's size as received when the body is kept.
    Past `config.records_max_bytes` the oldest records go, down to 90% of the bound, so the list
    is shifted once in a while rather than on every request.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.records: list[RequestRecord] = []
        self._config = config
        self._bytes = 0
        self._lock = threading.Lock()

    def open(self, method: str, path: str, *, authorized: bool) -> RequestRecord:
        """Append and return the record of a request arriving now."""
        record = RequestRecord(
            id=None,
            method=method,
            path=path,
            model=None,
            stream=False,
            status=200,
            fault="ok",
            authorized=authorized,
            body=None,
            started_at=time.monotonic(),
        )
        with self._lock:
            self.records.append(record)
            self._bytes += RECORD_BYTES
            self._trim()
        return record

    def attach_body(self, record: RequestRecord, body: dict[str, Any], size: int) -> None:
        """Note the size of the record's body, and keep the body itself if the config says so
        and it fits the bound on its own."""
        limit = self._config.records_max_bytes
        with self._lock:
            record.body_bytes = size
            if not self._config.keep_bodies or RECORD_BYTES + size > limit:
                return
            record.body = body
            # Newest first: the record was opened moments ago, unless the bound dropped it since.
            if any(kept is record for kept in reversed(self.records)):
                self._bytes += size
                self._trim()

    @staticmethod
    def _cost(record: RequestRecord) -> int:
        return RECORD_BYTES + (record.body_bytes if record.body is not None else 0)

    def _trim(self) -> None:
        limit = self._config.records_max_bytes
        if self._bytes <= limit:
            return
        target, dropped = limit * 9 // 10, 0
        while self._bytes > target and dropped < len(self.records):
            self._bytes -= self._cost(self.records[dropped])
            dropped += 1
        del self.records[:dropped]

    def clear(self) -> None:
        """Forget every record (in place: holders of `records` see the change)."""
        with self._lock:
            self.records.clear()
            self._bytes = 0


class GenerationStore:
    """Finished generations, visible only `lag_s()` seconds after they finished (OpenRouter's lag).

    The lag is read on every lookup so that a change of the config applies at once.
    """

    def __init__(self, lag_s: Callable[[], float]) -> None:
        self._lag_s = lag_s
        self._lock = threading.Lock()
        self._items: dict[str, Generation] = {}

    def add(self, generation: Generation) -> None:
        """Store a finished generation."""
        with self._lock:
            if len(self._items) >= MAX_KEPT:
                del self._items[next(iter(self._items))]
            self._items[generation.id] = generation

    def visible(self, generation_id: str) -> Generation | None:
        """The generation if it finished at least the lag ago, else None."""
        with self._lock:
            generation = self._items.get(generation_id)
        if generation is None or time.monotonic() < generation.finished_at + self._lag_s():
            return None
        return generation

    def total_cost(self) -> float:
        """Sum of the costs of every finished generation (the key's usage)."""
        with self._lock:
            return float(sum(generation.cost for generation in self._items.values()))

    def clear(self) -> None:
        """Forget every generation."""
        with self._lock:
            self._items.clear()


class FaultBook:
    """Where fault steps come from: header-keyed sequences and scripted queues.

    A header sequence is walked by successive requests carrying the same key, so a client's
    retries see step 1, 2, 3...; once used up the key yields nothing more. Scripted queues are
    per model (popped first) and for any model.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._header_counts: dict[str, int] = {}
        self._queues: dict[str | None, deque[Fault]] = {}

    def from_header(self, key: str, steps: tuple[Fault, ...]) -> Fault | None:
        """The next step of the header sequence identified by `key`, or None once used up."""
        with self._lock:
            index = self._header_counts.get(key, 0)
            if index >= len(steps):
                return None
            self._header_counts[key] = index + 1
            return steps[index]

    def script(self, faults: list[Fault], model: str | None) -> None:
        """Append steps to the queue of `model` (None = any model). No steps empty that queue,
        or, for None, every queue: "no more faults"."""
        with self._lock:
            if faults:
                self._queues.setdefault(model, deque()).extend(faults)
            elif model is None:
                self._queues.clear()
            else:
                self._queues.pop(model, None)

    def pop(self, model: str) -> Fault | None:
        """The next scripted step for a request to `model`, model queue first; None when empty."""
        with self._lock:
            for queue_key in (model, None):
                queue = self._queues.get(queue_key)
                if queue:
                    return queue.popleft()
            return None

    def clear(self) -> None:
        """Drop every queue and header counter."""
        with self._lock:
            self._header_counts.clear()
            self._queues.clear()


class FreeTierWindow:
    """Server-wide rolling one-minute window over requests served on ':free' models."""

    WINDOW_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served: deque[float] = deque()

    def admit(self, now: float, limit: int) -> float | None:
        """Count a request at monotonic time `now` against `limit` per minute. When the window is
        full, return the monotonic time at which its oldest request leaves it, and do not count
        this one: OpenRouter does not count rejected requests."""
        with self._lock:
            while self._served and self._served[0] <= now - self.WINDOW_S:
                self._served.popleft()
            if len(self._served) >= limit:
                return self._served[0] + self.WINDOW_S
            self._served.append(now)
            return None

    def clear(self) -> None:
        """Empty the window."""
        with self._lock:
            self._served.clear()
