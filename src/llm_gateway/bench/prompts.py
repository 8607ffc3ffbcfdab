"""Prompt files: `.txt` (one prompt per line), `.jsonl` (`{"prompt"}` or `{"messages"}` per
line) and `.csv` (a `prompt` column). Everything is checked before anything runs, so a bad
file is one clear 4xx (or CLI error), never a half-run benchmark."""

from __future__ import annotations

import csv
import hashlib
import io
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


def _txt(text: str) -> list[Prompt]:
    return [
        _user(line.strip(), number)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def _jsonl(text: str) -> list[Prompt]:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
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
            prompts.append(_user(item["prompt"], number))
        elif isinstance(item, dict) and _valid_messages(item.get("messages")):
            messages = tuple(item["messages"])
            prompts.append(Prompt(_label(messages), messages, number))
        else:
            raise InvalidPromptFile(
                f'line {number} needs a non-empty "prompt" string or a "messages" list of '
                '{"role", "content"} objects'
            )
    return prompts


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


def _csv(text: str) -> list[Prompt]:
    allow_long_fields()
    reader = csv.DictReader(io.StringIO(text, newline=""))  # CR, LF and CRLF rows alike
    try:
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise InvalidPromptFile("a CSV prompt file needs a header row with a `prompt` column")
        prompts, end = [], reader.line_num
        for row in reader:  # a quoted prompt may span lines: a row starts after the last one
            start, end = end + 1, reader.line_num
            if (row.get("prompt") or "").strip():
                prompts.append(_user(row["prompt"].strip(), start))
        return prompts
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
    prompts = parse(text)
    if not prompts:
        raise InvalidPromptFile("the prompt file has no prompts (it is empty or only blank lines)")
    if len(prompts) > max_prompts:
        raise InvalidPromptFile(
            f"the prompt file has {len(prompts)} prompts; the limit is {max_prompts} "
            "(GATEWAY_BENCH_MAX_PROMPTS)"
        )
    for index, prompt in enumerate(prompts, start=1):
        chars = prompt_chars(prompt.messages)
        if chars > max_prompt_chars:
            raise InvalidPromptFile(
                f"prompt {index} (line {prompt.line}) has {chars} characters of text; the limit "
                f"is {max_prompt_chars} (GATEWAY_MAX_PROMPT_CHARS)"
            )
    return PromptFile(PurePath(name).name, hashlib.sha256(data).hexdigest(), tuple(prompts))
