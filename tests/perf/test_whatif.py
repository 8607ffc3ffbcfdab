"""`--whatif` leaves out middleware by name through Starlette's public list, and a name that is
not there fails at once, listing the names that are."""

from __future__ import annotations

import pytest

import whatif
from whatif_app import build


def _names(drop: list[str]) -> list[str]:
    return [str(getattr(m.cls, "__name__", "")) for m in build(drop).user_middleware]


def test_a_named_middleware_is_left_out_and_the_rest_stay() -> None:
    present = _names([])
    assert present  # the gateway has middleware to price

    assert _names([present[0]]) == present[1:]


def test_an_unknown_name_fails_with_the_names_there_are() -> None:
    present = _names([])

    with pytest.raises(SystemExit, match="NoSuchMiddleware") as raised:
        build(["NoSuchMiddleware"])

    assert all(name in str(raised.value) for name in present)


def test_every_variant_names_middleware_the_gateway_has() -> None:
    # A renamed middleware breaks this test rather than a five-minute --whatif run.
    present = set(_names([]))

    assert {name for variant in whatif.VARIANTS for name in variant.drop} <= present
