"""The package's import graph, built with the standard library's ast: no cycles, one-way layers
(between the packages, and inside the backend), no private name imported from another module.

Every ``import`` counts, at module level, inside functions and under
``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_TOP = {"tests", "benchmarks", "scripts", "build", "dist", "runs"}
#: layer -> import prefixes it must never use (own modules as "training", third party as "torch")
FORBIDDEN = {
    "backend": ("training", "plugin", "qgis", "PyQt5", "PyQt6"),
    "training": ("plugin", "qgis", "PyQt5", "PyQt6"),
    "plugin": ("backend", "training", "torch", "transformers", "rasterio", "hnswlib", "numpy", "pydantic"),
}
#: The backend's layers, bottom first (by the name under ``backend``; "" is ``backend/__init__.py``): a
#: module imports from its own layer and the layers below it, never from one above.
BACKEND_LAYERS: list[tuple[str, ...]] = [
    ("errors", "types", "paths", "jsonsafe", "schemas", "schemas_workflows", "schemas_change"),
    ("raster", "model", "index", "binding", "regions", "loading", "temporal", "writers"),
    ("search",),
    ("indexing", "cluster"),
    ("workflows",),
    ("service",),
    ("server", "cli", "demo", "__main__", ""),
]


def package_modules(root: Path) -> dict[str, Path]:
    """Dotted module name (relative to the package root) -> file."""
    mods = {}
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if rel.parts[0] in SKIP_TOP or rel.parts[0].startswith("."):
            continue
        name = ".".join(rel.with_suffix("").parts)
        mods[name.removesuffix(".__init__") if name != "__init__" else ""] = p
    return mods


def _absolute(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    base = module.split(".") if module else []
    if not is_pkg:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def import_graph(root: Path, package: str = "geovec") -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between own modules, third-party top-level names imported by each module)."""
    mods = package_modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    external: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    t = _absolute(m, is_pkg, node.level, node.module)
                elif node.module and (node.module == package or node.module.startswith(package + ".")):
                    t = node.module.removeprefix(package).lstrip(".")
                else:
                    external[m].add((node.module or "").split(".")[0])
                    continue
                targets = [t] + [f"{t}.{a.name}".lstrip(".") for a in node.names]
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == package or a.name.startswith(package + "."):
                        targets.append(a.name.removeprefix(package).lstrip("."))
                    else:
                        external[m].add(a.name.split(".")[0])
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t in mods and t != m and not m.startswith(t + "."):
                    edges[m].add(t)
    return edges, external


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def layer_violations(edges: dict[str, set[str]], external: dict[str, set[str]]) -> list[str]:
    bad = []
    for m in sorted(edges):
        layer = m.split(".")[0]
        for prefix in FORBIDDEN.get(layer, ()):
            own = [t for t in edges[m] if t == prefix or t.startswith(prefix + ".")]
            bad += [f"{m} imports {t}" for t in own] + [f"{m} imports {prefix}" for x in external[m] if x == prefix]
    return bad


