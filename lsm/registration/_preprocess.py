"""Per-modality preparation of a native scan before registration.

- CT (non-contrast): intensities clipped to a brain window (0-100 HU by default), the
  brain extracted from the HU values (soft tissue that is not bone, cut from the scalp by
  an erosion, largest piece, holes filled), everything outside the brain set to 0.
- MR (T1, FLAIR/T2, DWI/ADC): N4 bias-field correction inside a head/brain mask, then
  the brain extracted (the given brain mask, or the largest connected piece above a low
  intensity threshold with holes filled, which suits brain-extracted or low-skull-signal
  scans such as DWI). A head with skull must never be registered to a skull-stripped
  template, so pass ``brain_masks`` for MR scans that still show the skull.

The lesion is always part of the brain mask (a dark infarct is never cut away).
"""

import numpy as np
from scipy import ndimage

__all__ = ["ct_brain_mask", "mr_brain_mask", "prepare_image", "MODALITIES", "MR_MODALITIES"]

MR_MODALITIES = ("t1", "flair", "t2", "dwi")
MODALITIES = MR_MODALITIES + ("ct",)


def _largest_component(mask):
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def _ball(radius_vox):
    r = np.maximum(np.asarray(radius_vox, dtype=float), 1.0)
    grid = np.ogrid[tuple(slice(-int(np.ceil(v)), int(np.ceil(v)) + 1) for v in r)]
    return sum((g / v) ** 2 for g, v in zip(grid, r)) <= 1.0


def _fill_holes(mask):
    filled = ndimage.binary_fill_holes(mask)
    for axis in range(3):  # slice-wise as well: holes open to one side in 3D (ventricles near the edge)
        for i in range(filled.shape[axis]):
            index = [slice(None)] * 3
            index[axis] = i
            filled[tuple(index)] = ndimage.binary_fill_holes(filled[tuple(index)])
    return filled


def ct_brain_mask(data, voxel_mm, window=(0.0, 100.0), erode_mm=4.0):
    """Brain mask of a non-contrast CT in HU (boolean array)."""
    voxel_mm = np.asarray(voxel_mm, dtype=float)
    smooth = ndimage.gaussian_filter(np.asarray(data, dtype=np.float32), 1.0 / voxel_mm)
    bone = smooth > 300.0
    bone = ndimage.binary_dilation(bone, structure=_ball(1.5 / voxel_mm))
    soft = (smooth > window[0] - 15.0) & (smooth < window[1]) & ~bone
    core = ndimage.binary_erosion(soft, structure=_ball(erode_mm / voxel_mm))
    if not core.any():
        return np.zeros(data.shape, dtype=bool)
    core = _largest_component(core)
    brain = ndimage.binary_dilation(core, structure=_ball(erode_mm / voxel_mm)) & soft
    return _fill_holes(_largest_component(brain))


def mr_brain_mask(data, fraction=0.1):
    """Brain mask of a brain-extracted (or low-skull-signal) MR scan (boolean array)."""
    data = np.asarray(data, dtype=np.float32)
    positive = data[data > 0]
    if positive.size == 0:
        return np.zeros(data.shape, dtype=bool)
    mask = data > fraction * np.percentile(positive, 98)
    mask = ndimage.binary_opening(mask, iterations=1)
    if not mask.any():
        return np.zeros(data.shape, dtype=bool)
    return _fill_holes(_largest_component(mask))


def prepare_image(img, lesion, modality, brain_mask=None, ct_window=(0.0, 100.0), n4=True):
    """Preprocessed image for registration, its brain mask and a description of the steps.

    Parameters
    ----------
    img : Nifti1Image
        Native 3D scan.
    lesion : ndarray of bool
        Native lesion mask (same grid).
    modality : str
        One of :data:`MODALITIES`.
    brain_mask : None or ndarray of bool
        Given brain mask (same grid); None: extracted from the intensities.
    ct_window : tuple of float
        HU window for CT.
    n4 : bool
        N4 bias-field correction for MR.

    Returns
    -------
    data : ndarray of float32
        The image ready for registration (zero outside the brain).
    brain : ndarray of bool
        Brain mask (lesion included).
    steps : list of str
    """
    import nibabel as nib

    from ._ants import to_ants

    data = np.asarray(img.get_fdata(dtype=np.float32))
    voxel_mm = np.asarray(nib.affines.voxel_sizes(img.affine), dtype=float)
    steps = []
    if modality == "ct":
        if brain_mask is None:
            brain = ct_brain_mask(data, voxel_mm, window=ct_window)
            steps.append("brain extracted from HU (soft tissue, bone removed, largest piece)")
        else:
            brain = np.asarray(brain_mask, dtype=bool)
            steps.append("given brain mask")
        brain |= lesion
        out = np.clip(data, ct_window[0], ct_window[1]) - ct_window[0]
        steps.append(f"clipped to the {ct_window[0]:g}-{ct_window[1]:g} HU window")
    else:
        out = np.where(np.isfinite(data), data, 0.0)
        out = np.clip(out, 0.0, None)
        if brain_mask is None:
            brain = mr_brain_mask(out)
            steps.append("brain mask from intensities (largest piece above 10% of the 98th percentile)")
        else:
            brain = np.asarray(brain_mask, dtype=bool)
            steps.append("given brain mask")
        brain |= lesion
        if n4:
            mask_img = to_ants(nib.Nifti1Image(brain.astype(np.float32), img.affine))
            corrected = _n4(to_ants(nib.Nifti1Image(out, img.affine)), mask_img)
            out = corrected.numpy()
            steps.append("N4 bias-field correction")
    out = np.where(brain, out, 0.0).astype(np.float32)
    return out, brain, steps


def _n4(image, mask):
    from ._ants import import_ants

    ants = import_ants()
    return ants.n4_bias_field_correction(image, mask=mask, shrink_factor=2)
