"""Time the dataset fetch path: download + sha256 check of the SOOP and LESYMAP files.

Serves a copy of the real data from a local http.server (127.0.0.1), so the numbers
measure lsm/pooch overhead (one HTTP request and one sha256 per file) rather than the
internet. Usage::

    LSM_DATA=../shared/data python benchmarks/bench_fetch.py

Prints one row per (dataset, n_jobs): files, MB, seconds for a cold fetch, seconds for a
warm call (all files present) and for ``verify=True`` (re-hash everything).
"""

import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from lsm.datasets._fetch import dataset_files, fetch_dataset


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(folder):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main():
    shared = Path(os.environ.get("LSM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (shared / "soop").is_dir():
        raise SystemExit(f"no data in {shared}; set LSM_DATA")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        www = tmp / "www"
        for name in ("soop", "lesymap"):
            shutil.copytree(shared / name, www / name)
        server, url = _serve(www)
        try:
            for dataset in ("lesymap", "soop"):
                files = dataset_files(dataset)
                mb = sum(e["size"] for e in files.values()) / 1e6
                for n_jobs in (1, 8):
                    cache = tmp / f"cache-{dataset}-{n_jobs}"
                    t0 = time.perf_counter()
                    fetch_dataset(dataset, data_dir=cache, url=url, n_jobs=n_jobs, verbose=0)
                    cold = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    fetch_dataset(dataset, data_dir=cache, url=url)
                    warm = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    fetch_dataset(dataset, data_dir=cache, url=url, verify=True)
                    verify = time.perf_counter() - t0
                    rows.append((dataset, n_jobs, len(files), mb, cold, warm, verify))
        finally:
            server.shutdown()
    print(f"{'dataset':<8} {'n_jobs':>6} {'files':>6} {'MB':>6} {'cold s':>8} {'warm s':>8} {'verify s':>9}")
    for dataset, n_jobs, n, mb, cold, warm, verify in rows:
        print(f"{dataset:<8} {n_jobs:>6} {n:>6} {mb:>6.1f} {cold:>8.2f} {warm:>8.3f} {verify:>9.2f}")


if __name__ == "__main__":
    main()
