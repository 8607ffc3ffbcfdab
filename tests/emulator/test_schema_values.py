"""The JSON-Schema-driven value generator behind tool arguments and structured answers."""

from __future__ import annotations

import random
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from llm_gateway.emulator.schema_values import SchemaError, json_text, value_for

# The schema of the security finding: 190 MB of JSON asked for, 78 s and 7 GB to make in full.
HUGE: dict[str, Any] = {
    "type": "array",
    "minItems": 19000,
    "items": {"type": "string", "minLength": 10000},
}
FORMATS = ["date", "date-time", "time", "email", "uri", "uuid", "hostname", "ipv4", "ipv6"]
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=8), st.floats(-1e6, 1e6)
)


def assert_valid(schema: dict[str, Any], value: Any) -> None:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(value)


@st.composite
def integers(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    low = draw(st.none() | st.integers(-(10**6), 10**6))
    high = draw(st.none() | st.integers(-(10**6), 10**6))
    if low is not None and high is not None and low > high:
        low, high = high, low
    exclusive = draw(st.booleans()) and low is not None and high is not None and high - low >= 2
    if low is not None:
        schema["exclusiveMinimum" if exclusive else "minimum"] = low
    if high is not None:
        schema["exclusiveMaximum" if exclusive else "maximum"] = high
    if draw(st.booleans()) and (low is None or high is None or high - low >= 10):
        schema["multipleOf"] = draw(st.integers(1, 5))
    return schema


@st.composite
def numbers(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    low = draw(st.none() | st.floats(-1e6, 1e6))
    high = draw(st.none() | st.floats(-1e6, 1e6))
    if low is not None and high is not None and low > high:
        low, high = high, low
    exclusive = draw(st.booleans()) and low is not None and high is not None and high - low >= 1
    if low is not None:
        schema["exclusiveMinimum" if exclusive else "minimum"] = low
    if high is not None:
        schema["exclusiveMaximum" if exclusive else "maximum"] = high
    if draw(st.booleans()) and (low is None or high is None or high - low >= 10):
        schema["multipleOf"] = draw(st.sampled_from([0.5, 0.25, 2, 3]))  # exact in binary
    return schema


@st.composite
def strings(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"type": "string", "format": draw(st.sampled_from(FORMATS))}
    schema: dict[str, Any] = {"type": "string"}
    low = draw(st.none() | st.integers(0, 40))
    high = draw(st.none() | st.integers(0, 40))
    if low is not None and high is not None and low > high:
        low, high = high, low
    if low is not None:
        schema["minLength"] = low
    if high is not None:
        schema["maxLength"] = high
    return schema


SCALARS = st.one_of(
    st.just({"type": "null"}),
    st.just({"type": "boolean"}),
    integers(),
    numbers(),
    strings(),
    st.lists(JSON_SCALARS, min_size=1, max_size=5, unique_by=repr).map(lambda v: {"enum": v}),
    JSON_SCALARS.map(lambda value: {"const": value}),
    st.sampled_from(["string", "integer", "boolean"]).map(lambda t: {"type": [t, "null"]}),
)


def subset(names: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(names), unique=True) if names else st.just([])


NAMES = st.from_regex(r"[a-z][a-z_0-9]{0,11}", fullmatch=True)


def compound(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def objects(draw: st.DrawFn) -> dict[str, Any]:
        properties = draw(st.dictionaries(NAMES, children, max_size=5))
        required = (
            draw(st.lists(st.sampled_from(list(properties)), unique=True)) if properties else []
        )
        schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
        if draw(st.booleans()):
            schema["additionalProperties"] = False
        return schema

    @st.composite
    def arrays(draw: st.DrawFn) -> dict[str, Any]:
        low = draw(st.integers(0, 4))
        high = draw(st.none() | st.integers(low, 6))
        schema: dict[str, Any] = {"type": "array", "items": draw(children), "minItems": low}
        if high is not None:
            schema["maxItems"] = high
        return schema

    unique_arrays = st.builds(
        lambda kind, low: {"type": "array", "items": {"type": kind}, "uniqueItems": True,
                           "minItems": low},
        st.sampled_from(["string", "integer"]),
        st.integers(0, 5),
    )  # fmt: skip
    # oneOf branches of different types: exactly one can match.
    one_of = st.lists(
        st.sampled_from([{"type": "null"}, {"type": "boolean"}, {"type": "string"}]),
        min_size=1,
        max_size=3,
        unique_by=repr,
    ).map(lambda branches: {"oneOf": branches})
    any_of = st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches})
    open_object = st.just({"type": "object"})
    map_object = children.map(lambda values: {"type": "object", "additionalProperties": values})
    return st.one_of(objects(), arrays(), unique_arrays, one_of, any_of, open_object, map_object)


SCHEMAS = st.recursive(SCALARS, compound, max_leaves=12)


@st.composite
def tool_parameters(draw: st.DrawFn) -> dict[str, Any]:
    """An object schema as a tool declares it, with `$defs` reached by `$ref` (pydantic's way),
    sometimes wrapped in a one-element allOf (older pydantic's way)."""
    definitions = draw(st.dictionaries(NAMES, SCHEMAS, max_size=3))
    properties = draw(st.dictionaries(NAMES, SCHEMAS, max_size=4))
    for name in definitions:
        ref = {"$ref": f"#/$defs/{name}"}
        properties[f"ref_{name}"] = {"allOf": [ref]} if draw(st.booleans()) else ref
    required = draw(subset(list(properties)))
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        "$defs": definitions,
    }


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schema=tool_parameters(), seed=st.integers(0, 2**32))
def test_generated_arguments_validate_against_their_schema(
    schema: dict[str, Any], seed: int
) -> None:
    value = value_for(schema, random.Random(seed))
    assert isinstance(value, dict)
    assert_valid(schema, value)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schema=tool_parameters() | SCHEMAS, seed=st.integers(0, 2**32), data=st.data())
