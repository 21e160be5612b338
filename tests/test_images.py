"""One nearest-neighbour rule for every grid operation (regridding, atlas lookups, loads)."""

import nibabel as nib
import numpy as np
import pytest

from lsm._images import count_outside, grid_mapping, voxel_of
from lsm.results import _AtlasLookup


def _ras(shape, voxel=2.0, origin=(-10.0, -12.0, -8.0)):
    aff = np.diag([voxel, voxel, voxel, 1.0])
    aff[:3, 3] = origin
    return aff


def _las(shape, voxel=2.0, origin=(-10.0, -12.0, -8.0)):
    aff = _ras(shape, voxel, origin)
    aff[0, 0] = -voxel
    aff[0, 3] = origin[0] + voxel * (shape[0] - 1)  # same box as the RAS grid
    return aff


def test_voxel_of_ties_go_to_larger_world_coordinate_in_both_orientations():
    shape = (5, 4, 3)
    for aff in (_ras(shape), _las(shape)):
        # world x exactly halfway between the centres of two voxels along x
        world = np.array([[-10.0 + 2 * 1 + 1.0, -12.0, -8.0]])
        cont = nib.affines.apply_affine(np.linalg.inv(aff), world).T
        flat = voxel_of(cont, aff, shape)
        centre = nib.affines.apply_affine(aff, np.array(np.unravel_index(flat, shape)).T)
        assert centre[0, 0] == pytest.approx(-10.0 + 2 * 2)  # the larger x, whatever the storage


def test_voxel_of_outside_beyond_half_a_voxel():
    shape = (3, 3, 3)
    aff = _ras(shape)
    cont = np.array([[-0.49, 0, 0], [-0.51, 0, 0], [2.49, 0, 0], [2.51, 0, 0]], dtype=float).T
    assert list(voxel_of(cont, aff, shape) >= 0) == [True, False, True, False]


def test_atlas_lookup_agrees_with_grid_mapping_on_a_half_voxel_offset_grid():
    rng = np.random.default_rng(0)
    shape = (6, 7, 5)
    labels = rng.integers(1, 9, size=shape).astype(np.int16)
    atlas_aff = _las(shape)
    table = {"index": list(range(1, 9)), "abbrev": [f"L{i}" for i in range(1, 9)]}
    lut = _AtlasLookup(nib.Nifti1Image(labels, atlas_aff), table)
    # a grid offset by half an atlas voxel along every axis: every centre is a tie
    grid_aff = _ras(shape, origin=(-9.0, -11.0, -7.0))
    ijk = np.indices(shape).reshape(3, -1).T
    got = lut.labels_at(nib.affines.apply_affine(grid_aff, ijk))
    mapping = grid_mapping(atlas_aff, shape, grid_aff, shape)
    expected = np.where(mapping >= 0, labels.ravel()[np.maximum(mapping, 0)], 0)
    np.testing.assert_array_equal(got, expected)
    assert (mapping < 0).any() and (mapping >= 0).any()


def test_count_outside_uses_the_same_rule():
    shape = (4, 4, 4)
    src = _ras(shape)
    dst = _ras(shape, origin=(-9.0, -12.0, -8.0))  # shifted by half a voxel along x
    flat = np.arange(np.prod(shape))
    mapping_back = grid_mapping(dst, shape, src, shape)
    assert count_outside(flat, src, shape, dst, shape) == int((mapping_back < 0).sum())
