"""TFCE (lsm.stats) against nilearn's implementation and against the integral it approximates.

TFCE of a voxel v (Smith & Nichols 2009) is the integral over heights h from 0 to z(v) of
e(h)^E h^H dh, where e(h) is the size of the cluster containing v among the voxels with
z >= h. lsm sums it with a fixed step dh (right end points: h = dh, 2 dh, ...), multiplying
each term by dh as in the paper; nilearn's ``calculate_tfce`` sums the same terms without
the factor dh (as fslmaths does).
"""

import numpy as np
import pytest
from scipy import ndimage

from lsm.stats._correction import Grid, tfce_map

E, H = 0.5, 2.0  # the 3D defaults of Smith & Nichols (2009)
CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


def _z_map(seed, shape, max_abs=4.0):
    """A smooth random z map whose largest and smallest values are exactly +-max_abs, with
    about a tenth of the voxels left untested (returns the volume and the tested flat indices)."""
    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.normal(size=shape), sigma=1.0)
    vol *= max_abs / np.abs(vol).max()
    vol.flat[np.argmax(vol)] = max_abs
    vol.flat[np.argmin(vol)] = -max_abs
    tested = np.flatnonzero(rng.random(vol.size) > 0.1)
    tested = np.union1d(tested, [np.argmax(vol), np.argmin(vol)])
    return vol, tested


def _lsm_tfce(vol, tested, alternative, step, connectivity):
    grid = Grid(vol.shape, tested, connectivity=connectivity)
    out, max_stat = tfce_map(vol.flat[tested].copy(), grid, alternative, step)
    assert max_stat == pytest.approx(np.abs(out).max(), rel=1e-12)
    return out


def test_tfce_parameters_are_the_published_defaults():
    from lsm.stats import _correction

    assert (_correction.TFCE_E, _correction.TFCE_H) == (E, H)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_tfce_equals_nilearn(connectivity, alternative):
    from nilearn.mass_univariate._utils import calculate_tfce

    # |z| <= 4 and a step of 1/8: nilearn's thresholds linspace(0, 4, round(4 / step) + 1)[1:]
    # are exactly lsm's step, 2 step, ..., 4, so both sum the same terms.
    step = 0.125
    vol, tested = _z_map(connectivity, (9, 8, 7))
    untested_zero = np.zeros_like(vol)
    untested_zero.flat[tested] = vol.flat[tested]
    struct = ndimage.generate_binary_structure(3, CONNECTIVITY_RANK[connectivity])
    sign = -1.0 if alternative == "less" else 1.0
    ref = calculate_tfce((sign * untested_zero)[..., None], struct, E=E, H=H, dh=step,
                         two_sided_test=alternative == "two-sided")[..., 0]
    got = _lsm_tfce(vol, tested, alternative, step, connectivity)
    np.testing.assert_allclose(got, sign * step * ref.flat[tested], rtol=1e-10, atol=1e-12)
    assert np.count_nonzero(got) > tested.size / 4  # the maps are not trivially zero
    if alternative == "two-sided":
        assert (got > 0).any() and (got < 0).any()


def _integrated_tfce(vol, tested, connectivity, n_heights):
    """sum over both signs of sign * integral_0^{|z|} e(h)^E h^H dh, by the midpoint rule on
    n_heights heights with the clusters labelled afresh at every height."""
    struct = ndimage.generate_binary_structure(3, CONNECTIVITY_RANK[connectivity])
    is_tested = np.zeros(vol.shape, bool)
    is_tested.flat[tested] = True
    out = np.zeros(vol.shape)
    for sign in (1.0, -1.0):
        part = sign * vol
        top = part[is_tested].max()
        dh = top / n_heights
        for h in (np.arange(n_heights) + 0.5) * dh:
            labels, _ = ndimage.label((part >= h) & is_tested, structure=struct)
            sizes = np.bincount(labels.ravel()).astype(float)
            sizes[0] = 0.0
            out += sign * sizes[labels] ** E * h ** H * dh
    return out.flat[tested]


@pytest.mark.parametrize("connectivity", [6, 26])
def test_tfce_converges_to_the_integral(connectivity):
    # a tiny image: heights can be fine enough for the midpoint rule to be the integral
    vol, tested = _z_map(7, (4, 4, 3), max_abs=3.0)
    exact = _integrated_tfce(vol, tested, connectivity, n_heights=30000)
    scale = np.abs(exact).max()
    errors = []
    for step in (0.05, 0.005):
        got = _lsm_tfce(vol, tested, "two-sided", step, connectivity)
        assert np.array_equal(np.sign(got), np.sign(exact))
        errors.append(np.abs(got - exact).max() / scale)
    # a Riemann sum of a function with finitely many jumps: error of order dh
    assert errors[1] < 5e-3, errors
    assert errors[1] < errors[0] / 4, errors
