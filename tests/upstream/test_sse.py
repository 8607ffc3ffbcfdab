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
