"""A deliberately simple SSE reader for assertions (independent of the gateway's own parser)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from llm_gateway.emulator import Emulator, RequestRecord


@dataclass
class Frame:
    event: str | None
    data: Any
    comment: bool = False


def parse_frames(text: str) -> list[Frame]:
    frames: list[Frame] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        if all(line.startswith(":") for line in lines):
            frames.append(Frame(None, None, comment=True))
            continue
        event = next((ln[7:] for ln in lines if ln.startswith("event: ")), None)
        data = "\n".join(ln[6:] for ln in lines if ln.startswith("data: "))
        frames.append(Frame(event, json.loads(data)))
    return frames


def deltas(frames: list[Frame]) -> str:
    return "".join(f.data["delta"] for f in frames if f.event is None and not f.comment)


async def leave_after_first_event(
    base_url: str,
    path: str,
    body: dict[str, Any],
    *,
    first: str,
    params: dict[str, str] | None = None,
) -> None:
    """Open a stream, read until a line starting with `first`, then drop the connection."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=20) as client,
        client.stream("POST", path, params=params, json=body) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith(first):
                break  # closing the response here drops the connection


async def cancelled_record(emulator: Emulator) -> RequestRecord:
    """The only chat request's record, once the emulator has seen its client go away."""
    for _ in range(100):
        [record] = emulator.chat_records()
        if record.cancelled:
            return record
        await asyncio.sleep(0.02)
    raise AssertionError("the upstream stream was not cancelled")
