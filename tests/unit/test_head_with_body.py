"""The server's response writer (`llm-gateway serve`'s protocol, server.py): the head of an
answer goes out with the first piece of its body, in one write; a head whose body is not ready
goes out on the loop's next turn; nothing is held back for ever or written out of order."""

from __future__ import annotations

import asyncio

import pytest

from llm_gateway.server import _HeadWithBody

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _writer() -> tuple[_HeadWithBody, RecordingTransport]:
    transport = RecordingTransport()
    return _HeadWithBody(transport, asyncio.get_running_loop()), transport  # type: ignore[arg-type]


async def test_the_head_and_the_first_piece_of_body_are_one_write() -> None:
    writer, transport = _writer()
    writer.write(HEAD)
    assert transport.writes == []
    writer.write(b"data: 1\n\n")
    writer.write(b"data: 2\n\n")
    assert transport.writes == [HEAD + b"data: 1\n\n", b"data: 2\n\n"]
    await asyncio.sleep(0)  # the scheduled flush finds nothing left to send
    assert transport.writes == [HEAD + b"data: 1\n\n", b"data: 2\n\n"]


async def test_a_head_whose_body_is_not_ready_goes_out_on_the_next_turn_of_the_loop() -> None:
    writer, transport = _writer()
    writer.write(HEAD)
    await asyncio.sleep(0)
    assert transport.writes == [HEAD]
    writer.write(b"data: late\n\n")
    assert transport.writes == [HEAD, b"data: late\n\n"]


async def test_a_100_continue_is_not_taken_for_the_head() -> None:
    writer, transport = _writer()
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    writer.write(HEAD)
    writer.write(b"{}")
    assert transport.writes[1:] == [HEAD + b"{}"]


async def test_closing_sends_a_held_head_first() -> None:
    writer, transport = _writer()
    writer.write(HEAD)
    writer.close()
    assert transport.writes == [HEAD] and transport.closed
    await asyncio.sleep(0)  # and not again
    assert transport.writes == [HEAD]


async def test_flushing_a_head_with_no_body_sends_it_once() -> None:
    writer, transport = _writer()
    writer.write(HEAD)
    writer.flush()
    writer.flush()
    await asyncio.sleep(0)
    assert transport.writes == [HEAD]
    assert not writer.is_closing()
