"""Native-space lesion masks to MNI space with ANTs (affine, then lesion-masked SyN).

Pipeline per subject (:func:`register_lesions`):

1. Checks: 3D image, lesion on the same grid, binary, non-empty, smaller than the brain.
2. Preprocessing by modality (:mod:`lsm.registration._preprocess`): CT windowed and
   brain-extracted; MR N4-corrected and brain-extracted.
3. Rigid -> affine registration to the template with Mattes mutual information, on the
   whole brain (no mask: a lesion barely moves a 12-parameter fit, and the ANTs
   maintainers advise the mask for the deformable stage only).
4. Lesion filling: the lesion (dilated by one voxel) is replaced by the healthy tissue
   of the other hemisphere, mirrored through the symmetric template's midline after the
   affine stage (enantiomorphic normalisation, Nachev et al. 2008; the Clinical toolbox's
   lesion filling).
5. SyN only (deformable) with mutual information, starting from the affine, the lesion
   dilated by ``mask_dilation_mm`` excluded from the metric (cost-function masking,
   Brett et al. 2001; ANTs ``moving_mask``).
6. The lesion warped with linear interpolation onto the output grid (the arterial atlas's
   MNI152 grid by default) and thresholded at the level that keeps the interpolated volume
   (``_binarize``), or warped by nearest neighbour.

Why steps 4-5 (the lesion-volume trap): a dark (hypo-intense) lesion given only as the
moving mask of a SyN stage still shrank by 17-27 % in volume on synthetic CT. The mask
removes the lesion's own voxels from the metric, but the points just outside it still see
the lesion's dark edge (the images are smoothed at the coarse levels and the metric
gradient is an image gradient), and SyN pulls that edge towards darker template tissue.
Dilating the excluded region by 4 mm brought the ratio to 0.94-0.96; filling the lesion
with mirrored healthy tissue removes the edge itself and kept the volume within 1-2 %
(measured ratios are in ``benchmarks/bench_registration.py``).
"""

import dataclasses
import io
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage

from .._validation import check_option, check_random_state
from ..exceptions import LesionImageError, LSMError
from ._ants import grid_image, import_ants, to_ants
from ._preprocess import MODALITIES, prepare_image

__all__ = ["register_lesions", "DEFAULT_TEMPLATE_SPACE", "ATLAS_TEMPLATE_SPACE"]

logger = logging.getLogger("lsm")

#: nilearn's bundled template (mni_icbm152_t1_tal_nlin_sym_09a): TemplateFlow name.
DEFAULT_TEMPLATE_SPACE = "MNI152NLin2009aSym"
#: The template of the arterial atlas, the SOOP masks and FSL's MNI152 grid.
ATLAS_TEMPLATE_SPACE = "MNI152NLin6Asym"

QC_COLUMNS = {
    "similarity_mi": "Mattes mutual information between the template and the warped scan inside the "
                     "template brain (higher is better).",
    "brain_dice": "Dice of the warped subject brain mask with the template brain mask.",
    "native_ml": "Lesion volume in the native scan (ml).",
    "mni_ml": "Lesion volume in MNI space on the output grid (ml).",
    "volume_ratio": "mni_ml / native_ml.",
    "volume_ratio_nonlinear": "mni_ml / (native_ml scaled by the affine stage): the change of volume due "
                              "to the deformable stage alone (1 = kept).",
    "jacobian_min": "Smallest Jacobian determinant of the deformable stage inside the warped lesion.",
    "jacobian_max": "Largest Jacobian determinant of the deformable stage inside the warped lesion.",
    "outside_brain_fraction": "Share of the warped lesion outside the template brain mask.",
    "hemisphere": "Hemisphere of the lesion centroid in MNI space (x < 0: left).",
    "hemisphere_kept": "Whether the lesion centroid is on the same side after the affine and the "
                       "deformable stage.",
    "runtime_s": "Wall time of this subject's registration (s).",
    "flagged": "True when a QC value is out of range (see flag_reason).",
    "flag_reason": "Why the subject is flagged.",
}