def test_a_budget_cuts_the_text_exactly_where_the_whole_text_would_be_cut(
    schema: dict[str, Any], seed: int, data: st.DataObject
) -> None:
    whole, complete = json_text(schema, random.Random(seed), 2**20)
    assert complete
    budget = data.draw(st.integers(0, len(whole) + 1), label="budget")
    assert json_text(schema, random.Random(seed), budget) == (whole[:budget], budget >= len(whole))


def test_an_item_drawn_again_for_uniqueness_does_not_spend_the_budget() -> None:
    # "[1111,1111" is drawn on the way to "[1111,2]": cut at 7, the text must read "[1111,2".
    schema = {"type": "array", "items": {"enum": [1111, 2]}, "uniqueItems": True, "minItems": 2}
    for seed in range(30):
        whole, _ = json_text(schema, random.Random(seed), 100)
        for budget in range(len(whole) + 1):
            cut = json_text(schema, random.Random(seed), budget)
            assert cut == (whole[:budget], budget == len(whole))


class CountingRandom(random.Random):
    """Counts the words drawn (every word of a string is one `choice`)."""

    draws = 0

    def choice(self, seq: Any) -> Any:
        self.draws += 1
        return super().choice(seq)


def test_a_value_larger_than_its_budget_costs_the_budget_not_the_schema() -> None:
    rng = CountingRandom(0)
    said, complete = json_text(HUGE, rng, 64)
    assert not complete and len(said) == 64 and said.startswith('["')
    assert rng.draws <= 10_000  # the words of one string, where the whole value takes 30 million


def test_a_huge_schema_of_little_text_stops_at_the_work_cap() -> None:
    # 2,000 objects of 10,000 optional properties, deep enough that none is filled in: 6,000
    # characters of text, but 20 million properties to walk, without the cap.
    properties = {f"p{number}": {"type": "string"} for number in range(10_000)}
    schema: dict[str, Any] = {
        "type": "array",
        "minItems": 2000,
        "items": {"properties": properties},
    }
    for _ in range(5):
        schema = {"type": "array", "minItems": 1, "maxItems": 1, "items": schema}
    said, complete = json_text(schema, random.Random(0), 8192)
    assert not complete and said.startswith("[[[[[[{},{}") and len(said) < 1000


class Node(BaseModel):
    """A recursive model: the generator must come to an end."""

    label: str = Field(min_length=2, max_length=8)
    weight: float = Field(gt=0, le=1)
    children: list[Node] = Field(default_factory=list, max_length=3)
    parent: Node | None = None


def test_recursive_pydantic_models_terminate_and_validate() -> None:
    schema = Node.model_json_schema()
    for seed in range(20):
        value = value_for(schema, random.Random(seed))
        assert_valid(schema, value)
        Node.model_validate(value)


def test_values_are_deterministic_for_a_seed() -> None:
    schema = Node.model_json_schema()
    assert value_for(schema, random.Random(3)) == value_for(schema, random.Random(3))
    assert value_for(schema, random.Random(3)) != value_for(schema, random.Random(4))


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        ({"type": "string", "format": "date"}, lambda v: len(v) == 10 and v[4] == "-"),
        ({"type": "string", "format": "email"}, lambda v: v.endswith("@example.com")),
        ({"type": "string", "format": "uuid"}, lambda v: len(v) == 36 and v[14] == "4"),
        ({"type": "integer", "minimum": 10**30}, lambda v: v >= 10**30),
        ({"type": "number", "multipleOf": 0.1, "minimum": 1, "maximum": 2}, lambda v: 1 <= v <= 2),
        ({"type": "object"}, lambda v: isinstance(v, dict) and v),
        ({"type": "object", "properties": {}}, lambda v: v == {}),
        ({"properties": {"a": {"const": 1}}, "required": ["a"]}, lambda v: v == {"a": 1}),
        ({}, lambda v: isinstance(v, str)),
    ],
)
def test_examples(schema: dict[str, Any], check: Any) -> None:
    assert check(value_for(schema, random.Random(0)))


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/missing"},
        {"$ref": "https://example.com/schema.json"},
        {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}},
        {"type": "array", "items": {"type": "string"}, "minItems": 10**9},
        {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]},
        {"$ref": "#/$defs/a", "$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}},
        {"minItems": 30, "items": {"minItems": 30, "items": {"minItems": 30}}},  # 27,000 items
        HUGE,  # longer than value_for's budget
    ],
)
def test_schemas_that_cannot_be_followed_raise(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        value_for(schema, random.Random(0))
