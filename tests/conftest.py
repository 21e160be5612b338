"""Shared fixtures.

Tests that need the real datasets request ``shared_data_dir`` (and carry the
``shared_data`` marker); they skip cleanly when ``LSM_DATA`` does not point at a folder
laid out as ``../shared/data``.
"""

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

_REPO = Path(__file__).resolve().parents[1]


def _find_shared_data():
    candidates = []
    if os.environ.get("LSM_DATA"):
        candidates.append(Path(os.environ["LSM_DATA"]))
    candidates.append(_REPO.parent / "shared" / "data")
    for cand in candidates:
        if (cand / "README.md").exists() and (cand / "soop").is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_data_dir():
    """Path of the real-data folder, or skip the test when it is absent."""
    path = _find_shared_data()
    if path is None:
        pytest.skip("real data not available: set LSM_DATA to a folder laid out as ../shared/data")
    return path


def pytest_collection_modifyitems(config, items):
    # A test using the real data is marked so `-m "not shared_data"` runs the core suite.
    for item in items:
        if "shared_data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)
