"""Thin plotting helpers over nilearn and matplotlib for lsm results.

Every function returns the nilearn display or the matplotlib figure it drew, never calls
``plt.show()``, and works with the non-interactive ``Agg`` backend (CI, reports).
"""

import logging
import math

import nibabel as nib
import numpy as np

from ._validation import check_option

__all__ = [
    "overlap_image",
    "plot_stat_map",
    "plot_glass_brain",
    "plot_overlap",
    "plot_null_distribution",
    "observed_null_value",
    "plot_box_strip",
]

logger = logging.getLogger("lsm")

_DOCS = {
    "result_which": """result : VLSMResult
    which : str
        ``"z"``, ``"stat"`` or the name of an extra map.
    thresholded : bool
        Show only the significant voxels (default). When none is significant, an empty
        background is drawn with a title saying so.""",
}


def _fill_doc(func):
    if func.__doc__:  # None under python -OO
        func.__doc__ = func.__doc__ % _DOCS
    return func


def _title(result, which, title):
    if title is not None:
        return title
    pr = result.params
    corr = pr.get("correction", "")
    alpha = pr.get("alpha")
    parts = [f"{pr.get('score', 'score')}: {pr.get('method', '')} {which}".strip()]
    if corr:
        parts.append(f"{corr}, alpha {alpha}" if alpha is not None else corr)
    return " | ".join(parts)


def _map_to_plot(result, which, thresholded):
    """Image to draw: the significant voxels of ``which`` (or the whole map)."""
    if thresholded:
        return result.thresholded(which)
    check_option("which", which, ["z", "stat", *result.extra_maps])
    return result.extra_maps[which] if which in result.extra_maps else getattr(result, which)


def _nothing_to_show(result, thresholded):
    return thresholded and result.n_significant == 0


@_fill_doc
def plot_stat_map(result, which="z", *, thresholded=True, display_mode="ortho", cut_coords=None,
                  bg_img="MNI152", title=None, figure=None, axes=None, **kwargs):
    """Slices of a result map over a template (:func:`nilearn.plotting.plot_stat_map`).

    Parameters
    ----------
    %(result_which)s
    display_mode, cut_coords, figure, axes
        As in nilearn.
    bg_img : Nifti1Image, str or None
        Background; ``"MNI152"`` uses nilearn's bundled MNI152 template (no download).
    title : str, optional
        Defaults to score, method, map and correction.
    **kwargs
        Passed to :func:`nilearn.plotting.plot_stat_map` (``cmap``, ``vmax``...).

    Returns
    -------
    display : nilearn.plotting.displays.OrthoSlicer or similar
    """
    from nilearn import plotting

    title = _title(result, which, title)
    bg = _background(bg_img)
    if _nothing_to_show(result, thresholded):
        return plotting.plot_anat(bg if bg is not None else result.mask_img,
                                  display_mode=display_mode, cut_coords=cut_coords,
                                  figure=figure, axes=axes,
                                  title=f"{title} | no significant voxel")
    img = _map_to_plot(result, which, thresholded)
    # untested voxels are exactly 0: keep them transparent in both modes
    kwargs.setdefault("threshold", 1e-12)
    kwargs.setdefault("symmetric_cbar", True)  # the sign matters: blue < 0 < red
    if bg is not None:
        kwargs["bg_img"] = bg
    return plotting.plot_stat_map(img, display_mode=display_mode, cut_coords=cut_coords,
                                  figure=figure, axes=axes, title=title, **kwargs)


@_fill_doc
def plot_glass_brain(result, which="z", *, thresholded=True, display_mode="lzry", title=None,
                     figure=None, axes=None, **kwargs):
    """Glass-brain projection of a result map (:func:`nilearn.plotting.plot_glass_brain`).

    Positive and negative values are kept apart (``plot_abs=False``).

    Parameters
    ----------
    %(result_which)s
    display_mode, title, figure, axes, **kwargs
        As in nilearn.

    Returns
    -------
    display : nilearn glass-brain display
    """
    from nilearn import plotting

    title = _title(result, which, title)
    if _nothing_to_show(result, thresholded):
        return plotting.plot_glass_brain(None, display_mode=display_mode, figure=figure,
                                         axes=axes, title=f"{title} | no significant voxel")
    img = _map_to_plot(result, which, thresholded)
    kwargs.setdefault("threshold", 1e-12)
    kwargs.setdefault("plot_abs", False)
    kwargs.setdefault("colorbar", True)
    kwargs.setdefault("cmap", "RdBu_r")
    kwargs.setdefault("symmetric_cbar", True)
    return plotting.plot_glass_brain(img, display_mode=display_mode, title=title,
                                     figure=figure, axes=axes, **kwargs)


