"""Reading the emulator's SSE exactly as it is framed on the wire, with arrival times."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

COMMENT = ": OPENROUTER PROCESSING"
CHAT = "/api/v1/chat/completions"


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


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[Event]]:
    """POST `body` as a streamed chat request and read every event."""
    started = time.perf_counter()
    async with client.stream("POST", CHAT, json={**body, "stream": True}, headers=headers) as r:
        return r, await read(r, started)


def choice_deltas(events: list[Event], index: int = 0) -> list[dict[str, Any]]:
    """The deltas of choice `index`, in order."""
    return [
        choice["delta"]
        for chunk in data_chunks(events)
        for choice in chunk["choices"]
        if choice["index"] == index
    ]


def tool_calls_of(events: list[Event], index: int = 0) -> list[dict[str, Any]]:
    """The tool calls of choice `index`, assembled from their deltas the way OpenAI's SDK does:
    by `index`, the first delta of a call giving id and name, the others argument fragments."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in choice_deltas(events, index):
        for part in delta.get("tool_calls") or ():
            call = calls.setdefault(
                part["index"], {"id": None, "type": "function", "function": {"arguments": ""}}
            )
            call["id"] = part.get("id") or call["id"]
            function = part["function"]
            if "name" in function:
                call["function"]["name"] = function["name"]
            call["function"]["arguments"] += function.get("arguments") or ""
    return [
        {"id": call["id"], "type": "function", "function": call["function"]}
        for _, call in sorted(calls.items())
    ]
