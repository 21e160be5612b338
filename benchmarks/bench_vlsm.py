"""Benchmark of the VLSM engine on SOOP NIHSS (944 subjects).

Cases (all with min_lesioned = 5 % of the subjects):

* ``ttest2mm``: t-test, 2 mm, 1,000 permutations, lsm (n_jobs=1 and 2) against
  ``nilearn.mass_univariate.permuted_ols`` on the same lesion matrix (n_jobs=1), in this
  process; checks that the observed t-maps agree to 1e-6. Both are timed after a short
  warm-up call (lsm: the median of 3 runs). nilearn's dense products use every BLAS thread even at n_jobs=1, while
  lsm's sparse products at n_jobs=1 use one core. nilearn runs two ways: the VLSM
  formulation (each voxel's lesion status a tested variable, the score the target) and
  its fastest formulation for this test (the score tested, one target per voxel).
* ``bm2mm``: Brunner-Munzel, 2 mm, 1,000 permutations, n_jobs=2; checks the observed map
  against ``scipy.stats.brunnermunzel`` at every tested voxel.
* ``ttest1mm``: t-test, 1 mm, 10,000 permutations, n_jobs=2, with the peak resident
  memory of this process and its workers.

Usage::

    python benchmarks/bench_vlsm.py                       # every case
    python benchmarks/bench_vlsm.py --cases ttest2mm bm2mm
    python benchmarks/bench_vlsm.py --data-dir /path/to/data   # default: $LSM_DATA or ../shared/data

Timings depend on the machine and on its load; the script prints both.
"""

import argparse
import os
import resource
import time
import warnings
from pathlib import Path

import numpy as np
from _memory import PeakMemory

ROOT = Path(__file__).resolve().parents[1]


def _timed(func, *args, **kwargs):
    t0 = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - t0


def _timed_median(func, *args, repeat=3, **kwargs):
    """The median of ``repeat`` timings (short runs vary by +-30 % on a shared VM)."""
    runs = [_timed(func, *args, **kwargs) for _ in range(repeat)]
    return runs[0][0], float(np.median([t for _, t in runs]))


def _load(data_dir):
    import lsm
    from lsm.exceptions import DroppedSubjectsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        from lsm.datasets import load_soop

        cohort, dt = _timed(lambda: load_soop(data_dir=data_dir, n_jobs=2).select("nihss"))
    print(f"loaded SOOP NIHSS: {len(cohort)} subjects, grid {cohort.shape} in {dt:.0f} s "
          f"(lsm {lsm.__version__})")
    return cohort