def backend_layer(module: str) -> int | None:
    """The index of ``module``'s layer in :data:`BACKEND_LAYERS` (None: not a backend module, or unplaced)."""
    parts = module.split(".")
    if parts[0] != "backend":
        return None
    name = parts[1] if len(parts) > 1 else ""
    return next((i for i, names in enumerate(BACKEND_LAYERS) if name in names), None)


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Backend imports that run up a layer, and backend modules placed in no layer."""
    bad = []
    for m in sorted(edges):
        if not (m == "backend" or m.startswith("backend.")):
            continue
        mine = backend_layer(m)
        if mine is None:
            bad.append(f"{m} is in no layer of BACKEND_LAYERS")
            continue
        for t in sorted(edges[m]):
            theirs = backend_layer(t)
            if theirs is not None and theirs > mine:
                bad.append(f"{m} (layer {mine}) imports {t} (layer {theirs})")
    return bad


def private_imports(root: Path, package: str = "geovec") -> list[str]:
    """``from X import _name`` where X is another module of the package (``_name`` stays in its module)."""
    mods = package_modules(root)
    bad = []
    for m, path in sorted(mods.items()):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                t = _absolute(m, path.name == "__init__.py", node.level, node.module)
            elif node.module and (node.module == package or node.module.startswith(package + ".")):
                t = node.module.removeprefix(package).lstrip(".")
            else:
                continue
            bad += [f"{m} imports {t}.{a.name}".replace(" .", " ") for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__") and t != m]
    return bad


def test_the_package_has_no_import_cycle() -> None:
    edges, _ = import_graph(ROOT)
    assert {"backend.cli", "backend.index.store", "training.trainer", "plugin"} <= set(edges)
    assert cycles(edges) == []


def test_layers_import_one_way() -> None:
    edges, external = import_graph(ROOT)
    assert "backend.errors" in edges["training.trainer"]  # training builds on the backend ...
    assert layer_violations(edges, external) == []  # ... never the reverse; no qgis in backend/


def test_backend_layers_import_downward_only() -> None:
    edges, _ = import_graph(ROOT)
    assert "backend.search.run" in edges and "backend.errors" in edges["backend.search.run"]
    assert upward_imports(edges) == []


def test_no_private_name_is_imported_across_modules() -> None:
    assert private_imports(ROOT) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"backend/__init__.py": "", "backend/a.py": "from . import b\n", "backend/b.py": "def f():\n    from .a import x\n"},
     [["backend.a", "backend.b"]]),
    ({"backend/__init__.py": "", "backend/a.py": "from .sub.c import y\n", "backend/sub/__init__.py": "",
      "backend/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import z\n"},
     [["backend.a", "backend.sub.c"]]),
    ({"backend/__init__.py": "", "backend/a.py": "import geovec.backend.b\n", "backend/b.py": "import os\n"}, []),
])
def test_cycle_finder_sees_lazy_and_type_checking_imports(tmp_path: Path, files: dict[str, str],
                                                          expected: list[list[str]]) -> None:
    edges, _ = import_graph(_write(tmp_path, files))
    assert cycles(edges) == expected


def test_layer_check_catches_backend_importing_training_or_qgis(tmp_path: Path) -> None:
    root = _write(tmp_path, {"backend/__init__.py": "", "backend/cli.py": "def f():\n    from ..training.cli import g\n",
                             "backend/gui.py": "from qgis.core import QgsProject\n", "training/__init__.py": "",
                             "training/cli.py": "from ..backend import cli\n", "plugin/__init__.py": "import numpy\n"})
    edges, external = import_graph(root)
    assert layer_violations(edges, external) == ["backend.cli imports training.cli", "backend.gui imports qgis",
                                                 "plugin imports numpy"]


def test_layer_check_catches_an_upward_or_unplaced_backend_module(tmp_path: Path) -> None:
    root = _write(tmp_path, {"backend/__init__.py": "", "backend/search/__init__.py": "",
                             "backend/search/run.py": "def f():\n    from ..workflows import ask\n",
                             "backend/workflows/__init__.py": "", "backend/workflows/ask.py": "from ..search import run\n",
                             "backend/newthing.py": "from .errors import x\n", "backend/errors.py": ""})
    edges, _ = import_graph(root)
    assert upward_imports(edges) == ["backend.newthing is in no layer of BACKEND_LAYERS",
                                     "backend.search.run (layer 2) imports backend.workflows (layer 4)",
                                     "backend.search.run (layer 2) imports backend.workflows.ask (layer 4)"]


def test_private_check_catches_a_private_name_from_another_module_only(tmp_path: Path) -> None:
    root = _write(tmp_path, {"backend/__init__.py": "", "backend/a.py": "from .b import _hidden, shown\n",
                             "backend/b.py": "from geovec.backend.a import __version__\n_hidden = shown = 1\n",
                             "training/__init__.py": "", "training/c.py": "from geovec.backend.b import _x\n"})
    assert private_imports(root) == ["backend.a imports backend.b._hidden", "training.c imports backend.b._x"]
