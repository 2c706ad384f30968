"""The house rules, read from the code's own imports (``ast``, nothing imported): no import circle among the
project's modules, no upward import across the layers below, ``model/`` free of Ray / MLflow / ``orchestrator``,
no function-level import of a project module in ``model/`` or ``orchestrator/``, and every function-level
third-party import there says why it is deferred (``# deferred: <dependency> ...``)."""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "orchestrator")
SCRIPTS = ("experiments", "bench")
# Lowest first: a module may import its own layer and the ones before it, never a later one.
LAYERS: list[tuple[str, ...]] = [
    ("model",),
    ("orchestrator.config", "orchestrator.tracking", "orchestrator.storage"),
    ("orchestrator.data",),
    ("orchestrator.benchmarks",),
    ("orchestrator.synthetic",),
    ("orchestrator.report",),
    ("orchestrator.probe", "orchestrator.pretrain"),
    ("experiments", "bench"),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_files() -> dict[str, Path]:
    files = [p for pkg in PACKAGES + SCRIPTS for p in (REPO / pkg).rglob("*.py")]
    return {module_name(p): p for p in files}


def imported_modules(node: ast.Import | ast.ImportFrom, modules: set[str]) -> list[str]:
    """The project modules a statement imports (``from pkg import mod`` names the module ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    if node.level or node.module is None:
        return []
    out = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
    return out or ([node.module] if node.module in modules else [])


def import_graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[int, str, bool]]]]:
    """module → project modules it imports; and per module every import as (line, target, inside a function)."""
    files = project_files()
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    detail: dict[str, list[tuple[int, str, bool]]] = {m: [] for m in modules}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported_modules(node, modules):
                    graph[mod].add(target)
                    detail[mod].append((node.lineno, target, id(node) in nested))
    return graph, detail


def layer_of(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module}: in no layer of LAYERS; add it there")


def test_the_graph_sees_the_real_imports() -> None:
    graph, _ = import_graph()
    assert "orchestrator.probe.trial" in graph["orchestrator.probe.sweep"]
    assert "orchestrator.report.plots_sweep" in graph["orchestrator.report.plots"]  # from pkg import module
    assert "model.tasks" in graph["model.probes"]


def test_no_import_circle() -> None:
    graph, _ = import_graph()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import circle: {' -> '.join(err.args[1])}")


def test_a_circle_is_detected() -> None:
    """The check above can fail: a hand-made circle is reported with its modules."""
    with pytest.raises(graphlib.CycleError) as err:
        tuple(graphlib.TopologicalSorter({"a": {"b"}, "b": {"c"}, "c": {"a"}}).static_order())
    assert set(err.value.args[1]) == {"a", "b", "c"}


def test_no_upward_import() -> None:
    graph, detail = import_graph()
    upward = [f"{m}:{line} imports {t}" for m in graph for line, t, _ in detail[m] if layer_of(t) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_model_imports_no_ray_mlflow_or_orchestrator() -> None:
    bad = []
    for path in (REPO / "model").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in ("ray", "mlflow", "orchestrator")]
    assert not bad, bad


def test_function_level_imports_only_defer_heavy_dependencies() -> None:
    _, detail = import_graph()
    project = [f"{m}:{line} imports {t}" for m, rows in detail.items() if m.split(".")[0] in PACKAGES
               for line, t, nested in rows if nested]
    assert not project, "function-level imports of project modules:\n" + "\n".join(project)
    silent = []
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            lines = path.read_text().splitlines()
            for f in ast.walk(ast.parse("\n".join(lines))):
                if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(f):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and "# deferred:" not in lines[node.lineno - 1]:
                        silent.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not silent, "function-level imports without a '# deferred: <dependency>' reason: " + ", ".join(silent)


def test_no_re_export_facades() -> None:
    """Package ``__init__`` files hold a docstring only: every name is imported from the module that defines it."""
    full = [str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("__init__.py")
            if any(not isinstance(n, ast.Expr) for n in ast.parse(p.read_text()).body)]
    assert not full, full
