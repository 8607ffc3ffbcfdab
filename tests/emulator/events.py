"""Reading the emulator's SSE exactly as it is framed on the wire, with arrival times."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

COMMENT = ": OPENROUTER PROCESSING"


@dataclass
class Event:
    """One SSE block: a comment, a `data:` JSON chunk or `data: [DONE]`."""

    text: str
    at: float = 0.0  # seconds from the request being sent to the block's first line arriving

    @property
    def comment(self) -> bool:
        return self.text.startswith(":")

    @property
    def done(self) -> bool:
        return self.text == "data: [DONE]"

    @property
    def data(self) -> dict[str, Any]:
        assert self.text.startswith("data: {"), self.text
        parsed: dict[str, Any] = json.loads(self.text.removeprefix("data: "))
        return parsed

    @property
    def delta(self) -> dict[str, Any]:
        delta: dict[str, Any] = self.data["choices"][0]["delta"]
        return delta

    @property
    def token_bearing(self) -> bool:
        if self.comment or self.done:
            return False
        choices = self.data["choices"]
        return bool(choices) and bool(
            choices[0]["delta"].get("content") or choices[0]["delta"].get("reasoning")
        )


def parse(text: str) -> list[Event]:
    """Split a complete SSE body into blocks; every block must end with a blank line."""
    assert text.endswith("\n\n"), text[-80:]
    blocks = text.removesuffix("\n\n").split("\n\n")
    for block in blocks:
        assert "\n" not in block, f"one line per event expected: {block!r}"
    return [Event(block) for block in blocks]


async def read(response: httpx.Response, started: float) -> list[Event]:
    """Read a streaming response line by line, stamping each block with its arrival time."""
    events: list[Event] = []
    pending: Event | None = None
    async for line in response.aiter_lines():
        if line:
            assert pending is None, f"two lines in one event: {pending.text!r} / {line!r}"
            pending = Event(line, time.perf_counter() - started)
        else:
            assert pending is not None, "blank line without an event"
            events.append(pending)
            pending = None
    assert pending is None, "the stream ended inside an event"
    return events


def data_chunks(events: list[Event]) -> list[dict[str, Any]]:
    """The JSON chunks, without comments and [DONE]."""
    return [event.data for event in events if not event.comment and not event.done]


def text_of(events: list[Event]) -> str:
    """The concatenated content deltas."""
    return "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in data_chunks(events)
        if chunk["choices"]
    )
