"""Server-Sent Events from upstream streams: cut into whole events, decoded, re-encoded.

Upstream bytes arrive in arbitrary pieces: an event can be split across reads, several can
arrive in one read, and OpenRouter interleaves comment lines (`: OPENROUTER PROCESSING`) that
must never reach a JSON parser. Comments are surfaced rather than dropped so callers can treat
them as keep-alives (forward them, or count them as liveness).

- `EventFramer` cuts bytes at event boundaries without decoding them, so a passthrough can
  forward whole events exactly as they came;
- `SSEDecoder` turns bytes into events and comments;
- `encode_data` writes an event's data back as SSE.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_gateway.errors import UpstreamBadResponse

# A chat completion event is a few hundred bytes; even a whole answer sent as one event is far
# below this. Past it the "event" is an upstream that never ends one.
MAX_EVENT_BYTES = 4 * 1024 * 1024


def _end_of_last_boundary(data: bytes) -> int:
    """The index just after the last event boundary in `data`, or 0 when there is none.

    An event ends with a blank line: LF LF, or with CRLF line ends, LF CR LF. (Written out
    rather than as a loop over the two: this runs for every read of every stream.)
    """
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)


class EventFramer:
    """Feed it bytes; it returns the part that ends on an event boundary (whole events, as
    received, possibly several), and keeps the rest for the next read.

    Only each new chunk (and the two bytes before it) is searched, and an unfinished event is
    kept as a list of pieces, so a long event costs its length, not its length squared.
    """

    __slots__ = ("_pieces", "_size", "_tail")

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0
        self._tail = b""  # the last bytes buffered, for a boundary split across reads

    def feed(self, chunk: bytes) -> bytes:
        probe = self._tail + chunk
        end = _end_of_last_boundary(probe)
        if not end:
            self._pieces.append(chunk)
            self._size += len(chunk)
            if self._size > MAX_EVENT_BYTES:
                raise UpstreamBadResponse(
                    f"The upstream's stream is not usable: an event passed {MAX_EVENT_BYTES} "
                    "bytes without ending"
                )
            self._tail = probe[-2:]
            return b""
        cut = end - len(self._tail)  # a boundary ends in the new chunk: the old ones had none
        events = b"".join([*self._pieces, chunk[:cut]]) if self._pieces else chunk[:cut]
        rest = chunk[cut:]
        self._pieces, self._size, self._tail = ([rest] if rest else []), len(rest), rest[-2:]
        return events

    def close(self) -> bytes:
        """End of input: what is left, as a last event (a final blank line may be missing)."""
        rest = b"".join(self._pieces)
        self._pieces, self._size, self._tail = [], 0, b""
        return rest + b"\n\n" if rest.strip() else b""


def encode_data(data: str) -> bytes:
    """An event's data as one SSE event (data spanning several lines keeps them)."""
    if "\n" not in data:
        return b"data: " + data.encode() + b"\n\n"
    return "".join(f"data: {line}\n" for line in data.split("\n")).encode() + b"\n"


# Not frozen, as the other types built per event (`Chunk`, `KeepAlive`) or per call (`Reply`,
# `Completion`, `Usage`, `Generated`): a frozen dataclass sets each field through
# object.__setattr__, 2-3x the cost of building a plain one, thousands of times a second.
@dataclass(slots=True)
class SSEEvent:
    """One dispatched event: its `data` lines joined by newlines, and its `event` name."""

    data: str
    event: str | None = None


@dataclass(slots=True)
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
        if (
            not self._partial
            and not self._data
            and chunk.startswith(b"data: ")
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk.endswith(b"\n\n")
            and not chunk.endswith(b"\r\n\n")
        ):
            # Nearly every read of a healthy stream is exactly one `data:` line and its blank
            # line: taken whole, without the line-by-line machinery below.
            return [SSEEvent(chunk[6:-2].decode("utf-8", errors="replace"))]
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
