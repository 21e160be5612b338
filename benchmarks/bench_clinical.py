"""Time lsm.clinical on SOOP-sized synthetic tables (no data needed).

    python benchmarks/bench_clinical.py [--repeat 2]

Rows: the BCa bootstrap of volume_score_correlation (vectorised Pearson/Spearman, partial,
and the per-resample Kendall loop), the three outcome-model families, and territory_lsm
(level 1: 32 territories, level 2: 10) for each method, number of permutations and n_jobs.
Prints wall-clock seconds, best of ``--repeat`` runs. Numbers measured on a shared
machine are noisy.
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from lsm.clinical import outcome_model, territory_lsm, volume_score_correlation


def make_table(n, n_territories, seed=0):
    rng = np.random.default_rng(seed)
    vol = np.exp(rng.normal(2.4, 1.6, n))
    age = rng.uniform(20, 95, n)
    loads = rng.uniform(0, 0.3, (n, n_territories)) * (rng.random((n, n_territories)) < 0.2)
    nihss = np.clip(np.round(2.2 * np.log1p(vol) + 8 * loads[:, 0] + rng.normal(0, 4, n)), 0, 42)
    latent = 0.2 * nihss + 0.04 * (age - 65) + rng.logistic(size=n)
    mrs = np.digitize(latent, np.quantile(latent, np.linspace(0, 1, 8)[1:-1]))
    terr = [f"T{j:02d}" for j in range(n_territories)]
    frame = pd.DataFrame({"lesion_volume": vol, "age": age, "nihss": nihss, "mrs": mrs,
                          **dict(zip(terr, loads.T))},
                         index=[f"sub-{i}" for i in range(n)])
    return frame, terr


def best(func, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--n", type=int, default=1265)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    frame32, terr32 = make_table(args.n, 32)
    frame10, terr10 = frame32[["lesion_volume", "age", "nihss", "mrs"] + terr32[:10]], terr32[:10]
    rows = []

    for method, covs, n_boot in [("spearman", None, 2000), ("pearson", None, 2000),
                                 ("spearman", ["age"], 2000), ("kendall", None, 2000)]:
        s = best(lambda: volume_score_correlation(frame32, "nihss", method=method,
                                                  covariates=covs, n_boot=n_boot,
                                                  random_state=0), args.repeat)
        rows.append(("volume_score_correlation", f"{method}{' partial' if covs else ''}",
                     f"n_boot={n_boot}", 1, s))

    for family, kw in [("ols", {}), ("ordinal", {}), ("logistic", {"cutoff": 2})]:
        outcome = "nihss" if family == "ols" else "mrs"
        s = best(lambda: outcome_model(frame32, outcome, ["nihss" if outcome == "mrs" else "age",
                                                          "age" if outcome == "mrs" else "T00",
                                                          "lesion_volume"],
                                       family=family, volume_transform="log", **kw), args.repeat)
        rows.append(("outcome_model", family, "3 predictors", 1, s))

    for (frame, terr), label in [((frame10, terr10), "10 territories"),
                                 ((frame32, terr32), "32 territories")]:
        for method in ("spearman", "regression", "ordinal"):
            score = "mrs" if method == "ordinal" else "nihss"
            for n_perm in (5000, 10000):
                for n_jobs in (1, 2):
                    if n_perm == 10000 and method != "regression":
                        continue
                    s = best(lambda: territory_lsm(frame, score, territories=terr,
                                                   method=method, lesion_volume="covariate",
                                                   volume_transform="log", min_lesioned=5,
                                                   covariates="age", n_permutations=n_perm,
                                                   random_state=0, n_jobs=n_jobs), args.repeat)
                    rows.append(("territory_lsm", f"{method}, {label}",
                                 f"n_permutations={n_perm}", n_jobs, s))

    table = pd.DataFrame(rows, columns=["function", "variant", "size", "n_jobs", "seconds"])
    print(f"n = {args.n} subjects, best of {args.repeat}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
