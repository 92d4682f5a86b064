"""The package's layers, read from its own imports: each layer imports only the layers
below it, the library never imports the CLI, and no two modules import each other, even
through a chain or an import inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "embinspect"

# Bottom to top; a module may import its own layer and those before it.
LAYERS = ["text", "progress", "errors", "result", "sources", "model", "tables", "analyses",
          "api", "cli"]  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the embinspect modules it imports (anywhere in its body)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package's face (embinspect/__init__.py) re-exports the API
    return LAYERS.index(parts[1])


def test_every_module_belongs_to_a_layer():
    for module in _imports():
        parts = module.split(".")
        assert len(parts) < 2 or parts[1] in LAYERS + ["__main__"], module


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, imported in _imports().items():
        if module.endswith("__main__"):
            continue
        mine = _layer(module)
        for target in imported:
            theirs = _layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_library_never_imports_the_cli():
    graph = _imports()
    users = [
        f"{module} -> {target}"
        for module, imported in graph.items()
        if not module.startswith(("embinspect.cli", "embinspect.__main__"))
        for target in imported
        if target.startswith("embinspect.cli")
    ]
    assert users == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    # Packages' __init__ files that re-export (embinspect, embinspect.cli) are left out:
    # importing a submodule runs its package's __init__, which is not a dependency.
    graph = {
        module: {t for t in imported if t not in ("embinspect", "embinspect.cli")}
        for module, imported in _imports().items()
    }
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "command",
    ["info", "tokens", "neighbors", "compare", "analogy", "positions", "diff", "stats",
     "undertrained", "plot", "cache", "outlier"],
)  # fmt: skip
def test_each_command_has_a_module_of_its_name_in_the_library_and_the_cli(command):
    assert (PACKAGE / "analyses" / f"{command}.py").is_file()
    assert (PACKAGE / "cli" / f"{command}.py").is_file()
