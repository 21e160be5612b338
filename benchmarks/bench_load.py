"""Time and peak memory of loading the SOOP cohort and of the demo, each in a fresh process.

    LSM_DATA=../shared/data python benchmarks/bench_load.py
    python benchmarks/bench_load.py --skip-soop          # the demo only (no data needed)

Rows:

- ``load_soop(n_jobs=N)``: reads, checks and joins the 1,449 SOOP masks (1 mm, 157 x 189 x
  136) with ``participants.tsv``; also prints the join counts it found;
- ``lsm demo``: the README's first command (synthetic cohort, 1,000 permutations, maps,
  cluster table, report), run as the console script would run it.

Peak memory is the child's own high-water mark (``VmHWM``) plus, for ``n_jobs > 1``, the
sampled resident memory of its joblib workers (see ``_memory.py``).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD_SOOP = """
import json, sys, time
sys.path.insert(0, {here!r})
from _memory import PeakMemory, own_peak_mib
import warnings
warnings.simplefilter("ignore")
import lsm.datasets
with PeakMemory() as mem:
    t0 = time.perf_counter()
    cohort = lsm.datasets.load_soop(n_jobs={n_jobs})
    seconds = time.perf_counter() - t0
reasons = cohort.excluded["reason"].value_counts().to_dict()
print(json.dumps({{"seconds": seconds, "peak_mib": max(mem.peak, own_peak_mib()),
                  "main_mib": own_peak_mib(), "n": len(cohort),
                  "nihss": len(cohort.select("nihss")),
                  "mrs": len(cohort.select("gs_rankin_6isdeath")), "dropped": reasons}}))
"""

_CHILD_DEMO = """
import json, sys, time
sys.path.insert(0, {here!r})
from _memory import own_peak_mib
from lsm.cli import main
t0 = time.perf_counter()
status = main(["--quiet", "demo", "--output", {out!r}])
seconds = time.perf_counter() - t0
print(json.dumps({{"status": status, "seconds": seconds, "peak_mib": own_peak_mib()}}))
"""


def _child(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-soop", action="store_true")
    args = parser.parse_args()
    import psutil

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; python {platform.python_version()}")
    rows = []
    if not args.skip_soop:
        for n_jobs in args.n_jobs:
            r = _child(_CHILD_SOOP.format(here=str(HERE), n_jobs=n_jobs))
            rows.append((f"load_soop(n_jobs={n_jobs})", r["seconds"], r["peak_mib"],
                         f"{r['n']} joined, {r['nihss']} with nihss, {r['mrs']} with mRS; dropped "
                         + ", ".join(f"{v} {k}" for k, v in r["dropped"].items())))
    with tempfile.TemporaryDirectory() as tmp:
        r = _child(_CHILD_DEMO.format(here=str(HERE), out=str(Path(tmp) / "lsm_demo")))
        rows.append(("lsm demo", r["seconds"], r["peak_mib"], f"exit status {r['status']}"))
    print(f"\n{'what':<24}{'seconds':>9}{'peak MiB':>10}  notes")
    print("-" * 100)
    for what, seconds, peak, note in rows:
        print(f"{what:<24}{seconds:>9.1f}{peak:>10.0f}  {note}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
