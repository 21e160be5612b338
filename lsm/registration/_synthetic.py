"""Synthetic native-space scans with a known map to MNI space (ground truth for registration).

A case is the MNI152 template pulled into a made-up "native" space through a known map
``x = B y + v(y)`` (``y``: native world mm, ``x``: template world mm; ``B`` a random
rotation/scaling/translation, ``v`` a smooth random displacement field), with a lesion
planted in template space. The lesion in MNI space is therefore known exactly, and a
registration of the native scan and mask back to the template can be scored against it.

Intensities follow the modality: ``"t1"`` (the template itself, a multiplicative bias
field and noise, the lesion hypo-intense), ``"ct"`` (Hounsfield units built from the
template's grey/white-matter maps: CSF ~8, grey matter ~38, white matter ~28 HU, the
lesion hypodense at ~16 HU, a skull of ~1200 HU, scalp and air around it). Only numpy,
scipy, nibabel and nilearn are used, so the generator works without ANTs.
"""

import numpy as np
from scipy import ndimage

from .._validation import check_option, check_random_state

__all__ = ["synthetic_case", "template_images", "make_isles24_tree"]

_MODALITIES = ("t1", "flair", "t2", "dwi", "ct")


def template_images(resolution=1):
    """Load the nilearn MNI152 (ICBM 2009a symmetric) T1, brain mask, grey and white matter maps."""
    from nilearn import datasets

    return {
        "t1": datasets.load_mni152_template(resolution=resolution),
        "brain": datasets.load_mni152_brain_mask(resolution=resolution),
        "gm": datasets.load_mni152_gm_template(resolution=resolution),
        "wm": datasets.load_mni152_wm_template(resolution=resolution),
    }


def _random_linear(rng, rotation_deg, scaling, translation_mm):
    angles = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, size=3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    scale = np.diag(rng.uniform(1 - scaling, 1 + scaling, size=3))
    linear = rz @ ry @ rx @ scale
    return linear, rng.uniform(-translation_mm, translation_mm, size=3)


def _smooth_field(rng, shape, voxel_mm, max_mm, sigma_mm):
    """Three smooth random displacement components (mm) on ``shape``, max |v| = ``max_mm``."""
    field = np.empty((3,) + tuple(shape), dtype=np.float32)
    for axis in range(3):
        noise = rng.standard_normal(shape).astype(np.float32)
        field[axis] = ndimage.gaussian_filter(noise, sigma_mm / voxel_mm, mode="reflect")
    peak = np.abs(field).max()
    if peak > 0:
        field *= max_mm / peak
    return field