# iterations of the rigid and affine stages per level (shrink 6, 4, 2, 1): ANTs's defaults
# (2100, 1200, 1200, 10) cost twice the time for no measurable gain on 2 mm templates
_AFF_ITERATIONS = (1000, 500, 250, 0)

# QC limits: (column, low, high); a value outside flags the subject
QC_LIMITS = [
    ("brain_dice", 0.85, None),
    ("volume_ratio_nonlinear", 0.85, 1.15),
    ("outside_brain_fraction", None, 0.2),
    ("jacobian_min", 0.2, None),
    ("jacobian_max", None, 5.0),
]


@dataclasses.dataclass
class _Options:
    modality: str
    resolution: float
    interpolation: str
    cost_function_masking: bool
    lesion_filling: bool
    mask_dilation_mm: float
    ct_window: tuple
    n4: bool
    syn_iterations: tuple
    flow_sigma: float
    total_sigma: float
    seed: int
    template_space: str


# ------------------------------------------------------------------ inputs
def _as_image(source, what, subject):
    import nibabel as nib

    if isinstance(source, nib.spatialimages.SpatialImage):
        return source
    try:
        return nib.load(str(source))
    except Exception as exc:
        raise LesionImageError(f"Cannot read the {what} of {subject} ({str(source)!r}): {exc}") from exc


def _squeeze3d(img, what, subject, source):
    import nibabel as nib

    shape = tuple(img.shape)
    if len(shape) == 4 and shape[3] == 1:
        return nib.Nifti1Image(np.asarray(img.dataobj).reshape(shape[:3]), img.affine, img.header)
    if len(shape) != 3:
        raise LesionImageError(
            f"The {what} of {subject} ({_name(source)}) must be a 3D image, but its shape is {shape}; "
            "pick one volume (e.g. the b1000 or ADC volume of a DWI series) first."
        )
    return img


def _name(source):
    return str(source) if isinstance(source, (str, os.PathLike)) else "in-memory image"


def _collect(sources):
    from ..cohort import _collect_lesion_sources

    if sources is None:
        return {}
    return _collect_lesion_sources(sources) if not isinstance(sources, Mapping) else {
        _normalize(k): v for k, v in sources.items()}


def _normalize(subject):
    from ..cohort import normalize_id

    return normalize_id(subject)


def check_inputs(subject, image_src, lesion_src, brain_src=None):
    """Read and check one subject's scan, lesion (and brain mask): 3D, same grid, binary, non-empty.

    Returns (image, lesion bool array, brain bool array or None).
    """
    img = _squeeze3d(_as_image(image_src, "image", subject), "image", subject, image_src)
    les_img = _squeeze3d(_as_image(lesion_src, "lesion mask", subject), "lesion mask", subject, lesion_src)
    if tuple(img.shape) != tuple(les_img.shape) or not np.allclose(img.affine, les_img.affine, atol=1e-3):
        raise LesionImageError(
            f"The image and lesion mask of {subject} are on different grids: image {_name(image_src)} has "
            f"shape {tuple(img.shape)}, lesion {_name(lesion_src)} has shape {tuple(les_img.shape)}"
            + ("" if tuple(img.shape) != tuple(les_img.shape) else " (the affines differ)")
            + ". Resample the lesion onto its image first."
        )
    values = np.asarray(les_img.dataobj, dtype=np.float64)
    if not np.isfinite(values).all():
        raise LesionImageError(f"The lesion mask of {subject} ({_name(lesion_src)}) contains NaN or inf.")
    uniq = np.unique(values)
    if not np.isin(uniq, (0.0, 1.0)).all():
        shown = ", ".join(f"{v:g}" for v in uniq[:6]) + (", ..." if uniq.size > 6 else "")
        raise LesionImageError(
            f"The lesion mask of {subject} ({_name(lesion_src)}) is not binary: values {shown}; "
            "allowed are 0 and 1. Threshold it first."
        )
    lesion = values > 0.5
    if not lesion.any():
        raise LesionImageError(f"The lesion mask of {subject} ({_name(lesion_src)}) is empty.")
    brain = None
    if brain_src is not None:
        b_img = _squeeze3d(_as_image(brain_src, "brain mask", subject), "brain mask", subject, brain_src)
        if tuple(b_img.shape) != tuple(img.shape):
            raise LesionImageError(
                f"The brain mask of {subject} has shape {tuple(b_img.shape)}, its image {tuple(img.shape)}.")
        brain = np.asarray(b_img.dataobj) > 0
    return img, lesion, brain