def overlap_image(cohort, subjects=None, proportion=False):
    """Count (or give the proportion of) the subjects lesioned at each voxel of the cohort grid.

    Parameters
    ----------
    cohort : Cohort
    subjects : list of str, optional
        Restrict to these subjects.
    proportion : bool
        Divide the counts by the number of subjects.

    Returns
    -------
    img : Nifti1Image
        int32 counts, or float64 proportions, on ``cohort.grid_img()``'s grid.
    """
    matrix = cohort.lesion_matrix(subjects)
    counts = np.asarray(matrix.sum(axis=0, dtype=np.int64)).ravel()
    data = counts.reshape(cohort.shape)
    if proportion:
        data = data / max(matrix.shape[0], 1)
    else:
        data = data.astype(np.int32)
    return nib.Nifti1Image(data, cohort.affine)


def plot_overlap(overlap, *, display_mode="z", cut_coords=7, bg_img="MNI152", title=None,
                 figure=None, axes=None, **kwargs):
    """Lesion overlap (frequency) map over a template.

    Parameters
    ----------
    overlap : Nifti1Image or Cohort
        Counts or proportions per voxel; a Cohort is turned into counts with
        :func:`overlap_image`.
    display_mode, cut_coords, figure, axes
        As in :func:`nilearn.plotting.plot_stat_map` (default: 7 axial slices).
    bg_img : Nifti1Image, str or None
        ``"MNI152"`` uses nilearn's bundled template.
    title : str, optional
    **kwargs
        Passed to nilearn (``vmax``, ``cmap``...).

    Returns
    -------
    display : nilearn display
    """
    from nilearn import plotting

    if not isinstance(overlap, nib.spatialimages.SpatialImage):
        n = len(overlap)
        overlap = overlap_image(overlap)
        title = title or f"Lesion overlap (number of subjects, n = {n})"
    title = title or "Lesion overlap"
    data = np.asanyarray(overlap.dataobj)
    positive = data[data > 0]
    bg = _background(bg_img)
    if positive.size == 0:
        return plotting.plot_anat(bg if bg is not None else overlap, display_mode=display_mode,
                                  cut_coords=cut_coords, figure=figure, axes=axes,
                                  title=f"{title} | no lesioned voxel")
    kwargs.setdefault("threshold", 0.5 * float(positive.min()))
    kwargs.setdefault("cmap", "hot")
    kwargs.setdefault("symmetric_cbar", False)
    kwargs.setdefault("vmin", 0)
    kwargs.setdefault("vmax", float(positive.max()))
    if bg is not None:
        kwargs["bg_img"] = bg
    return plotting.plot_stat_map(overlap, display_mode=display_mode, cut_coords=cut_coords,
                                  title=title, figure=figure, axes=axes,
                                  **kwargs)


def observed_null_value(result):
    """Return the observed value to set against the null distribution, or ``None``.

    Uses ``result.observed`` when the engine recorded it. Otherwise, for ``fwe`` and
    ``cfwer``, the null is in z units exactly when its (1 - alpha) critical value equals
    ``result.threshold``; then the observed value is the largest (v-th largest for cfwer)
    ``|z|`` (``z`` for ``"greater"``, ``-z`` for ``"less"``).
    """
    if result.observed is not None:
        return result.observed
    null = result.null_distribution
    pr = result.params
    if null is None or result.threshold is None or pr.get("correction") not in ("fwe", "cfwer"):
        return None
    z = result._flat("z")
    alternative = pr.get("alternative", "two-sided")
    values = {"greater": z, "less": -z}.get(alternative, np.abs(z))
    if values.size == 0:
        return None
    v = int(pr.get("v", 1) or 1) if pr.get("correction") == "cfwer" else 1
    if v > values.size:
        return None
    alpha = float(pr.get("alpha", 0.05))
    crit = np.quantile(np.asarray(null, dtype=np.float64), 1 - alpha)
    if not np.isclose(crit, result.threshold, rtol=1e-6, atol=1e-9):
        logger.debug("Null distribution not in z units; observed value not drawn.")
        return None
    return float(np.sort(values)[-v])


