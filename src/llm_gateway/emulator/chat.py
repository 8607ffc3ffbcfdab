"""POST /api/v1/chat/completions: validation, fault selection, and the hand-off to playback."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from llm_gateway.emulator import answers, errors, options, payloads, text
from llm_gateway.emulator.catalog import CatalogEntry
from llm_gateway.emulator.config import EmulatorConfig
from llm_gateway.emulator.errors import ErrorReply
from llm_gateway.emulator.faults import OK, REJECTING_KINDS, Fault, parse_header
from llm_gateway.emulator.options import Options
from llm_gateway.emulator.replies import bearer_token, error_reply
from llm_gateway.emulator.schema_values import SchemaError
from llm_gateway.emulator.state import (
    FaultBook,
    FreeTierWindow,
    GenerationStore,
    Recorder,
    RequestRecord,
)
from llm_gateway.emulator.streaming import Playback, PlaybackResponse, schedule

CHAT_PATH = "/api/v1/chat/completions"
FAULTS_HEADER = "x-emulator-faults"
FAULT_KEY_HEADER = "x-emulator-fault-key"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True, slots=True)
class _ChatRequest:
    entry: CatalogEntry
    messages: list[dict[str, Any]]
    max_tokens: int | None
    seed: int | None
    options: Options


def _parse(
    raw: bytes,
    record: RequestRecord,
    recorder: Recorder,
    catalog: dict[str, CatalogEntry],
    default_model: str,
) -> _ChatRequest | ErrorReply:
    """Check the body as OpenRouter does, noting on the record what the client asked for."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return errors.bad_request("Invalid JSON in request body")
    if not isinstance(body, dict):
        return errors.bad_request("Request body must be a JSON object")
    recorder.attach_body(record, body, len(raw))
    record.stream = body.get("stream") is True
    fallbacks = body.get("models")
    # Without `model` OpenRouter uses the account default; `models[0]` is the first fallback.
    model = body.get("model") or (
        fallbacks[0] if isinstance(fallbacks, list) and fallbacks else None
    )
    model = model or default_model
    if not isinstance(model, str):
        return errors.bad_request("model must be a string")
    record.model = model
    messages = body.get("messages")
    if not (isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)):
        return errors.bad_request(
            'Input required: "messages" must be a non-empty array of message objects'
        )
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None and not _positive_int(max_tokens):
        return errors.bad_request("max_tokens must be a positive integer")
    asked = options.parse(body)
    if isinstance(asked, ErrorReply):
        return asked
    entry = catalog.get(model)
    if entry is None:
        return errors.invalid_model(model)
    fitted = options.fit(asked, entry)
    if isinstance(fitted, ErrorReply):
        return fitted
    seed = body.get("seed")
    return _ChatRequest(
        entry,
        messages,
        max_tokens,
        seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        fitted,
    )


class ChatEndpoint:
    """Answers chat completions; owns the seeded jitter rng and the usage-chunk alternation."""

    def __init__(
        self,
        *,
        config: EmulatorConfig,
        catalog: dict[str, CatalogEntry],
        recorder: Recorder,
        faults: FaultBook,
        free_window: FreeTierWindow,
        generations: GenerationStore,
    ) -> None:
        self._config = config
        self._catalog = catalog
        self._recorder = recorder
        self._faults = faults
        self._free_window = free_window
        self._generations = generations
        self._default_model = next(iter(catalog))
        self._jitter = random.Random(config.seed)
        self._streams = 0

    def reset(self) -> None:
        """Restart the jitter sequence and the usage-chunk alternation."""
        self._jitter.seed(self._config.seed)
        self._streams = 0

    def _select_fault(self, headers: Headers, model: str) -> Fault | None:
        """The step for this request: header sequence first, then the scripted queues."""
        header = headers.get(FAULTS_HEADER)
        if header:
            steps = parse_header(header)
            fault_key = headers.get(FAULT_KEY_HEADER)
            key = f"key:{fault_key}" if fault_key else f"faults:{header}"
            step = self._faults.from_header(key, steps)
            if step is not None:
                return step
        return self._faults.pop(model)

    def _usage_shape(self) -> payloads.UsageShape:
        style = self._config.usage_chunk_style
        if style != "alternate":
            return style
        self._streams += 1
        return "dummy" if self._streams % 2 else "empty"

    def _fault_for(
        self, headers: Headers, chat: _ChatRequest, record: RequestRecord
    ) -> Fault | ErrorReply:
        """The step to apply, or the free-tier 429 when no step matched and the window is full.

        Requests to ':free' models count against `free_rpm` only when no fault step matched and
        they are served; rejected ones do not count, as observed on OpenRouter.
        """
        try:
            fault = self._select_fault(headers, chat.entry.id)
        except ValueError as exc:
            return errors.bad_request(f"Invalid X-Emulator-Faults: {exc}")
        free_rpm = self._config.free_rpm
        if fault is None and chat.entry.free and free_rpm is not None:
            now = time.monotonic()
            release = self._free_window.admit(now, free_rpm)
            if release is not None:
                record.fault = "429"
                reset_ms = round((time.time() + release - now) * 1000)
                return errors.per_minute_limit(free_rpm, reset_ms)
        fault = fault or OK
        record.fault = fault.step
        if fault.kind in REJECTING_KINDS:
            flagged = text.last_user_text(chat.messages)
            return errors.fault_reply(
                fault, model=chat.entry.id, flagged_text=flagged, now=time.time()
            )
        return fault

    async def handle(self, request: Request) -> Response:
        """Validate like OpenRouter does (auth, JSON, messages, model), apply the fault step, and
        hand the planned generation to a `PlaybackResponse`."""
        token = bearer_token(request)
        record = self._recorder.open("POST", CHAT_PATH, authorized=token is not None)
        created = int(time.time())
        generation_id = record.id = payloads.new_generation_id(created)
        if token is None:
            return error_reply(record, errors.no_credentials())
        if self._config.api_key is not None and token != self._config.api_key:
            return error_reply(record, errors.user_not_found())
        chat = _parse(
            await request.body(), record, self._recorder, self._catalog, self._default_model
        )
        if isinstance(chat, ErrorReply):
            return error_reply(record, chat)
        fault = self._fault_for(request.headers, chat, record)
        if isinstance(fault, ErrorReply):
            return error_reply(record, fault)

        try:
            plan = answers.plan(
                chat.entry,
                chat.messages,
                chat.options,
                seed=self._config.seed,
                request_seed=chat.seed,
                max_tokens=chat.max_tokens,
            )
        except SchemaError as exc:
            return error_reply(record, errors.bad_request(f"Invalid JSON Schema: {exc}"))
        offsets = schedule(
            chat.entry.profile,
            plan.steps,
            time_scale=self._config.time_scale,
            rng=self._jitter,
        )
        record.status = 200
        return PlaybackResponse(
            Playback(
                record=record,
                entry=chat.entry,
                plan=plan,
                fault=fault,
                stream=record.stream,
                generation_id=generation_id,
                created=created,
                offsets=offsets,
                usage_shape=self._usage_shape() if record.stream else "dummy",
                keepalive_interval_s=self._config.keepalive_interval_s,
                keepalive_every=self._config.keepalive_every_n_chunks,
                on_finish=self._generations.add,
            )
        )
