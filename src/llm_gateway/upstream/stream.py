"""An open upstream completion stream, read item by item or forwarded as it came.

The stream is pre-flighted by the client before anyone forwards it: the status is checked and
the first chunk read (or a short window waited), so failures up to that point are still real
HTTP errors and may still be retried. After that, failures surface as exceptions from `next()`
or `forward()`, which the caller turns into an in-band error event.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from llm_gateway.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnreachable
from llm_gateway.redaction import Redactor
from llm_gateway.upstream.deadlines import Deadlines
from llm_gateway.upstream.mapping import error_message
from llm_gateway.upstream.sse import (
    EventFramer,
    SSEComment,
    SSEDecoder,
    SSEEvent,
    SSEItem,
    encode_data,
)


@dataclass(slots=True)  # not frozen: built per event (see SSEEvent)
class KeepAlive:
    """A comment line from the upstream: no content, but proof the upstream is alive."""

    text: str


@dataclass(slots=True)  # not frozen: built per event (see SSEEvent)
class Chunk:
    """One `chat.completion.chunk`: parsed, with the raw `data` kept for passthrough."""

    data: dict[str, Any]
    raw: str
    received_ns: int


StreamItem = KeepAlive | Chunk

_PASSABLE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,256}")


def passable_id(value: str | None, redact: Redactor) -> str | None:
    """An upstream's generation id, if it is one we may pass on as a header: plain id
    characters only (a control character would break our own answer's headers) and nothing
    secret."""
    if value is None or not _PASSABLE_ID.fullmatch(value):
        return None
    return value if redact.content(value) == value else None


def inband_error(chunk: dict[str, Any]) -> UpstreamBadResponse | None:
    """The error a 200 body or chunk carries, if any (top-level `error`, or finish_reason error)."""
    error = chunk.get("error")
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        message = error_message(chunk, "the upstream reported an error")
        return UpstreamBadResponse(
            f"Upstream error during generation: {message}",
            upstream_status=code if isinstance(code, int) else None,
        )
    choices = chunk.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and choice.get("finish_reason") == "error":
                native = choice.get("native_finish_reason")
                detail = error_message(choice, f"finish_reason=error (native: {native})")
                return UpstreamBadResponse(f"Upstream error during generation: {detail}")
    return None


class _Content(Protocol):
    async def readany(self) -> bytes: ...


class UpstreamResponse(Protocol):
    """What a stream needs of its HTTP response (h1.py's `H1Response` has it, and aiohttp's
    `ClientResponse`)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> _Content: ...

    def release(self) -> Any: ...

    def close(self) -> None: ...


class ChatStream:
    """One upstream SSE response; close it when done (`aclose`, or `async with`).

    Read it either item by item (`next()`, iteration: parsed chunks, each with the time of the
    read that brought it, for a benchmark) or as the upstream's own bytes (`forward()`, for a
    passthrough; `parsed()` decodes its blocks for a reader that needs the content but not the
    times, as `/generate` does). Reads are kept as whole events, as they came.
    """

    def __init__(
        self,
        response: UpstreamResponse,
        *,
        idle: Deadlines,
        started_ns: int,
        redact: Redactor | None = None,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._response = response
        # An upstream that never stops (ignoring max_tokens, or hostile) is cut here.
        self._max_bytes = max_bytes
        self._received = 0
        # What the upstream sends is scrubbed of the gateway's secrets before anyone sees it.
        self.redact = redact or Redactor()
        # Each read must bring something within `idle.seconds`: one deadline, entered anew
        # for every read, on the client's timer for all streams (a timer of its own per
        # stream was ~0.5 KB of every open stream's memory).
        self._idle_seconds = idle.seconds
        self._read_deadline = idle()
        self._framer = EventFramer()
        # Whole events as read, each block with the perf_counter_ns() of its read: timing is
        # taken at arrival, not when a (possibly slower) consumer gets to it.
        # Lists, not deques: they hold a read or two at a time, and an empty deque is 600 bytes
        # (per open stream, by the thousand).
        self._blocks: list[tuple[bytes, int]] = []
        self._decoder = SSEDecoder()
        self._pending: list[tuple[SSEItem, int]] = []  # decoded, for next()
        self._eof = False
        self.finished = False  # [DONE] seen, or a finish_reason followed by a clean end
        self._saw_finish = False
        self.attempts = 1
        self.started_ns = started_ns
        self.generation_id = passable_id(response.headers.get("X-Generation-Id"), self.redact)

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[StreamItem]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamItem]:
        while (item := await self.next()) is not None:
            yield item

    async def prime(self, window: Deadlines) -> None:
        """Read ahead until the first event with data is buffered, the stream ends, or
        `window`'s time passes.

        Errors found here (an error as the first event, a dead connection) are raised before
        our own response has started, so they become real HTTP statuses.
        """
        try:
            with window():
                while not self._eof and not any(_has_data(b) for b, _ in self._blocks):
                    await self._fill()
        except TimeoutError:
            return  # only keep-alives so far: the caller starts forwarding anyway
        # Only the first event decides: an error after it is the stream's, not the request's.
        first = next((b for b, _ in self._blocks if _has_data(b)), b"")
        if _may_carry_error(first):
            event = next(i for i in SSEDecoder().feed(first) if isinstance(i, SSEEvent))
            if event.data != "[DONE]":
                self._raise_inband(self._parse(event.data))

    async def next(self) -> StreamItem | None:
        """The next item, or None once the stream has ended. Cancel-safe."""
        while True:
            while not self._pending:
                if self._blocks:
                    block, received_ns = self._blocks.pop(0)
                    self._pending += [(item, received_ns) for item in self._decoder.feed(block)]
                    continue
                if self._eof:
                    self._check_complete()
                    return None
                await self._fill()
            item, received_ns = self._pending.pop(0)
            if isinstance(item, SSEComment):
                return KeepAlive(item.text)
            if item.data == "[DONE]":
                self._done()
                return None
            raw = self.redact.content(item.data)
            data = self._parse(raw)
            if "\\u" in raw:  # escapes decode into text the search could not see
                data = self.redact.json(data)
            # Text searches first: nearly every chunk has neither, and looking costs less.
            if '"error"' in raw:
                self._raise_inband(data)
            if '"finish_reason"' in raw and _has_finish(data):
                self._saw_finish = True
            return Chunk(data, raw, received_ns)

    async def forward(self) -> AsyncIterator[bytes]:
        """The upstream's events as it sent them (comments included), a read's worth at a
        time, ending with `data: [DONE]`; an in-band error is raised instead of forwarded.

        Healthy events are not parsed: a byte search tells whether an event may carry an
        error, and only those are decoded and checked. Events are passed on as they are
        otherwise, so an event that is not JSON reaches the client as the upstream sent it.
        """
        while True:
            while not self._blocks:
                if self._eof:
                    self._check_complete()  # a finish without [DONE] still ends cleanly
                    yield _DONE
                    return
                await self._fill()
            block = self.redact.content_bytes(self._blocks.pop(0)[0])
            if _may_carry_error(block) or b"\\u" in block:
                block, error = self._checked(block)
                if error is not None:
                    if block:
                        yield block  # the events before the error are the client's
                    raise error
            elif _sets_finish(block):
                self._saw_finish = True
            if b"[DONE]" in block and _has_done(block):
                self._done()
                yield block
                return
            yield block

    def _checked(self, block: bytes) -> tuple[bytes, UpstreamBadResponse | None]:
        """`block` decoded and each event checked and scrubbed: the events up to the first
        in-band error (re-encoded), and that error, if any. For the blocks a byte search cannot
        clear: they may carry an error, or text escaped as `\\u....`."""
        out = []
        for item in SSEDecoder().feed(block):
            if isinstance(item, SSEComment):
                out.append(b":" + item.text.encode() + b"\n\n")
                continue
            if item.data == "[DONE]":
                out.append(_DONE)
                continue
            try:
                data = self._parse(item.data)
            except UpstreamBadResponse as exc:
                return b"".join(out), exc
            error = inband_error(data)
            if error is not None:
                return b"".join(out), self.redact.error(error)
            self._saw_finish = self._saw_finish or _has_finish(data)
            scrubbed = self.redact.json(data)  # a secret written as escapes, decoded
            raw = item.data if scrubbed is data else orjson.dumps(scrubbed).decode()
            out.append(encode_data(raw))
        return b"".join(out), None

    def _raise_inband(self, data: dict[str, Any]) -> None:
        error = inband_error(data)
        if error is not None:
            raise self.redact.error(error)

    def _done(self) -> None:
        self.finished = True
        self._eof = True
        self._blocks.clear()
        self._pending.clear()

    def _check_complete(self) -> None:
        # Some OpenAI-compatible servers end without [DONE]; a finish_reason is enough.
        if not self.finished and not self._saw_finish:
            raise UpstreamUnreachable("The upstream closed the stream before it finished")
        self.finished = True

    def parsed(self, block: bytes) -> list[dict[str, Any] | None]:
        """The events of a block `forward()` gave, parsed: each event's JSON object, None for a
        comment (the upstream is alive), nothing for `[DONE]`. For a reader that needs each
        chunk's content but not the time it came: `forward()` has already checked and scrubbed
        the block with byte searches, so this only decodes it."""
        if block.startswith(b"data: {") and block.find(b"\n") == len(block) - 2:
            return [self._parse(block[6:-2])]  # one event: nearly every read of a stream
        # Several events, each one `data: ` line (a stream's first and last reads): split
        # here; anything else (comments, several lines, CR line ends) through the SSE decoder.
        events = block.split(b"\n\n")
        if not events.pop() and all(_single_data_line(event) for event in events):
            return [self._parse(event[6:]) for event in events if event != _DONE_EVENT]
        return [
            None if isinstance(item, SSEComment) else self._parse(item.data)
            for item in SSEDecoder().feed(block)
            if isinstance(item, SSEComment) or item.data != "[DONE]"
        ]

    def _parse(self, data: str | bytes) -> dict[str, Any]:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
            message = f"Upstream sent an event that is not JSON: {text[:80]!r}"
            raise UpstreamBadResponse(self.redact(message)) from exc
        if not isinstance(parsed, dict):
            raise UpstreamBadResponse("Upstream sent an event that is not a JSON object")
        return parsed

    async def _fill(self) -> None:
        # The idle timeout restarts on every read, so keep-alive comments keep a slow stream
        # alive while a silent one is cut.
        try:
            with self._read_deadline:
                data = await self._response.content.readany()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"The upstream sent nothing for {self._idle_seconds:g}s in the middle of a stream"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnreachable(f"The upstream stream broke: {exc}") from exc
        now = time.perf_counter_ns()
        self._received += len(data)
        if self._received > self._max_bytes:
            raise UpstreamBadResponse(
                f"The upstream's stream passed {self._max_bytes} bytes "
                "(GATEWAY_MAX_UPSTREAM_BYTES); it was cut off"
            )
        if data:
            block = self._framer.feed(data)
        else:
            self._eof = True
            block = self._framer.close()
        if block:
            self._blocks.append((block, now))

    async def aclose(self) -> None:
        """Release the connection; cut it if the stream was not read to the end, so the
        upstream sees the cancellation and stops generating (and billing)."""
        if self.finished:
            self._response.release()
        else:
            self._response.close()


_DONE = b"data: [DONE]\n\n"
_DONE_EVENT = _DONE[:-2]
_DONE_LINE = re.compile(rb"(?m)^data: ?\[DONE\]\r?$")
_FINISH_STRING = re.compile(rb'"finish_reason"\s*:\s*"')


def _has_done(block: bytes) -> bool:
    """Whether a line of `block` is `data: [DONE]`. Nearly always it ends the block, which is
    seen without the regex (that tries every line start: ~3.6 us on a stream's last read,
    against ~0.8 this way)."""
    if block.endswith(_DONE) and (len(block) == len(_DONE) or block[-len(_DONE) - 1] == 10):
        return True  # 10: the newline that ends the event before it
    return _DONE_LINE.search(block) is not None


def _single_data_line(event: bytes) -> bool:
    return event.startswith(b"data: ") and b"\n" not in event and b"\r" not in event


def _has_data(block: bytes) -> bool:
    return block.startswith(b"data:") or b"\ndata:" in block


def _may_carry_error(block: bytes) -> bool:
    # An `"error"` key (a top-level error) or value (`finish_reason: "error"`). Model text
    # cannot match: a quote inside a JSON string is escaped.
    return b'"error"' in block


def _sets_finish(block: bytes) -> bool:
    """Whether an event in `block` has a `finish_reason` that is a string (not null).

    Every chunk of a healthy stream names the key (`"finish_reason":null`), so this runs on
    every read. One search with a literal prefix: 0.28 us on a one-event read, 2.7 us on a
    read of 23 events (a fast upstream's whole answer), where looking at each occurrence of the
    key from Python took 0.40 and 8.8 us (in situ, paired: within the noise either way)."""
    return _FINISH_STRING.search(block) is not None


def _has_finish(data: dict[str, Any]) -> bool:
    choices = data.get("choices")
    if isinstance(choices, list):
        for choice in choices:  # a loop, not any(<generator>): this runs for every chunk
            if isinstance(choice, dict) and choice.get("finish_reason"):
                return True
    return False
