"""Prompt files: every format, and every way a file can be unusable."""

from __future__ import annotations

import pytest

from llm_gateway.bench.prompts import load_prompts
from llm_gateway.errors import InvalidPromptFile


def _load(name: str, data: bytes, **limits: int) -> list[str]:
    options = {"max_bytes": 10_000, "max_prompts": 100, "max_prompt_chars": 1000, **limits}
    return [p.text for p in load_prompts(name, data, **options).prompts]


def test_txt_is_one_prompt_per_line_skipping_blank_lines() -> None:
    assert _load("p.txt", b"first\n\n  second  \r\n\nthird") == ["first", "second", "third"]


def test_jsonl_takes_prompts_and_message_lists() -> None:
    data = (
        b'{"prompt": "plain"}\n\n'
        b'{"messages": [{"role": "system", "content": "Be brief."},'
        b' {"role": "user", "content": "with system"}]}\n'
    )
    prompts = load_prompts(
        "p.jsonl", data, max_bytes=10_000, max_prompts=10, max_prompt_chars=100
    ).prompts
    assert [p.text for p in prompts] == ["plain", "with system"]
    assert prompts[1].messages[0] == {"role": "system", "content": "Be brief."}


def test_a_line_ends_where_an_editor_ends_it() -> None:
    # U+2028 may stand raw in a JSON string; it does not end the line holding it.
    assert _load("p.jsonl", '{"prompt": "a\u2028b"}\r\n'.encode()) == ["a\u2028b"]
    assert _load("p.txt", b"one\rtwo\r\nthree\x0cstill three") == [
        "one",
        "two",
        "three\x0cstill three",
    ]


def test_csv_needs_a_prompt_column() -> None:
    assert _load("p.csv", b'id,prompt\n1,"Hello, world"\n2,\n3,Bye\n') == ["Hello, world", "Bye"]
    with pytest.raises(InvalidPromptFile, match="`prompt` column"):
        _load("p.csv", b"id,text\n1,hi\n")


def test_long_csv_fields_and_malformed_csv() -> None:
    # Python's csv stops at 128 KiB per field by default; prompts may be longer.
    long = "word " * 30_000
    data = f'prompt\n"{long}"\n'.encode()
    assert _load("p.csv", data, max_bytes=1_000_000, max_prompt_chars=200_000) == [long.strip()]
    # Rows ending in a bare CR (old Mac files) are rows, not a csv error.
    assert _load("p.csv", b"prompt\rfirst\rsecond\r") == ["first", "second"]


def test_a_utf8_bom_is_tolerated_and_the_hash_recorded() -> None:
    loaded = load_prompts(
        "p.txt", "\ufeffhéllo\n".encode(), max_bytes=100, max_prompts=10, max_prompt_chars=9
    )
    assert loaded.prompts[0].text == "héllo"
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize(
    ("name", "data", "limits", "message"),
    [
        ("p.txt", b"", {}, "no prompts"),
        ("p.txt", b"\n  \n\n", {}, "no prompts"),
        ("p.txt", b"caf\xe9\n", {}, "not UTF-8"),
        ("p.txt", b"x" * 101, {"max_bytes": 100}, "limit is 100"),
        (
            "p.txt",
            b"a\nb\nc\n",
            {"max_prompts": 2},
            "more than 2 prompts \\(prompt 3 is on line 3\\); the limit is 2",
        ),
        ("p.jsonl", b'{"prompt": "ok"}\nnot json\n', {}, "line 2 is not valid JSON"),
        ("p.jsonl", b'{"text": "wrong key"}\n', {}, "line 1 needs"),
        ("p.jsonl", b'{"messages": []}\n', {}, "line 1 needs"),
        ("p.pdf", b"%PDF", {}, "unsupported prompt file type"),
    ],
)
def test_unusable_files_are_refused_with_a_reason(
    name: str, data: bytes, limits: dict[str, int], message: str
) -> None:
    with pytest.raises(InvalidPromptFile, match=message) as info:
        _load(name, data, **limits)
    assert 400 <= info.value.status < 500


def test_oversize_is_413() -> None:
    with pytest.raises(InvalidPromptFile) as info:
        _load("p.txt", b"x" * 11, max_bytes=10)
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        ("p.txt", b"short\n\n" + b"x" * 1001 + b"\n", "prompt 2 (line 3) has 1001 characters"),
        ("p.csv", b'prompt\nshort\n"' + b"x\n" * 501 + b'"\n', "prompt 2 (line 3) has 1001"),
        (
            "p.jsonl",
            b'{"prompt": "short"}\n{"messages": [{"role": "assistant", "content": null,'
            b' "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "'
            + b"a" * 995
            + b'"}}]}, {"role": "user", "content": "go on"}]}\n',
            "prompt 2 (line 2) has 1000",  # tool-call arguments are prompt text too
        ),
    ],
)
def test_a_prompt_over_the_length_limit_is_refused_naming_it(
    name: str, data: bytes, where: str
) -> None:
    with pytest.raises(InvalidPromptFile, match=r"GATEWAY_MAX_PROMPT_CHARS") as info:
        _load(name, data, max_prompt_chars=999)
    assert where in info.value.message and info.value.status == 400
