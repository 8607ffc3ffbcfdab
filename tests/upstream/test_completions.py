"""Reading completions: the shapes upstreams vary in, whole and streamed."""

from __future__ import annotations

from llm_gateway.upstream.completions import StreamAccumulator, parse_completion


def test_a_tool_call_answer_is_an_answer() -> None:
    whole = parse_completion(
        {
            "id": 12345,  # not every OpenAI-compatible upstream sends a string id
            "choices": [
                {
                    "finish_reason": "tool_calls",
                    "message": {"content": None, "tool_calls": [{"id": "call_1"}]},
                }
            ],
        }
    )
    assert whole.tool_calls and whole.text == "" and whole.id == "12345"
    streamed = StreamAccumulator()
    streamed.feed({"choices": [{"delta": {"tool_calls": [{"index": 0}]}, "finish_reason": None}]})
    assert streamed.result().tool_calls


def test_usage_comes_from_the_chunk_after_finish_reason_in_both_forms() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.1}
    for last in (
        {"choices": [], "usage": usage},
        {"choices": [{"delta": {}, "finish_reason": None}], "usage": usage},
    ):
        acc = StreamAccumulator()
        acc.feed({"choices": [{"delta": {"content": "a"}, "finish_reason": None}]})
        acc.feed({"choices": [{"delta": {"content": ""}, "finish_reason": "stop"}]})
        acc.feed(last)
        result = acc.result()
        assert result.finish_reason == "stop"  # the dummy choice's null does not erase it
        assert result.usage is not None and result.usage.total_tokens == 5
        assert result.text == "a"


def test_streamed_text_and_reasoning_come_back_exactly_as_the_pieces_said() -> None:
    pieces = ["Hé", "llo ", "🙂", "", " wörld", "\ud83d"]  # the last: a lone surrogate escape
    acc = StreamAccumulator()
    for piece in pieces:
        acc.feed({"choices": [{"delta": {"content": piece, "reasoning": piece[::-1]}}]})
    result = acc.result()
    assert result.text == "".join(pieces)
    assert result.reasoning == "".join(piece[::-1] for piece in pieces)
    assert acc.content_chunks == 5
    assert StreamAccumulator().result().reasoning is None
