"""Wall time and peak memory of the ``lsm`` command line, each command in a fresh process.

    python benchmarks/bench_cli.py [--repeat 3] [--soop-masks 200]

Rows: start-up (``lsm --help``), the demo (``lsm demo``: 200 synthetic subjects, 1,000
permutations, maps, report), and, when ``LSM_DATA`` points at the shared data, ``lsm
overlap`` / ``territory-load`` / ``vlsm`` (2 mm, 1,000 permutations) on the first N SOOP
masks. Peak memory is the maximum resident set size of the child process. Timings are
noisy on a shared machine: take the median of a few repeats and say what else was running.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _measure(args, cwd):
    """(wall seconds, peak RSS in MB) of one ``python -m lsm ...`` process.

    A small wrapper process runs the command and reads ``RUSAGE_CHILDREN``, so the peak is
    that command's alone.
    """
    code = (
        "import resource, subprocess, sys, time, os;"
        "t = time.perf_counter();"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, env=dict(os.environ, MPLBACKEND='Agg'));"
        "w = time.perf_counter() - t;"
        "sys.stderr.write(p.stderr) if p.returncode else None;"
        "print(p.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    proc = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "lsm", "--quiet", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True)
    status, wall, rss_kb = proc.stdout.split()
    if int(status) != 0:
        raise RuntimeError(f"lsm {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return float(wall), int(rss_kb) / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--soop-masks", type=int, default=200)
    opts = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="lsm-bench-cli-"))
    cases = [("lsm --help", ["--help"]),
             ("lsm demo (200 subjects, 1000 perms)", ["demo", "--output", "{out}", "--overwrite"])]
    data = os.environ.get("LSM_DATA")
    if data and (Path(data) / "soop" / "lesions").is_dir():
        soop = Path(data) / "soop"
        files = sorted((soop / "lesions").glob("*.nii.gz"))[: opts.soop_masks]
        cohort = ["-l", *files, "-p", soop / "participants.tsv"]
        n = len(files)
        cases += [
            (f"lsm overlap ({n} SOOP masks, 1 mm)", ["overlap", *cohort, "-o", "{out}", "--overwrite"]),
            (f"lsm territory-load ({n} masks, levels 1-2)",
             ["territory-load", *cohort, "-o", "{out}", "--overwrite"]),
            (f"lsm vlsm ({n} masks, 2 mm, nihss, 1000 perms)",
             ["vlsm", *cohort, "--voxel-size", "2", "-s", "nihss", "--n-permutations", "1000",
              "--min-lesioned", "5", "-o", "{out}", "--overwrite"]),
        ]
    else:
        print("LSM_DATA not set to the shared data: SOOP rows skipped", file=sys.stderr)

    rows = []
    for label, args in cases:
        walls, peaks = [], []
        for r in range(opts.repeat):
            out = work / f"out{r}"
            wall, peak = _measure([str(out) if a == "{out}" else a for a in args], work)
            walls.append(wall)
            peaks.append(peak)
        rows.append((label, statistics.median(walls), min(walls), max(peaks)))
    print(f"{'command':<48}{'median s':>10}{'min s':>8}{'peak MB':>9}")
    print("-" * 75)
    for label, med, low, peak in rows:
        print(f"{label:<48}{med:>10.2f}{low:>8.2f}{peak:>9.0f}")
    print(f"(repeats: {opts.repeat}; CPU cores: {os.cpu_count()}; load average: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})")


if __name__ == "__main__":
    main()
