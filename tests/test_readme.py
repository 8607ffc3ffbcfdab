"""The README is the user's reference: what it documents must match what the code does."""

from __future__ import annotations

import inspect
from pathlib import Path

from llm_gateway import errors

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_error_code_an_answer_can_carry_is_documented() -> None:
    section = README[README.index("## Errors and retries") : README.index("## Running it")]
    codes = {
        cls.code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.GatewayError) and cls.__module__ == errors.__name__
    }
    codes |= {code for _, code in errors._STATUS_CODES.values()} | {"upstream_server_error"}
    # Bases never raised themselves, and a start-up failure that is never an HTTP answer.
    codes -= {"bad_request", "config_error"}
    missing = sorted(code for code in codes if f"`{code}`" not in section)
    assert missing == []


def test_no_link_leaves_the_repository() -> None:
    assert "../shared" not in README
