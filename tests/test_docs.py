"""The API reference (docs/api.rst) lists every public function and class.

Each public name is one line of an ``autosummary`` block in docs/api.rst; this test fails,
naming what is missing, when a name is added to ``lsm._LAZY`` or to a public module's
``__all__`` without its line (the documentation build itself runs in CI).
"""

import importlib
import inspect
import re
from pathlib import Path

import pytest

import lsm

API = Path(__file__).resolve().parents[1] / "docs" / "api.rst"


def _documented():
    """Full name -> object of every autosummary entry, resolved like Sphinx does."""
    if not API.is_file():
        pytest.skip("docs/api.rst is not in this checkout")
    module, in_block, out = "lsm", False, {}
    for line in API.read_text(encoding="utf-8").splitlines():
        directive = re.match(r"\.\. (currentmodule|automodule|module)::\s*(\S+)", line)
        if directive:
            module, in_block = directive.group(2), False
        elif line.startswith(".. autosummary::"):
            in_block = True
        elif in_block and line.startswith("   ") and not line.strip().startswith(":"):
            name = line.strip()
            owner, _, attr = f"{module}.{name}".rpartition(".")
            out[f"{module}.{name}"] = getattr(importlib.import_module(owner), attr)
        elif in_block and line and not line.startswith(" "):
            in_block = False
    return out


def _public():
    """Full name -> object of every public function and class."""
    out = {}
    for name, where in lsm._LAZY.items():
        obj = getattr(lsm, name)
        if not inspect.ismodule(obj):
            out[f"lsm.{name}"] = obj
    for where in sorted(set(lsm._LAZY.values())):
        module = importlib.import_module(where)
        public = where if not where.rsplit(".", 1)[-1].startswith("_") else "lsm"
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                out.setdefault(f"{public}.{name}", obj)
    return out


def test_api_reference_lists_every_public_name():
    documented = _documented()
    assert len(documented) > 40
    ids = {id(obj) for obj in documented.values()}
    missing = sorted(name for name, obj in _public().items() if id(obj) not in ids)
    assert not missing, f"add these to docs/api.rst (one line each): {missing}"