def plot_null_distribution(result, *, bins=50, ax=None, title=None):
    """Histogram of the permutation null with the observed value and the critical value.

    Parameters
    ----------
    result : VLSMResult
    bins : int
    ax : matplotlib Axes, optional
        Draw into this axes; otherwise a new figure is made.
    title : str, optional

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    null = result.null_distribution
    if null is None:
        raise ValueError("This result has no null distribution (no permutations were run).")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
    else:
        fig = ax.figure
    null = np.asarray(null, dtype=np.float64)
    alpha = float(result.params.get("alpha", 0.05))
    # perfect separation gives infinite statistics: histogram the finite ones, say the rest
    finite = null[np.isfinite(null)]
    n_off = null.size - finite.size
    ax.hist(finite, bins=bins, color="0.6", edgecolor="0.35",
            label=f"{n_off} permutation(s) at ±inf or nan, not drawn" if n_off else None)

    off_axis = []

    def line(value, label, **style):
        if np.isfinite(value):
            ax.axvline(value, label=label, **style)
        elif label is not None:  # off the axis: kept in the legend only
            off_axis.append(Line2D([], [], label=f"{label} (off the axis)", **style))

    crit = _quantile(null, 1 - alpha)
    line(crit, f"critical value ({1 - alpha:.0%} quantile) = {crit:.3g}", color="tab:blue",
         linestyle="--")
    observed = observed_null_value(result)
    if observed is not None:
        for r, value in enumerate(np.atleast_1d(observed)[:5]):
            line(value, f"observed = {value:.3g}" if r == 0 else None, color="tab:red",
                 linewidth=2)
    ax.set_xlabel(result.null_statistic or f"null statistic ({result.params.get('correction')})")
    ax.set_ylabel("permutations")
    ax.set_title(title or f"Permutation null (n = {null.size})")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + off_axis, loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def _quantile(values, q):
    """``np.quantile`` (linear) that lets +/-inf values through instead of giving nan.

    Interpolating towards an infinite value gives that infinity (the limit); numpy's
    ``inf - inf`` gives nan instead.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if np.isnan(values).any() or finite.size == values.size:
        return float(np.quantile(values, q))
    big = np.finfo(np.float64).max / 4
    crit = float(np.quantile(np.clip(values, -big, big), q))
    # beyond every finite value: the interpolation used a clipped infinity
    if crit > finite.max(initial=-math.inf):
        return math.inf
    if crit < finite.min(initial=math.inf):
        return -math.inf
    return crit


def _background(bg_img):
    if isinstance(bg_img, str) and bg_img == "MNI152":
        from nilearn.datasets import load_mni152_template

        return load_mni152_template()
    return bg_img


def plot_box_strip(values, labels, *, ax=None, ylabel=None, title=None):
    """Box plot with the points over it, one column per group (models, methods).

    Parameters
    ----------
    values : list of array-like
        One array of values per group (NaN values are left out).
    labels : list of str
        Group names, in the order of ``values``.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.
    ylabel, title : str, optional
        Axis label and title.

    Returns
    -------
    fig : matplotlib Figure
    """
    import matplotlib.pyplot as plt

    data = [np.asarray(v, dtype=float) for v in values]
    data = [d[np.isfinite(d)] for d in data]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.3 + 1.4 * len(data), 3.2))
    else:
        fig = ax.figure
    ax.boxplot(data, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)  # horizontal jitter only
    for i, d in enumerate(data, start=1):
        ax.plot(i + rng.uniform(-0.12, 0.12, d.size), d, "o", ms=3, alpha=0.7)
    ax.set_xticks(range(1, len(data) + 1), list(labels), rotation=20)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
