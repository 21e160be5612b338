"""``lsm register``: native scans + lesion masks -> MNI lesion masks (BIDS derivatives), resumable."""

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

__all__ = ["add_register_parser", "run_register"]


def add_register_parser(sub, parent, add):
    """Add the ``register`` subcommand (``add`` is the CLI's subparser factory)."""
    p = add(
        sub, parent, "register", "register native-space lesion masks to MNI space (needs lsm[registration])",
        "Register each subject's scan (T1, FLAIR/T2, DWI or non-contrast CT) and its lesion mask to the "
        "MNI152 template with ANTs (rigid/affine, then SyN with the lesion filled and masked out of the "
        "metric), and write BIDS derivatives: the MNI lesion masks (space-<template>), the transforms, "
        "a QC table (qc.tsv) and a QC page (qc.html). Subjects already in OUTPUT are skipped unless "
        "--overwrite. Needs ANTsPy: pip install \"lsm[registration]\".",
    )
    p.add_argument("--images", nargs="+", required=True, metavar="PATH",
                   help="native scans: a folder, a quoted glob, or files (subject from sub-<label>)")
    p.add_argument("-l", "--lesions", nargs="+", required=True, metavar="PATH",
                   help="native lesion masks on the scans' grids: a folder, a quoted glob, or files")
    p.add_argument("--brain-masks", nargs="+", metavar="PATH",
                   help="native brain masks (needed for MR scans that still show the skull)")
    p.add_argument("--modality", required=True, choices=["t1", "flair", "t2", "dwi", "ct"],
                   help="contrast of the scans")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="register again the subjects already in OUTPUT")
    p.add_argument("--resolution", type=float, default=2.0, metavar="MM",
                   help="template and output voxel size (mm)")
    p.add_argument("--template", metavar="NIFTI", help="brain-extracted template (default: nilearn's MNI152)")
    p.add_argument("--template-mask", metavar="NIFTI", help="brain mask of --template")
    p.add_argument("--template-space", metavar="NAME", help="name of --template's space for space- entities")
    p.add_argument("--no-cost-function-masking", action="store_true",
                   help="do not exclude the lesion from the similarity metric")
    p.add_argument("--no-lesion-filling", action="store_true",
                   help="do not fill the lesion with mirrored healthy tissue before SyN")
    p.add_argument("--interpolation", choices=["linear", "nearest"], default="linear",
                   help="lesion warping: linear thresholded to keep the interpolated volume, or nearest neighbour")
    p.add_argument("--random-state", type=int, default=0, help="seed of ANTs's metric sampling")
    p.add_argument("--n-jobs", type=int, default=1, help="subjects registered in parallel (-1: all cores)")
    p.set_defaults(func=run_register)
    return p


def _sources(values):
    from ..cohort import _collect_lesion_sources

    if not values:
        return {}
    return _collect_lesion_sources(values[0] if len(values) == 1 else list(values))


def run_register(args):
    from ..exceptions import OutputExistsError
    from ._register import register_lesions
    from ._result import RegistrationResult

    out = Path(args.output)
    images, lesions = _sources(args.images), _sources(args.lesions)
    brains = _sources(args.brain_masks)
    previous = None
    if (out / "registration.json").exists() and not args.overwrite:
        previous = RegistrationResult.load(out)
        if previous.params.get("modality") != args.modality:
            raise OutputExistsError(
                f"{str(out)!r} holds a registration of modality {previous.params.get('modality')!r}, not "
                f"{args.modality!r}: choose another output folder or pass --overwrite.")
    elif out.exists() and any(out.iterdir()) and not args.overwrite:
        raise OutputExistsError(f"Output {str(out)!r} exists and is not an lsm registration folder; pass "
                                "--overwrite or choose another folder.")
    done = set(previous.qc.index) if previous is not None else set()
    todo = sorted((set(images) | set(lesions)) - done)
    if not args.quiet:
        print(f"lsm register: {len(done)} subject(s) already done in {out}, {len(todo)} to register")
    if not todo:
        return 0
    result = register_lesions(
        {s: images[s] for s in todo if s in images}, {s: lesions[s] for s in todo if s in lesions},
        modality=args.modality, template=args.template, template_mask=args.template_mask,
        template_space=args.template_space, brain_masks={s: brains[s] for s in todo if s in brains} or None,
        resolution=args.resolution, cost_function_masking=not args.no_cost_function_masking,
        lesion_filling=not args.no_lesion_filling, interpolation=args.interpolation,
        random_state=args.random_state, n_jobs=args.n_jobs, verbose=0 if args.quiet else 1)
    if previous is not None:
        result = merge_results(previous, result)
    write_resumable(result, out, new=[s for s in todo if s in result.lesions])
    if not args.quiet:
        print(result.summary())
        print(f"lsm: wrote {out}/ (QC page: {out / 'qc.html'})")
    return 0


def merge_results(old, new):
    """``old`` with ``new``'s subjects added (new rows win); parameters must agree."""
    from ._register import flag_qc
    from ._result import RegistrationResult

    keys = ("modality", "template_space", "resolution", "target_shape")
    differ = [k for k in keys if old.params.get(k) != new.params.get(k)]
    if differ:
        from ..exceptions import OutputExistsError

        raise OutputExistsError(f"The output folder was registered with other parameters ({', '.join(differ)}); "
                                "pass --overwrite or choose another folder.")
    qc = pd.concat([old.qc.drop(index=new.qc.index, errors="ignore"), new.qc]).sort_index()
    qc = flag_qc(qc.drop(columns=["flagged", "flag_reason"]))
    excluded = pd.concat([old.excluded[~old.excluded["subject"].isin(new.qc.index)], new.excluded],
                         ignore_index=True).drop_duplicates("subject", keep="last")
    return RegistrationResult(
        lesions={**old.lesions, **new.lesions}, qc=qc, params=new.params, provenance=new.provenance,
        excluded=excluded, transforms={**old.transforms, **new.transforms},
        overlays={**old.overlays, **new.overlays})


def write_resumable(result, out, new):
    """Write each new subject's folder atomically (temp folder, then rename), then the tables."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for s in new:
        tmp = Path(tempfile.mkdtemp(prefix=f".{s}.tmp-", dir=out))
        try:
            result.write_subject(tmp, s)
            if (out / s).exists():
                shutil.rmtree(out / s)
            os.replace(tmp / s, out / s)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result.write_tables(out)
