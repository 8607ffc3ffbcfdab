"""Fuzz every operation of the gateway's OpenAPI schema against a live gateway and emulator.

A real gateway (loopback HTTP) sits in front of the session's emulator; schemathesis reads the
schema from `<gateway>/openapi.json` and generates requests that fit it (positive) and that break
it (negative). Every response must be an answer the gateway means to give:

- never a 500, nor any 5xx the gateway blames on itself (`internal_error`): see
  `no_internal_error` for why 502/503/504 are allowed;
- every error in the documented shape for its path (the gateway's own, or OpenAI's under /v1/),
  with the request id of the response, and no traceback;
- a schema-valid request refused only for a reason the schema cannot express;
- schemathesis's own response checks (documented status, content type, headers and body schema).

What it found so far (all fixed, and now guarded by this fuzz): a `seed` beyond 64 bits that
answered 500, line breaks in client input that forged log lines (a test of its own below),
and three schema mistakes (`GET /models?details=true`, 422 bodies, undocumented 404s).

It stays fast and reproducible: a bounded number of examples per operation, derandomized
generation, no shrinking, an instant emulator and short gateway timeouts and benchmark limits.

Operations are driven with `APIOperation.as_strategy()` under hypothesis's `@given`, not with
`schemathesis.pytest.from_fixture(...).parametrize()`: that lazy loader (schemathesis 4.32)
renames pytest nodes through `Node._nodeid`, which pytest 9 no longer has. Subtests give each
operation its own report instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.schemas import OpenApiSchema

from llm_gateway.emulator import Emulator
from llm_gateway.emulator.catalog import build_catalog
from tests.conftest import GatewayFactory, read_log

# Models the emulator serves: a fuzzed model id only ever earns the upstream's 400, so half of
# the cases get a real one and reach generation, streaming and benchmarking with real answers.
EMULATOR_MODELS = tuple(build_catalog(None))

MAX_EXAMPLES = 40
# A `POST /benchmark` that passes validation runs a real (tiny, see GATEWAY_SETTINGS) benchmark
# and writes a run folder: worth fuzzing, with a tighter bound.
MAX_EXAMPLES_BY_OPERATION = {"POST /benchmark": 20}
# A prompt file with prompts in it: fuzzed bytes rarely are one, and the benchmark starts there.
PROMPT_FILE = b"Say hello\nCount to three\n"

# Operations not fuzzed, and why.
NOT_FUZZED = {
    "GET /metrics": "no parameters or body to fuzz, and it answers Prometheus text, not JSON",
}

# How every line of the server log starts (the format of `logging.py`'s `LogSink`).
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ llm_gateway")

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # loopback HTTP round trips vary with machine load; time is bounded above
    derandomize=True,  # the same cases on every run, so CI failures reproduce
    database=None,  # nothing to replay from: derandomized runs find the same cases again
    # Shrinking would replay a failing case many times over HTTP; the report already carries a
    # curl command for the failing request.
    phases=[Phase.explicit, Phase.generate],
    # Generation speed depends on the CI machine, and schemathesis (and `assume` for known bugs)
    # rejects some draws: neither says anything about the gateway.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Short timeouts and small benchmark limits keep every fuzzed request cheap: a fuzzed benchmark
# is at most 10 requests (the default 5 runs of 2 prompts), and an upstream stall would cost
# seconds, not minutes.
GATEWAY_SETTINGS: dict[str, Any] = {
    "connect_timeout": 1.0,
    "first_byte_timeout": 3.0,
    "idle_timeout": 3.0,
    "total_timeout": 5.0,
    "retry_attempts": 2,
    "retry_budget": 1.0,
    "bench_max_runs": 5,
    "bench_max_prompts": 2,
    "bench_max_requests": 10,
    "bench_max_concurrency": 2,
    "bench_max_jobs": 1,
    "bench_request_timeout": 3.0,
}

# The gateway's own error codes for a schema-valid request it still refuses, each for a rule no
# OpenAPI schema expresses: a prompt of blanks, limits set in the settings (`runs`, `max_tokens`,
# prompt file size, background jobs), a prompt file without prompts, a benchmark run id or a
# model id that does not exist. Refusals by the upstream (`upstream_*`, e.g. an unknown model)
# are always fine.
EXPLAINED_REFUSALS = frozenset(
    {
        "invalid_request",
        "invalid_prompt_file",
        "prompt_file_too_large",
        "benchmark_not_found",
        "model_not_found",
        "too_many_jobs",
    }
)


# --- Checks of our own (schemathesis calls them with the response of every case) -------------
# Their signature is fixed by schemathesis, which passes all three arguments positionally; a `_`
# marks those a check does not need.


def _error(response: Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def no_internal_error(_ctx: CheckContext, response: Response, _case: Case) -> bool | None:
    """A 500, or any 5xx that says `internal_error`, is a bug of the gateway.

    502, 503 and 504 are not: they are how a gateway reports that the upstream failed, is
    unavailable or timed out (and `/ready` answers 503 while the upstream is unreachable). So
    schemathesis's `not_a_server_error`, which fails on every 5xx, is replaced by this check.
    """
    content_type = response.headers.get("content-type", [""])[0]
    if content_type.startswith("text/event-stream"):
        # After a stream's 200, a failure is an `event: error` carrying the same error codes.
        assert b'"internal_error"' not in response.content, "the stream ended in internal_error"
    if response.status_code < 500:
        return None
    error = _error(response) or {}
    assert response.status_code in (502, 503, 504) and error.get("code") != "internal_error", (
        f"{response.status_code} {error.get('code')}: the gateway failed on this request"
    )
    return None


def error_shape(_ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every answer has a request id; every error is JSON in the shape documented for its path."""
    request_ids = response.headers.get("x-request-id", [])
    assert request_ids and request_ids[0], "no X-Request-ID header"
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error sent as {content_type!r}"
    error = _error(response)
    assert error is not None, f"error body is not {{'error': {{...}}}}: {response.content[:200]!r}"
    assert "Traceback" not in str(error.get("message")), "a traceback leaked into the answer"
    if case.operation.path.startswith("/v1/"):
        # OpenAI's shape, so OpenAI SDKs raise their usual exception classes.
        assert set(error) == {"message", "type", "param", "code"}, f"not OpenAI's shape: {error}"
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and error["type"]
        assert error["code"] is None or isinstance(error["code"], str)
    else:
        assert set(error) == {"code", "message", "status", "request_id"}, f"not ours: {error}"
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        assert error["status"] == response.status_code, "error.status differs from the status"
        assert error["request_id"] == request_ids[0], "error.request_id is not X-Request-ID"
    return None


