"""The engine's modules import one another in one direction only (issue 25: ``output`` used to
import the job's entry point, which imports the pool, which imports ``output``)."""

from __future__ import annotations

import ast
from pathlib import Path

import sarray.engine

ENGINE = Path(sarray.engine.__file__).parent


def engine_imports() -> dict[str, set[str]]:
    """Each engine module's imports of other engine modules, wherever they are written (at the
    top or inside a function: a deferred import still makes a circle)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ENGINE.glob("*.py")):
        name = f"sarray.engine.{path.stem}"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            deps |= {m for m in mods if m.startswith("sarray.engine.") and m.count(".") == 2
                     and (ENGINE / f"{m.rsplit('.', 1)[1]}.py").exists() and m != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_find_cycle_finds_one_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_among_the_engines_modules() -> None:
    graph = engine_imports()
    assert "sarray.engine.config" in graph["sarray.engine.output"]  # the graph sees imports
    assert "sarray.engine.output" in graph["sarray.engine.pool"]  # ... inside functions too
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_the_config_is_importable_alone_and_still_from_translate() -> None:
    from sarray.engine.config import TranslateConfig
    from sarray.engine.translate import TranslateConfig as Again

    assert Again is TranslateConfig
