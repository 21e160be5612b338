"""The thin layer between nibabel images (RAS) and ANTsPy images (LPS); ANTs imported lazily."""

import os

import numpy as np

__all__ = ["import_ants", "to_ants", "to_nibabel"]

INSTALL_HINT = 'pip install "lsm[registration]"'
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def import_ants():
    """Import ANTsPy (single-threaded), or raise an ImportError saying how to install it."""
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    try:
        import ants
    except ImportError as exc:
        from ..exceptions import MissingDependencyError

        raise MissingDependencyError(
            "Registration needs ANTsPy (the 'antspyx' package), which is not installed: "
            f"{INSTALL_HINT}. ({exc})"
        ) from exc
    return ants


def to_ants(img, dtype=np.float32):
    """Convert a nibabel image to an ANTsImage with the same voxel-to-world mapping."""
    ants = import_ants()
    affine = _LPS @ np.asarray(img.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    data = np.asarray(img.get_fdata(dtype=np.float32) if hasattr(img, "get_fdata") else img, dtype=dtype)
    return ants.from_numpy(np.ascontiguousarray(data), origin=[float(v) for v in affine[:3, 3]],
                           spacing=[float(v) for v in spacing], direction=direction)


def grid_image(affine, shape):
    """Make an all-zero ANTsImage on a nibabel grid (a reference for resampling)."""
    import nibabel as nib

    return to_ants(nib.Nifti1Image(np.zeros(tuple(shape), dtype=np.float32), affine))


def to_nibabel(image, dtype=None):
    """Convert an ANTsImage to a nibabel Nifti1Image (RAS world coordinates)."""
    import nibabel as nib

    linear = np.asarray(image.direction, dtype=np.float64) * np.asarray(image.spacing, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = image.origin
    data = image.numpy()
    if dtype is not None:
        data = data.astype(dtype)
    return nib.Nifti1Image(data, _LPS @ affine)
