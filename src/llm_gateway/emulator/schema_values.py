"""Values that satisfy a JSON Schema: tool-call arguments and structured answers.

It covers what function-calling clients send (pydantic, zod, hand-written tool specs): `type`
(also a list of types), `properties` with `required` (optional properties are filled half the
time), `additionalProperties`, `enum`, `const`, nested objects, arrays (`items`, `prefixItems`,
`minItems`/`maxItems`, `uniqueItems`), `anyOf`/`oneOf` (one branch is picked, so `oneOf` branches
are taken to be disjoint), `allOf` (merged), `$ref` into `$defs`/`definitions`, numeric bounds
(inclusive and exclusive) and `multipleOf`, string lengths and the common `format`s. `pattern`,
`not`, `if`/`then`/`else` and the `dependent*` keywords are ignored.

Every choice comes from the caller's seeded rng, so a value is a function of schema and seed.

Client schemas are untrusted, and the emulator answers inside the gateway's event loop, so the
cost of a value is bounded by what the caller will use of it, never by what the schema asks for:
`json_text` writes the compact JSON text as it goes, depth first, against a character budget,
and stops as soon as the text outgrows it, answering with the text cut at the budget: exactly
the start of the whole value's text, so cutting at max_tokens looks the same whether or not
the rest was generated. A schema asking for `minItems: 10**9` strings of `minLength: 10000`
thus costs about its budget in characters, not terabytes. The work besides the text (schema
walked, items drawn again for `uniqueItems`) is capped too, at `_WORK_FACTOR` times the budget
plus `_WORK_FLOOR`; a schema that needs more stops there, its text cut where it got to.

A value that fits its budget but has more than `_MAX_VALUES` parts, a broken `$ref` or a
`$ref` loop raises `SchemaError`.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from llm_gateway.emulator.text import VOCABULARY

# Past this nesting depth, or this many values, only what the schema requires is generated, so
# recursive models (trees, linked lists) come to an end.
_FULL_DEPTH = 6
_FULL_VALUES = 1000
# Hard limits against schemas that ask for absurd sizes (minItems: 10**9, deep minItems chains):
# a value of more parts is refused (when its text fits the budget); minLength is capped.
_MAX_VALUES = 20_000
_MAX_STRING = 10_000
_MAX_REF_HOPS = 32
_MAX_NESTING = 100  # schemas (and `$ref` loops) nested deeper would exhaust Python's stack
_UNIQUE_TRIES = 10
_DEFAULT_SPAN = 100
_MAX_OPEN_KEYS = 16
# Work allowed per character of budget, plus a floor: characters written, those taken back
# (see `_unique_items`) included, and schema entries walked (properties, branches, merges). Past
# it generation stops as if the budget had run out, so a value of little text with a lot of
# schema behind it (19,000 objects of 10,000 optional properties each) costs no more.
_WORK_FACTOR = _UNIQUE_TRIES
_WORK_FLOOR = 16_384


class SchemaError(ValueError):
    """The schema cannot be followed (a `$ref` that leads nowhere, a value too large to make)."""


def _word(rng: random.Random) -> str:
    return rng.choice(VOCABULARY)


def _date(rng: random.Random) -> str:
    return (date(2020, 1, 1) + timedelta(days=rng.randrange(3650))).isoformat()


def _datetime(rng: random.Random) -> str:
    moment = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(315_360_000))
    return moment.isoformat().replace("+00:00", "Z")


def _time(rng: random.Random) -> str:
    return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"


# Addresses in the ranges reserved for documentation (example.com, 192.0.2.0/24, 2001:db8::/32).
_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "date": _date,
    "date-time": _datetime,
    "time": _time,
    "duration": lambda rng: f"P{rng.randint(1, 30)}D",
    "email": lambda rng: f"{_word(rng)}.{_word(rng)}@example.com",
    "idn-email": lambda rng: f"{_word(rng)}@example.com",
    "hostname": lambda rng: f"{_word(rng)}.example.com",
    "idn-hostname": lambda rng: f"{_word(rng)}.example.com",
    "ipv4": lambda rng: f"192.0.2.{rng.randint(1, 254)}",
    "ipv6": lambda rng: f"2001:db8::{rng.randint(1, 0xFFFF):x}",
    "uri": lambda rng: f"https://example.com/{_word(rng)}",
    "url": lambda rng: f"https://example.com/{_word(rng)}",
    "iri": lambda rng: f"https://example.com/{_word(rng)}",
    "uri-reference": lambda rng: f"/{_word(rng)}",
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def dumps(value: Any) -> str:
    """Compact JSON, as a model writes it. Not orjson, which refuses integers past 64 bits (a
    schema with `minimum: 1e30` asks for one)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_text(schema: Any, rng: random.Random, budget: int) -> tuple[str, bool]:
    """The compact JSON text of a value valid against `schema` (a JSON Schema as parsed JSON),
    drawn from `rng`, and True; or, when that text is longer than `budget` characters, its first
    `budget` characters and False, at a cost of about `budget` characters of work. (A schema
    needing more work than `_WORK_FACTOR` x `budget` + `_WORK_FLOOR` is cut where it got to.)"""
    generator = _Generator(schema, rng, budget)
    try:
        generator.value(schema, 0)
    except _OutOfBudget:
        return generator.text()[:budget], False
    return generator.text(), True


