"""One-way data flow: every module of lsm belongs to a layer and never imports a higher one.

Layers, lowest first::

    base          lsm.exceptions, lsm._utils, lsm._validation, lsm._docs
    engine        lsm.stats (arrays only: no nibabel, nilearn, pandas, matplotlib)
    data          images, cohorts, datasets, writers, simulation, registration
    analysis      analyses and their result objects
    presentation  plots, report, command line, demo

A module-level import never reaches a higher layer. An import inside a function (a lazy
import) may reach the presentation layer only (a result's ``plot()`` or ``to_html()``),
never the layers in between.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lsm

PACKAGE_DIR = Path(lsm.__file__).parent
STATS_DIR = PACKAGE_DIR / "stats"
FORBIDDEN_IN_ENGINE = ("nibabel", "nilearn", "pandas", "matplotlib")

LAYERS = ("base", "engine", "data", "analysis", "presentation")
#: module name prefix -> layer (the longest matching prefix wins)
LAYER_OF = {
    "lsm": "base",  # the package __init__: a lazy name table only
    "lsm.exceptions": "base",
    "lsm._utils": "base",
    "lsm._validation": "base",
    "lsm._docs": "base",
    "lsm.stats": "engine",
    "lsm._images": "data",
    "lsm._derivatives": "data",
    "lsm._result": "data",  # the result contract: every result, registration's included
    "lsm.dictionary": "data",
    "lsm.data_dictionary": "data",
    "lsm.cohort": "data",
    "lsm.datasets": "data",
    "lsm.simulate": "data",
    "lsm.registration": "data",
    "lsm.results": "analysis",
    "lsm._vlsm": "analysis",
    "lsm.territory": "analysis",
    "lsm.clinical": "analysis",
    "lsm._svr": "analysis",
    "lsm._svr_result": "analysis",
    "lsm.predict": "analysis",
    "lsm.localization": "analysis",
    "lsm.plotting": "presentation",
    "lsm.report": "presentation",
    "lsm.cli": "presentation",
    "lsm.demo": "presentation",
    "lsm.__main__": "presentation",
}


def _module_name(path):
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module):
    best = None
    for prefix in LAYER_OF:
        # "lsm" (the package __init__) names itself only, never its submodules
        if module == prefix or (prefix != "lsm" and module.startswith(prefix + ".")):
            if best is None or len(prefix) > len(best):
                best = prefix
    return None if best is None else LAYER_OF[best]


def _imports(path):
    """(absolute module name, lazy) for every import of a file, relative ones resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lazy_nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy_nodes.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        lazy = id(node) in lazy_nodes
        if isinstance(node, ast.Import):
            out.extend((alias.name, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if node.module is None or node.level and not node.module:
                # "from . import x": each name may be a submodule
                out.extend((f"{base}.{alias.name}", lazy) for alias in node.names)
            else:
                out.append((base, lazy))
    return out


def _package_files():
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    missing = [_module_name(p) for p in _package_files() if _layer(_module_name(p)) is None]
    assert not missing, f"Assign these modules a layer in tests/test_layering.py: {missing}"


def _against_flow(module, imports):
    """Imports of ``module`` that go against the data flow."""
    rank = LAYERS.index(_layer(module))
    offenders = []
    for name, lazy in imports:
        if name.split(".")[0] != "lsm" or name == "lsm":
            continue
        target = _layer(name)
        if target is None:
            continue
        if LAYERS.index(target) > rank and not (lazy and target == "presentation"):
            offenders.append(f"{module} ({_layer(module)}) imports {name} ({target})"
                             + (" inside a function" if lazy else ""))
    return offenders


def test_no_module_imports_a_higher_layer():
    offenders = []
    for path in _package_files():
        offenders += _against_flow(_module_name(path), _imports(path))
    assert not offenders, "Imports against the data flow:\n" + "\n".join(offenders)


def test_rule_flags_upward_and_allows_lazy_presentation():
    assert _against_flow("lsm.cohort", [("lsm.territory", False)])
    assert _against_flow("lsm.cohort", [("lsm.territory", True)])  # lazy analysis import
    assert _against_flow("lsm.stats._core", [("lsm.cohort", False)])
    assert not _against_flow("lsm.results", [("lsm.plotting", True)])  # result.plot()
    assert _against_flow("lsm.results", [("lsm.plotting", False)])
    assert not _against_flow("lsm.territory", [("lsm.cohort", False), ("numpy", False)])
    assert _layer("lsm") == "base" and _layer("lsm.some_new_module") is None  # must be assigned


def test_engine_imports_no_image_or_table_library():
    offenders = []
    for path in sorted(STATS_DIR.glob("*.py")):
        for name, _ in _imports(path):
            if name.split(".")[0] in FORBIDDEN_IN_ENGINE:
                offenders.append(f"{path.name}: {name}")
    assert not offenders, f"lsm.stats imports a forbidden module: {offenders}"


@pytest.mark.parametrize("source, expected", [
    ("from .. import x\n", "lsm.x"),
    ("from ..cohort import y\n", "lsm.cohort"),
    ("from ._core import z\n", "lsm.stats._core"),
])
def test_scan_resolves_relative_imports(tmp_path, monkeypatch, source, expected):
    fake = STATS_DIR / "_layering_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    assert (expected, False) in _imports(fake)


def test_importing_lsm_stats_does_not_load_image_libraries():
    code = (
        "import sys, numpy as np, scipy.sparse as sp\n"
        "import lsm.stats\n"
        "r = lsm.stats.voxelwise_test(sp.random(12, 8, density=0.5, random_state=0, format='csr'),"
        " np.arange(12.0), n_permutations=5, random_state=0, min_lesioned=2)\n"
        f"print(sorted(m for m in {FORBIDDEN_IN_ENGINE!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
