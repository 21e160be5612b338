"""Does lesion location predict the score beyond lesion volume? SOOP, 2 mm, nested CV.

Prints the out-of-sample table of :func:`lsm.predict_score` (R², Pearson r and MAE over
the outer folds, mean +- SD, per model) and the permutation p of "location adds beyond
volume" (lesion-matrix kernel ridge vs covariates + volume) for

- the real admission NIHSS (subjects with an NIHSS; covariates age and sex);
- a simulated score on every subject: 0.3 SD per SD of log lesion volume, plus 0.3 SD per
  SD of the load of one level-1 arterial territory (the lateral lenticulostriate/MCA
  territory with the most lesioned subjects), plus unit Gaussian noise: a deficit with a
  known location effect beyond volume.

    python benchmarks/predict_soop.py                     # 5 folds, 100 permutations
    python benchmarks/predict_soop.py --n-permutations 20 # quicker

Needs the SOOP data (``LSM_DATA`` or ``--data-dir``); reads SOOP once (1-3 minutes) and
caches the 2 mm cohort in the temporary folder.
"""

import argparse
import time
import warnings

import numpy as np
from _soop2mm import data_dir, soop_2mm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--n-permutations", type=int, default=100)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import lsm

    cohort = soop_2mm(data_dir(args.data_dir), args.n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loads = lsm.territory_load(cohort, level=1)
    terr = loads.drop(columns=["outside_ml", "lesion_volume_ml"])
    region = (terr > 0).sum().idxmax()
    rng = np.random.default_rng(args.seed)
    logv = np.log10(np.asarray(cohort.lesion_volumes) + 0.01)
    load = terr[region].to_numpy()
    z = lambda a: (a - a.mean()) / a.std()  # noqa: E731
    cohort.phenotype.loc[list(cohort.subjects), "simulated"] = (0.3 * z(logv) + 0.3 * z(load)
                                                                + rng.standard_normal(len(load)))
    runs = [("nihss", cohort.select("nihss"), ["age", "sex"]), ("simulated", cohort, None)]
    for score, data, cov in runs:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lsm.predict_score(data, score, covariates=cov, n_permutations=args.n_permutations,
                                    random_state=args.seed, n_jobs=args.n_jobs)
        what = "real admission NIHSS" if score == "nihss" else f"simulated (volume + load of {region})"
        print(f"\n== {what}: {res.provenance['n_subjects']} subjects, covariates {cov}, "
              f"{len(res.excluded)} excluded, {time.perf_counter() - t0:.0f} s ==")
        table = res.summary_table()
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        t = res.test
        print(f"location beyond volume: {t['metric']}({t['model']}) - {t['metric']}(volume) = "
              f"{t['statistic']:.4f}, permutation p = {t['p']:.4f} ({t['n_permutations']} permutations)",
              flush=True)


if __name__ == "__main__":
    main()
