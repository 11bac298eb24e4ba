"""The package's shape: no import cycle but the rule plugins, no reaching into another package's
private names, old module paths kept only as deprecation shims, a small top level.

Imports are read from the source (every ``import`` / ``from ... import``, also inside functions;
``if TYPE_CHECKING:`` blocks excepted), so a cycle hidden behind a function-level import counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"onnxrecede": ROOT / "onnxrecede", "onnxrecede_cli": ROOT / "cli"}
#: the one allowed cycle: the registry loads the rule modules, which register themselves
PLUGIN_EDGE = ("onnxrecede.engine.registry", "onnxrecede.engine.rules")


def _modules() -> dict[str, Path]:
    found = {}
    for top, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _package_of(name: str) -> str:
    return name if _is_package(name) else name.rpartition(".")[0]


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(name: str) -> Iterator[tuple[str, str | None, int]]:
    """(target module, imported name or None, line) of each internal import of ``name``."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _type_checking_lines(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in MODULES:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES:
                    yield sub, None, node.lineno
                else:
                    yield node.module, alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _, _ in _imports(m):
            if target != m and (m, target) != PLUGIN_EDGE:
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_no_import_cycle_but_the_rule_plugins() -> None:
    assert _cycles(_graph()) == []


def test_the_checker_sees_a_cycle() -> None:
    graph = _graph()
    graph["onnxrecede.engine.registry"].add("onnxrecede.engine.rules")  # the plugin edge
    assert any("onnxrecede.engine.registry" in c for c in _cycles(graph))


def test_no_module_imports_another_packages_private_names() -> None:
    found = []
    for m in MODULES:
        for target, name, line in _imports(m):
            private_module = any(p.startswith("_") and not p.startswith("__") for p in
                                 target.split("."))
            private_name = name is not None and name.startswith("_") and not name.startswith("__")
            if (private_module or private_name) and _package_of(target) != _package_of(m):
                found.append(f"{MODULES[m].relative_to(ROOT)}:{line}: {target} {name or ''}")
    assert found == []


def test_top_level_is_small() -> None:
    top = sorted(p.name for p in PACKAGES["onnxrecede"].glob("*.py"))
    assert len(top) <= 6, top


def test_engine_has_a_face() -> None:
    import onnxrecede.engine as engine

    assert engine.__all__ and all(hasattr(engine, name) for name in engine.__all__)


def test_engine_face_keeps_its_submodules_importable() -> None:
    from onnxrecede.engine import registry, rewrite, verify

    assert callable(verify.verify) and callable(rewrite.rewrite) and callable(registry.rule_for)


def test_only_the_engine_reads_the_analysis_internals() -> None:
    """Outside engine/ an analysis is read through its public queries, not its context."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for name, path in MODULES.items()
        if not name.startswith("onnxrecede.engine")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "ctx"
    ]
    assert found == []
