"""What a chat request asks of the generation beyond its messages: tools, tool_choice,
response_format, stop, n, logprobs. Checked as OpenRouter checks them, then fitted to the model.

OpenRouter drops the parameters a model does not support, with two exceptions it answers with a
404 instead: `tools` sent to a model without tool use, and any unsupported parameter when the
request says `provider.require_parameters: true`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from llm_gateway.emulator import errors
from llm_gateway.emulator.catalog import CatalogEntry
from llm_gateway.emulator.errors import ErrorReply

ToolChoice = Literal["none", "auto", "required", "function"]

# OpenRouter's names of request parameters (the values `supported_parameters` lists). `n` is
# not one of them: the emulator honours it on every model.
_PARAMETERS = frozenset(
    {
        "temperature", "top_p", "top_k", "min_p", "top_a", "frequency_penalty",
        "presence_penalty", "repetition_penalty", "max_tokens", "max_completion_tokens",
        "logit_bias", "logprobs", "top_logprobs", "prediction", "seed", "response_format",
        "structured_outputs", "stop", "tools", "tool_choice", "parallel_tool_calls",
        "include_reasoning", "reasoning", "reasoning_effort", "web_search_options", "verbosity",
    }
)  # fmt: skip
_MAX_N = 128
_MAX_TOP_LOGPROBS = 20
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_TOOL_CHOICE_HELP = (
    'tool_choice must be "none", "auto", "required" or '
    '{"type": "function", "function": {"name": "<one of the tools>"}}'
)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call, with the JSON Schema of its arguments."""

    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Options:
    """The parsed options; the defaults are those of a request that sets none of them.

    `forced_tool` is the function a `{"type": "function"}` tool_choice names. `json` asks for
    JSON content (`response_format` json_object or json_schema), `schema` is json_schema's schema
    (None: any object). `requested` holds the OpenRouter parameter names the request used.
    """

    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    forced_tool: str | None = None
    parallel_tool_calls: bool = True
    json: bool = False
    schema: dict[str, Any] | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    requested: frozenset[str] = frozenset()
    require_parameters: bool = False


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _tools(raw: Any) -> tuple[Tool, ...] | ErrorReply:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        return errors.bad_request('"tools" must be an array of function tools')
    tools = []
    for position, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (isinstance(tool, dict) and tool.get("type") == "function"):
            return errors.bad_request(f'tools[{position}].type must be "function"')
        if not isinstance(function, dict):
            return errors.bad_request(f"tools[{position}].function must be an object")
        name = function.get("name")
        if not (isinstance(name, str) and name):
            return errors.bad_request(f"tools[{position}].function.name must be a non-empty string")
        parameters = function.get("parameters", _NO_PARAMETERS)
        if not isinstance(parameters, dict):
            return errors.bad_request(
                f"tools[{position}].function.parameters must be a JSON Schema object"
            )
        tools.append(Tool(name, parameters))
    return tuple(tools)


def _tool_choice(raw: Any, tools: tuple[Tool, ...]) -> tuple[ToolChoice, str | None] | ErrorReply:
    if raw is None:
        return "auto", None
    if raw in ("none", "auto", "required"):
        return raw, None
    function = raw.get("function") if isinstance(raw, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not (isinstance(raw, dict) and raw.get("type") == "function" and isinstance(name, str)):
        return errors.bad_request(_TOOL_CHOICE_HELP)
    if name not in {tool.name for tool in tools}:
        return errors.bad_request(f"tool_choice names the function {name!r}, which is not in tools")
    return "function", name


def _response_format(raw: Any) -> tuple[bool, dict[str, Any] | None] | ErrorReply:
    """(answer in JSON, the schema to follow)."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if raw is None or kind not in ("json_object", "json_schema"):
        if raw is not None and not isinstance(kind, str):
            return errors.bad_request(
                'response_format must be {"type": "text" | "json_object" | "json_schema", ...}'
            )
        return False, None  # text, and the other types (grammar, python) too
    if kind == "json_object":
        return True, None
    spec = raw.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)):
        return errors.bad_request(
            'response_format.json_schema must be {"name": "...", "schema": {...}, "strict": ...}'
        )
    if schema is not None and not isinstance(schema, dict):
        return errors.bad_request("response_format.json_schema.schema must be a JSON Schema object")
    return True, schema


def _stop(raw: Any) -> tuple[str, ...] | ErrorReply:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not (isinstance(stops, list) and all(isinstance(stop, str) for stop in stops)):
        return errors.bad_request("stop must be a string or an array of strings")
    return tuple(stop for stop in stops if stop)


def parse(body: dict[str, Any]) -> Options | ErrorReply:
    """The options of a chat request body, or the 400 OpenRouter gives for a malformed one."""
    tools = _tools(body.get("tools"))
    if isinstance(tools, ErrorReply):
        return tools
    choice = _tool_choice(body.get("tool_choice"), tools)
    if isinstance(choice, ErrorReply):
        return choice
    parallel = body.get("parallel_tool_calls")
    parallel = True if parallel is None else parallel
    if not isinstance(parallel, bool):
        return errors.bad_request("parallel_tool_calls must be a boolean")
    answer_format = _response_format(body.get("response_format"))
    if isinstance(answer_format, ErrorReply):
        return answer_format
    stop = _stop(body.get("stop"))
    if isinstance(stop, ErrorReply):
        return stop
    n = body.get("n")
    n = 1 if n is None else n
    if not _int_in(n, 1, _MAX_N):
        return errors.bad_request(f"n must be an integer from 1 to {_MAX_N}")
    logprobs = body.get("logprobs") or False
    if not isinstance(logprobs, bool):
        return errors.bad_request("logprobs must be a boolean")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not _int_in(top_logprobs, 0, _MAX_TOP_LOGPROBS):
        return errors.bad_request(f"top_logprobs must be an integer from 0 to {_MAX_TOP_LOGPROBS}")
    if top_logprobs is not None and not logprobs:
        return errors.bad_request("top_logprobs needs logprobs: true")
    requested = {name for name in body if name in _PARAMETERS}
    if answer_format[1] is not None:
        requested.add("structured_outputs")
    provider = body.get("provider")
    return Options(
        tools=tools,
        tool_choice=choice[0],
        forced_tool=choice[1],
        parallel_tool_calls=parallel,
        json=answer_format[0],
        schema=answer_format[1],
        stop=stop,
        n=n,
        logprobs=logprobs,
        top_logprobs=top_logprobs or 0,
        requested=frozenset(requested),
        require_parameters=isinstance(provider, dict)
        and provider.get("require_parameters") is True,
    )


def fit(options: Options, entry: CatalogEntry) -> Options | ErrorReply:
    """The options as `entry` honours them, or OpenRouter's 404 when it cannot serve them."""
    supported = entry.supported_parameters
    if options.tools and "tools" not in supported:
        return errors.no_tool_endpoints()
    if options.require_parameters and not options.requested <= set(supported):
        return errors.no_parameter_endpoints()
    if options.json and "response_format" not in supported:
        return replace(options, json=False, schema=None)
    return options
