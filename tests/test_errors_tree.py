"""The error tree is the one place statuses are decided: every error the package raises is a
named class of `errors.py`, never the base with a status set at the raise site."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from llm_gateway import errors

PACKAGE = Path(errors.__file__).parent
# Bases of the tree: meaningful only through a subclass that says what went wrong.
ABSTRACT = {"GatewayError", "ClientError", "UpstreamError"}


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def test_no_raise_site_uses_a_base_class_or_sets_a_status() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" or "emulator" in path.parts:
            continue  # the emulator stands alone and speaks OpenRouter's errors, not ours
        for call in _calls(ast.parse(path.read_text())):
            name = _name(call)
            if name in ABSTRACT:
                offenders.append(f"{path.name}:{call.lineno} {name}(...)")
            keywords = {k.arg for k in call.keywords}
            if name.endswith(("Error", "Request", "NotFound")) and keywords & {"status", "code"}:
                offenders.append(f"{path.name}:{call.lineno} {name}(status=/code=)")
    assert offenders == []


def test_every_error_class_is_in_the_documented_tree() -> None:
    documented = errors.__doc__ or ""
    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.GatewayError) and cls.__module__ == errors.__name__
    ]
    assert len(classes) > 20
    missing = [cls.__name__ for cls in classes if cls.__name__ not in documented]
    assert missing == []


def test_no_other_module_defines_an_error_class() -> None:
    defined = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" or "emulator" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", "").endswith(("Error", "Exception")) for base in node.bases
            ):
                defined.append(f"{path.name}:{node.name}")
    # CarriedError only carries one of ours through FastAPI's body parsing (rendering.py).
    # h1.py's are its transport's own failures, as aiohttp's are, mapped at the client's
    # boundary (upstream/mapping.py) like them.
    assert sorted(defined) == [
        "h1.py:BadHttp",
        "h1.py:CannotConnect",
        "h1.py:ServerDisconnected",
        "rendering.py:CarriedError",
    ]
