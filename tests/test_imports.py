"""The library's module graph: no import cycle inside `cast/`, and the light commands stay light.

Walks every import statement of every module (module level, inside functions, under TYPE_CHECKING),
resolves it to a module of `cast`, and requires the graph to be acyclic. A cycle, even one hidden in a
function, works only by the accident of import order; the layout is meant to read one way (STYLE.md).
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "cast"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (REPO_ROOT / Path(*name.split(".")) / "__init__.py").is_file()


def _exists(name: str) -> bool:
    base = REPO_ROOT / Path(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _import_nodes(tree: ast.Module) -> list[ast.stmt]:
    """Every import statement of a module, also those inside functions and `if TYPE_CHECKING:` blocks:
    a cycle hidden in a function (to dodge import order) or a type annotation is still a cycle."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        graph.add_node(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" if _exists(f"{module}.{alias.name}") else module
                           for alias in node.names]
            for target in targets:
                if target.split(".")[0] == "cast" and _exists(target) and target != name:
                    graph.add_edge(name, target)
    return graph


def test_every_module_is_seen() -> None:
    graph = import_graph()
    assert {"cast", "cast.segmenter", "cast.pipeline.cast_kind", "cast.weights.pretrained_cfg"} <= set(graph)
    assert graph.has_edge("cast.segmenter", "cast.pipeline")  # the walk resolves relative imports


def test_no_import_cycle_inside_cast() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles[:5])
