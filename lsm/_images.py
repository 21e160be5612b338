"""Lesion-mask reading, checking and nearest-neighbour regridding (arrays + affines)."""

import numpy as np

__all__ = ["read_mask", "grid_mapping", "voxel_of", "mni_grid", "same_grid"]

# FSL MNI152 1 mm field of view (182 x 218 x 182, RAS), as used by the arterial atlas.
_MNI_ORIGIN = np.array([-91.0, -126.0, -72.0])
_MNI_EXTENT_MM = np.array([182.0, 218.0, 182.0])


class MaskProblem(Exception):
    """Internal: why one mask is invalid (turned into a drop row or a LesionImageError)."""


def mni_grid(voxel_size):
    """RAS MNI152 grid (FSL field of view) at an isotropic ``voxel_size`` in mm.

    1 mm gives 182 x 218 x 182 and 2 mm gives 91 x 109 x 91, the grids of the arterial
    atlas, so territory labels map exactly.
    """
    v = float(voxel_size)
    if not v > 0:
        raise ValueError(f"voxel_size must be a positive number of mm, got {voxel_size!r}.")
    shape = tuple(int(np.ceil(e / v)) for e in _MNI_EXTENT_MM)
    affine = np.diag([v, v, v, 1.0])
    affine[:3, 3] = _MNI_ORIGIN
    return affine, shape


def same_grid(affine_a, shape_a, affine_b, shape_b, atol=1e-4):
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=atol)


def voxel_of(cont, affine, shape):
    """The one nearest-neighbour rule of lsm: continuous voxel coordinates -> voxel index.

    Parameters
    ----------
    cont : ndarray of shape (3, n)
        Continuous voxel coordinates on the grid ``(affine, shape)`` (``inv(affine) @
        world``).
    affine : ndarray of shape (4, 4)
        The grid's affine (gives the direction of each axis in world space).
    shape : tuple of 3 int
        The grid's shape.

    Returns
    -------
    flat : ndarray of shape (n,), int64
        Flat (C-order) index of the voxel whose extent contains each point, or -1 when
        the point lies outside the grid (beyond half a voxel from the outer centres). A
        point exactly halfway between two voxel centres takes the voxel with the larger
        world coordinate along that axis, whatever the grid's orientation, so a mask
        stored LAS regrids like its RAS copy (for an axis pointing to +world this is
        scipy/nilearn's round-half-up). A tolerance of 1e-6 voxel absorbs float noise on
        exact lattices.
    """
    shape = tuple(int(v) for v in shape)
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    sign = np.where(cols[np.abs(cols).argmax(axis=0), np.arange(3)] < 0, -1.0, 1.0)[:, None]
    ijk = (sign * np.floor(sign * np.asarray(cont, dtype=np.float64) + 0.5 + 1e-6)).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(shape)[:, None]), axis=0)
    flat = np.full(ijk.shape[1], -1, dtype=np.int64)
    flat[inside] = np.ravel_multi_index(tuple(ijk[:, inside]), shape)
    return flat


def grid_mapping(src_affine, src_shape, dst_affine, dst_shape):
    """Nearest-neighbour map from destination voxels to source voxels.

    Returns an int64 array of length ``prod(dst_shape)``: the flat (C-order) source index
    whose voxel contains each destination voxel centre, or -1 outside the source grid
    (the rule of :func:`voxel_of`). When both grids share a lattice (same voxel size, any
    flips/permutations of axes, integer offsets) the mapping is exact: no voxel is lost
    or invented.
    """
    dst_shape = tuple(int(s) for s in dst_shape)
    src_affine = np.asarray(src_affine, dtype=np.float64)
    vox2vox = np.linalg.solve(src_affine, dst_affine)
    ijk = np.indices(dst_shape, dtype=np.float64).reshape(3, -1)
    return voxel_of(vox2vox[:3, :3] @ ijk + vox2vox[:3, 3:4], src_affine, src_shape)


def count_outside(mask_indices, src_affine, src_shape, dst_affine, dst_shape):
    """Count the source voxels (flat indices) whose centre lies outside the destination grid.

    A voxel is inside when its nearest destination voxel exists (:func:`voxel_of`).
    """
    if mask_indices.size == 0:
        return 0
    ijk = np.vstack(np.unravel_index(mask_indices, tuple(src_shape))).astype(np.float64)
    vox2vox = np.linalg.solve(np.asarray(dst_affine, dtype=np.float64), np.asarray(src_affine, dtype=np.float64))
    dst = vox2vox[:3, :3] @ ijk + vox2vox[:3, 3:4]
    return int(np.count_nonzero(voxel_of(dst, dst_affine, dst_shape) < 0))


def regrid_indices(indices, mapping, src_size):
    """Flat lesion indices on the source grid -> flat indices on the destination grid."""
    dense = np.zeros(src_size + 1, dtype=bool)  # last slot: 'outside' (mapping == -1)
    dense[indices] = True
    return np.flatnonzero(dense[mapping]).astype(np.int32)


def read_mask(img, threshold=None):
    """Check one lesion image and return (data as bool 3D array, affine).

    Raises MaskProblem with a human-readable reason when the image is invalid.
    """
    import nibabel as nib  # local: keeps this module importable without I/O deps

    if not isinstance(img, nib.spatialimages.SpatialImage):
        try:
            img = nib.load(str(img))
        except MemoryError:  # not a property of the mask: who is in a cohort must not depend on free RAM
            raise
        except Exception as exc:  # nibabel raises many types for corrupt files
            raise MaskProblem(f"unreadable image ({type(exc).__name__}: {exc})") from exc
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise MaskProblem(f"image is {len(img.shape)}D with shape {img.shape}; a 3D mask is needed")
    try:
        data = np.asarray(img.dataobj).reshape(shape)
    except MemoryError:
        raise
    except Exception as exc:
        raise MaskProblem(f"unreadable image data ({type(exc).__name__}: {exc})") from exc
    if data.dtype.kind == "f":
        n_bad = np.count_nonzero(~np.isfinite(data))
        if n_bad:
            raise MaskProblem(f"{n_bad} voxel(s) are NaN or infinite")
    elif data.dtype.kind not in "biu":
        raise MaskProblem(f"unsupported data type {data.dtype}")
    if threshold is None:
        if data.dtype == bool:
            mask = data
        else:
            mask = data == 1
            if np.count_nonzero(mask) + np.count_nonzero(data == 0) != data.size:
                odd = np.unique(data[(data != 0) & (data != 1)])[:5]
                raise MaskProblem(
                    f"values other than 0 and 1 (e.g. {', '.join(f'{v:g}' for v in odd)}); "
                    "pass threshold=<value> to binarise (voxels > threshold are lesioned)"
                )
    else:
        mask = data > threshold
    if not mask.any():
        raise MaskProblem("empty mask: no lesioned voxel")
    return mask, check_affine(img.affine)


def check_affine(affine):
    """Return the affine as a float array; raise MaskProblem if it cannot place voxels in space."""
    if affine is None:
        raise MaskProblem("the header has no affine (voxel-to-world transform)")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise MaskProblem("the affine (voxel-to-world transform) holds NaN or infinite values; fix the header")
    # a degenerate voxel (zero extent along an axis) cannot be placed on any grid
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise MaskProblem(
            "the affine (voxel-to-world transform) is singular (a zero voxel size or two equal "
            "axes); fix the sform/qform of the header"
        )
    return affine
