"""Shared fixtures.

Tests that need the real datasets request ``shared_data_dir`` (and carry the
``shared_data`` marker); they skip cleanly when ``LSM_DATA`` does not point at a folder
laid out as ``../shared/data``.
"""

import functools
import http.server
import os
import threading
from pathlib import Path

import matplotlib
import pytest
from hypothesis import settings

matplotlib.use("Agg")

# Property-based tests draw new random cases on every run by default (to keep finding
# bugs). CI sets HYPOTHESIS_PROFILE=ci: the same cases on every run, so that a merge is
# never blocked by a chance draw; a case found locally is pinned with @example.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

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


@pytest.fixture(scope="session")
def soop_cohort(shared_data_dir):
    """The 1,265-subject SOOP cohort at 1 mm, loaded once per test session (~20 s)."""
    import warnings

    # no fallback to lsm.load_cohort: a broken lsm.datasets must fail the tests that use it
    from lsm.datasets import load_soop
    from lsm.exceptions import DroppedSubjectsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        return load_soop(data_dir=shared_data_dir, n_jobs=2)


@pytest.fixture(scope="session")
def soop_nihss_2mm(soop_cohort):
    """SOOP subjects with an NIHSS, on the 2 mm MNI grid (91 x 109 x 91)."""
    return soop_cohort.select("nihss").resample(2)


@pytest.fixture
def http_root(tmp_path):
    """Serve ``tmp_path / 'www'`` on 127.0.0.1; yield (folder, base URL, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            requests.append(self.path)
            return super().do_GET()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
