"""SOOP at 2 mm, read once and cached as a pickle outside the repository (benchmarks only)."""

import os
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path


def data_dir(arg=None):
    """The data folder holding ``soop/`` (argument, ``LSM_DATA`` or ../shared/data)."""
    for cand in (arg, os.environ.get("LSM_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if cand and (Path(cand) / "soop" / "participants.tsv").is_file():
            return Path(cand)
    sys.exit("SOOP data not found: pass --data-dir or set LSM_DATA (a folder with soop/).")


def soop_2mm(data_dir, n_jobs=2, cache_dir=None):
    """Every SOOP subject with a lesion mask and a phenotype row, on the 2 mm MNI grid."""
    cache = Path(cache_dir or tempfile.gettempdir()) / "lsm_bench_soop_2mm.pkl"
    if cache.exists():
        with open(cache, "rb") as fh:
            return pickle.load(fh)
    import lsm

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = lsm.datasets.load_soop(data_dir=data_dir, n_jobs=n_jobs).resample(2)
    with open(cache, "wb") as fh:
        pickle.dump(cohort, fh)
    print(f"loaded SOOP ({len(cohort)} subjects, grid {cohort.shape}) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return cohort
