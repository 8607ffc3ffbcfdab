"""The SSE decoder against the shapes OpenRouter really sends, split at awkward places."""

from __future__ import annotations

from llm_gateway.upstream.sse import SSEComment, SSEDecoder, SSEEvent

TRANSCRIPT = (
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"choices":[{"delta":{"role":"assistant","content":"H\xc3\xa9llo"}}]}\n\n'
    b": OPENROUTER PROCESSING\n\n"
    b"data: [DONE]\n\n"
)


def _decode_in_pieces(data: bytes, size: int) -> list[SSEEvent | SSEComment]:
    decoder = SSEDecoder()
    items: list[SSEEvent | SSEComment] = []
    for start in range(0, len(data), size):
        items.extend(decoder.feed(data[start : start + size]))
    items.extend(decoder.close())
    return items


def test_comments_and_events_come_out_in_order() -> None:
    items = _decode_in_pieces(TRANSCRIPT, len(TRANSCRIPT))
    assert [type(i).__name__ for i in items] == [
        "SSEComment",
        "SSEEvent",
        "SSEEvent",
        "SSEComment",
        "SSEEvent",
    ]
    assert items[0] == SSEComment(" OPENROUTER PROCESSING")
    assert items[-1] == SSEEvent("[DONE]")


def test_any_split_of_the_bytes_gives_the_same_items() -> None:
    whole = _decode_in_pieces(TRANSCRIPT, len(TRANSCRIPT))
    for size in (1, 2, 3, 7, 16):
        # Size 1 also splits the two-byte UTF-8 "é" across reads.
        assert _decode_in_pieces(TRANSCRIPT, size) == whole
    assert "Héllo" in whole[2].data  # type: ignore[union-attr]


def test_crlf_multiline_data_and_event_names() -> None:
    items = _decode_in_pieces(b"event: done\r\ndata: a\r\ndata: b\r\n\r\n", 4)
    assert items == [SSEEvent("a\nb", "done")]


def test_a_final_event_without_its_blank_line_is_kept() -> None:
    assert _decode_in_pieces(b"data: [DONE]", 5) == [SSEEvent("[DONE]")]


def test_fields_without_space_and_unknown_fields() -> None:
    items = _decode_in_pieces(b"id: 1\nretry: 10\ndata:x\n\n", 3)
    assert items == [SSEEvent("x")]


def test_a_read_of_exactly_one_event_decodes_as_the_general_path_does() -> None:
    """A read that is one `data:` line and its blank line takes a shortcut; it must agree with
    the line-by-line decoder on every near miss (CR before LF, two lines, a partial line
    pending, text that is not UTF-8)."""
    reads = (
        b'data: {"a":1}\n\n',
        b"data: x\r\n\n",
        b"data: x\ndata: y\n\n",
        b"data: caf\xc3\xa9 \xff\n\n",
        b"data:x\n\n",
        b"event: done\ndata: x\n\n",
    )
    for read in reads:
        shortcut = SSEDecoder().feed(read)
        byte_by_byte = _decode_in_pieces(read, 1)
        assert shortcut == byte_by_byte, read
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a") == []  # pending: the next read is not one whole event
    assert decoder.feed(b"b\n\n") == [SSEEvent("ab")]
