"""Sampling options: `stop`, `n` choices, `logprobs` and `top_logprobs`, streamed and not."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.emulator import events
from tests.emulator.conftest import CHAT, chat_body

pytestmark = pytest.mark.anyio


async def complete(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def content(answer: dict[str, Any], index: int = 0) -> str:
    text: str = answer["choices"][index]["message"]["content"]
    return text


@pytest.mark.parametrize("stop", ["e", [" zzz", "a", "."], "zzz"])
async def test_stop_cuts_before_the_first_stop_string(
    client: httpx.AsyncClient, stop: str | list[str]
) -> None:
    whole = content(await complete(client, chat_body(seed=1)))
    stops = [stop] if isinstance(stop, str) else stop
    cut = min((whole.find(s) for s in stops if s in whole), default=len(whole))
    answer = await complete(client, chat_body(seed=1, stop=stop))
    assert content(answer) == whole[:cut]
    assert answer["choices"][0]["finish_reason"] == "stop"
    _, stream = await events.post(client, chat_body(seed=1, stop=stop))
    assert events.text_of(stream) == whole[:cut]
    assert events.data_chunks(stream)[-1]["usage"] == answer["usage"]


async def test_max_tokens_before_the_stop_string_wins(client: httpx.AsyncClient) -> None:
    answer = await complete(client, chat_body(seed=1, stop="zzz", max_tokens=2))
    assert answer["choices"][0]["finish_reason"] == "length"


async def test_n_gives_distinct_choices_and_usage_counts_them_all(
    client: httpx.AsyncClient,
) -> None:
    single = await complete(client, chat_body(seed=2))
    answer = await complete(client, chat_body(seed=2, n=3))
    assert [choice["index"] for choice in answer["choices"]] == [0, 1, 2]
    texts = [content(answer, index) for index in range(3)]
    assert texts[0] == content(single) and len(set(texts)) == 3
    words = sum(len(text.split(" ")) for text in texts)
    assert answer["usage"]["completion_tokens"] == words
    assert answer["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]

    _, stream = await events.post(client, chat_body(seed=2, n=3))
    chunks = events.data_chunks(stream)
    for index in range(3):
        deltas = events.choice_deltas(stream, index)
        assert "".join(d["content"] for d in deltas) == texts[index]
        finishes = [
            choice["finish_reason"]
            for chunk in chunks
            for choice in chunk["choices"]
            if choice["index"] == index and choice["finish_reason"]
        ]
        assert finishes == ["stop"]
    assert all(len(chunk["choices"]) <= 1 for chunk in chunks)
    assert [chunk for chunk in chunks if "usage" in chunk] == [chunks[-1]]
    assert chunks[-1]["usage"] == answer["usage"]


async def test_logprobs_come_per_token(client: httpx.AsyncClient) -> None:
    answer = await complete(client, chat_body(seed=4, logprobs=True))
    entries = answer["choices"][0]["logprobs"]["content"]
    assert "".join(entry["token"] for entry in entries) == content(answer)
    for entry in entries:
        assert list(entry) == ["token", "logprob", "bytes", "top_logprobs"]
        assert entry["logprob"] < 0 and entry["top_logprobs"] == []
        assert bytes(entry["bytes"]) == entry["token"].encode()
    plain = await complete(client, chat_body(seed=4))
    assert content(plain) == content(answer) and plain["choices"][0]["logprobs"] is None


async def test_top_logprobs_are_k_sorted_alternatives(client: httpx.AsyncClient) -> None:
    body = chat_body("emulator/reasoning", seed=5, logprobs=True, top_logprobs=3)
    answer = await complete(client, body)
    entries = answer["choices"][0]["logprobs"]["content"]
    assert entries and "".join(e["token"] for e in entries) == content(answer)  # no reasoning
    sampled_on_top = 0
    for entry in entries:
        top = entry["top_logprobs"]
        assert len(top) == 3 and len({t["token"] for t in top}) == 3
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert all(t["logprob"] < 0 and bytes(t["bytes"]) == t["token"].encode() for t in top)
        sampled_on_top += top[0]["token"] == entry["token"]
    assert sampled_on_top > len(entries) // 2

    _, stream = await events.post(client, body)
    streamed = [
        choice["logprobs"]
        for chunk in events.data_chunks(stream)
        for choice in chunk["choices"]
        if choice["delta"].get("content")
    ]
    assert [entry for logprobs in streamed for entry in logprobs["content"]] == entries
    assert all(len(logprobs["content"]) == 1 for logprobs in streamed)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"n": 0}, "n must be"),
        ({"n": 129}, "n must be"),
        ({"n": "2"}, "n must be"),
        ({"stop": ["ok", 1]}, "stop must be"),
        ({"logprobs": "yes"}, "logprobs must be"),
        ({"top_logprobs": 2}, "needs logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs must be"),
    ],
)
async def test_malformed_sampling_options_are_400(
    client: httpx.AsyncClient, extra: dict[str, Any], message: str
) -> None:
    response = await client.post(CHAT, json=chat_body(**extra))
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