# ------------------------------------------------------------------ template
def load_template(template=None, template_mask=None, resolution=2, template_space=None):
    """(template image, brain mask image, space name): nilearn's MNI152 by default."""
    import nibabel as nib

    if template is None:
        from nilearn import datasets

        if float(resolution) != int(resolution) or int(resolution) < 1:
            raise ValueError(f"resolution must be a whole number of mm (1, 2, 3...) for the default template, "
                             f"got {resolution!r}; pass template= for other voxel sizes.")
        t = datasets.load_mni152_template(resolution=int(resolution))
        m = datasets.load_mni152_brain_mask(resolution=int(resolution))
        data = np.asarray(t.get_fdata(), dtype=np.float32) * (np.asarray(m.get_fdata()) > 0)
        return (nib.Nifti1Image(data, t.affine), nib.Nifti1Image((m.get_fdata() > 0).astype(np.uint8), m.affine),
                template_space or DEFAULT_TEMPLATE_SPACE)
    t = _as_image(template, "template", "the template")
    if template_mask is None:
        mask = np.asarray(t.get_fdata()) > 0
    else:
        m = _as_image(template_mask, "template brain mask", "the template")
        if tuple(m.shape[:3]) != tuple(t.shape[:3]):
            raise LesionImageError(f"template_mask has shape {tuple(m.shape)}, the template {tuple(t.shape)}.")
        mask = np.asarray(m.dataobj).reshape(t.shape[:3]) > 0
    data = np.asarray(t.get_fdata(), dtype=np.float32).reshape(t.shape[:3]) * mask
    return (nib.Nifti1Image(data, t.affine), nib.Nifti1Image(mask.astype(np.uint8), t.affine),
            template_space or "custom")


# ------------------------------------------------------------------ one subject
def _set_seed(ants, seed):
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    ants.config._random_seed = int(seed)


def _mirrored(ants, native, fixed, affine_tx):
    """Mirror a native ANTsImage through the template's midline (x = 0) after the affine stage."""
    warped = ants.apply_transforms(fixed, native, affine_tx)
    arr = warped.numpy()
    flipped = warped.new_image_like(np.ascontiguousarray(arr[::-1]))
    centre_x = warped.origin[0] + warped.spacing[0] * warped.direction[0, 0] * (arr.shape[0] - 1) / 2
    if abs(centre_x) > 1e-3:  # a grid not centred on x = 0: the flip also shifts by twice the offset
        tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                        translation=[2 * centre_x, 0.0, 0.0])
        flipped = ants.apply_ants_transform_to_image(tx, flipped, warped)
    return ants.apply_transforms(native, flipped, affine_tx, whichtoinvert=[True]).numpy()