def _plant_lesion(rng, brain, gm, wm, affine, volume_ml, centre_mm=None):
    """Boolean template-space lesion of ``volume_ml`` in one hemisphere, irregular, in tissue."""
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    n_target = max(1, int(round(volume_ml / voxel_ml)))
    tissue = (gm + wm > 0.5) & brain
    ijk = np.indices(brain.shape).reshape(3, -1)
    world = (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape((3,) + brain.shape)
    side = rng.choice([-1.0, 1.0])
    hemisphere = side * world[0] > 2.0
    # centres far enough from the midline and the brain edge for the lesion to fit
    radius_mm = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    depth = ndimage.distance_transform_edt(brain, sampling=np.abs(np.diag(affine)[:3]))
    centres = np.flatnonzero(tissue & hemisphere & (depth > min(radius_mm, 25.0) + 3)
                             & (side * world[0] > min(radius_mm, 35.0) * 0.6 + 8)
                             & (world[2] > -30))
    if centre_mm is not None:  # the admissible centre nearest a requested point (jittered by 6 mm)
        side = 1.0 if centre_mm[0] >= 0 else -1.0
        centres = np.flatnonzero(tissue & (side * world[0] > 10) & (depth > 4))
        want = np.asarray(centre_mm, dtype=float) + rng.normal(0.0, 6.0, size=3)
        cand = world.reshape(3, -1)[:, centres]
        centres = centres[[int(np.argmin(((cand - want[:, None]) ** 2).sum(axis=0)))]]
        hemisphere = side * world[0] > 2.0
    if centres.size == 0:
        raise ValueError(f"No room in the template for a {volume_ml} ml lesion.")
    centre = np.array(np.unravel_index(rng.choice(centres), brain.shape))
    centre_mm = affine[:3, :3] @ centre + affine[:3, 3]
    dist = np.sqrt(((world - centre_mm[:, None, None, None]) ** 2).sum(axis=0))
    vox = abs(affine[0, 0])
    wobble = ndimage.gaussian_filter(rng.standard_normal(brain.shape), 6.0 / vox)
    wobble *= 0.35 * radius_mm / max(np.abs(wobble).max(), 1e-9)
    score = dist + wobble
    score[~(brain & hemisphere)] = np.inf
    order = np.argsort(score, axis=None)[:n_target]
    lesion = np.zeros(brain.shape, dtype=bool)
    lesion.flat[order] = True
    # the lesion is one piece
    labels, n = ndimage.label(lesion)
    if n > 1:
        sizes = ndimage.sum(lesion, labels, index=np.arange(1, n + 1))
        lesion = labels == (1 + int(np.argmax(sizes)))
    return lesion, side


def _intensities(modality, t1, brain, gm, wm, lesion_frac, rng):
    """Template-space intensity image of ``modality`` with the lesion blended in."""
    if modality == "ct":
        csf = np.clip(brain - gm - wm, 0, 1)
        hu = 8.0 * csf + 38.0 * gm + 28.0 * wm
        hu = np.where(brain > 0, hu / np.maximum(csf + gm + wm, 1e-3) * np.minimum(csf + gm + wm, 1), 0.0)
        hu = (1 - lesion_frac) * hu + lesion_frac * 16.0
        return hu
    if modality in ("t1",):
        value = t1 / max(t1.max(), 1e-9) * 1000.0
        return (1 - lesion_frac) * value + lesion_frac * 0.3 * value
    # flair / t2 / dwi: lesion hyper-intense on a T2-like contrast (CSF bright for t2)
    csf = np.clip(brain - gm - wm, 0, 1)
    if modality == "t2":
        value = 300.0 * wm + 450.0 * gm + 900.0 * csf
    else:  # flair, dwi: dark CSF
        value = 350.0 * wm + 450.0 * gm + 60.0 * csf
    return (1 - lesion_frac) * value + lesion_frac * 1.8 * np.maximum(value, 300.0)


def _head(modality, brain_native, voxel_mm, rng):
    """Skull, scalp and air around the brain (CT only): HU values and a mask of the head."""
    dist_out = ndimage.distance_transform_edt(~brain_native, sampling=voxel_mm)
    hu = np.full(brain_native.shape, -1000.0, dtype=np.float32)
    hu[dist_out <= 14.0] = 40.0  # scalp / soft tissue
    hu[(dist_out > 2.0) & (dist_out <= 9.0)] = 1200.0  # skull
    hu[(dist_out > 0) & (dist_out <= 2.0)] = 6.0  # CSF between brain and skull
    return hu


def synthetic_case(modality="t1", *, lesion_ml=30.0, voxel_size=2.0, random_state=None,
                   rotation_deg=8.0, scaling=0.08, translation_mm=8.0, warp_mm=4.0,
                   warp_sigma_mm=20.0, noise=0.02, bias=0.15, template=None, centre_mm=None):
    """Make a native-space scan and lesion mask from the MNI152 template by a known map.

    Parameters
    ----------
    modality : {"t1", "flair", "t2", "dwi", "ct"}
        Image contrast. ``"ct"`` gives Hounsfield units with skull; MR images are
        brain-extracted (zero outside the brain) with a smooth multiplicative bias field.
    lesion_ml : float
        Lesion volume in template space (ml).
    voxel_size : float
        Isotropic voxel size of the native grid (mm).
    random_state : None, int or numpy.random.Generator
    rotation_deg, scaling, translation_mm : float
        Ranges of the random linear part (uniform in +-range per axis).
    warp_mm, warp_sigma_mm : float
        Maximum and smoothness (Gaussian sigma) of the non-linear displacement (mm).
    noise : float
        Gaussian noise, as a fraction of the white-matter intensity (MR) or in units of 100 HU (CT).
    bias : float
        Amplitude of the multiplicative bias field (MR only).
    template : dict or None
        Output of ``template_images`` (1 mm is used when None).
    centre_mm : None or sequence of 3 floats
        Plant the lesion near this template-space point (jittered); None: anywhere it fits.

    Returns
    -------
    dict
        ``image`` and ``lesion`` (native Nifti1Images on one grid), ``truth`` (the lesion
        in template space, a boolean Nifti1Image on the template grid), ``truth_ml``,
        ``mapped_ml`` (the template-space volume of the native mask under the true map: the
        reference for volume preservation),
        ``hemisphere`` ("left"/"right"), ``native_to_template`` (4x4 linear part of the map,
        world mm) and ``modality``.
    """
    import nibabel as nib

    check_option("modality", modality, _MODALITIES)
    rng = check_random_state(random_state)
    tpl = template if template is not None else template_images(1)
    t_aff = np.asarray(tpl["t1"].affine, dtype=np.float64)
    t1 = np.asarray(tpl["t1"].get_fdata(), dtype=np.float32)
    brain = np.asarray(tpl["brain"].get_fdata()) > 0.5
    gm = np.asarray(tpl["gm"].get_fdata(), dtype=np.float32)
    wm = np.asarray(tpl["wm"].get_fdata(), dtype=np.float32)
    lesion_t, side = _plant_lesion(rng, brain, gm, wm, t_aff, lesion_ml, centre_mm)
    lesion_frac = ndimage.gaussian_filter(lesion_t.astype(np.float32), 0.6)
    lesion_frac = np.maximum(lesion_frac, lesion_t * 0.9)
    value_t = _intensities(modality, t1, brain.astype(np.float32), gm, wm, lesion_frac, rng)

    linear, translation = _random_linear(rng, rotation_deg, scaling, translation_mm)
    inv = np.linalg.inv(linear)
    # native grid: the template's brain box mapped back through the linear part, plus margin
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in brain.shape], indexing="ij")).reshape(3, -1)
    world_t = t_aff[:3, :3] @ corners + t_aff[:3, 3:4]
    native = inv @ (world_t - translation[:, None])
    margin = 20.0 if modality == "ct" else 6.0
    lo = native.min(axis=1) - margin
    hi = native.max(axis=1) + margin
    shape = tuple(int(np.ceil((h - low) / voxel_size)) + 1 for low, h in zip(lo, hi))
    n_aff = np.diag([voxel_size] * 3 + [1.0])
    n_aff[:3, 3] = lo
    field = _smooth_field(rng, shape, voxel_size, warp_mm, warp_sigma_mm)
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    y = n_aff[:3, :3] @ ijk + n_aff[:3, 3:4]
    x = linear @ y + translation[:, None] + field.reshape(3, -1)
    t_vox = np.linalg.solve(t_aff, np.vstack([x, np.ones(x.shape[1])]))[:3]

    def pull(volume, order=1):
        out = ndimage.map_coordinates(volume, t_vox, order=order, mode="constant", cval=0.0)
        return out.reshape(shape)

    image = pull(value_t.astype(np.float32))
    lesion_n = pull(lesion_t.astype(np.float32)) >= 0.5
    brain_n = pull(brain.astype(np.float32)) >= 0.5
    if modality == "ct":
        head = _head(modality, brain_n, voxel_size, rng)
        image = np.where(brain_n, image, head)
        image = image + rng.normal(0.0, 100.0 * noise, size=shape)
        image = np.round(image).astype(np.int16)
    else:
        coarse = ndimage.gaussian_filter(rng.standard_normal(shape), 40.0 / voxel_size)
        coarse /= max(np.abs(coarse).max(), 1e-9)
        image = image * (1 + bias * coarse)
        image = image + rng.normal(0.0, noise * 1000.0, size=shape) * brain_n
        image = np.where(brain_n, np.clip(image, 0, None), 0.0).astype(np.float32)
    # the template-space volume the native mask stands for under the true map: the sum of
    # det(B + grad v) over its voxels (the native mask is a rasterisation of the planted
    # lesion, so at 2 mm it can differ from truth_ml by several percent for small lesions)
    grad = np.stack([np.stack(np.gradient(field[a], voxel_size), axis=0) for a in range(3)])  # (3, 3, ...)
    jac = np.linalg.det(np.moveaxis(linear[:, :, None, None, None] + grad, (0, 1), (-2, -1)))
    mapped_ml = float(jac[lesion_n].sum() * voxel_size ** 3 / 1000.0)
    native_to_template = np.eye(4)
    native_to_template[:3, :3] = linear
    native_to_template[:3, 3] = translation
    return {
        "image": nib.Nifti1Image(image, n_aff),
        "lesion": nib.Nifti1Image(lesion_n.astype(np.uint8), n_aff),
        "truth": nib.Nifti1Image(lesion_t.astype(np.uint8), t_aff),
        "truth_ml": float(lesion_t.sum() * abs(np.linalg.det(t_aff[:3, :3])) / 1000.0),
        "mapped_ml": mapped_ml,
        "hemisphere": "left" if side < 0 else "right",
        "native_to_template": native_to_template,
        "modality": modality,
    }