def explained_refusal(_ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A request that fits the schema is refused only for a reason the schema cannot express.

    Replaces schemathesis's `positive_data_acceptance`, which wants 2xx for every schema-valid
    request: through a gateway, the upstream decides which models exist (a fuzzed model id gets
    400 `upstream_bad_request`), and limits come from the settings. What must never happen is a
    refusal of a well-formed request for its form (e.g. 400 `invalid_json`, 413, 415).
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code < 400:
        return None
    code = str((_error(response) or {}).get("code"))
    assert code.startswith("upstream_") or code in EXPLAINED_REFUSALS, (
        f"a schema-valid request was refused with {response.status_code} {code}"
    )
    return None


def documented_error_schema(_ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Where the schema documents an error status, it documents the error shape really sent.

    Catches FastAPI's default 422 (`{"detail": [...]}`) left in the docs of a route whose errors
    the gateway answers in its own shape: clients generated from the schema would mis-parse it.
    """
    if response.status_code < 400:
        return None
    documented = case.operation.definition.raw.get("responses", {}).get(
        str(response.status_code), {}
    )
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if not isinstance(schema, dict) or "$ref" not in schema:
        return None
    name = schema["$ref"].rsplit("/", 1)[-1]
    resolved = case.operation.schema.raw_schema["components"]["schemas"][name]
    assert "error" in resolved.get("required", []), (
        f"{response.status_code} is documented as {name}, but the gateway answers "
        '{"error": {...}}'
    )
    return None


OUR_CHECKS: tuple[Callable[[CheckContext, Response, Case], bool | None], ...] = (
    no_internal_error,
    error_shape,
    explained_refusal,
    documented_error_schema,
)


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "checks": {
                # Replaced by `no_internal_error` and `explained_refusal` (see their docstrings).
                "not_a_server_error": {"enabled": False},
                "positive_data_acceptance": {"enabled": False},
            },
            "request-timeout": 10,
        }
    )


# --- Fixtures and tests -----------------------------------------------------------------------


@pytest.fixture
def fuzz_schema(start_gateway: GatewayFactory, emulator: Emulator) -> Iterator[OpenApiSchema]:
    """The schema of a live gateway in front of an instant emulator."""
    # The emulator fixture restores its time scale after the test.
    emulator.config.time_scale = 0.0
    with start_gateway(**GATEWAY_SETTINGS) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json", config=_config())


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """One keep-alive session for all cases (schemathesis's transport is `requests`)."""
    with requests.Session() as session:
        yield session


def _steer(case: Case, data: st.DataObject) -> None:
    """Half the time, put in what only the emulator makes valid: a model it serves (see
    EMULATOR_MODELS) and, for a benchmark, a prompt file with prompts. The rest stays fuzzed.

    Positive cases only: a negative case may be negative in exactly the field replaced, and
    would then be valid while still counted as negative.
    """
    body = case.body
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if not positive or not isinstance(body, dict) or not data.draw(st.booleans(), label="steer"):
        return
    model = data.draw(st.sampled_from(EMULATOR_MODELS), label="model")
    current = body.get("model")
    if isinstance(current, str):
        body["model"] = model
    elif isinstance(current, list) and all(isinstance(m, str) for m in current):
        body["model"] = [model, *current[:1]]  # the benchmark's repeatable form field
    if "prompt_file" in body:
        # A multipart file field: schemathesis sends bytes, whatever its JSON-typed body says.
        body["prompt_file"] = PROMPT_FILE  # type: ignore[assignment]


def _fuzz(operation: APIOperation, session: requests.Session) -> None:
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    max_examples = MAX_EXAMPLES_BY_OPERATION.get(operation.label, MAX_EXAMPLES)

    @settings(FUZZ_SETTINGS, max_examples=max_examples)
    @given(case=strategy, data=st.data())
    def fuzz(case: Case, data: st.DataObject) -> None:
        _steer(case, data)
        try:
            case.call_and_validate(session=session, additional_checks=list(OUR_CHECKS))
        except FailureGroup as exc:
            # A BaseExceptionGroup: hypothesis only reports Exceptions as falsifying examples.
            # The message carries each failure and a curl command that reproduces it.
            raise AssertionError(str(exc)) from None

    fuzz()


def test_every_operation_answers_as_documented(
    fuzz_schema: OpenApiSchema,
    http: requests.Session,
    subtests: pytest.Subtests,
    log_file: Path,
) -> None:
    fuzzed = []
    for result in fuzz_schema.get_all_operations():
        # A definition schemathesis cannot read is a failure too: `ok()` raises it.
        operation = result.ok()  # type: ignore[union-attr]
        if operation.label in NOT_FUZZED:
            continue
        fuzzed.append(operation.label)
        with subtests.test(msg=operation.label):
            _fuzz(operation, http)
    # Guards against passing vacuously on an empty or unexpected schema.
    assert {"GET /models", "POST /generate", "POST /benchmark"} <= set(fuzzed)
    with subtests.test(msg="server log"):
        # What no status shows: a failure inside a stream after its 200, or a background
        # benchmark job that crashed, is only in the log (with its traceback). Lines are written
        # in order: once this request's line is there, every earlier one is.
        http.get(f"{fuzz_schema.get_base_url()}/health", headers={"X-Request-ID": "fuzz-done"})
        log = read_log(log_file, waiting_for="[fuzz-done]")
        assert "Traceback" not in log
        assert "stream_error=internal_error" not in log
        assert [line for line in log.splitlines() if not LOG_LINE.match(line)] == []


def test_request_input_cannot_forge_a_log_line(gateway: str, log_file: Path) -> None:
    """One log record, one line: a client must not be able to write lines of its own.

    Found by the fuzz (run ids and model names with line breaks).
    """
    with httpx.Client(base_url=gateway, timeout=10) as client:
        client.get("/benchmarks/x%0Aforged-by-path")
        client.post("/generate", json={"prompt": "hi", "model": "x\nforged-by-body"})
    lines = read_log(log_file, waiting_for="forged-by-body").splitlines()
    assert any("x\\nforged-by-body" in line for line in lines)  # kept, escaped
    assert [line for line in lines if not LOG_LINE.match(line)] == []


def test_every_excluded_operation_exists(fuzz_schema: OpenApiSchema) -> None:
    labels = {result.ok().label for result in fuzz_schema.get_all_operations()}  # type: ignore[union-attr]
    assert set(NOT_FUZZED) <= labels
