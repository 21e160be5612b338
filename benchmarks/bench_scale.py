"""Scale of a VLSM with the cohort size N and the voxel size: time and peak memory.

A JHU-sized cohort is built from real anatomy: the 1,449 SOOP lesion masks plus their
left-right mirrors (2,898 masks). The SOOP grid is LAS, 157 x 189 x 136 at 1 mm with
x = 78 - i, so the world mirror x -> -x is the index flip i -> 156 - i on the same grid
(no shift: the midline x = 0 is the centre voxel i = 78); the script derives this from
the affine and refuses a grid where the mirror is not an exact index map.

Scores are simulated from a known region, the left frontal MCA territory of the
arterial atlas shipped with SOOP (label 7, MCAFL, on the lesion grid)::

    score = 3 + 20 * (fraction of MCAFL lesioned) + N(0, 2)

then for every N in ``--n`` (a seeded random subset of the 2,898) and every voxel size
in ``--res`` (1 mm: the SOOP grid; 2 mm: the 91 x 109 x 91 MNI grid), one child process
runs ``lsm.vlsm(cohort, "score", method="ttest", n_permutations=1000, n_jobs=2)`` while a
sampler thread records the resident memory of the child and of its joblib workers every
20 ms. The engine's functions are wrapped (in the child only) to attribute the peak to
stages: building the cohort, the lesion matrix, pattern compression, observed
statistics, the permutation null in the workers, wrapping the maps.

    python benchmarks/bench_scale.py                        # full table (about 10 min on 2 cores)
    python benchmarks/bench_scale.py --n 250 500 --res 2    # quick
    python benchmarks/bench_scale.py --breakdown --n 2898 --res 1   # where memory goes

The masks are read once (about 3-5 minutes) and cached as flat voxel indices in
``--cache-dir`` (default: a folder in the system temporary directory, never the
repository). Needs the SOOP data: ``LSM_DATA`` or ``--data-dir`` pointing at a folder
with ``soop/lesions`` and ``soop/atlas``.
"""

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _memory import own_peak_mib

REGION_LABEL = 7  # MCAFL: frontal pars of the left middle cerebral artery territory
N_ALL = 2898


# --------------------------------------------------------------------------- mirroring
def mirror_index_map(affine, shape):
    """Flat-index map of the world mirror x -> -x on a grid, or raise if not a lattice map.

    Returns ``m`` with ``m[flat]`` the flat index of the voxel at the mirrored position.
    """
    affine = np.asarray(affine, dtype=float)
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        raise ValueError("mirroring needs an axis-aligned grid (diagonal affine)")
    a, b = affine[0, 0], affine[0, 3]
    # x(i) = a*i + b; mirrored voxel i' has x(i') = -x(i)  =>  i' = -2b/a - i
    shift = -2.0 * b / a
    if not np.isclose(shift, round(shift)):
        raise ValueError(f"the mirror of this grid is not a voxel (i' = {shift:g} - i)")
    shift = int(round(shift))
    i = np.arange(shape[0])
    mirrored_i = shift - i
    if mirrored_i.min() < 0 or mirrored_i.max() >= shape[0]:
        raise ValueError(f"the mirror i' = {shift} - i leaves the grid of {shape[0]} columns")
    ijk = np.indices(shape).reshape(3, -1)
    ijk[0] = shift - ijk[0]
    return np.ravel_multi_index(tuple(ijk), shape), shift, shape[0] - 1


