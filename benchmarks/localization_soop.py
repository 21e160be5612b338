"""How far can a lesion-symptom map be misplaced on SOOP? The localisation check, 2 mm.

For each level-1 arterial territory, a deficit is simulated from the real SOOP lesions
(``score = effect_size * z(fraction of the territory lesioned) + N(0, 1)``) and mapped by
each method; the script prints :func:`lsm.localization_check`'s per-method table (share of
territories whose peak is in the territory, share detected, mean Dice at the FWE threshold,
median centroid displacement in mm, threshold-free top-k Dice, displacement and AUC, and
the false-positive rate on shuffled scores), then the per-territory top-k displacement.

    python benchmarks/localization_soop.py                        # defaults below
    python benchmarks/localization_soop.py --methods ttest svr --n-permutations 100

Defaults: effect size 0.5, 100 permutations per map, 10 shuffled-score runs per method,
methods t-test, regression with lesion volume as covariate, regression with dTLVC, and
SVR-LSM. SVR-LSM refits the SVR at every permutation, so it takes most of the time.
(Before lsm standardised beta by its spread over the observed and the permuted maps
together, 20 permutations gave significant voxels in 8 of 10 shuffled-score runs; with
the current engine and 100 permutations, 1 of 10.)
Territories without a voxel lesioned in at least 5 % of the subjects (``min_lesioned``)
cannot be mapped and are listed as skipped.

Needs the SOOP data (``LSM_DATA`` or ``--data-dir``); reads SOOP once (1-4 minutes) and
caches the 2 mm cohort in the temporary folder.
"""

import argparse
import time
import warnings

from _soop2mm import data_dir, soop_2mm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--methods", nargs="+", default=["ttest", "regression+covariate", "regression+dtlvc", "svr"])
    ap.add_argument("--effect-size", type=float, default=0.5)
    ap.add_argument("--n-permutations", type=int, default=100)
    ap.add_argument("--svr-permutations", type=int, default=100,
                    help="permutations per SVR-LSM map (each refits the SVR: about 1 s on SOOP)")
    ap.add_argument("--n-null", type=int, default=10)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="folder to save the result to")
    args = ap.parse_args()
    import pandas as pd

    import lsm

    cohort = soop_2mm(data_dir(args.data_dir), args.n_jobs)
    tables = []
    for method in args.methods:  # one method at a time, to time each
        t0 = time.perf_counter()
        n_perm = args.svr_permutations if method == "svr" else args.n_permutations
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lsm.localization_check(cohort, regions="arterial", level=1, effect_size=args.effect_size,
                                         methods=(method,), n_permutations=n_perm,
                                         n_null=args.n_null, random_state=args.seed, n_jobs=args.n_jobs)
        tables.append(res)
        print(f"{method}: {len(res.table)} territories + {len(res.null_runs)} shuffled runs in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    first = tables[0]
    result = lsm.LocalizationResult(
        table=pd.concat([r.table for r in tables], ignore_index=True),
        null_runs=pd.concat([r.null_runs for r in tables], ignore_index=True),
        skipped=first.skipped,
        params={**first.params, "methods": list(args.methods), "n_permutations": args.n_permutations,
                "svr_permutations": args.svr_permutations},
        provenance=first.provenance, excluded=first.excluded)
    print()
    print(result.summary())
    if len(result.skipped):
        print("\nSkipped territories:")
        print(result.skipped.to_string(index=False))
    print("\nTop-k centroid displacement (mm) per territory:")
    wide = result.table.pivot(index="region", columns="method", values="topk_displacement_mm")
    wide.insert(0, "lesioned", result.table.groupby("region")["lesioned_subjects"].first())
    print(wide[["lesioned"] + list(args.methods)].to_string(float_format=lambda v: f"{v:.1f}"))
    if args.save:
        result.save(args.save, overwrite=True)


if __name__ == "__main__":
    main()