def _mirror_fill(ants, moving, fixed, affine_tx, lesion, data):
    """Native image with the (1-voxel dilated) lesion replaced by mirrored healthy tissue.

    Where the mirrored tissue is itself lesioned (bilateral lesions) or outside the brain,
    the median of the healthy brain is used.
    """
    region = ndimage.binary_dilation(lesion, iterations=1)
    back = _mirrored(ants, moving, fixed, affine_tx)
    mirrored_lesion = _mirrored(ants, moving.new_image_like(lesion.astype(np.float32)), fixed, affine_tx) > 0.5
    healthy = data[(data > 0) & ~region]
    fallback = float(np.median(healthy)) if healthy.size else 0.0
    fill = np.where(mirrored_lesion | (back <= 0), fallback, back)
    return np.where(region, fill, data).astype(np.float32)


def _read_affine_matrix(ants, path):
    tx = ants.read_transform(path)
    params = np.asarray(tx.parameters, dtype=np.float64)
    return params[:9].reshape(3, 3)


def _binarize(fraction):
    """Binary mask from a linearly interpolated lesion, keeping its warped volume.

    The interpolated values sum to the lesion's volume after the warp (in output voxels);
    thresholding at a fixed 0.5 cuts the corners of a small, convex lesion (its rim
    samples fall below 0.5 more often than above), which lost 2-5 % of a 5 ml lesion at
    2 mm. The threshold is instead the value of the k-th largest voxel, k the rounded sum,
    so the binary mask has the interpolated volume (ties at the threshold are kept).
    """
    values = fraction[fraction > 0]
    if values.size == 0:
        return fraction > 0
    k = min(max(int(round(float(values.sum(dtype=np.float64)))), 1), values.size)
    threshold = np.partition(values, values.size - k)[values.size - k]
    return fraction >= threshold


