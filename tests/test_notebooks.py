"""Execute every notebook in notebooks/ top to bottom on the real data (nbclient).

The notebooks read the data folder from ``LSM_DATA``; here it points at the shared data
(the ``shared_data_dir`` fixture skips these tests without it). Figures are rendered with
the notebook's inline backend, as a user would see them, so plotting errors fail the test.
"""

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_notebooks_exist_and_are_stripped():
    """The three tutorial notebooks are committed without outputs."""
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_vlsm.ipynb", "02_territory_lesion_load.ipynb", "03_volume_score.ipynb"]
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Environment for the kernel: LSM_DATA, and a ``python3`` kernelspec running this
    interpreter (created in a temporary JUPYTER_PATH when the environment has none)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager

    env = {}
    specs = KernelSpecManager().find_kernel_specs()
    if "python3" not in specs:
        root = tmp_path_factory.mktemp("kernels")
        spec_dir = root / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python",
        }))
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("JUPYTER_PATH")]))
    return env


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, shared_data_dir, kernel_env, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws every figure
    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []))
    assert images >= 3, f"{path.name}: only {images} figures were drawn"
