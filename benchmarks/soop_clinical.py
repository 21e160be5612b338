"""Lesion volume, NIHSS, 90-day mRS and arterial territories on the real SOOP cohort.

Reproduces the numbers of the closing note of issue 5:

1. Spearman / Pearson (/ Kendall) correlation between lesion volume and NIHSS with BCa
   bootstrap CIs (to set beside the JHU paper's r = 0.57),
2. the proportional-odds model of 90-day mRS (``gs_rankin_6isdeath``) on NIHSS, age and
   lesion volume (and the mRS 0-2 vs 3-6 logistic model),
3. which level-2 arterial territories survive max-statistic FWE for NIHSS with lesion
   volume as a covariate (Freedman-Lane), and for the 90-day mRS (ordinal) with lesion
   volume and age.

Run (about 2-5 minutes, most of it loading 1,449 masks)::

    LSM_DATA=/path/to/shared/data python benchmarks/soop_clinical.py [--n-jobs 2]
"""

import argparse
import time
import warnings

import pandas as pd

import lsm
from lsm.datasets import load_soop
from lsm.exceptions import DroppedSubjectsWarning

MRS = "gs_rankin_6isdeath"


def _print(title, frame):
    print(f"\n## {title}\n")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(frame.to_string(float_format=lambda v: f"{v:.4g}"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--n-boot", type=int, default=5000)
    parser.add_argument("--n-permutations", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DroppedSubjectsWarning)

    t0 = time.perf_counter()
    cohort = load_soop(n_jobs=args.n_jobs)
    print(f"SOOP cohort: {len(cohort.subjects)} subjects with a mask and a participants row "
          f"(loaded in {time.perf_counter() - t0:.0f} s)")

    # 1. volume vs NIHSS -------------------------------------------------------------------
    rows = []
    for method, volume_transform, covs in [
        ("spearman", "linear", None),
        ("pearson", "linear", None),
        ("pearson", "log", None),
        ("kendall", "linear", None),
        ("spearman", "linear", ["age"]),
    ]:
        t = time.perf_counter()
        res = lsm.volume_score_correlation(
            cohort, "nihss", method=method, volume_transform=volume_transform, covariates=covs,
            n_boot=args.n_boot, random_state=args.seed,
        )
        row = res.to_dataframe().iloc[0]
        row["seconds"] = time.perf_counter() - t
        rows.append(row)
    _print(
        f"Lesion volume vs NIHSS (BCa {args.n_boot} bootstrap resamples, 95% CI); "
        "JHU paper: r = 0.57",
        pd.DataFrame(rows)[["method", "volume_transform", "covariates", "n", "r", "ci_low", "ci_high",
                            "p", "n_excluded", "seconds"]],
    )

    # 2. outcome models --------------------------------------------------------------------
    for volume_transform in ("linear", "log"):
        om = lsm.outcome_model(cohort, MRS, ["nihss", "age", "lesion_volume"], family="ordinal",
                               volume_transform=volume_transform)
        _print(
            f"Proportional-odds model of 90-day mRS ({MRS}) on NIHSS, age and "
            f"{'log10 ' if volume_transform == 'log' else ''}lesion volume (ml): n = {om.n}, "
            f"excluded = {len(om.excluded)}; odds ratios for a higher (worse) mRS",
            om.table[["coef", "se", "p", "odds_ratio", "or_ci_low", "or_ci_high"]],
        )
    lg = lsm.outcome_model(cohort, MRS, ["nihss", "age", "lesion_volume"], family="logistic",
                           cutoff=2, volume_transform="log")
    _print(
        f"Logistic model of mRS 3-6 vs 0-2 on NIHSS, age and log10 lesion volume: n = {lg.n}",
        lg.table[["coef", "se", "p", "odds_ratio", "or_ci_low", "or_ci_high"]],
    )

    # 3. territories beyond size -----------------------------------------------------------
    for method, volume_transform in [("spearman", "linear"), ("regression", "log")]:
        t = time.perf_counter()
        tl = lsm.territory_lsm(
            cohort, "nihss", level=2, method=method, lesion_volume="covariate",
            volume_transform=volume_transform, min_lesioned=5,
            n_permutations=args.n_permutations, random_state=args.seed, n_jobs=args.n_jobs,
        )
        _print(
            f"Level-2 territories vs NIHSS, {method}, nuisance {tl.covariates} (Freedman-Lane), "
            f"{args.n_permutations} permutations, n = {tl.n}, critical |r| = "
            f"{tl.r_critical:.4f}; FWE-significant: {', '.join(tl.significant.index[tl.significant]) or 'none'} "
            f"({time.perf_counter() - t:.1f} s)",
            tl.table[["n_lesioned", "mean_load", "r", "t", "p_parametric", "p_uncorrected",
                      "p_fwe", "significant"]],
        )
    t = time.perf_counter()
    tl = lsm.territory_lsm(
        cohort, MRS, level=2, method="ordinal", lesion_volume="covariate", volume_transform="log",
        covariates=["age"], min_lesioned=5,
        n_permutations=args.n_permutations, random_state=args.seed, n_jobs=args.n_jobs,
    )
    _print(
        f"Level-2 territories vs 90-day mRS, ordinal (proportional-odds score), nuisance "
        f"{tl.covariates}, {args.n_permutations} permutations, n = {tl.n}; FWE-significant: "
        f"{', '.join(tl.significant.index[tl.significant]) or 'none'} ({time.perf_counter() - t:.1f} s)",
        tl.table[["n_lesioned", "r", "p_uncorrected", "p_fwe", "significant"]],
    )
    print(f"\nTotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
