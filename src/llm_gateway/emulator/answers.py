"""What each choice of a completion says, piece by piece: reasoning, text, tool calls or JSON.

A piece is one completion token: a word of text or reasoning, the header of a tool call (its id
and name), or up to `PIECE_CHARS` characters of JSON (arguments or JSON content), the same size
the prompt estimate gives a token. The `n` choices are planned from generators of their own,
choice 0 from the unsalted one, so asking for more choices or for logprobs never changes the
first answer. They are generated side by side: the stream interleaves them step by step and
lasts as long as the longest.

`stop` cuts a text answer before the first stop string. `max_tokens` cuts any answer, JSON and
tool arguments included, with finish_reason `length`, as it would a real model's.

Planning costs what the answer says, never what a schema asks for. A choice has at most
`max_tokens` pieces and never more than `MAX_REQUEST_TOKENS` // `n`, whatever max_tokens says
(so the choices of a request together stay within `MAX_REQUEST_TOKENS`); a longer answer is cut
there with finish_reason `length`. JSON, a structured answer or a tool call's arguments, is
generated against a budget of `PIECE_CHARS` characters per piece the choice has left and stops
there (`schema_values.json_text`): a schema asking for a huge value quickly gives the same cut
answer the whole value would have given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from llm_gateway.emulator import logprobs, text, tools
from llm_gateway.emulator.catalog import CatalogEntry
from llm_gateway.emulator.options import Options

PIECE_CHARS = 4
# Pieces a request's choices may have in all (2**18: 1 MiB of JSON), whatever max_tokens says.
MAX_REQUEST_TOKENS = 2**18

FinishReason = Literal["stop", "length", "tool_calls"]
PieceKind = Literal["reasoning", "content", "call", "arguments"]


@dataclass(frozen=True, slots=True)
class Piece:
    """One token of a choice; `call` is the tool call a call or arguments piece belongs to, and
    `logprob` the token's logprobs entry when the client asked for them."""

    kind: PieceKind
    text: str = ""
    call: int = 0
    logprob: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call's id and function name; its arguments are the `arguments` pieces."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Choice:
    """Everything one choice will say, in order."""

    index: int
    pieces: tuple[Piece, ...]
    calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    logprobs: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """The choices of one completion and the size of its prompt."""

    choices: tuple[Choice, ...]
    prompt_tokens: int

    @property
    def steps(self) -> int:
        """How many pieces the longest choice has: the length of the generation."""
        return max(len(choice.pieces) for choice in self.choices)

    @property
    def finish_reason(self) -> FinishReason:
        """The first choice's finish_reason (the one /generation reports)."""
        return self.choices[0].finish_reason

    def completion_tokens(self, steps: int) -> int:
        """Tokens of all choices produced in the first `steps` steps (usage counts them all)."""
        return sum(min(len(choice.pieces), steps) for choice in self.choices)

    def reasoning_tokens(self, steps: int) -> int:
        """The reasoning tokens among them."""
        return sum(
            piece.kind == "reasoning" for choice in self.choices for piece in choice.pieces[:steps]
        )


def _chop(value: str) -> list[str]:
    return [value[start : start + PIECE_CHARS] for start in range(0, len(value), PIECE_CHARS)]


def _cut_at_stop(words: list[str], stops: tuple[str, ...]) -> list[str]:
    """The words before the first occurrence of any stop string (the last one cut short)."""
    if not stops:
        return words
    said = "".join(words)
    cut = min((at for stop in stops if (at := said.find(stop)) >= 0), default=-1)
    if cut < 0:
        return words
    kept: list[str] = []
    length = 0
    for word in words:
        if length + len(word) > cut:
            if cut > length:
                kept.append(word[: cut - length])
            break
        kept.append(word)
        length += len(word)
    return kept


def _choice(
    entry: CatalogEntry,
    messages: list[dict[str, Any]],
    options: Options,
    index: int,
    *,
    seed: int,
    request_seed: int | None,
    limit: int,
) -> Choice:
    """Choice `index`, in at most `limit` pieces (cut there, finish_reason `length`)."""
    salt = f"choice:{index}" if index else ""
    rng = text.seeded(seed, request_seed, entry.id, messages, salt)
    words, reasoning = text.draft(entry, messages, rng)
    pieces = [Piece("reasoning", word) for word in words[:reasoning]]
    calls: list[ToolCall] = []
    called = tools.called(options, messages)
    whole = True  # False once the answer is cut short of what it would say
    for number, tool in enumerate(called):
        if len(pieces) >= limit:
            whole = False
            break
        calls.append(ToolCall(tools.call_id(rng), tool.name))
        pieces.append(Piece("call", call=number))
        said, whole = tools.arguments(tool, rng, (limit - len(pieces)) * PIECE_CHARS)
        pieces += [Piece("arguments", part, call=number) for part in _chop(said)]
        if not whole:
            break
    if not called:
        if options.json:
            said, whole = tools.json_content(
                options, messages, rng, max(limit - len(pieces), 0) * PIECE_CHARS
            )
            content = _chop(said)
        else:
            content = _cut_at_stop(words[reasoning:], options.stop)
            if len(pieces) + len(content) > limit:
                del content[max(limit - len(pieces), 0) :]
                whole = False
        if options.logprobs:
            scores = text.seeded(seed, request_seed, entry.id, messages, f"{salt}|logprobs")
            pieces += [
                Piece("content", part, logprob=logprobs.logprob(part, options.top_logprobs, scores))
                for part in content
            ]
        else:
            pieces += [Piece("content", part) for part in content]
    finish: FinishReason = "tool_calls" if called else "stop"
    if not whole or len(pieces) > limit:
        del pieces[limit:]
        finish = "length"
    return Choice(index, tuple(pieces), tuple(calls), finish, options.logprobs)


def plan(
    entry: CatalogEntry,
    messages: list[dict[str, Any]],
    options: Options,
    *,
    seed: int,
    request_seed: int | None,
    max_tokens: int | None,
) -> Plan:
    """Decide the completion of one request. Raises `schema_values.SchemaError` for a schema
    (of a tool or of response_format) that cannot be followed."""
    limit = MAX_REQUEST_TOKENS // options.n
    if max_tokens is not None:
        limit = min(limit, max_tokens)
    choices = tuple(
        _choice(
            entry,
            messages,
            options,
            index,
            seed=seed,
            request_seed=request_seed,
            limit=limit,
        )
        for index in range(options.n)
    )
    return Plan(choices, text.prompt_tokens(messages))
