"""Calibration of the family-wise error rate on real anatomy (SOOP, no true effect).

Each null dataset is the SOOP cohort at 2 mm (the 944 subjects with an admission NIHSS)
with the NIHSS values shuffled across subjects: the real lesion anatomy and the real,
heavily tied score distribution, but no lesion-score association. Every dataset is
analysed with ``correction="fwe"`` (max statistic, ``--n-permutations`` permutations) by

- ``ttest``: pooled-variance t-test;
- ``brunner_munzel``: Brunner-Munzel (mid-ranks for the tied NIHSS), maxima over z;
- ``regression``: OLS with lesion volume as covariate (``lesion_volume="covariate"``,
  Freedman-Lane permutations).

A dataset is a family-wise false positive when any voxel is significant at alpha. The
family-wise false positive rate should lie within Monte Carlo error of alpha: the script
prints, per method, the rate with its exact (Clopper-Pearson) 95 % interval.

    python benchmarks/calibration_soop.py                       # 200 datasets x 500 permutations
    python benchmarks/calibration_soop.py --n-datasets 20       # quick look
    nohup python benchmarks/calibration_soop.py > calib.log &   # the full run, in the background
    python benchmarks/calibration_soop.py --summary             # the table of what is done so far

It is long (on 2 shared cores, 500 permutations: about 2 s per t-test or regression
dataset and about 13 s per Brunner-Munzel dataset, plus 1-3 minutes to read SOOP once), so every finished analysis is appended to a JSON-lines file
(``--out``) and a restarted run skips what is already there. ``--methods`` runs a subset;
methods run one after the other (all datasets of the first, then the next...).
Needs the SOOP data (``LSM_DATA`` or ``--data-dir``).
"""

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

METHODS = {
    "ttest": {"method": "ttest"},
    "regression": {"method": "regression", "lesion_volume": "covariate"},
    "brunner_munzel": {"method": "brunner_munzel"},
}


def _data_dir(arg):
    for cand in (arg, os.environ.get("LSM_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if cand and (Path(cand) / "soop" / "participants.tsv").is_file():
            return Path(cand)
    sys.exit("SOOP data not found: pass --data-dir or set LSM_DATA (a folder with soop/).")


def soop_2mm(data_dir, cache_dir, n_jobs):
    """SOOP subjects with NIHSS on the 2 mm MNI grid (cached as a pickle outside the repo)."""
    cache = Path(cache_dir) / "soop_nihss_2mm.pkl"
    if cache.exists():
        with open(cache, "rb") as fh:
            return pickle.load(fh)
    import lsm

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = lsm.datasets.load_soop(data_dir=data_dir, n_jobs=n_jobs).resample(2).select("nihss")
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache, "wb") as fh:
        pickle.dump(cohort, fh)
    print(f"loaded SOOP ({len(cohort)} subjects with NIHSS, grid {cohort.shape}) in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return cohort


def null_scores(nihss, dataset, seed):
    """The NIHSS values shuffled across subjects, one permutation per dataset."""
    rng = np.random.default_rng([seed, dataset])
    return rng.permutation(nihss)


def read_done(path):
    done = {}
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[(row["method"], row["dataset"])] = row
    return done


def summary(rows, alpha, n_permutations):
    from scipy import stats

    print(f"\nfamily-wise false positive rate of correction='fwe' at alpha={alpha} "
          f"({n_permutations} permutations per dataset; SOOP 2 mm, NIHSS shuffled)")
    header = f"{'method':<16} {'datasets':>8} {'false pos.':>10} {'FWER':>7} {'95% CI (exact)':>17} {'alpha in CI':>11} {'s/dataset':>9}"
    print(header)
    print("-" * len(header))
    for method in METHODS:
        got = [r for r in rows if r["method"] == method]
        if not got:
            continue
        k, n = sum(r["any_significant"] for r in got), len(got)
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        inside = "yes" if ci.low <= alpha <= ci.high else "NO"
        secs = np.mean([r["seconds"] for r in got])
        print(f"{method:<16} {n:>8} {k:>10} {k / n:>7.3f} {f'[{ci.low:.3f}, {ci.high:.3f}]':>17} {inside:>11} {secs:>9.1f}")
    print("\nMonte Carlo error: with 200 datasets and a true rate of 0.05 the standard error is "
          f"{np.sqrt(alpha * (1 - alpha) / 200):.3f}; the exact 95 % interval of 10/200 is "
          f"[{stats.binomtest(10, 200).proportion_ci(method='exact').low:.3f}, "
          f"{stats.binomtest(10, 200).proportion_ci(method='exact').high:.3f}].")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-datasets", type=int, default=200)
    parser.add_argument("--n-permutations", type=int, default=500)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-lesioned", type=float, default=0.05)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--data-dir")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "lsm_calibration"))
    parser.add_argument("--out", default=None, help="JSON-lines results (default: in --cache-dir)")
    parser.add_argument("--summary", action="store_true", help="only print the table of finished runs")
    args = parser.parse_args()
    out = Path(args.out or Path(args.cache_dir) / f"calibration_p{args.n_permutations}_seed{args.seed}.jsonl")
    done = read_done(out)
    if args.summary:
        summary([r for r in done.values() if r["dataset"] < args.n_datasets], args.alpha, args.n_permutations)
        return

    import lsm

    cohort = soop_2mm(_data_dir(args.data_dir), args.cache_dir, args.n_jobs)
    nihss = cohort.phenotype["nihss"].to_numpy(dtype=float)
    print(f"{len(cohort)} subjects, {args.n_datasets} null datasets x {args.n_permutations} permutations, "
          f"methods {args.methods}, n_jobs={args.n_jobs}; results -> {out}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    for method in args.methods:
        for dataset in range(args.n_datasets):
            if (method, dataset) in done:
                continue
            cohort.phenotype["null_score"] = null_scores(nihss, dataset, args.seed)
            t0 = time.perf_counter()
            res = lsm.vlsm(
                cohort,
                "null_score",
                n_permutations=args.n_permutations,
                correction="fwe",
                alpha=args.alpha,
                min_lesioned=args.min_lesioned,
                n_jobs=args.n_jobs,
                random_state=args.seed * 100_000 + dataset,
                **METHODS[method],
            )
            p_corr = np.asarray(res.p_corrected.dataobj)[np.asarray(res.mask_img.dataobj) > 0]
            row = {
                "method": method,
                "dataset": dataset,
                "any_significant": bool(np.asarray(res.significant.dataobj).any()),
                "n_significant": int(np.asarray(res.significant.dataobj).sum()),
                "min_p_corrected": float(p_corr.min()),
                "observed_max": res.observed,
                "threshold": res.threshold,
                "n_tested": res.provenance["n_voxels_tested"],
                "seconds": time.perf_counter() - t0,
            }
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            done[(method, dataset)] = row
            print(f"{method:<15} dataset {dataset:>4}: min p_FWE {row['min_p_corrected']:.3f}, "
                  f"{row['n_significant']} significant voxels, {row['seconds']:.1f} s", flush=True)
    summary([r for r in done.values() if r["dataset"] < args.n_datasets], args.alpha, args.n_permutations)


if __name__ == "__main__":
    main()
