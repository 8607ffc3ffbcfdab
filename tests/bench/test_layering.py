"""The benchmark package sits below the API, the runtime and the CLI (DESIGN's import rule:
`api -> (upstream, bench, schemas) -> (config, errors)`), so it never imports them."""

from __future__ import annotations

import ast
from pathlib import Path

from llm_gateway import bench

ABOVE = ("llm_gateway.api", "llm_gateway.app", "llm_gateway.cli", "llm_gateway.runtime")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_bench_imports_nothing_above_it() -> None:
    offenders = [
        f"{path.name}: {name}"
        for path in Path(bench.__file__).parent.rglob("*.py")
        for name in _imports(path)
        if name.startswith(ABOVE)
    ]
    assert offenders == []
