"""A deliberately simple SSE reader for assertions (independent of the gateway's own parser)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


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
