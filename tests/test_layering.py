"""The package's import graph: one direction only (family -> deployable -> exporter -> runtime ->
report, see README 'Architecture'), no cycles, no family importing another, and no shared code
naming one family. Function-level imports count; `if TYPE_CHECKING:` blocks (annotations) do not."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgesr"

# Lowest first. A module may import modules of its own layer or below, never above.
LAYERS = [
    ("base", ["errors", "quiet", "interrupts", "version", "progress", "table", "extras", "layout", "resize",
              "metrics", "images", "fold", "resources", "tiling", "atomic"]),
    ("numerics and files", ["distributed", "runners", "error_model", "check", "data", "protocol", "checkpoints",
                            "metadata", "bundle", "nn"]),
    ("family interface", ["family", "deployable", "profile"]),
    ("families", ["families"]),
    ("models", ["model", "model_files", "models_table"]),
    ("jobs", ["export", "verify", "train", "evaluate", "upscale", "bench", "android"]),
    ("api", ["api"]),
    ("cli", ["cli", "__main__", ""]),
]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str:
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {_owner(a.name, modules) for a in node.names if a.name.split(".")[0] == "edgesr"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "edgesr":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else _owner(node.module, modules))
        graph[name] = targets - {name}
    return graph


def layer_of(module: str) -> int:
    local = module.removeprefix("edgesr").removeprefix(".")
    top = local.split(".")[0]
    for index, (_, names) in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
            for a, targets in sorted(graph.items()) for b in sorted(targets) if layer_of(b) > layer_of(a)]


def _family(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "families" else None


def test_every_module_has_a_layer_and_imports_only_downward():
    graph = import_graph()
    assert len(graph) > 40
    assert upward(graph) == []


def test_the_import_graph_has_no_cycles():
    assert cycles(import_graph()) == []


def test_families_stand_alone_and_shared_code_names_none():
    problems = []
    for module, targets in import_graph().items():
        for target in targets:
            owner = _family(target)
            if owner and _family(module) != owner and module != "edgesr.families":  # the built-ins' list
                problems.append(f"{module} imports {target}")
    assert problems == []


def test_the_checks_catch_what_they_forbid():
    """The checks themselves: an upward import, a cycle and a cross-family import are found."""
    graph = {"edgesr.errors": {"edgesr.api"}, "edgesr.api": {"edgesr.errors"}}
    assert upward(graph) == ["edgesr.errors (base) imports edgesr.api (api)"]
    assert cycles(graph) == [["edgesr.api", "edgesr.errors"]]
    assert _family("edgesr.families.smsr.keras") == "smsr" and _family("edgesr.families") is None
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edgesr.api\n"
                     "import edgesr.errors\n")
    names = [a.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names]
    assert names == ["edgesr.errors"]
