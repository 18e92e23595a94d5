"""The package's imports run one way (data -> models -> plug-ins -> cell -> grid -> tracking -> report): no cycle
among proex's modules, function-level imports included, and Ray, MLflow and Optuna only in `proex/infra/`."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "proex"
INFRA_ONLY = {"ray", "mlflow", "optuna"}


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every module an import statement anywhere in the file names (relative imports made absolute)."""
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from . import x` may name a module
    return out


def graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    edges = {}
    for mod, path in files.items():
        targets = set()
        for name in _imports(path):
            while name and name not in files:  # `proex.models.MODELS` -> `proex.models`
                name = name.rpartition(".")[0]
            if name and name != mod and not mod.startswith(name + "."):  # a package's own __init__ is not a cycle
                targets.add(name)
        edges[mod] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    edges = graph()
    # packages import their own modules; a module importing its package's __init__ back would be a cycle
    edges = {m: {t for t in ts if not (m.startswith(t + ".") or t.startswith(m + "."))} for m, ts in edges.items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    edges = graph()
    edges["proex.data.batches"] = edges["proex.data.batches"] | {"proex.models.base"}  # the old layout
    assert find_cycle(edges) is not None


def test_ray_mlflow_optuna_only_in_infra():
    for path in ROOT.rglob("*.py"):
        if "infra" in path.relative_to(ROOT).parts:
            continue
        bad = {n.split(".")[0] for n in _imports(path)} & INFRA_ONLY
        assert not bad, f"{path.relative_to(ROOT.parent)} imports {sorted(bad)} outside proex/infra/"


def test_report_orders_rows_without_importing_torch():
    """`proex report` on a folder or a tracking store is pandas work: ordering rows by model and plug-in reads
    the names from proex.names, not the torch modules that register them."""
    import subprocess
    import sys

    code = "import sys, proex.report; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT.parent)},
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def folder_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each sub-package (proex.data, proex.models, ...) as one node and each top-level module
    as its own: a folder's modules may import one another, but no loop may run between folders and modules."""

    def node(mod: str) -> str:
        parts = mod.split(".")
        is_package = (ROOT / "/".join(parts[1:2])).is_dir() if len(parts) > 1 else False
        return ".".join(parts[:2]) if is_package else mod

    out: dict[str, set[str]] = {}
    for mod, targets in edges.items():
        out.setdefault(node(mod), set()).update(node(t) for t in targets if node(t) != node(mod))
    return out


def test_no_loop_between_folders():
    cycle = find_cycle(folder_graph(graph()))
    assert cycle is None, "import loop between folders: " + " -> ".join(cycle)


def test_the_folder_loop_finder_finds_the_old_kernels_loop():
    """The layout before the fast paths moved beside their callers: a top-level kernels module imported
    data/batches.py while data/sampling.py imported it."""
    edges = graph()
    edges["proex.kernels"] = {"proex.data.batches"}
    edges["proex.data.sampling"] = edges["proex.data.sampling"] | {"proex.kernels"}
    assert find_cycle(edges) is None  # no loop between modules...
    assert find_cycle(folder_graph(edges)) is not None  # ...but one between folders
