"""Benchmark of SVR-LSM (:func:`lsm.svr_lsm`) on the SOOP lesions at 2 mm.

Every SOOP subject with a lesion mask gets a simulated deficit (the fraction of a left
MCA sphere that is lesioned, plus noise), so that all ~1,450 masks are analysed. Cases:

* ``kernel``: time to build the kernel once from the sparse lesion matrix, the time of
  one fit on it, against the naive baseline of refitting scikit-learn's ``SVR`` in
  feature space on the sparse (dTLVC) lesion matrix, as the peers' tools do; the two
  betas are compared.
* ``full``: ``svr_lsm`` with 5,000 permutations (``--n-permutations``), ``n_jobs=2``,
  FWE, for ``lesion_volume="dtlvc"`` and the default ``"both"``: seconds per
  permutation, total time and peak resident memory of the process and its workers.

Usage::

    python benchmarks/bench_svr.py                     # both cases, 5,000 permutations
    python benchmarks/bench_svr.py --n-permutations 500 --cases kernel
    python benchmarks/bench_svr.py --data-dir /path/to/data   # default: $LSM_DATA or ../shared/data

Timings depend on the machine and its load; the script prints both.
"""

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
from _memory import PeakMemory

ROOT = Path(__file__).resolve().parents[1]
GAMMA, C, EPSILON = 5.0, 30.0, 0.1


def _load(data_dir):
    import lsm
    from lsm.datasets import load_soop
    from lsm.exceptions import DroppedSubjectsWarning, ResamplingWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        warnings.simplefilter("ignore", ResamplingWarning)
        cohort = load_soop(data_dir=data_dir, n_jobs=2).resample(2)
    # simulated deficit: lesioned fraction of a 12 mm sphere in the left MCA territory
    ijk = np.indices(cohort.shape).reshape(3, -1).T
    xyz = ijk @ cohort.affine[:3, :3].T + cohort.affine[:3, 3]
    region = np.flatnonzero(np.linalg.norm(xyz - np.array([-38.0, -10.0, 14.0]), axis=1) <= 12.0)
    load = np.array([np.isin(cohort.lesion_indices(s), region).sum() / region.size for s in cohort.subjects])
    rng = np.random.default_rng(0)
    cohort.phenotype["deficit"] = 10 * load + rng.normal(size=len(cohort))
    print(f"SOOP at 2 mm: {len(cohort)} subjects, grid {cohort.shape}, loaded in "
          f"{time.perf_counter() - t0:.0f} s (lsm {lsm.__version__}); {int((load > 0).sum())} subjects "
          "lesion the simulated region")
    return cohort


