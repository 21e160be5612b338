"""Time the result layer (lsm.results / lsm.report) on SOOP-sized grids.

Synthetic maps (no data needed): a 1 mm grid of the SOOP lesion masks (157x189x136) and
its 2 mm counterpart, ~150k / ~19k tested voxels, a few planted clusters of significant
voxels. Territory labelling uses the arterial atlas when LSM_DATA points at it.

    python benchmarks/bench_results.py [--skip-report]

Prints one row per operation: seconds (wall clock, best of ``--repeat``), and the peak
resident memory of the process at the end.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from lsm.results import VLSMResult  # noqa: E402


def synthetic(shape, voxel_mm, seed=0):
    rng = np.random.default_rng(seed)
    affine = np.array([[-voxel_mm, 0, 0, 78.0], [0, voxel_mm, 0, -112.0],
                       [0, 0, voxel_mm, -50.0], [0, 0, 0, 1]])
    ijk = np.indices(shape).reshape(3, -1).T
    centre = np.array(shape) / 2
    radius = np.array(shape) * np.array([0.18, 0.2, 0.2])
    tested = (((ijk - centre) / radius) ** 2).sum(axis=1) <= 1.0
    z_vol = ndimage.gaussian_filter(rng.normal(size=shape), 3.0 / voxel_mm)
    z_vol /= z_vol.std()
    z = z_vol.reshape(-1)[tested]
    n_tested = int(tested.sum())
    stat = z * 1.05
    p = np.clip(np.abs(z) / 10, 0, 1)
    significant = np.abs(z) > 3.0
    return dict(
        affine=affine, shape=shape, tested=tested, stat=stat, z=z, p=p,
        p_corrected=np.where(significant, 0.01, 1.0), significant=significant,
        n_lesioned=rng.integers(0, 900, size=int(np.prod(shape))), threshold=3.0,
        null_distribution=np.abs(rng.normal(size=1000)) + 2, observed=float(np.abs(z).max()),
        null_statistic="max_abs_z",
        params={"score": "nihss", "method": "ttest", "correction": "fwe", "alpha": 0.05,
                "alternative": "two-sided", "n_permutations": 1000, "random_state": 0},
        provenance={"n_subjects": 944, "subjects": [f"sub-{i}" for i in range(944)],
                    "excluded": [], "n_voxels_tested": n_tested},
    ), n_tested


def timed(func, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-report", action="store_true")
    args = parser.parse_args()
    data_dir = os.environ.get("LSM_DATA")
    rows = []
    for label, shape, vox in (("2 mm", (79, 95, 68), 2.0), ("1 mm", (157, 189, 136), 1.0)):
        kwargs, n_tested = synthetic(shape, vox)
        t, res = timed(lambda: VLSMResult.from_arrays(**kwargs), args.repeat)
        rows.append((label, "from_arrays", t, f"{n_tested} tested"))
        t, df = timed(lambda: res.to_dataframe(), args.repeat)
        rows.append((label, "to_dataframe()", t, f"{len(df)} rows"))
        t, cl = timed(lambda: res.clusters(atlas=None), args.repeat)
        rows.append((label, "clusters(atlas=None)", t,
                     f"{len(cl)} clusters, {res.n_significant} significant voxels"))
        if data_dir:
            from lsm.results import _AtlasLookup

            _AtlasLookup._cache.clear()
            t, _ = timed(lambda: res.clusters(data_dir=data_dir), 1)
            rows.append((label, "clusters(atlas) cold", t, "loads levels 1+2, 1 mm"))
            t, _ = timed(lambda: res.clusters(data_dir=data_dir), args.repeat)
            rows.append((label, "clusters(atlas) warm", t, ""))
        with tempfile.TemporaryDirectory() as tmp:
            t, out = timed(lambda: res.save(Path(tmp) / "r", overwrite=True, data_dir=data_dir,
                                            atlas="arterial" if data_dir else None),
                           args.repeat)
            size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
            rows.append((label, "save()", t, f"{size:.1f} MB on disk"))
            t, _ = timed(lambda: VLSMResult.load(out), args.repeat)
            rows.append((label, "load()", t, ""))
            if not args.skip_report:
                t, path = timed(lambda: res.to_html(Path(tmp) / "r.html", overwrite=True,
                                                    data_dir=data_dir,
                                                    atlas="arterial" if data_dir else None), 1)
                rows.append((label, "to_html()", t, f"{path.stat().st_size / 1e6:.2f} MB"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'grid':<6}{'operation':<24}{'seconds':>10}  note")
    print("-" * 72)
    for label, op, t, note in rows:
        print(f"{label:<6}{op:<24}{t:>10.3f}  {note}")
    print("-" * 72)
    print(f"peak resident memory: {peak:.0f} MB; python {sys.version.split()[0]}; "
          f"{os.cpu_count()} CPUs (timings are noisy on a shared machine)")


if __name__ == "__main__":
    main()
