"""The layering that docs/architecture.md documents, proved from the source: every import points down.

Layers, bottom to top (a module may import its own layer and the layers below it, never above):
base (errors, _version, redact, scrub, safe_yaml, spec, spec_*, events, sync, processes) < data < rag < scoring < tracking < handover < analysis < runner
< faces (cli, ui, the package root). `testing` is a side leaf: it may use the base only, and no product
module imports it. Imports under `if TYPE_CHECKING:` are annotations only and not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"
LAYERS = (
    ("errors", "_version", "redact", "scrub", "safe_yaml", "spec", "events", "sync", "processes", "spec_routing",
     "spec_repeats", "spec_scale", "spec_budget", "spec_search", "spec_synth", "quick_exit", "heap", "files", "collector"),
    ("data",),
    ("rag",),
    ("scoring",),
    ("tracking",),
    ("handover",),
    ("analysis",),
    ("runner",),
    ("cli", "ui", "__init__"),
)
RANK = {top: i for i, tops in enumerate(LAYERS) for top in tops}
MAX_LINES = 400
REASON = "Over 400 lines:"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, *, module_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported workbench module) for every import in the file, skipping TYPE_CHECKING blocks."""
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names if a.name.split(".")[0] == "workbench")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    base = ".".join(name.split(".")[: -child.level] + ([base] if base else []))
                if base.split(".")[0] == "workbench":
                    # `from workbench import spec` imports the submodule workbench.spec
                    for a in child.names:
                        sub = f"{base}.{a.name}"
                        found.append((child.lineno, sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                                      or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else base))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_is_in_a_layer():
    unplaced = sorted({top(m) for m in modules()} - set(RANK) - {"testing"})
    assert not unplaced, f"modules outside any documented layer: {unplaced} (add them to docs/architecture.md and LAYERS)"


def test_imports_point_down():
    bad = []
    for name, path in modules().items():
        here = top(name)
        for line, target in imports(path):
            there = top(target)
            if here == "testing":
                if RANK.get(there, 0) > 0 and there != "testing":
                    bad.append(f"{name}:{line} imports {target} (testing may use the base layer only)")
            elif there == "testing":
                bad.append(f"{name}:{line} imports {target} (the product never imports test doubles)")
            elif there != here and RANK[there] > RANK[here]:
                bad.append(f"{name}:{line} imports {target}, a layer above it")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycle():
    """Module-level imports form no cycle (a cycle makes import order matter and breaks partially)."""
    mods = modules()
    graph = {n: {t for _, t in imports(p, module_level_only=True) if t in mods and t != n} for n, p in mods.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def dfs(n: str, stack: list[str]) -> bool:
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycle.extend(stack[stack.index(m):] + [m] if m in stack else [n, m])
                return True
            if m not in state and dfs(m, stack + [m]):
                return True
        state[n] = 2
        return False

    for n in sorted(graph):
        if n not in state and dfs(n, [n]):
            break
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_long_modules_say_why():
    long = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and REASON not in doc:
            long.append(f"{name}: {lines} lines")
    assert not long, f"modules over {MAX_LINES} lines with no '{REASON} …' reason in their docstring: {long}"


def test_layering_rules_can_fail(tmp_path, monkeypatch):
    """The checker itself: an upward import written into a scratch copy of a module is found."""
    scratch = tmp_path / "workbench" / "rag"
    scratch.mkdir(parents=True)
    (scratch / "x.py").write_text("def f():\n    from workbench.runner.sweep import run_sweep\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "workbench")
    with pytest.raises(AssertionError, match="a layer above it"):
        test_imports_point_down()


def mlflow_imports(path: Path) -> list[int]:
    """Lines of every `import mlflow…` / `from mlflow… import` in the file, wherever it stands."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "mlflow" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "mlflow":
            lines.append(node.lineno)
    return lines


def test_only_tracking_imports_mlflow(tmp_path):
    """Everything about MLflow lives in workbench.tracking: a new tracking backend replaces that package alone."""
    outside = [f"{name}:{line}" for name, path in modules().items() if top(name) != "tracking"
               for line in mlflow_imports(path)]
    assert not outside, f"mlflow imported outside workbench/tracking: {outside}"
    assert mlflow_imports(PACKAGE / "tracking" / "mlflow_tracker.py")  # the check sees function-level imports
    scratch = tmp_path / "x.py"
    scratch.write_text("def f():\n    if True:\n        from mlflow.entities import Metric\n")
    assert mlflow_imports(scratch) == [3]