def make_isles24_tree(root, n_subjects=6, *, voxel_size=4.0, random_state=0, template=None):
    """Write a small synthetic dataset in the ISLES'24 training layout (CT-like scans).

    Each subject gets a non-contrast CT (HU, with skull) in ``raw_data/.../ses-01``, the
    follow-up lesion mask and an ADC map in NCCT space in ``derivatives/.../ses-02``, and
    clinical tables in ``phenotype/``. Lesions sit around the left MCA territory so they
    overlap; NIHSS rises with lesion volume.

    Returns
    -------
    dict
        Subject -> the :func:`synthetic_case` output (ground truth included).
    """
    from pathlib import Path

    import nibabel as nib
    import pandas as pd

    root = Path(root)
    rng = check_random_state(random_state)
    tpl = template if template is not None else template_images(2)
    cases = {}
    for i in range(n_subjects):
        sub = f"sub-stroke{i + 1:04d}"
        volume = float(rng.uniform(15.0, 80.0))
        case = synthetic_case("ct", lesion_ml=volume, voxel_size=voxel_size, random_state=rng, template=tpl,
                              centre_mm=(-34.0, -8.0, 14.0))
        cases[sub] = case
        raw = root / "raw_data" / sub / "ses-01"
        der = root / "derivatives" / sub / "ses-02"
        for d in (raw, der):
            d.mkdir(parents=True, exist_ok=True)
        nib.save(case["image"], raw / f"{sub}_ses-01_ncct.nii.gz")
        nib.save(case["lesion"], der / f"{sub}_ses-02_space-ncct_lesion-msk.nii.gz")
        les = case["lesion"].get_fdata() > 0
        adc = np.where(case["image"].get_fdata() > 0, 800.0, 0.0)
        adc[les] = 450.0
        nib.save(nib.Nifti1Image(adc.astype(np.float32), case["image"].affine),
                 der / f"{sub}_ses-02_space-ncct_adc.nii.gz")
        nihss = int(np.clip(round(volume / 6 + rng.normal(0, 1.5)), 0, 42))
        ses1 = root / "phenotype" / sub / "ses-01"
        ses2 = root / "phenotype" / sub / "ses-02"
        ses1.mkdir(parents=True, exist_ok=True)
        ses2.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"Age": [int(rng.integers(45, 90))], "Sex": [str(rng.choice(["M", "F"]))],
                      "NIHSS at admission": [nihss], "mRS at admission": [int(min(5, nihss // 4))]}
                     ).to_excel(ses1 / f"{sub}_ses-01_demographic_baseline.xlsx", index=False)
        pd.DataFrame({"mRS 3 months": [int(min(6, nihss // 5))]}).to_excel(ses2 / f"{sub}_ses-02_outcome.xlsx",
                                                                          index=False)
    return cases
