"""territory_lsm on SOOP before and after a change of its permutation engine.

Runs :func:`lsm.territory_lsm` on the real SOOP cohort (NIHSS with Spearman and
regression, 90-day mRS with the ordinal method; with and without age and lesion volume as
nuisance variables; fixed seed) and either stores the per-territory tables (``--save``)
or compares them with stored ones (``--compare``), printing the largest absolute
difference of r, the permutation p-values and the FWE null per configuration.

The configurations are written with the current parameter names; for a version of lsm
from before the shared vocabulary (``lesion_volume="log"``, ``correction="fdr"``) they are
translated to the old names.

Run (a few minutes, most of it loading 1,449 masks and computing territory loads)::

    LSM_DATA=/path/to/shared/data python benchmarks/territory_lsm_compare.py --save DIR
    LSM_DATA=/path/to/shared/data python benchmarks/territory_lsm_compare.py --compare DIR
"""

import argparse
import inspect
import pickle
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import lsm
from lsm.datasets import load_soop
from lsm.exceptions import DroppedSubjectsWarning

MRS = "gs_rankin_6isdeath"

CONFIGS = {
    "nihss_spearman_l2": dict(score="nihss", method="spearman", level=2),
    "nihss_spearman_vol_l2": dict(score="nihss", method="spearman", level=2,
                                  lesion_volume="covariate"),
    "nihss_regression_logvol_age_l2": dict(score="nihss", method="regression", level=2,
                                           covariates=["age"], lesion_volume="covariate",
                                           volume_transform="log"),
    "nihss_regression_l1": dict(score="nihss", method="regression", level=1),
    "nihss_spearman_vol_age_l1_fdr": dict(score="nihss", method="spearman", level=1,
                                          covariates=["age"], lesion_volume="covariate",
                                          correction="fdr_bh"),
    "mrs_ordinal_l2": dict(score=MRS, method="ordinal", level=2),
    "mrs_ordinal_logvol_age_l2": dict(score=MRS, method="ordinal", level=2, covariates=["age"],
                                      lesion_volume="covariate", volume_transform="log"),
}

#: p-value columns compared (old name -> new name where they differ).
P_COLUMNS = {"p_parametric": "p_parametric", "p_uncorrected": "p_uncorrected", "p_fwe": "p_fwe",
             "p_fdr": "p_fdr_bh"}


def _kwargs(config):
    """The configuration in the parameter names of the installed lsm."""
    kw = dict(config)
    kw.pop("score")
    new_api = "volume_transform" in inspect.signature(lsm.territory_lsm).parameters
    if not new_api:
        transform = kw.pop("volume_transform", "linear")
        if kw.get("lesion_volume") == "covariate":
            kw["lesion_volume"] = "log" if transform == "log" else "linear"
        if kw.get("correction") == "fdr_bh":
            kw["correction"] = "fdr"
    return kw


def _run(cohort, name, config, args):
    t = time.perf_counter()
    res = lsm.territory_lsm(cohort, config["score"], n_permutations=args.n_permutations,
                            random_state=args.seed, n_jobs=args.n_jobs, min_lesioned=5,
                            **_kwargs(config))
    print(f"{name}: n = {res.n}, {int(res.table['tested'].sum())} territories tested, "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    return {"table": res.table, "null_max": np.asarray(res.null_max)}


def _max_diff(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        return np.inf
    both_nan = np.isnan(a) & np.isnan(b)
    if np.any(np.isnan(a) != np.isnan(b)):
        return np.inf
    return float(np.max(np.abs(a - b)[~both_nan], initial=0.0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path, help="store the tables in this folder")
    mode.add_argument("--compare", type=Path, help="compare with the tables in this folder")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--n-permutations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="configuration names")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DroppedSubjectsWarning)

    t0 = time.perf_counter()
    cohort = load_soop(n_jobs=args.n_jobs)
    print(f"lsm {lsm.__version__}; SOOP: {len(cohort.subjects)} subjects "
          f"(loaded in {time.perf_counter() - t0:.0f} s)", flush=True)
    names = args.only or list(CONFIGS)
    rows = []
    for name in names:
        out = _run(cohort, name, CONFIGS[name], args)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            with open(args.save / f"{name}.pkl", "wb") as f:
                pickle.dump(out, f)
            continue
        with open(args.compare / f"{name}.pkl", "rb") as f:
            old = pickle.load(f)
        ot, nt = old["table"], out["table"]
        row = {"configuration": name,
               "same territories tested": bool(ot.index.equals(nt.index)
                                               and (ot["tested"] == nt["tested"]).all()),
               "max |dr|": _max_diff(ot["r"], nt["r"])}
        for old_col, new_col in P_COLUMNS.items():
            row[f"max |d {new_col}|"] = _max_diff(ot[old_col], nt[new_col if new_col in nt else old_col])
        row["max |d null_max|"] = _max_diff(old["null_max"], out["null_max"])
        row["same significant"] = bool((ot["significant"] == nt["significant"]).all())
        rows.append(row)
    if rows:
        print()
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(pd.DataFrame(rows).set_index("configuration").to_string(
                float_format=lambda v: f"{v:.2e}"))


if __name__ == "__main__":
    main()