def _machine():
    import platform

    load = os.getloadavg()
    return (f"{platform.node()} {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


def case_ttest2mm(cohort2, n_perm, rows, nilearn_orientations, nilearn_perm):
    from nilearn.mass_univariate import permuted_ols

    from lsm.stats import voxelwise_test

    les = cohort2.lesion_matrix()
    y = cohort2.phenotype["nihss"].to_numpy(float)
    kw = dict(method="ttest", n_permutations=n_perm, min_lesioned=0.05, random_state=0)
    # warm-up calls (imports, first-touch page faults, worker start-up) are not timed, for
    # lsm and nilearn alike
    voxelwise_test(les, y, **{**kw, "n_permutations": 10}, n_jobs=1)
    voxelwise_test(les, y, **{**kw, "n_permutations": 10}, n_jobs=2)
    res1, t1 = _timed_median(voxelwise_test, les, y, n_jobs=1, **kw)
    res2, t2 = _timed_median(voxelwise_test, les, y, n_jobs=2, **kw)
    assert np.array_equal(res1.null_distribution, res2.null_distribution)
    n_tested = int(res1.tested.sum())
    info = f"{n_tested} voxels, {res1.n_unique_patterns} patterns"
    rows.append(("t-test 2 mm", n_perm, "lsm engine", 1, t1, None, info))
    rows.append(("t-test 2 mm", n_perm, "lsm engine", 2, t2, None, ""))

    dense = les.tocsc()[:, res1.tested].toarray().astype(np.float64)
    for orientation in nilearn_orientations:
        if orientation == "lesions-tested":
            # VLSM as a regression of the score on each voxel's lesion status.
            call = dict(tested_vars=dense, target_vars=y[:, None])
        else:
            # nilearn's usual fast path: one regressor (the score), one target per voxel.
            call = dict(tested_vars=y[:, None], target_vars=dense)
        n_nil = nilearn_perm.get(orientation, n_perm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            permuted_ols(model_intercept=True, n_perm=10, two_sided_test=True, random_state=0,
                         n_jobs=1, output_type="dict", verbose=0, **call)  # warm-up
            out, tn = _timed(permuted_ols, model_intercept=True, n_perm=n_nil,
                             two_sided_test=True, random_state=0, n_jobs=1,
                             output_type="dict", verbose=0, **call)
        t_nil = np.asarray(out["t"]).reshape(-1)
        err = np.max(np.abs(t_nil - res1.stat) / np.maximum(np.abs(res1.stat), 1.0))
        note = f"max rel diff of observed t vs lsm {err:.1e}"
        if n_nil != n_perm:
            note += f"; time extrapolated linearly from {n_nil} permutations ({tn:.1f} s)"
            tn *= n_perm / n_nil
        rows.append(("t-test 2 mm", n_perm, f"nilearn ({orientation})", 1, tn, tn / t1, note))
        assert err < 1e-6, err


def case_bm2mm(cohort2, n_perm, rows, check_all):
    import scipy.stats as ss

    from lsm.stats import voxelwise_test

    les = cohort2.lesion_matrix()
    y = cohort2.phenotype["nihss"].to_numpy(float)
    res, t = _timed(voxelwise_test, les, y, method="brunner_munzel", n_permutations=n_perm,
                    min_lesioned=0.05, random_state=0, n_jobs=2)
    cols = np.flatnonzero(res.tested)
    if not check_all:
        cols = np.random.default_rng(0).choice(cols, 2000, replace=False)
    csc = les.tocsc()
    pos = np.searchsorted(np.flatnonzero(res.tested), cols)
    ref = np.empty(cols.size)
    for k, j in enumerate(cols):
        x = csc[:, j].toarray().ravel() > 0
        ref[k] = ss.brunnermunzel(y[~x], y[x]).statistic
    err = np.max(np.abs(res.stat[pos] - ref) / np.maximum(np.abs(ref), 1.0))
    rows.append(("Brunner-Munzel 2 mm", n_perm, "lsm engine", 2, t, None,
                 f"{np.unique(y).size} tied NIHSS levels; max rel diff vs scipy "
                 f"({cols.size} voxels) {err:.1e}"))
    assert err < 1e-8, err


def case_ttest1mm(cohort1, n_perm, rows, method="ttest"):
    from lsm.stats import voxelwise_test

    les = cohort1.lesion_matrix()
    y = cohort1.phenotype["nihss"].to_numpy(float)
    with PeakMemory() as mem:
        res, t = _timed(voxelwise_test, les, y, method=method, n_permutations=n_perm,
                        min_lesioned=0.05, random_state=0, n_jobs=2)
    rows.append((f"{method} 1 mm", n_perm, "lsm engine", 2, t, None,
                 f"{int(res.tested.sum())} voxels, {res.n_unique_patterns} patterns, "
                 f"{les.nnz / 1e6:.0f}M lesioned voxels; peak RSS {mem.peak / 1024:.2f} GiB "
                 f"(process + workers; {mem.baseline / 1024:.2f} GiB before the call)"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LSM_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--cases", nargs="+", default=["ttest2mm", "bm2mm", "ttest1mm"],
                        choices=["ttest2mm", "bm2mm", "ttest1mm", "bm1mm"])
    parser.add_argument("--n-permutations", type=int, default=1000, help="2 mm cases")
    parser.add_argument("--n-permutations-1mm", type=int, default=10000)
    parser.add_argument("--nilearn", nargs="*", default=["lesions-tested", "score-tested"],
                        choices=["lesions-tested", "score-tested"],
                        help="orientations of the nilearn call to time")
    parser.add_argument("--nilearn-permutations", type=int, default=None,
                        help="permutations actually run by nilearn in the slow 'lesions-tested' "
                             "orientation (time extrapolated linearly; default: all)")
    parser.add_argument("--bm-check-all", action="store_true",
                        help="check every tested voxel against scipy (default: 2,000)")
    args = parser.parse_args(argv)

    print("machine:", _machine())
    cohort1 = _load(args.data_dir)
    rows = []
    if {"ttest2mm", "bm2mm"} & set(args.cases):
        cohort2, dt = _timed(cohort1.resample, 2)
        print(f"resampled to 2 mm {cohort2.shape} in {dt:.0f} s")
        if "ttest2mm" in args.cases:
            nil_perm = {}
            if args.nilearn_permutations:
                nil_perm["lesions-tested"] = args.nilearn_permutations
            case_ttest2mm(cohort2, args.n_permutations, rows, args.nilearn, nil_perm)
        if "bm2mm" in args.cases:
            case_bm2mm(cohort2, args.n_permutations, rows, args.bm_check_all)
        del cohort2
    if "ttest1mm" in args.cases:
        case_ttest1mm(cohort1, args.n_permutations_1mm, rows)
    if "bm1mm" in args.cases:
        case_ttest1mm(cohort1, args.n_permutations, rows, method="brunner_munzel")

    print()
    print("machine after the runs:", _machine())
    header = f"{'case':<22}{'perms':>7}  {'implementation':<26}{'n_jobs':>6}{'time (s)':>10}{'nilearn/lsm':>12}  notes"
    print(header)
    print("-" * len(header))
    for case, n_perm, impl, n_jobs, t, ratio, note in rows:
        r = f"{ratio:.1f}x" if ratio is not None else ""
        print(f"{case:<22}{n_perm:>7}  {impl:<26}{n_jobs:>6}{t:>10.2f}{r:>12}  {note}")
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\nmax RSS of this process over the whole script (getrusage): {usage:.2f} GiB")


if __name__ == "__main__":
    main()
