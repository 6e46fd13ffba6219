"""The package's import graph, every import counted (module level and inside functions), has no cycle."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "mtdistill"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = (base[: len(base) - node.level + 1] if node.level else []) + (node.module or "").split(".")
                target = ".".join(filter(None, target))
                imported |= {target, *(f"{target}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {m for m in imported if m in modules and m not in (name, "mtdistill")}
    return graph


def test_no_import_cycle():
    graph = import_graph()
    assert {"mtdistill.score", "mtdistill.backends", "mtdistill.models", "mtdistill.scorers.forced"} <= set(graph)
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_train_is_a_step_whose_internals_nobody_imports():
    """Only its public parser (estimate parses the rules' commands with it) is imported from train."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "train" and node.level == 1:
                names |= {alias.name for alias in node.names}
    assert names <= {"parser"}
