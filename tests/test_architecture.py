"""The package's shape: layers that import only downwards, no cycle, no private name used across
modules, short functions. Read from the source (AST), so it covers imports inside functions too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "fptlib"
MAX_FUNCTION_LINES = 80
# Layers from the bottom; a module may import its own layer and those below it.
LAYERS = [{"version", "paths", "io", "seeding", "groups", "hardware", "config"}, {"data"}, {"models"}, {"training"},
          {"runs"}, {"study"}, {"perf", "rehearse"}, {"cli"}]


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _runtime_nodes(tree: ast.AST):
    """Every node of the tree except those under `if TYPE_CHECKING:` (imports for annotations only, which
    never run, so they make no cycle and climb no layer)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(imported fptlib module, names taken from it) for every import anywhere in the file that runs."""
    out = []
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(name, path.name == "__init__.py", node)
            if not target.startswith("fptlib"):
                continue
            names = [a.name for a in node.names]
            # `from . import x` imports the submodule x when there is one
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            out += [(s, []) for s in subs] + ([(target, [n for n in names if f"{target}.{n}" not in known])]
                                             if len(subs) < len(names) else [])
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("fptlib")]
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: {t for t, _ in imports(m, p, known) if t != m} for m, p in mods.items()}


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "fptlib"
    if top == "fptlib":
        return len(LAYERS)  # the package's __init__ re-exports from above
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_every_module_has_a_layer():
    assert all(isinstance(layer(m), int) for m in modules())


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])


def test_imports_only_go_down_the_layers():
    bad = [(m, t) for m, ts in graph().items() for t in ts
           if t != "fptlib" and layer(t) > layer(m) and m != "fptlib"]
    assert not bad, f"imports that climb the layers {[' '.join(map(str, s)) for s in LAYERS]}: {bad}"


# Inside study/, the same rule: the paper's numbers, then results read back and judged, then rendering, then
# the studies, their catalogue and costs (and attention, one vertical feature), then the report and
# papermill execution. study/__init__ re-exports from all of them.
STUDY_LAYERS = [{"paper"}, {"results"}, {"render"},
                {"base", "studies", "converged", "sources", "catalogue", "plan", "pricing", "compute_time",
                 "attention"},
                {"report", "notebooks"}]


def study_layer(module: str) -> int:
    parts = module.split(".")
    if parts[:2] != ["fptlib", "study"] or len(parts) == 2:
        return len(STUDY_LAYERS)
    return next(i for i, names in enumerate(STUDY_LAYERS) if parts[2] in names)


def test_every_study_module_has_a_study_layer():
    assert all(isinstance(study_layer(m), int) for m in modules() if m.startswith("fptlib.study."))


def test_imports_inside_study_only_go_down_its_layers():
    bad = [(m, t) for m, ts in graph().items() if m.startswith("fptlib.study.") for t in ts
           if t.startswith("fptlib.study.") and study_layer(t) > study_layer(m)]
    assert not bad, f"imports that climb study's layers {[' '.join(sorted(s)) for s in STUDY_LAYERS]}: {bad}"


def test_a_type_only_import_is_no_edge():
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fptlib.study import report\n"
           "from fptlib import io\n")
    tree = ast.parse(src)
    found = [n.module for n in _runtime_nodes(tree) if isinstance(n, ast.ImportFrom)]
    assert found == ["typing", "fptlib"]


def test_no_private_name_is_imported_from_another_module():
    mods = modules()
    bad = [(m, t, n) for m, p in mods.items() for t, names in imports(m, p, set(mods)) for n in names
           if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_the_config_knows_nothing_of_models_or_data():
    mods = modules()
    # hardware: what precision `auto` means on this machine (no torch model, no task)
    assert {t for t, _ in imports("fptlib.config", mods["fptlib.config"], set(mods))} <= {"fptlib.groups",
                                                                                         "fptlib.hardware"}


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_function_is_longer_than_the_house_limit(module):
    tree = ast.parse(modules()[module].read_text())
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines in {module}: {long}"
