"""The import structure docs/architecture.md describes: packages form layers, and modules use each other's public names.

Read from the source with `ast` (nothing is imported), so a cycle or a private import fails here before it
surprises anyone at run time."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "audits", "reports", "harness", "reference_model")
SKIP = {("audits", "examples")}  # bundled submissions: audited, never imported


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] in SKIP:
                continue
            name = ".".join(rel.with_suffix("").parts)
            yield path, name.removesuffix(".__init__"), path.name == "__init__.py"


def _imports(path: Path, module: str, is_package: bool):
    """(imported module, imported names, line) for every import statement, relative imports resolved."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([target] if target else []))
            yield target, [a.name for a in node.names], node.lineno


def _package_graph() -> dict[str, dict[str, str]]:
    graph: dict[str, dict[str, str]] = {p: {} for p in PACKAGES}
    for path, module, is_package in _modules():
        here = module.split(".")[0]
        for target, _, line in _imports(path, module, is_package):
            there = target.split(".")[0]
            if there in PACKAGES and there != here:
                graph[here].setdefault(there, f"{path.relative_to(ROOT)}:{line}")
    return graph


def _cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in PACKAGES:
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_packages():
    graph = _package_graph()
    cycle = _cycle(graph)
    assert cycle is None, "import cycle " + " -> ".join(
        f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_core_imports_no_other_package():
    assert _package_graph()["core"] == {}


def test_reports_import_no_harness():
    """The HTML report renders result objects; running audits and gates is the harness's job."""
    assert "harness" not in _package_graph()["reports"]


def test_no_private_cross_module_import():
    own = set(PACKAGES)
    bad = [f"{path.relative_to(ROOT)}:{line} from {target} import {name}"
           for path, module, is_package in _modules()
           for target, names, line in _imports(path, module, is_package)
           if target.split(".")[0] in own
           for name in names if name.startswith("_") and not name.startswith("__")]
    assert bad == []


def test_cycle_finder_reports_a_cycle():
    assert _cycle({"core": {}, "audits": {"harness": "a.py:1"}, "reports": {}, "harness": {"audits": "h.py:1"},
                   "reference_model": {}}) == ["audits", "harness", "audits"]
