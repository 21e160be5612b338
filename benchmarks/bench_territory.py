"""Time territory loads, lesion descriptors and overlap maps on all 1,449 SOOP masks.

    LSM_DATA=../shared/data python benchmarks/bench_territory.py [--n-jobs 2] [--subjects N]

Loads every SOOP lesion mask (157 x 189 x 136, 1 mm, LAS; also the 184 without a
participants row) into a Cohort, then times each public function of lsm.territory with
the default 1 mm arterial atlas (RAS 182 x 218 x 182; exact lattice alignment). Prints,
per step, wall-clock seconds and the peak resident memory (RSS) sampled every 20 ms
over the main process plus any joblib worker processes. Target (issue 4): territory
loads + descriptors of all 1,449 subjects in under 60 s with n_jobs=2 and under 2 GB.
Numbers measured on a shared machine are noisy.
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from _memory import PeakMemory
import pandas as pd
import psutil

import lsm
from lsm.cohort import subject_from_filename
from lsm.datasets import get_data_dir
from lsm.territory import lesion_descriptors, overlap_map, territory_load, territory_summary


def timed(rows, step, n_jobs, func):
    with PeakMemory() as mem:
        t = time.perf_counter()
        out = func()
        seconds = time.perf_counter() - t
    rows.append({"step": step, "n_jobs": n_jobs, "seconds": seconds, "peak_rss_mb": mem.peak})
    print(f"  {step:<44s} n_jobs={n_jobs}  {seconds:7.2f} s  {mem.peak:7.0f} MB", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder laid out as shared/data (default: LSM_DATA)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--subjects", type=int, default=None, help="only the first N masks (quick runs)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", lsm.exceptions.DroppedSubjectsWarning)

    lesions = sorted((get_data_dir(args.data_dir) / "soop" / "lesions").glob("*.nii.gz"))[: args.subjects]
    if not lesions:
        raise SystemExit("No SOOP lesion masks found: set LSM_DATA or pass --data-dir.")
    ids = [subject_from_filename(p) for p in lesions]
    phenotype = pd.DataFrame({"participant_id": ids})
    rows = []
    print(f"{len(lesions)} SOOP masks")
    cohort = timed(rows, "load_cohort (read 1 mm masks)", args.n_jobs,
                   lambda: lsm.load_cohort(dict(zip(ids, map(str, lesions))), phenotype, n_jobs=args.n_jobs))
    nnz = sum(cohort.lesion_indices(s).size for s in cohort.subjects)
    print(f"  grid {cohort.shape}, {nnz:,} lesioned voxels in all")

    with PeakMemory() as total:
        t0 = time.perf_counter()
        timed(rows, "territory_load level 1 territory_fraction", args.n_jobs,
              lambda: territory_load(cohort, n_jobs=args.n_jobs))
        timed(rows, "territory_load level 2 ml", args.n_jobs,
              lambda: territory_load(cohort, level=2, measure="ml", n_jobs=args.n_jobs))
        timed(rows, "lesion_descriptors", args.n_jobs, lambda: lesion_descriptors(cohort, n_jobs=args.n_jobs))
        elapsed = time.perf_counter() - t0
    verdict = {"step": "loads (L1 + L2) + descriptors", "n_jobs": args.n_jobs, "seconds": elapsed,
               "peak_rss_mb": total.peak}
    rows.append(verdict)
    timed(rows, "lesion_descriptors", 1, lambda: lesion_descriptors(cohort, n_jobs=1))
    timed(rows, "overlap_map", 1, lambda: overlap_map(cohort))
    timed(rows, "territory_summary level 2", args.n_jobs, lambda: territory_summary(cohort, n_jobs=args.n_jobs))

    table = pd.DataFrame(rows)
    print()
    print(f"lsm.territory on {len(cohort)} SOOP subjects at 1 mm ({Path(lesions[0]).parent})")
    print(table.to_string(index=False, formatters={
        "seconds": "{:.2f}".format, "peak_rss_mb": "{:.0f}".format}))
    ok = verdict["seconds"] < 60 and verdict["peak_rss_mb"] < 2048
    print(f"\ntarget (< 60 s, < 2048 MB for loads + descriptors with n_jobs={args.n_jobs}): "
          f"{'met' if ok else 'NOT met'} ({verdict['seconds']:.1f} s, {verdict['peak_rss_mb']:.0f} MB; "
          f"CPU cores here: {psutil.cpu_count()}, load average {np.round(psutil.getloadavg(), 1).tolist()})")


if __name__ == "__main__":
    main()