def _data_dir(arg):
    for cand in (arg, os.environ.get("LSM_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if cand and (Path(cand) / "soop" / "lesions").is_dir():
            return Path(cand)
    sys.exit("SOOP data not found: pass --data-dir or set LSM_DATA (a folder with soop/lesions).")


def build_cache(data_dir, cache_dir, n_jobs=2, seed=0):
    """Read the SOOP masks once, mirror them, simulate scores, resample to 2 mm; save."""
    import nibabel as nib

    import lsm
    from lsm.cohort import Cohort

    done = {res: cache_dir / f"jhu_like_{res}mm.npz" for res in (1, 2)}
    if all(p.exists() and p.with_suffix(".npy").exists() for p in done.values()):
        return done
    cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    folder = data_dir / "soop" / "lesions"
    ids = sorted({lsm.cohort.subject_from_filename(p) for p in folder.glob("*.nii*")})
    table = pd.DataFrame({"participant_id": ids})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soop = lsm.load_cohort(folder, table, n_jobs=n_jobs)
    print(f"read {len(soop)} SOOP masks in {time.perf_counter() - t0:.0f} s", flush=True)
    mirror, shift, last = mirror_index_map(soop.affine, soop.shape)
    print(f"grid {soop.shape}, x = {soop.affine[0, 0]:g} i + {soop.affine[0, 3]:g}: mirror i' = {shift} - i "
          f"({'a pure flip' if shift == last else f'a flip plus a shift of {shift - last}'})")
    atlas = nib.load(data_dir / "soop" / "atlas" / "ArterialAtlas136.nii.gz")
    if atlas.shape != soop.shape or not np.allclose(atlas.affine, soop.affine):
        raise RuntimeError("ArterialAtlas136 is not on the SOOP lesion grid")
    region = np.asarray(atlas.dataobj).reshape(-1) == REGION_LABEL

    indices, subjects, volumes = {}, [], {}
    for s in soop.subjects:
        idx = soop.lesion_indices(s)
        m = f"{s}M"  # normalised BIDS label of the mirror: sub-<id>M
        indices[s] = idx
        indices[m] = np.sort(mirror[idx]).astype(np.int32)
        volumes[s] = volumes[m] = float(soop.lesion_volumes[s])
        subjects += [s, m]
    rng = np.random.default_rng(seed)
    load = np.array([region[indices[s]].sum() / region.sum() for s in subjects])
    score = 3.0 + 20.0 * load + rng.normal(0.0, 2.0, size=len(subjects))
    pheno = pd.DataFrame({"score": score}, index=pd.Index(subjects, name="participant_id"))
    full = Cohort(indices, pheno, soop.affine, soop.shape, native_volumes_ml=volumes)
    _save(done[1], full, region)
    _save(done[2], full.resample(2), None)
    print(f"cache written to {cache_dir} in {time.perf_counter() - t0:.0f} s", flush=True)
    return done


def _save(path, cohort, region):
    rows = [cohort.lesion_indices(s) for s in cohort.subjects]
    # the flat indices go to a .npy that children memory-map: a child then holds only
    # the N subjects it analyses, as lsm would after loading N masks
    np.save(path.with_suffix(".npy"), np.concatenate(rows).astype(np.int32))
    np.savez(
        path,
        subjects=np.array(cohort.subjects),
        offsets=np.cumsum([0] + [r.size for r in rows]),
        score=cohort.phenotype["score"].to_numpy(),
        volumes=cohort.lesion_volumes.to_numpy(),
        affine=cohort.affine,
        shape=np.array(cohort.shape),
        region=np.zeros(0, bool) if region is None else region,
    )


def load_cached(path, n, seed=1):
    from lsm.cohort import Cohort

    z = np.load(path)
    subjects = list(z["subjects"])
    order = np.sort(np.random.default_rng(seed).permutation(len(subjects))[:n])
    off = z["offsets"]
    idx = np.load(Path(path).with_suffix(".npy"), mmap_mode="r")
    indices = {subjects[i]: np.array(idx[off[i] : off[i + 1]]) for i in order}
    del idx
    keep = [subjects[i] for i in order]
    pheno = pd.DataFrame({"score": z["score"][order]}, index=pd.Index(keep, name="participant_id"))
    vols = dict(zip(keep, z["volumes"][order]))
    return Cohort(indices, pheno, z["affine"], tuple(z["shape"]), native_volumes_ml=vols)


# --------------------------------------------------------------------------- memory
class MemorySampler(threading.Thread):
    """Peak resident memory (this process + its children) overall and per stage."""

    def __init__(self, interval=0.02):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.stage = "start"
        self.peaks = {}
        self.main_peaks = {}
        self.order = []
        self._halt = threading.Event()

    def set_stage(self, name):
        self._sample()
        self.stage = name
        if name not in self.order:
            self.order.append(name)
        self._sample()

    def _sample(self):
        import psutil

        try:
            main = self.proc.memory_info().rss
            total = main
            for child in self.proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            return
        stage = self.stage
        self.peaks[stage] = max(self.peaks.get(stage, 0), total)
        self.main_peaks[stage] = max(self.main_peaks.get(stage, 0), main)

    def run(self):
        while not self._halt.is_set():
            self._sample()
            time.sleep(self.interval)

    def stop(self):
        self._halt.set()
        self.join()
        self._sample()


def _instrument(sampler, sizes):
    """Wrap engine functions (in this child only) to mark stages and measure shipping."""
    import lsm.stats._permutation as perm
    import lsm._vlsm as vlsm_mod

    def wrap(module, name, before, after=None, hook=None):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            sampler.set_stage(before)
            if hook:
                hook(*args, **kwargs)
            out = real(*args, **kwargs)
            if after:
                sampler.set_stage(after)
            return out

        setattr(module, name, wrapper)

    real_lm = vlsm_mod.voxelwise_test

    def ship_sizes(func, tasks, **kw):
        tasks = list(tasks)
        shared = {}
        per_task = []
        for task in tasks:
            own = 0
            for arg in task:
                blob = len(pickle.dumps(arg, protocol=5))
                if blob > 1000 and sum(arg is t2[i] for t2 in tasks for i in range(len(t2))) > 1:
                    shared[id(arg)] = blob  # same object in every task: scattered once by dask
                else:
                    own += blob
            per_task.append(own)
        sizes["n_tasks"] = len(tasks)
        sizes["shared_mb"] = sum(shared.values()) / 2**20
        sizes["per_task_mb"] = float(np.mean(per_task)) / 2**20 if per_task else 0.0

    def vt(lesions, *a, **k):
        sampler.set_stage("engine: checks, counts, tested-column copy")
        sizes["lesion_matrix_nnz"] = int(lesions.nnz)
        sizes["lesion_matrix_mb"] = (lesions.data.nbytes + lesions.indices.nbytes + lesions.indptr.nbytes) / 2**20
        return real_lm(lesions, *a, **k)

    vlsm_mod.voxelwise_test = vt
    wrap(perm, "unique_patterns", "engine: unique patterns", "engine: observed statistics")
    wrap(perm, "draw_permutations", "engine: draw permutations")
    wrap(perm, "parallel_map", "engine: permutation null (workers)", "wrap maps (VLSMResult)",
         hook=ship_sizes if sizes.get("measure_shipping") else None)


def child(args):
    import lsm

    sampler = MemorySampler()
    sampler.start()
    sampler.set_stage("cohort (cached indices)")
    t0 = time.perf_counter()
    cohort = load_cached(Path(args.cache_dir) / f"jhu_like_{args.res}mm.npz", args.n)
    t_cohort = time.perf_counter() - t0
    sizes = {"measure_shipping": args.breakdown}
    sampler.set_stage("vlsm: select subjects, lesion matrix")
    _instrument(sampler, sizes)
    t0 = time.perf_counter()
    res = lsm.vlsm(
        cohort,
        "score",
        method=args.method,
        n_permutations=args.n_permutations,
        n_jobs=args.n_jobs,
        random_state=0,
    )
    t_vlsm = time.perf_counter() - t0
    sampler.set_stage("done")
    sampler.stop()
    cohort_mb = sum(cohort.lesion_indices(s).nbytes for s in cohort.subjects) / 2**20
    truth = None
    z = np.load(Path(args.cache_dir) / "jhu_like_1mm.npz")["region"] if args.res == 1 else None
    if z is not None and z.size:
        sig = np.asarray(res.significant.dataobj).reshape(-1).astype(bool)
        truth = float(z[sig].mean()) if sig.any() else float("nan")
    out = {
        "res": args.res,
        "n": len(cohort),
        "grid": list(cohort.shape),
        "t_cohort_s": t_cohort,
        "t_vlsm_s": t_vlsm,
        "peak_total_mb": max(sampler.peaks.values()) / 2**20,
        "peak_main_mb": max(sampler.main_peaks.values()) / 2**20,
        # exact peak of the main process from the kernel (the sampler can miss short spikes)
        "maxrss_main_mb": own_peak_mib(),
        "stages": [(s, sampler.peaks.get(s, 0) / 2**20, sampler.main_peaks.get(s, 0) / 2**20) for s in sampler.order],
        "cohort_indices_mb": cohort_mb,
        "n_tested": res.provenance["n_voxels_tested"],
        "n_patterns": res.provenance["n_unique_patterns"],
        "engine": res.provenance["engine"],
        "n_significant": int(np.asarray(res.significant.dataobj).sum()),
        "significant_in_region": truth,
        "perms_mb": args.n_permutations * len(cohort) * 4 / 2**20,
        **{k: v for k, v in sizes.items() if k != "measure_shipping"},
    }
    print("RESULT " + json.dumps(out), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[250, 500, 1000, N_ALL])
    parser.add_argument("--res", type=int, nargs="+", default=[2, 1], choices=[1, 2])
    parser.add_argument("--n-permutations", type=int, default=1000)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--method", default="ttest")
    parser.add_argument("--data-dir")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "lsm_bench_scale"))
    parser.add_argument("--breakdown", action="store_true", help="per-stage memory and shipped bytes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.n, args.res = args.n[0], args.res[0]
        return child(args)

    cache = Path(args.cache_dir)
    build_cache(_data_dir(args.data_dir), cache, n_jobs=args.n_jobs)
    import joblib
    import psutil

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; numpy {np.__version__}, joblib {joblib.__version__}")
    print(f"{args.method}, {args.n_permutations} permutations, n_jobs={args.n_jobs}, min_lesioned=5%, "
          "correction fwe; MB = MiB (2**20 bytes)\n"
          "peak: resident memory of the process + its joblib workers (sampled every 20 ms); main: the\n"
          "process alone (sampled); maxrss: the process alone, exact peak from the kernel (VmHWM)\n")
    header = (f"{'res':>4} {'N':>5} {'tested vox':>10} {'patterns':>9} {'cohort s':>8} {'vlsm s':>8} "
              f"{'peak MB':>8} {'main MB':>8} {'maxrss':>7} {'sig':>7} {'in region':>9}")
    print(header)
    print("-" * len(header), flush=True)
    results = []
    for res in args.res:
        for n in args.n:
            cmd = [sys.executable, __file__, "--child", "--n", str(n), "--res", str(res),
                   "--n-permutations", str(args.n_permutations), "--n-jobs", str(args.n_jobs),
                   "--method", args.method, "--cache-dir", str(cache)]
            if args.breakdown:
                cmd.append("--breakdown")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{res:>3}mm {n:>5}  FAILED (exit {proc.returncode}):\n{proc.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(line[0][7:])
            results.append(r)
            region = "" if r["significant_in_region"] is None else f"{r['significant_in_region']:.0%}"
            print(f"{res:>3}mm {r['n']:>5} {r['n_tested']:>10} {r['n_patterns']:>9} {r['t_cohort_s']:>8.1f} "
                  f"{r['t_vlsm_s']:>8.1f} {r['peak_total_mb']:>8.0f} {r['peak_main_mb']:>8.0f} {r['maxrss_main_mb']:>7.0f} "
                  f"{r['n_significant']:>7} {region:>9}", flush=True)
    if args.breakdown:
        for r in results:
            print(f"\nwhere the memory goes: {r['res']} mm, N={r['n']} (peak MB, process + workers / main only)")
            for stage, total, main in r["stages"]:
                print(f"  {stage:<45} {total:>8.0f} {main:>8.0f}")
            print(f"  cohort lesion indices {r['cohort_indices_mb']:.0f} MB; lesion matrix "
                  f"{r.get('lesion_matrix_nnz', 0):,} non-zeros, {r.get('lesion_matrix_mb', 0):.0f} MB (CSR); "
                  f"permutation matrix {r['perms_mb']:.1f} MB")
            if "n_tasks" in r:
                print(f"  shipped to workers: {r['n_tasks']} tasks, {r['shared_mb']:.1f} MB shared by every "
                      f"task (permutations, design), {r['per_task_mb']:.2f} MB own data per task "
                      f"(pattern chunk); engine {r['engine']}")


if __name__ == "__main__":
    main()
