"""lsm.stats is the array-only engine: it must not import image libraries or upper layers."""

import ast
import subprocess
import sys
from pathlib import Path

import lsm

STATS_DIR = Path(lsm.__file__).parent / "stats"
FORBIDDEN = ("nibabel", "nilearn", "pandas", "matplotlib")
UPPER_LAYERS = ("cohort", "datasets", "results", "vlsm", "territory", "clinical", "plotting",
                "report", "cli", "simulate", "dictionary")


def _imported_modules(path):
    """Absolute module names imported by a file (relative imports resolved in lsm.stats)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
            else:
                base = ["lsm", "stats"][: 3 - node.level] if node.level <= 2 else []
                names.append(".".join(base + ([node.module] if node.module else [])))
    return names


def test_static_scan_of_lsm_stats_imports():
    files = sorted(STATS_DIR.glob("*.py"))
    assert len(files) >= 5
    offenders = []
    for path in files:
        for name in _imported_modules(path):
            top = name.split(".")[0]
            if top in FORBIDDEN:
                offenders.append(f"{path.name}: {name}")
            parts = name.split(".")
            if top == "lsm" and len(parts) > 1 and parts[1] in UPPER_LAYERS:
                offenders.append(f"{path.name}: {name}")
    assert not offenders, f"lsm.stats imports a forbidden module: {offenders}"


def test_scan_resolves_relative_imports():
    # The scan must see through "from .. import x" and "from ..cohort import y".
    sample = STATS_DIR / "_permutation.py"
    names = _imported_modules(sample)
    assert "lsm._validation" in names and "lsm.exceptions" in names


def test_importing_lsm_stats_does_not_load_image_libraries():
    code = (
        "import sys, numpy as np, scipy.sparse as sp\n"
        "import lsm.stats\n"
        "r = lsm.stats.voxelwise_test(sp.random(12, 8, density=0.5, random_state=0, format='csr'),"
        " np.arange(12.0), n_permutations=5, random_state=0, min_lesioned=2)\n"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
