"""Importing lsm under ``python -OO`` (docstrings stripped, ``__doc__`` is None)."""

import os
import subprocess
import sys
from pathlib import Path

import lsm

SCRIPT = """
import importlib, pkgutil
import lsm
assert lsm.__doc__ is None  # -OO is in effect
import lsm.territory, lsm.clinical
names = [m.name for m in pkgutil.walk_packages(lsm.__path__, "lsm.") if m.name != "lsm.__main__"]
for name in names:
    importlib.import_module(name)
for name in lsm._LAZY:
    getattr(lsm, name)
print(len(names))
"""


def test_every_module_imports_without_docstrings():
    env = dict(os.environ, MPLBACKEND="Agg")
    # run from the repository root so that the lsm under test is imported
    root = Path(lsm.__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-OO", "-c", SCRIPT], capture_output=True, text=True,
                          cwd=root, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) >= 10  # the walk found the package's modules
