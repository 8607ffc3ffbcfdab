"""An incremental Server-Sent Events decoder for upstream streams.

Upstream bytes arrive in arbitrary pieces: an event can be split across reads, several can
arrive in one read, and OpenRouter interleaves comment lines (`: OPENROUTER PROCESSING`) that
must never reach a JSON parser. Comments are surfaced rather than dropped so callers can treat
them as keep-alives (forward them, or count them as liveness).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its `data` lines joined by newlines, and its `event` name."""

    data: str
    event: str | None = None


@dataclass(frozen=True, slots=True)
class SSEComment:
    """A comment line (`:` prefix), its text after the colon as sent; OpenRouter uses them as
    keep-alives (`: OPENROUTER PROCESSING`)."""

    text: str


SSEItem = SSEEvent | SSEComment


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the complete items they finish.

    Lines end with LF or CRLF (a lone CR is not treated as a line end: no upstream we speak to
    sends one, and it would make a CR at the end of a read ambiguous).
    """

    __slots__ = ("_data", "_event", "_partial")

    def __init__(self) -> None:
        self._partial = b""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEItem]:
        buffer = self._partial + chunk if self._partial else chunk
        lines = buffer.split(b"\n")
        # The last piece has no newline yet; keep it for the next read. Splitting on LF is safe
        # for UTF-8 because LF never occurs inside a multi-byte sequence.
        self._partial = lines.pop()
        items: list[SSEItem] = []
        for raw in lines:
            self._line(raw.removesuffix(b"\r").decode("utf-8", errors="replace"), items)
        return items

    def close(self) -> list[SSEItem]:
        """End of input: a final event missing its blank line is still delivered."""
        items: list[SSEItem] = []
        if self._partial:
            self._line(self._partial.removesuffix(b"\r").decode("utf-8", errors="replace"), items)
            self._partial = b""
        self._line("", items)
        return items

    def _line(self, line: str, items: list[SSEItem]) -> None:
        if not line:
            if self._data:
                items.append(SSEEvent("\n".join(self._data), self._event))
            self._data = []
            self._event = None
            return
        if line[0] == ":":
            # As sent (a leading space included), so a passthrough can forward it unchanged.
            items.append(SSEComment(line[1:]))
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # `id:` and `retry:` carry nothing a completion stream needs.
