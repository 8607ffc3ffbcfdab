"""Prompt files: `.txt` (one prompt per line), `.jsonl` (`{"prompt"}` or `{"messages"}` per
line) and `.csv` (a `prompt` column). Everything is checked before anything runs, so a bad
file is one clear 4xx (or CLI error), never a half-run benchmark.

Files are read lazily, a line (or CSV row) at a time, and reading stops one prompt past the
limit: a megabyte of one-letter lines is half a million prompts, and building them all only to
refuse the file took a second and 150 MB. Parsing is blocking CPU work: the gateway runs it in
a thread.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import orjson

from llm_gateway.bench.csvcells import allow_long_fields
from llm_gateway.errors import InvalidPromptFile, PromptFileTooLarge
from llm_gateway.prompt_size import prompt_chars

FORMATS = (".txt", ".jsonl", ".csv")


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt: its display text, the chat messages sent for it, and where it was."""

    text: str
    messages: tuple[dict[str, Any], ...]
    line: int = 0  # in the prompt file, from 1 (0: not read from a file)


@dataclass(frozen=True, slots=True)
class PromptFile:
    name: str
    sha256: str
    prompts: tuple[Prompt, ...]


def _user(text: str, line: int) -> Prompt:
    return Prompt(text, ({"role": "user", "content": text},), line)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line and its number from 1, one at a time. A line ends at LF, CRLF or CR, as an
    editor counts lines (not at the rarer breaks `str.splitlines` also splits on, such as
    U+2028, which a JSON string may hold as is)."""
    return enumerate(io.StringIO(text, newline=None), start=1)


def _txt(text: str) -> Iterator[Prompt]:
    for number, line in _lines(text):
        if line.strip():
            yield _user(line.strip(), number)


def _jsonl(text: str) -> Iterator[Prompt]:
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidPromptFile(f"line {number} is not valid JSON ({exc})") from exc
        if (
            isinstance(item, dict)
            and isinstance(item.get("prompt"), str)
            and item["prompt"].strip()
        ):
            yield _user(item["prompt"], number)
        elif isinstance(item, dict) and _valid_messages(item.get("messages")):
            messages = tuple(item["messages"])
            yield Prompt(_label(messages), messages, number)
        else:
            raise InvalidPromptFile(
                f'line {number} needs a non-empty "prompt" string or a "messages" list of '
                '{"role", "content"} objects'
            )


def _valid_messages(messages: Any) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m
            for m in messages
        )
    )


def _label(messages: tuple[dict[str, Any], ...]) -> str:
    """The text shown for a messages prompt: its last user message."""
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return orjson.dumps(list(messages)).decode()


def _csv(text: str) -> Iterator[Prompt]:
    allow_long_fields()
    reader = csv.DictReader(io.StringIO(text, newline=""))  # CR, LF and CRLF rows alike
    try:
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise InvalidPromptFile("a CSV prompt file needs a header row with a `prompt` column")
        end = reader.line_num
        for row in reader:  # a quoted prompt may span lines: a row starts after the last one
            start, end = end + 1, reader.line_num
            if (row.get("prompt") or "").strip():
                yield _user(row["prompt"].strip(), start)
    except csv.Error as exc:
        raise InvalidPromptFile(f"the CSV is malformed (line {reader.line_num}: {exc})") from exc


def load_prompts(
    name: str, data: bytes, *, max_bytes: int, max_prompts: int, max_prompt_chars: int
) -> PromptFile:
    """Parse an uploaded or local prompt file, enforcing the size and count limits, and the
    prompt length limit every route applies (`prompt_size`)."""
    if len(data) > max_bytes:
        raise PromptFileTooLarge(
            f"the prompt file is {len(data)} bytes; the limit is {max_bytes} "
            "(GATEWAY_BENCH_MAX_FILE_BYTES)"
        )
    suffix = PurePath(name or "prompts.txt").suffix.lower() or ".txt"
    if suffix not in FORMATS:
        raise InvalidPromptFile(
            f"unsupported prompt file type {suffix!r}; use one of {', '.join(FORMATS)}"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidPromptFile(
            f"the prompt file is not UTF-8 text (bad byte at position {exc.start})"
        ) from exc
    parse = {".txt": _txt, ".jsonl": _jsonl, ".csv": _csv}[suffix]
    prompts = list(itertools.islice(parse(text), max_prompts + 1))
    if not prompts:
        raise InvalidPromptFile("the prompt file has no prompts (it is empty or only blank lines)")
    if len(prompts) > max_prompts:
        raise InvalidPromptFile(
            f"the prompt file has more than {max_prompts} prompts (prompt {max_prompts + 1} is "
            f"on line {prompts[-1].line}); the limit is {max_prompts} (GATEWAY_BENCH_MAX_PROMPTS)"
        )
    for index, prompt in enumerate(prompts, start=1):
        chars = prompt_chars(prompt.messages)
        if chars > max_prompt_chars:
            raise InvalidPromptFile(
                f"prompt {index} (line {prompt.line}) has {chars} characters of text; the limit "
                f"is {max_prompt_chars} (GATEWAY_MAX_PROMPT_CHARS)"
            )
    return PromptFile(PurePath(name).name, hashlib.sha256(data).hexdigest(), tuple(prompts))
