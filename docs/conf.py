"""Sphinx configuration of the lsm documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # document the source tree, not an installed copy

import lsm  # noqa: E402

project = "lsm"
author = "the lsm developers"
copyright = "2026, the lsm developers"
version = release = lsm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
]

# The notebooks are rendered as they are stored, never executed here: the test suite
# executes them (tests/test_notebooks.py) against the real data.
nb_execution_mode = "off"
NOTEBOOKS = HERE / "notebooks"
NOTEBOOKS.mkdir(exist_ok=True)
for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    shutil.copyfile(notebook, NOTEBOOKS / notebook.name)

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
myst_heading_anchors = 3

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False

# Broken cross-references are errors (with -W): every :func:/:class:/:mod: target inside
# lsm must exist. Names from other packages are not linked (no network at build time).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|scipy|pandas|pd|nibabel|nib|nilearn|matplotlib|joblib|statsmodels|dask)(\..*)?"),
]

# Docstrings write absolute values as |x| (readable in help()); in reST that is a
# substitution, so each one used is defined as itself.
rst_prolog = "\n".join(f".. |{v}| replace:: \\|{v}\\|" for v in ("r", "t", "z", "stat")) + "\n"

html_theme = "pydata_sphinx_theme"
html_title = f"lsm {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
