"""Tests of lsm.plotting (Agg backend, set in conftest)."""

import io

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pytest

from lsm import plotting

from result_factory import synthetic_cohort, synthetic_result
from test_results import make_result


@pytest.fixture(scope="module")
def cohort():
    return synthetic_cohort(40, seed=1)


@pytest.fixture(scope="module")
def result(cohort):
    return synthetic_result(cohort)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_overlap_image_counts_lesions(cohort):
    img = plotting.overlap_image(cohort)
    expected = sum(cohort.lesion_mask(s).astype(int) for s in cohort.subjects)
    data = np.asarray(img.dataobj)
    assert data.dtype == np.int32
    np.testing.assert_array_equal(data, expected)
    np.testing.assert_array_equal(img.affine, cohort.affine)
    some = cohort.subjects[:5]
    sub = np.asarray(plotting.overlap_image(cohort, some, proportion=True).dataobj)
    np.testing.assert_allclose(sub, sum(cohort.lesion_mask(s) for s in some) / 5)


def test_plot_stat_map_and_glass_brain(result):
    display = plotting.plot_stat_map(result)
    assert hasattr(display, "frame_axes") and display.frame_axes.figure.axes
    display.close()
    display = plotting.plot_stat_map(result, "stat", thresholded=False, display_mode="z",
                                     cut_coords=3, title="custom")
    display.close()
    display = plotting.plot_glass_brain(result)
    assert display.frame_axes.figure.axes
    display.close()
    with pytest.raises(ValueError, match="'which' parameter"):
        plotting.plot_stat_map(result, "nope")


def test_plots_without_significant_voxels(cohort):
    res = synthetic_result(cohort, significant=False)
    display = plotting.plot_stat_map(res)
    texts = [t.get_text() for ax in display.frame_axes.figure.axes for t in ax.texts]
    assert any("no significant voxel" in t for t in texts)
    display.close()
    display = plotting.plot_glass_brain(res)
    texts = [t.get_text() for ax in display.frame_axes.figure.axes for t in ax.texts]
    assert any("no significant voxel" in t for t in texts)
    display.close()


def test_plot_overlap_from_cohort_and_image(cohort):
    display = plotting.plot_overlap(cohort)
    texts = [t.get_text() for ax in display.frame_axes.figure.axes for t in ax.texts]
    assert any("n = 40" in t for t in texts)
    display.close()
    img = nib.Nifti1Image(np.zeros(cohort.shape, np.int32), cohort.affine)
    display = plotting.plot_overlap(img)  # an empty overlap draws the template and says so
    texts = [t.get_text() for ax in display.frame_axes.figure.axes for t in ax.texts]
    assert any("no lesioned voxel" in t for t in texts)
    display.close()


def _vlines(ax):
    return sorted(line.get_xdata()[0] for line in ax.lines)


def test_plot_null_distribution_lines():
    res = make_result()  # observed recorded as 6.0
    fig = plotting.plot_null_distribution(res)
    ax = fig.axes[0]
    crit = np.quantile(res.null_distribution, 0.95)
    assert _vlines(ax) == sorted([crit, 6.0])
    assert ax.get_xlabel() == "max_abs_z"
    heights = sum(p.get_height() for p in ax.patches)
    assert heights == res.null_distribution.size
    fig2, ax2 = plt.subplots()
    assert plotting.plot_null_distribution(res, ax=ax2) is fig2


def test_plot_null_distribution_with_infinite_values():
    # perfect separation: observed max |z| = +inf and some permutations too
    null = np.array([2.5, np.inf, 3.1, 1.9, np.inf, 2.2])
    res = make_result(null_distribution=null, observed=np.inf)
    fig = plotting.plot_null_distribution(res)
    ax = fig.axes[0]
    assert sum(p.get_height() for p in ax.patches) == 4  # the finite permutations
    crit = np.quantile(null, 0.95)  # inf: off the axis
    assert not np.isfinite(crit) and _vlines(ax) == []
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "2 permutation(s) at ±inf or nan, not drawn" in labels
    assert "observed = inf (off the axis)" in labels
    assert "critical value (95% quantile) = inf (off the axis)" in labels
    fig.savefig(io.BytesIO(), format="png")  # draws


def test_observed_value_fallback_only_when_null_is_in_z_units():
    null = np.linspace(1.0, 4.0, 101)
    crit = np.quantile(null, 0.95)
    # the planted map has |z| peaks 6 (positive) and 5 (negative)
    base = dict(observed=None, null_distribution=null, threshold=crit)
    assert plotting.observed_null_value(make_result(**base)) == 6.0
    cfwer = make_result(**base, params={"correction": "cfwer", "v": 2, "alpha": 0.05})
    assert plotting.observed_null_value(cfwer) == 5.0
    less = make_result(**base, params={"correction": "fwe", "alternative": "less"})
    assert plotting.observed_null_value(less) == 5.0
    greater = make_result(**base, params={"correction": "fwe", "alternative": "greater"})
    assert plotting.observed_null_value(greater) == 6.0
    # a null in other units (e.g. raw t) does not give the z maximum
    assert plotting.observed_null_value(make_result(**{**base, "threshold": 9.9})) is None
    assert plotting.observed_null_value(
        make_result(**base, params={"correction": "cluster_size"})) is None


def test_plot_null_distribution_requires_null():
    with pytest.raises(ValueError, match="no null distribution"):
        plotting.plot_null_distribution(make_result(null_distribution=None))