def value_for(schema: Any, rng: random.Random, budget: int = 2**20) -> Any:
    """The value `json_text` writes; `SchemaError` if its text is longer than `budget`."""
    said, complete = json_text(schema, rng, budget)
    if not complete:
        raise SchemaError(f"the value is longer than {budget} characters")
    return json.loads(said)


_WRITTEN = object()  # what `_value` returns for a value it has written itself


class _OutOfBudget(Exception):
    """The text written has outgrown the budget: generation stops there."""


class _Generator:
    """Writes a value's JSON text into `_out`, depth first, raising `_OutOfBudget` once it is
    longer than the budget. The rng is drawn in the order the parts are written."""

    def __init__(self, root: Any, rng: random.Random, budget: int) -> None:
        self._root = root
        self._rng = rng
        self._values = 0
        self._nesting = 0
        self._limit = budget
        self._out: list[str] = []
        self._size = 0
        # Everything written, taken back or not: items drawn again for uniqueItems add to it.
        self._work = 0
        self._max_work = _WORK_FACTOR * budget + _WORK_FLOOR

    def text(self) -> str:
        """What has been written so far."""
        return "".join(self._out)

    def _spend(self, work: int) -> None:
        """Count `work` (characters written, or schema entries walked) against the cap."""
        self._work += work
        if self._work > self._max_work:
            raise _OutOfBudget

    def _write(self, part: str) -> None:
        self._out.append(part)
        self._size += len(part)
        self._spend(len(part))
        if self._size > self._limit:
            raise _OutOfBudget

    def _without(self, schema: dict[str, Any], keyword: str) -> dict[str, Any]:
        self._spend(len(schema))
        return {k: v for k, v in schema.items() if k != keyword}

    def _merge(self, base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        """Both schemas at once, as far as generation goes: properties and required add up."""
        self._spend(len(base) + len(extra))
        merged = {**base, **extra}
        if isinstance(base.get("properties"), dict) and isinstance(extra.get("properties"), dict):
            self._spend(len(base["properties"]) + len(extra["properties"]))
            merged["properties"] = {**base["properties"], **extra["properties"]}
        if isinstance(base.get("required"), list) and isinstance(extra.get("required"), list):
            self._spend(len(base["required"]) + len(extra["required"]))
            merged["required"] = [*base["required"], *extra["required"]]
        return merged

    def _walked(self, value: Any) -> list[Any]:
        """`value` if it is a list (of branches, say), counted as walked."""
        walked = _list(value)
        self._spend(len(walked))
        return walked

    def value(self, schema: Any, depth: int) -> None:
        """Write a value of `schema`."""
        self._values += 1
        if self._values > _MAX_VALUES:
            raise SchemaError(f"the schema asks for a value of more than {_MAX_VALUES} parts")
        self._nesting += 1
        try:
            scalar = self._value(schema, depth)
        finally:
            self._nesting -= 1
        if scalar is not _WRITTEN:
            self._write(dumps(scalar))

    def _value(self, schema: Any, depth: int) -> Any:
        """The scalar to write, or `_WRITTEN` when the value has written itself."""
        if self._nesting > _MAX_NESTING:
            raise SchemaError(f"the schema nests more than {_MAX_NESTING} levels deep")
        if not isinstance(schema, dict):
            return _word(self._rng)  # `true` (or an unusable schema): anything goes
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self._rng.choice(enum)
        for keyword in ("anyOf", "oneOf"):
            branches = [b for b in self._walked(schema.get(keyword)) if isinstance(b, dict)]
            if branches:
                rest = self._without(schema, keyword)
                self.value(self._merge(rest, self._branch(branches, depth)), depth)
                return _WRITTEN
        parts = [part for part in self._walked(schema.get("allOf")) if isinstance(part, dict)]
        if parts:
            merged = self._without(schema, "allOf")
            for part in parts:
                merged = self._merge(merged, self._resolve(part))
            self.value(merged, depth)
            return _WRITTEN
        kind = self._type(schema, depth)
        if kind == "object":
            self._object(schema, depth)
            return _WRITTEN
        if kind == "array":
            self._array(schema, depth)
            return _WRITTEN
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema)

    def _full(self, depth: int) -> bool:
        """Whether optional parts are still generated here (see `_FULL_DEPTH`)."""
        return depth < _FULL_DEPTH and self._values < _FULL_VALUES

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow `$ref`s (JSON pointers into the root); keywords beside a `$ref` still apply."""
        for _ in range(_MAX_REF_HOPS):
            ref = schema.get("$ref")
            if ref is None:
                return schema
            rest = self._without(schema, "$ref")
            target = self._pointer(ref)
            if not isinstance(target, dict):
                if target is True:
                    return rest
                raise SchemaError(f"$ref {ref!r} does not point at a schema")
            schema = self._merge(target, rest)
        raise SchemaError(f"more than {_MAX_REF_HOPS} $refs in a row (a $ref cycle?)")

    def _pointer(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"only local $refs ('#/...') are supported, got {ref!r}")
        self._spend(len(ref))
        node = self._root
        for raw in ref[1:].split("/")[1:]:
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise SchemaError(f"$ref {ref!r} points at nothing")
        return node

    def _branch(self, branches: list[dict[str, Any]], depth: int) -> dict[str, Any]:
        if self._full(depth):
            return self._rng.choice(branches)
        # Deep down, the plainest branch (null first, then scalars) ends recursive structures.
        return min(branches, key=self._weight)

    def _weight(self, branch: dict[str, Any]) -> int:
        resolved = self._resolve(branch)
        kind = resolved.get("type")
        if kind == "null" or (isinstance(kind, list) and "null" in kind):
            return 0
        if kind in ("string", "integer", "number", "boolean") or "enum" in resolved:
            return 1
        return 2

    def _type(self, schema: dict[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, str):
            return kind
        if isinstance(kind, list) and (
            kinds := [k for k in self._walked(kind) if isinstance(k, str)]
        ):
            if not self._full(depth) and "null" in kinds:
                return "null"
            return self._rng.choice(kinds)
        # No type: guess it from the keywords that only make sense for one.
        if {"properties", "required", "additionalProperties"} & schema.keys():
            return "object"
        if {"items", "prefixItems", "minItems", "maxItems"} & schema.keys():
            return "array"
        if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & schema.keys():
            return "number"
        return "string"

    def _member(self, keys: set[str], name: str, subschema: Any, depth: int) -> None:
        self._write(("," if keys else "") + dumps(name) + ":")
        keys.add(name)
        self.value(subschema, depth)

    def _object(self, schema: dict[str, Any], depth: int) -> None:
        rng, full = self._rng, self._full(depth)
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = {
            name: None for name in self._walked(schema.get("required")) if isinstance(name, str)
        }
        self._spend(len(properties))
        extra = schema.get("additionalProperties", True)
        keys: set[str] = set()
        self._write("{")
        for name, subschema in properties.items():
            if name in required or (full and rng.random() < 0.5):
                self._member(keys, name, subschema, depth + 1)
        for name in required:
            if name not in keys:
                self._member(keys, name, extra if isinstance(extra, dict) else True, depth + 1)
        # An object with no declared properties is open: give it a few keys of its own.
        if "properties" not in schema and extra is not False and full:
            low = min(_as_int(schema.get("minProperties")) or 1, _MAX_OPEN_KEYS)
            high = min(_as_int(schema.get("maxProperties")) or low + 2, _MAX_OPEN_KEYS)
            for _ in range(rng.randint(min(low, high), high) - len(keys)):
                key = _word(rng)
                if key not in keys:
                    self._member(keys, key, extra if isinstance(extra, dict) else {}, depth + 1)
        self._write("}")

    def _array(self, schema: dict[str, Any], depth: int) -> None:
        rng = self._rng
        low = max(_as_int(schema.get("minItems")) or 0, 0)
        high = _as_int(schema.get("maxItems"))
        count = low
        if self._full(depth):
            top = low + 3 if high is None else high
            count = rng.randint(min(max(low, 1), top), max(top, low))
        prefix = _list(schema.get("prefixItems"))
        items = schema.get("items", True)
        if items is False:
            count = min(count, len(prefix))
        self._write("[")
        if schema.get("uniqueItems") is True:
            self._unique_items(count, prefix, items, depth + 1)
        else:
            for position in range(count):
                if position:
                    self._write(",")
                self.value(prefix[position] if position < len(prefix) else items, depth + 1)
        self._write("]")

    def _unique_items(self, count: int, prefix: list[Any], items: Any, depth: int) -> None:
        """Items that differ as JSON values: an item equal to one before it is taken back (its
        text unwritten) and drawn again, up to `_UNIQUE_TRIES` times, then the array ends.

        An item no longer than the longest one before it may be a copy, to be taken back, so it
        may run past the budget until that is known; the text cut at the budget is then still
        the start of the whole value's text."""
        seen: set[str] = set()
        longest = 0
        for position in range(count):
            subschema = prefix[position] if position < len(prefix) else items
            for _ in range(_UNIQUE_TRIES):
                mark, size, limit = len(self._out), self._size, self._limit
                self._limit = max(limit, size + 1 + longest)
                try:
                    if position:
                        self._write(",")
                    start = len(self._out)
                    self.value(subschema, depth)
                finally:
                    self._limit = limit
                item = "".join(self._out[start:])
                key = json.dumps(json.loads(item), sort_keys=True)
                if key not in seen:
                    break
                del self._out[mark:]
                self._size = size
            else:
                return  # the item schema allows no more distinct values
            seen.add(key)
            longest = max(longest, len(item))
            if self._size > self._limit:
                raise _OutOfBudget

    def _bounds(self, schema: dict[str, Any]) -> tuple[float | None, float | None, bool, bool]:
        """(low, high, low excluded, high excluded), for draft-4 and newer exclusive bounds."""
        low, high = _as_number(schema.get("minimum")), _as_number(schema.get("maximum"))
        low_out = high_out = False
        exclusive_low, exclusive_high = (
            schema.get("exclusiveMinimum"),
            schema.get("exclusiveMaximum"),
        )
        if exclusive_low is True:
            low_out = low is not None
        elif (value := _as_number(exclusive_low)) is not None and (low is None or value >= low):
            low, low_out = value, True
        if exclusive_high is True:
            high_out = high is not None
        elif (value := _as_number(exclusive_high)) is not None and (high is None or value <= high):
            high, high_out = value, True
        return low, high, low_out, high_out

    @staticmethod
    def _span(low: float | None, high: float | None) -> tuple[float, float]:
        if low is None and high is None:
            return 0.0, float(_DEFAULT_SPAN)
        if low is None:
            assert high is not None
            return high - _DEFAULT_SPAN, high
        if high is None:
            return low, low + _DEFAULT_SPAN
        return low, high

    def _integer(self, schema: dict[str, Any]) -> int:
        low, high, low_out, high_out = self._bounds(schema)
        start, end = self._span(low, high)
        first = (
            math.floor(start) + 1 if low_out and start == math.floor(start) else math.ceil(start)
        )
        last = math.ceil(end) - 1 if high_out and end == math.ceil(end) else math.floor(end)
        step = _as_int(schema.get("multipleOf"))
        if step is not None and step > 0:
            multiples = (-(-first // step), last // step)
            if multiples[0] <= multiples[1]:
                return self._rng.randint(*multiples) * step
        return self._rng.randint(first, last) if first <= last else first

    def _number(self, schema: dict[str, Any]) -> float | int:
        low, high, low_out, high_out = self._bounds(schema)
        start, end = self._span(low, high)
        step = _as_number(schema.get("multipleOf"))
        if step is not None and step > 0:
            first, last = math.ceil(start / step), math.floor(end / step)
            first += low_out and first * step <= start
            last -= high_out and last * step >= end
            if first <= last:
                # In decimal, so that 3 x 0.1 is 0.3 as written, not 0.30000000000000004.
                exact = Decimal(repr(step)) * self._rng.randint(first, last)
                return int(exact) if exact == exact.to_integral_value() else float(exact)
        value = round(self._rng.uniform(start, end), 2)
        if not start <= value <= end or (low_out and value == start) or (high_out and value == end):
            value = (start + end) / 2
        return value

    def _string(self, schema: dict[str, Any]) -> str:
        rng = self._rng
        form = schema.get("format")
        make = _FORMATS.get(form) if isinstance(form, str) else None
        if make is not None:
            return make(rng)
        low = min(max(_as_int(schema.get("minLength")) or 0, 0), _MAX_STRING)
        high = _as_int(schema.get("maxLength"))
        text = " ".join(_word(rng) for _ in range(rng.randint(1, 4)))
        while len(text) < low:
            text += " " + _word(rng)
        return text[: max(high, low)] if high is not None else text