def _overlay_png(warped, template, lesion_mni_t, subject, dpi=80):
    """PNG bytes: the warped scan (grey) with template brain contours and the lesion in colour."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    lesion_cmap = ListedColormap(["#ff2a2a"])

    fig = Figure(figsize=(9, 3.2))
    idx = np.argwhere(lesion_mni_t)
    centre = idx.mean(axis=0).round().astype(int) if idx.size else np.array(warped.shape) // 2
    vmax = np.percentile(warped[warped > 0], 99) if (warped > 0).any() else 1.0
    for k, axis in enumerate((2, 1, 0)):
        ax = fig.add_subplot(1, 3, k + 1)
        take = [slice(None)] * 3
        take[axis] = int(centre[axis])
        img, tpl, les = (np.asarray(a[tuple(take)]).T for a in (warped, template, lesion_mni_t))
        ax.imshow(img, origin="lower", cmap="gray", vmin=0, vmax=vmax)
        ax.contour(tpl, levels=[0.5], colors="#33ccff", linewidths=0.7)
        if les.any():
            ax.imshow(np.ma.masked_where(les == 0, les), origin="lower", cmap=lesion_cmap, alpha=0.55,
                      vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(("axial", "coronal", "sagittal")[k], fontsize=9)
    fig.suptitle(subject, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _register_one(subject, image_src, lesion_src, brain_src, template, template_mask, target, opts):
    """Register one subject; returns a dict (lesion, transforms, QC values, overlay) or raises."""
    import nibabel as nib

    ants = import_ants()
    _set_seed(ants, opts.seed)
    start = time.perf_counter()
    img, lesion, brain_given = check_inputs(subject, image_src, lesion_src, brain_src)
    data, brain, steps = prepare_image(img, lesion, opts.modality, brain_given, opts.ct_window, opts.n4)
    voxel_ml = abs(np.linalg.det(img.affine[:3, :3])) / 1000.0
    native_ml = float(lesion.sum() * voxel_ml)
    if lesion.sum() >= 0.9 * brain.sum():
        raise LesionImageError(
            f"The lesion mask of {subject} ({native_ml:.0f} ml) is as large as the brain found in its image "
            f"({brain.sum() * voxel_ml:.0f} ml): check that the mask is a lesion, not a brain mask.")
    fixed = to_ants(template)
    fixed_mask = to_ants(template_mask)
    moving = to_ants(nib.Nifti1Image(data, img.affine))
    tmp = tempfile.mkdtemp(prefix="lsm-reg-")
    try:
        rigid = ants.registration(fixed, moving, "Rigid", aff_metric="mattes", aff_iterations=_AFF_ITERATIONS,
                                  outprefix=os.path.join(tmp, "r_"))
        affine = ants.registration(fixed, moving, "Affine", initial_transform=rigid["fwdtransforms"],
                                   aff_metric="mattes", aff_iterations=_AFF_ITERATIONS,
                                   outprefix=os.path.join(tmp, "a_"))
        affine_tx = affine["fwdtransforms"]
        moving_syn = moving
        if opts.lesion_filling:
            filled = _mirror_fill(ants, moving, fixed, affine_tx, lesion, data)
            moving_syn = moving.new_image_like(filled)
            steps.append("lesion filled with mirrored healthy tissue")
        moving_mask = None
        if opts.cost_function_masking:
            vox = np.asarray(nib.affines.voxel_sizes(img.affine), dtype=float)
            excluded = lesion
            if opts.mask_dilation_mm > 0:
                radius = np.maximum(np.round(opts.mask_dilation_mm / vox), 1).astype(int)
                grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
                ball = sum((g * v / opts.mask_dilation_mm) ** 2 for g, v in zip(grid, vox)) <= 1.0
                excluded = ndimage.binary_dilation(lesion, structure=ball)
            moving_mask = moving.new_image_like((brain & ~excluded).astype(np.float32))
        syn = ants.registration(
            fixed, moving_syn, "SyNOnly", initial_transform=affine_tx, mask=fixed_mask, moving_mask=moving_mask,
            syn_metric="mattes", reg_iterations=tuple(opts.syn_iterations), flow_sigma=opts.flow_sigma,
            total_sigma=opts.total_sigma, outprefix=os.path.join(tmp, "s_"))
        transforms = syn["fwdtransforms"]  # [warp, affine]
        warp_path = [t for t in transforms if t.endswith(".nii.gz")][0]
        lesion_ants = moving.new_image_like(lesion.astype(np.float32))
        interp = "linear" if opts.interpolation == "linear" else "nearestNeighbor"
        binarize = _binarize if opts.interpolation == "linear" else (lambda values: values >= 0.5)

        def warp_lesion(reference, chain):
            return binarize(ants.apply_transforms(reference, lesion_ants, chain, interpolator=interp).numpy())

        lesion_out = warp_lesion(grid_image(*target), transforms)
        # QC on the template grid
        lesion_t = warp_lesion(fixed, transforms)
        lesion_aff = warp_lesion(fixed, affine_tx)
        warped = ants.apply_transforms(fixed, moving, transforms)
        brain_img = moving.new_image_like(brain.astype(np.float32))
        brain_t = ants.apply_transforms(fixed, brain_img, transforms).numpy() >= 0.5
        tmask = template_mask.get_fdata() > 0
        brain_dice = 2 * np.count_nonzero(brain_t & tmask) / max(brain_t.sum() + tmask.sum(), 1)
        similarity = -float(ants.image_mutual_information(fixed, warped * fixed_mask))
        jac = ants.create_jacobian_determinant_image(fixed, warp_path).numpy()
        jac_in = jac[lesion_t] if lesion_t.any() else np.array([np.nan])
        det = abs(np.linalg.det(_read_affine_matrix(ants, affine_tx[0])))
        out_ml = float(lesion_out.sum() * abs(np.linalg.det(target[0][:3, :3])) / 1000.0)
        x_mm = _centroid_x(lesion_t, template.affine)
        x_aff = _centroid_x(lesion_aff, template.affine)
        with open(warp_path, "rb") as fh:
            warp_bytes = fh.read()
        with open(affine_tx[0], "rb") as fh:
            affine_bytes = fh.read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    overlay = _overlay_png(warped.numpy(), tmask, lesion_t, subject)
    qc = {
        "similarity_mi": similarity,
        "brain_dice": float(brain_dice),
        "native_ml": native_ml,
        "mni_ml": out_ml,
        "volume_ratio": out_ml / native_ml,
        "volume_ratio_nonlinear": out_ml / (native_ml / det) if det > 0 else np.nan,
        "jacobian_min": float(np.nanmin(jac_in)),
        "jacobian_max": float(np.nanmax(jac_in)),
        "outside_brain_fraction": float(np.count_nonzero(lesion_t & ~tmask) / max(lesion_t.sum(), 1)),
        "hemisphere": _side(x_mm),
        "hemisphere_kept": bool(_side(x_mm) == _side(x_aff)),
        "runtime_s": time.perf_counter() - start,
    }
    return {"subject": subject, "lesion": lesion_out.astype(np.uint8), "qc": qc, "steps": steps,
            "transforms": {"affine": affine_bytes, "warp": warp_bytes}, "overlay": overlay}


def _centroid_x(mask, affine):
    idx = np.argwhere(mask)
    if idx.size == 0:
        return np.nan
    return float((np.asarray(affine)[:3, :3] @ idx.mean(axis=0) + np.asarray(affine)[:3, 3])[0])


def _side(x):
    if not np.isfinite(x):
        return "n/a"
    return "left" if x < 0 else "right"


def _safe_register(*args):
    subject = args[0]
    try:
        return _register_one(*args)
    except LSMError:
        raise
    except Exception as exc:  # noqa: BLE001 - an ANTs failure excludes the subject with its reason
        logger.warning("Registration of %s failed: %s", subject, exc)
        return {"subject": subject, "error": f"registration failed: {type(exc).__name__}: {exc}"}


def flag_qc(table):
    """Add ``flagged``/``flag_reason``: fixed QC limits, plus robust outliers (> 3.5 MAD) from 5 subjects."""
    table = table.copy()
    reasons = {s: [] for s in table.index}
    for col, low, high in QC_LIMITS:
        for s, v in table[col].items():
            if not np.isfinite(v):
                reasons[s].append(f"{col} is not finite")
            elif low is not None and v < low:
                reasons[s].append(f"{col} {v:.3g} < {low:g}")
            elif high is not None and v > high:
                reasons[s].append(f"{col} {v:.3g} > {high:g}")
    for s, kept in table["hemisphere_kept"].items():
        if not kept:
            reasons[s].append("lesion centroid changed hemisphere in the deformable stage")
    if len(table) >= 5:
        for col in ("similarity_mi", "brain_dice"):
            v = table[col].astype(float)
            med = v.median()
            mad = 1.4826 * (v - med).abs().median()
            if mad > 0:
                for s, z in ((v - med) / mad).items():
                    if z < -3.5:
                        reasons[s].append(f"{col} is a low outlier ({z:.1f} robust SD below the median)")
    table["flagged"] = [bool(reasons[s]) for s in table.index]
    table["flag_reason"] = ["; ".join(reasons[s]) for s in table.index]
    return table


# ------------------------------------------------------------------ public API
def register_lesions(images, lesions, *, modality, template=None, template_mask=None, template_space=None,
                     brain_masks=None, resolution=2, target_img=None, cost_function_masking=True,
                     lesion_filling=True, mask_dilation_mm=4.0, interpolation="linear", ct_window=(0.0, 100.0),
                     n4=True, syn_iterations=(40, 20, 10), flow_sigma=3.0, total_sigma=2.0, random_state=0,
                     n_jobs=1, verbose=0):
    """Register native-space lesion masks to MNI space with ANTs.

    For each subject, the anatomical scan and its lesion mask (same native grid) are
    registered to the template (rigid -> affine on the whole brain, then a deformable SyN
    stage with the lesion filled by mirrored healthy tissue and excluded from the metric),
    and the lesion is warped onto ``target_img`` (default: the MNI152 grid of the arterial
    atlas at ``resolution`` mm). Needs ANTsPy: ``pip install "lsm[registration]"``.

    Parameters
    ----------
    images, lesions : folder, glob, list of paths or mapping subject -> path or image
        The native scans and lesion masks; subjects from the ``sub-<label>`` entity in file
        names or the mapping keys. Each lesion must be binary and on its image's grid.
    modality : {"t1", "flair", "t2", "dwi", "ct"}
        Contrast of the scans (``"dwi"``: b1000 or ADC; ``"ct"``: non-contrast CT in HU).
    template : None, path or Nifti1Image
        Brain-extracted template. None: nilearn's MNI152 2009a symmetric T1 at
        ``resolution`` mm (no download).
    template_mask : None, path or Nifti1Image
        Brain mask of ``template`` (default: its non-zero voxels).
    template_space : str or None
        Name of the template's space written in ``space-`` entities (default
        ``"MNI152NLin2009aSym"`` for nilearn's template, ``"custom"`` otherwise).
    brain_masks : None or like ``images``
        Native brain masks (needed for MR scans that still show the skull).
    resolution : float
        Voxel size (mm) of the template and of the default output grid. 2 mm: 1 mm costs
        several CPU-minutes more per subject for a Dice gain of about 0.02.
    target_img : None or Nifti1Image
        Output grid (default: ``lsm``'s MNI152 grid at ``resolution``, that of the arterial atlas).
    cost_function_masking : bool
        Exclude the lesion (dilated by ``mask_dilation_mm``) from the SyN metric.
    lesion_filling : bool
        Fill the lesion with mirrored healthy tissue before the SyN stage.
    mask_dilation_mm : float
        Dilation of the lesion for cost-function masking (mm).
    interpolation : {"linear", "nearest"}
        Lesion warping: linear interpolation, thresholded at the level that keeps the
        interpolated volume (the sum of the interpolated values; a fixed 0.5 cuts the rim
        of small lesions: 2 % of a 5 ml T1 lesion at 2 mm), or nearest neighbour.
    ct_window : tuple of float
        HU window for CT (intensities clipped to it).
    n4 : bool
        N4 bias-field correction of MR scans.
    syn_iterations : tuple of int
        SyN iterations per level (shrink 4, 2, 1). The full-resolution level (10) doubles
        the time and, with ``total_sigma=2``, brought a 5 ml T1 lesion at 2 mm from a volume
        ratio of 0.87 to 0.92 (Dice 0.92 to 0.94, with the volume-keeping threshold); on
        10 cases of 5-150 ml (T1, CT) no Dice got lower and every other ratio is within 5 %.
    flow_sigma, total_sigma : float
        SyN regularisation: smoothing of the update and of the total field (voxels). On the
        5 ml T1 lesion (with 2 levels), total-field smoothing 0 gave a ratio of 0.81, 1
        gave 0.87, 2 gave 0.86 (0.90 with the volume-keeping threshold); flow sigma 2 or
        5, a wider masked margin (8 mm) or no filling did not help. The SyN stage
        compresses a small masked region by 4-7 % (its Jacobian > 1 there); the last
        level and a smoother field reduce that.
    random_state : None or int
        Seed of ANTs's random metric sampling: the same seed gives identical masks, for
        any ``n_jobs``. None draws a seed (recorded in ``provenance``).
    n_jobs : int
        Subjects registered in parallel (joblib); ANTs runs single-threaded in each job.
    verbose : int

    Returns
    -------
    RegistrationResult
        MNI lesion masks, transforms, QC table (``to_dataframe()``), QC page (``to_html``).
    """
    import nibabel as nib

    from .._images import mni_grid
    from .._validation import check_n_jobs
    from ..stats._parallel import parallel_map
    from ._result import RegistrationResult, make_provenance

    import_ants()
    check_option("modality", modality, MODALITIES)
    check_option("interpolation", interpolation, ("linear", "nearest"))
    check_n_jobs(n_jobs)
    if random_state is None or isinstance(random_state, np.random.Generator):
        seed = int(check_random_state(random_state).integers(1, 2**31 - 1))
    elif isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        seed = int(random_state)
    else:
        raise TypeError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}.")
    images_by = _collect(images)
    lesions_by = _collect(lesions)
    brains_by = _collect(brain_masks)
    missing_lesion = sorted(set(images_by) - set(lesions_by))
    missing_image = sorted(set(lesions_by) - set(images_by))
    subjects = sorted(set(images_by) & set(lesions_by))
    if not subjects:
        raise LesionImageError(
            f"No subject has both an image and a lesion mask (images: {sorted(images_by)[:3]}, "
            f"lesions: {sorted(lesions_by)[:3]}).")
    for s in subjects:  # cheap header checks before any registration
        check_inputs(s, images_by[s], lesions_by[s], brains_by.get(s))
    tpl, tmask, space = load_template(template, template_mask, resolution, template_space)
    if target_img is None:
        target = mni_grid(resolution)
    else:
        t_img = _as_image(target_img, "target grid", "target_img")
        target = (np.asarray(t_img.affine, dtype=np.float64), tuple(t_img.shape[:3]))
    opts = _Options(modality, float(resolution), interpolation, bool(cost_function_masking), bool(lesion_filling),
                    float(mask_dilation_mm), tuple(float(v) for v in ct_window), bool(n4),
                    tuple(int(v) for v in syn_iterations), float(flow_sigma), float(total_sigma), seed, space)
    start = time.perf_counter()
    outputs = parallel_map(
        _safe_register,
        [(s, images_by[s], lesions_by[s], brains_by.get(s), tpl, tmask, target, opts) for s in subjects],
        n_jobs=n_jobs, verbose=verbose, desc="Registering", leave=True)
    excluded = [(s, "image without a lesion mask") for s in missing_lesion]
    excluded += [(s, "lesion mask without an image") for s in missing_image]
    lesions_out, transforms, overlays, rows, steps = {}, {}, {}, {}, {}
    for out in outputs:
        s = out["subject"]
        if "error" in out:
            excluded.append((s, out["error"]))
            continue
        lesions_out[s] = nib.Nifti1Image(out["lesion"], target[0])
        transforms[s] = out["transforms"]
        overlays[s] = out["overlay"]
        rows[s] = out["qc"]
        steps[s] = out["steps"]
    qc = pd.DataFrame.from_dict(rows, orient="index", columns=[c for c in QC_COLUMNS if c not in
                                                              ("flagged", "flag_reason")])
    qc.index.name = "participant_id"
    if len(qc):
        qc = flag_qc(qc)
    else:
        qc["flagged"] = pd.Series(dtype=bool)
        qc["flag_reason"] = pd.Series(dtype=object)
    params = {"modality": modality, "template_space": space, "resolution": float(resolution),
              "target_shape": list(target[1]), "target_affine": np.asarray(target[0]).tolist(),
              "cost_function_masking": bool(cost_function_masking), "lesion_filling": bool(lesion_filling),
              "mask_dilation_mm": float(mask_dilation_mm), "interpolation": interpolation,
              "ct_window": list(opts.ct_window), "n4": bool(n4), "syn_iterations": list(opts.syn_iterations),
              "flow_sigma": float(flow_sigma), "total_sigma": float(total_sigma),
              "stages": ["rigid (Mattes MI)", "affine (Mattes MI)", "SyN only (Mattes MI, lesion masked)"],
              "preprocessing": next(iter(steps.values()), [])}
    provenance = make_provenance(seed, n_jobs, start)
    return RegistrationResult(lesions=lesions_out, qc=qc, params=params, provenance=provenance,
                              excluded=pd.DataFrame(excluded, columns=["subject", "reason"]),
                              transforms=transforms, overlays=overlays)