def _machine():
    import platform

    load = os.getloadavg()
    return (f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


def case_kernel(cohort, n_naive=3):
    import scipy.sparse as sp
    from sklearn.svm import SVR

    from lsm._vlsm import _candidate_matrix
    from lsm.stats import unique_patterns
    from lsm.stats._svr import fit_dual, gram_matrix, svr_kernel

    n_vox = cohort.lesion_voxel_counts
    subjects = [s for s in cohort.subjects if n_vox[s] > 0]  # dTLVC needs a lesion on the grid
    y = cohort.phenotype.loc[subjects, "deficit"].to_numpy(float)
    y = (y - y.min()) * 100 / np.ptp(y)  # the default score_range
    les, _, _ = _candidate_matrix(cohort, subjects, 0.05)
    scale = 1 / np.sqrt(n_vox.loc[subjects].to_numpy(float))
    t0 = time.perf_counter()
    patterns, inverse, counts = unique_patterns(les)
    K = svr_kernel(gram_matrix(patterns, counts, scale), "rbf", GAMMA)
    t_kernel = time.perf_counter() - t0
    fits = []
    for _ in range(5):
        t0 = time.perf_counter()
        alpha, _ = fit_dual(K, y, C, EPSILON)
        fits.append(time.perf_counter() - t0)
    t_fit = float(np.median(fits))
    beta = sp.csc_matrix(patterns).T @ (alpha * scale)
    X = (sp.diags(scale) @ sp.csr_matrix(les, dtype=np.float64)).tocsr()
    naive = []
    for _ in range(n_naive):
        t0 = time.perf_counter()
        model = SVR(kernel="rbf", gamma=GAMMA, C=C, epsilon=EPSILON).fit(X, y)
        naive.append(time.perf_counter() - t0)
    ref = np.asarray((model.dual_coef_ @ model.support_vectors_).todense()).ravel()
    diff = np.abs(beta[inverse] - ref).max() / np.abs(ref).max()
    n = len(y)
    off = K[~np.eye(n, dtype=bool)]
    gram = gram_matrix(patterns, counts)
    disjoint = float((gram[~np.eye(n, dtype=bool)] == 0).mean())
    print(f"\n{n} subjects, {les.shape[1]} voxels passing min_lesioned=0.05, {patterns.shape[1]} unique patterns")
    print(f"dTLVC RBF kernel, gamma={GAMMA}: mean off-diagonal {off.mean():.2e}, "
          f"{100 * disjoint:.0f} % of subject pairs share no tested voxel")
    print(f"{'step':<44}{'seconds':>10}")
    print(f"{'kernel from the sparse Gram (built once)':<44}{t_kernel:>10.2f}")
    print(f"{'one fit on the precomputed kernel (median 5)':<44}{t_fit:>10.3f}")
    print(f"{'one fit in feature space, sparse (naive)':<44}{np.median(naive):>10.3f}")
    print(f"speed-up per fit: {np.median(naive) / t_fit:.0f}x; max relative beta difference {diff:.1e}")


def case_full(cohort, n_perm, lesion_volume):
    import lsm
    from lsm.exceptions import LSMWarning

    with PeakMemory() as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore", LSMWarning)
        t0 = time.perf_counter()
        res = lsm.svr_lsm(cohort, "deficit", lesion_volume=lesion_volume, n_permutations=n_perm,
                          n_jobs=2, random_state=0)
        total = time.perf_counter() - t0
    tm = res.provenance["timings"]
    per = tm["permutations_s"] / n_perm
    print(f"\nsvr_lsm lesion_volume={lesion_volume!r}, {n_perm} permutations, n_jobs=2, FWE: "
          f"{res.provenance['n_subjects']} subjects, {res.n_tested} voxels, "
          f"{res.provenance['n_unique_patterns']} patterns, {res.n_significant} significant; kernel mean "
          f"off-diagonal {res.provenance['kernel_mean_off_diagonal']:.2e}")
    print(f"{'step':<44}{'value':>12}")
    for label, value in (("kernel (s)", f"{tm['kernel_s']:.2f}"), ("one fit (s)", f"{tm['fit_s']:.3f}"),
                         ("seconds per permutation (wall, 2 jobs)", f"{per:.4f}"),
                         ("permutation fits (s)", f"{tm['permutations_s']:.1f}"),
                         ("null beta maps (s)", f"{tm['null_maps_s']:.1f}"),
                         (f"total for {n_perm} permutations (s)", f"{total:.1f}"),
                         ("projected total for 5,000 (s)", f"{total - tm['permutations_s'] + 5000 * per:.1f}"),
                         ("peak memory, with workers (GiB)", f"{mem.peak / 1024:.2f}")):
        print(f"{label:<44}{value:>12}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["kernel", "full"], choices=["kernel", "full"])
    parser.add_argument("--n-permutations", type=int, default=5000)
    parser.add_argument("--lesion-volume", nargs="+", default=["dtlvc", "both"])
    parser.add_argument("--data-dir", default=os.environ.get("LSM_DATA", ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    print(_machine())
    cohort = _load(args.data_dir)
    if "kernel" in args.cases:
        case_kernel(cohort)
    if "full" in args.cases:
        for mode in args.lesion_volume:
            case_full(cohort, args.n_permutations, None if mode == "none" else mode)
    print(f"\n{_machine()}")


if __name__ == "__main__":
    main()
