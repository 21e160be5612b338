"""Accuracy, time and memory of lsm.register_lesions on synthetic cases with known truth.

    python benchmarks/bench_registration.py [--cases 5] [--modalities t1 ct] [--resolutions 2 1]
                                            [--variants default mask_only no_mask plain_syn]

Each case is the MNI152 template pulled into a native space by a known random affine and
smooth displacement, with a hypo-intense lesion of 5-150 ml planted in template space
(lsm.registration.synthetic_case). Every variant registers the same cases; the lesion in
MNI space is compared with the planted one on the output grid (Dice, volume ratio).

Variants:
- ``default``: rigid -> affine (unmasked), lesion filled with mirrored tissue, SyN with the
  lesion (dilated 4 mm) excluded from the metric (lsm's default).
- ``mask_only``: no filling, the lesion itself (not dilated) excluded from the SyN metric.
- ``no_mask``: no filling, no cost-function masking.
- ``plain_syn``: the naive baseline, one ``ants.registration(type_of_transform="SyN",
  moving_mask=brain minus lesion)`` call (affine + SyN with ANTsPy's defaults).

Per subject it prints seconds (ANTs single-threaded, one subject at a time) and the peak
resident memory of the process during that subject. Needs ``pip install "lsm[registration,bench]"``.
"""

import argparse
import os
import time

import numpy as np
from _memory import PeakMemory

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

VOLUMES = [5.0, 20.0, 45.0, 90.0, 150.0, 30.0, 10.0, 60.0]


def truth_on(case, affine, shape):
    from scipy import ndimage

    truth = case["truth"]
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    src = np.linalg.solve(truth.affine, np.vstack([world, np.ones(world.shape[1])]))[:3]
    vals = ndimage.map_coordinates(truth.get_fdata().astype(np.float32), src, order=1, cval=0.0)
    return vals.reshape(shape) >= 0.5


def plain_syn(case, resolution, target):
    """The naive baseline: one ANTsPy SyN call with the lesion as the moving mask."""
    import nibabel as nib

    from lsm.registration._ants import grid_image, import_ants, to_ants
    from lsm.registration._preprocess import prepare_image
    from lsm.registration._register import load_template

    ants = import_ants()
    ants.config._random_seed = 0
    tpl, _, _ = load_template(resolution=resolution)
    lesion = case["lesion"].get_fdata() > 0
    data, brain, _ = prepare_image(case["image"], lesion, case["modality"])
    aff = case["image"].affine
    moving = to_ants(nib.Nifti1Image(data, aff))
    mask = moving.new_image_like((brain & ~lesion).astype(np.float32))
    reg = ants.registration(to_ants(tpl), moving, "SyN", moving_mask=mask)
    out = ants.apply_transforms(grid_image(*target), moving.new_image_like(lesion.astype(np.float32)),
                                reg["fwdtransforms"], interpolator="linear")
    return out.numpy() >= 0.5


def run(modality, resolution, n_cases, variants, template):
    import lsm
    from lsm._images import mni_grid
    from lsm.registration import synthetic_case

    target = mni_grid(resolution)
    options = {"default": {}, "mask_only": {"lesion_filling": False, "mask_dilation_mm": 0.0},
               "no_mask": {"lesion_filling": False, "cost_function_masking": False}}
    rows = []
    for i in range(n_cases):
        case = synthetic_case(modality, lesion_ml=VOLUMES[i % len(VOLUMES)], voxel_size=min(2.0, resolution),
                              random_state=200 + i, template=template)
        truth = truth_on(case, *target)
        for variant in variants:
            with PeakMemory() as mem:
                t = time.perf_counter()
                if variant == "plain_syn":
                    got = plain_syn(case, resolution, target)
                else:
                    res = lsm.register_lesions({"sub-1": case["image"]}, {"sub-1": case["lesion"]},
                                               modality=modality, resolution=resolution, **options[variant])
                    got = np.asarray(res.lesions["sub-1"].dataobj) > 0
                seconds = time.perf_counter() - t
            dice = 2 * np.count_nonzero(got & truth) / (got.sum() + truth.sum())
            ratio = got.sum() / truth.sum()
            rows.append((modality, resolution, i, case["truth_ml"], variant, dice, ratio, seconds, mem.peak))
            print(f"{modality:4s} {resolution:g} mm  case {i}  {case['truth_ml']:6.1f} ml  {variant:10s} "
                  f"Dice {dice:.3f}  volume ratio {ratio:.3f}  {seconds:6.1f} s  peak {mem.peak:6.0f} MB", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--modalities", nargs="+", default=["t1", "ct"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[2, 1])
    parser.add_argument("--variants", nargs="+", default=["default", "mask_only", "no_mask", "plain_syn"])
    parser.add_argument("--cases-1mm", type=int, default=1, help="cases at 1 mm (slow: several minutes each)")
    args = parser.parse_args()
    from lsm.registration._synthetic import template_images

    template = template_images(1)
    rows = []
    for resolution in args.resolutions:
        n = args.cases if resolution >= 2 else args.cases_1mm
        variants = args.variants if resolution >= 2 else ["default"]
        for modality in args.modalities:
            rows += run(modality, resolution, n, variants, template)
    print("\nsummary (median over cases; volume ratio = registered / planted volume)")
    print(f"{'modality':8s} {'mm':>3s} {'variant':10s} {'Dice':>6s} {'Dice min':>8s} {'vol ratio':>9s} "
          f"{'ratio range':>13s} {'s/subject':>9s} {'peak MB':>8s}")
    keys = sorted({(r[0], r[1], r[4]) for r in rows}, key=lambda k: (k[1], k[0], args.variants.index(k[2])))
    for mod, res, var in keys:
        sel = [r for r in rows if (r[0], r[1], r[4]) == (mod, res, var)]
        d = np.array([r[5] for r in sel])
        v = np.array([r[6] for r in sel])
        s = np.array([r[7] for r in sel])
        m = np.array([r[8] for r in sel])
        print(f"{mod:8s} {res:3g} {var:10s} {np.median(d):6.3f} {d.min():8.3f} {np.median(v):9.3f} "
              f"{v.min():6.3f}-{v.max():5.3f} {np.median(s):9.1f} {m.max():8.0f}")


if __name__ == "__main__":
    main()
