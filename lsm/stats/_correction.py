"""Multiple-comparison corrections.

Max-statistic (FWE), v-th largest (CFWER), FDR, cluster size / mass and TFCE.

Every permutation p-value is ``(1 + #{null >= observed}) / (1 + n_permutations)``.
"""

import numpy as np
from scipy import ndimage

__all__ = [
    "CORRECTIONS",
    "PERMUTATION_CORRECTIONS",
    "alternative_transform",
    "top_values",
    "permutation_pvalues",
    "permutation_threshold",
    "fdr_correct",
    "Grid",
    "cluster_statistics",
    "tfce_map",
]

CORRECTIONS = ("fwe", "cfwer", "fdr_bh", "fdr_by", "cluster_size", "cluster_mass", "tfce", "none")
PERMUTATION_CORRECTIONS = ("fwe", "cfwer", "cluster_size", "cluster_mass", "tfce")
MAP_CORRECTIONS = ("cluster_size", "cluster_mass", "tfce")
# TFCE parameters (Smith & Nichols 2009, the 3D defaults), step in z units.
TFCE_E, TFCE_H = 0.5, 2.0
# Cluster and TFCE maps clip |z| here: a z of +-inf (perfect separation) would make a
# cluster mass or a TFCE integral infinite. 38.5 is about the z of the smallest double
# p-value; larger |z| (from log-space tails) are all "p below the double range".
Z_CAP = 38.5


def alternative_transform(values, alternative):
    """Map a signed statistic to the value whose large values count as evidence."""
    if alternative == "two-sided":
        return np.abs(values)
    if alternative == "greater":
        return values
    return -values


def top_values(values, weights, v):
    """The ``v`` largest voxel values of each column, counting each pattern ``weights`` times.

    Parameters
    ----------
    values : ndarray of shape (n_patterns, n_batch)
    weights : ndarray of shape (n_patterns,)
        Number of voxels sharing each pattern.
    v : int

    Returns
    -------
    top : ndarray of shape (n_batch, v)
        Descending; padded with ``-inf`` when fewer than ``v`` voxels.
    """
    n_rows, nb = values.shape
    if v == 1:
        if n_rows == 0:
            return np.full((nb, 1), -np.inf)
        return values.max(axis=0)[:, None]
    m = min(v, n_rows)
    if m < n_rows:
        idx = np.argpartition(-values, m - 1, axis=0)[:m]
    else:
        idx = np.broadcast_to(np.arange(n_rows)[:, None], (n_rows, nb))
    cand = np.take_along_axis(values, idx, axis=0)
    order = np.argsort(-cand, axis=0, kind="stable")
    cand = np.take_along_axis(cand, order, axis=0)
    wts = weights[np.take_along_axis(idx, order, axis=0)]
    out = np.full((nb, v), -np.inf)
    for b in range(nb):
        rep = np.repeat(cand[:, b], wts[:, b])[:v]
        out[b, : rep.size] = rep
    return out


def merge_top(parts, v):
    """Merge per-chunk (n_batch, v) top values into the global (n_batch, v) top values."""
    allv = np.concatenate(parts, axis=1)
    if v == 1:
        return allv.max(axis=1, keepdims=True)
    return -np.sort(-allv, axis=1)[:, :v]


#: Relative tolerance for ">=" between a permuted and the observed statistic. Tied scores
#: (NIHSS, mRS) make exact ties common, e.g. a pattern and its mirror image give the same
#: |t| mathematically, but along different floating-point paths (last-bit differences);
#: such ties must count as ">=".
TIE_RTOL = 1e-12


def tie_lowered(values):
    """``values`` lowered by the tie tolerance, so that ``null >= tie_lowered(obs)`` counts ties."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return values - TIE_RTOL * np.maximum(1.0, np.abs(values))


def permutation_pvalues(observed, null):
    """``(1 + #{null >= observed}) / (1 + n_permutations)`` for each observed value.

    A null value within ``TIE_RTOL`` (relative) of the observed one counts as a tie.
    """
    null_sorted = np.sort(np.asarray(null, dtype=np.float64))
    n_ge = null_sorted.size - np.searchsorted(null_sorted, tie_lowered(observed), side="left")
    return (1.0 + n_ge) / (1.0 + null_sorted.size)


def permutation_threshold(null, alpha):
    """Smallest value strictly above which the permutation p-value is <= alpha.

    Returns ``inf`` when no value can reach ``alpha`` with this many permutations.
    """
    null_sorted = np.sort(np.asarray(null, dtype=np.float64))[::-1]
    m = int(np.floor(alpha * (1 + null_sorted.size) + 1e-9)) - 1
    if m < 0:
        return np.inf
    if m >= null_sorted.size:
        return -np.inf
    # a value tied with null_sorted[m] (see TIE_RTOL) counts it, so it is not above it
    t = float(null_sorted[m])
    return t + TIE_RTOL * max(1.0, abs(t)) if np.isfinite(t) else t


def fdr_correct(p, method, alpha):
    """Benjamini-Hochberg (``"fdr_bh"``) or -Yekutieli (``"fdr_by"``) adjusted p-values."""
    from statsmodels.stats.multitest import multipletests

    reject, p_adj, _, _ = multipletests(p, alpha=alpha, method=method)
    return p_adj, reject


class Grid:
    """Tested voxels placed on their 3D grid, cropped to their bounding box.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape.
    flat_index : ndarray of shape (n_tested,)
        C-order flat indices of the tested voxels.
    connectivity : {6, 18, 26}
        Neighbourhood used to form clusters.
    """

    def __init__(self, shape, flat_index, connectivity=26):
        coords = np.array(np.unravel_index(flat_index, tuple(shape)))
        lo = coords.min(axis=1)
        self.box_shape = tuple(coords.max(axis=1) - lo + 1)
        self.local = tuple(coords - lo[:, None])
        rank = {6: 1, 18: 2, 26: 3}[connectivity]
        self.structure = ndimage.generate_binary_structure(3, rank)

    def volume(self, values, fill=0.0):
        vol = np.full(self.box_shape, fill, dtype=np.float64)
        vol[self.local] = values
        return vol


def _signed_parts(z, alternative):
    z = np.clip(z, -Z_CAP, Z_CAP)  # NaN stays NaN
    if alternative == "two-sided":
        return [z, -z]
    if alternative == "greater":
        return [z]
    return [-z]


def cluster_statistics(z, grid, z_threshold, alternative, kind):
    """Clusters of supra-threshold voxels and their size or mass.

    Parameters
    ----------
    z : ndarray of shape (n_tested,)
        Signed z map of the tested voxels (NaN counts as not supra-threshold).
    grid : Grid
    z_threshold : float
        Cluster-forming threshold on z (on |z| per sign for two-sided tests).
    alternative : str
    kind : {"cluster_size", "cluster_mass"}
        Size in voxels, or mass = sum of |z| over the cluster.

    Returns
    -------
    voxel_stat : ndarray of shape (n_tested,)
        Statistic of the cluster each voxel belongs to (0 outside clusters).
    max_stat : float
        Largest cluster statistic (0 when no cluster).
    """
    voxel_stat = np.zeros(z.shape)
    max_stat = 0.0
    for part in _signed_parts(z, alternative):
        supra = np.nan_to_num(part, nan=-np.inf) > z_threshold
        if not supra.any():
            continue
        labels_vol, n_lab = ndimage.label(grid.volume(supra, 0.0) > 0, structure=grid.structure)
        labels = labels_vol[grid.local]
        weights = None if kind == "cluster_size" else np.where(supra, part, 0.0)
        per_cluster = np.bincount(labels, weights=weights, minlength=n_lab + 1)
        per_cluster[0] = 0.0
        voxel_stat = np.where(supra, per_cluster[labels], voxel_stat)
        max_stat = max(max_stat, float(per_cluster.max()))
    return voxel_stat, max_stat


def tfce_map(z, grid, alternative, step):
    """Threshold-free cluster enhancement of a z map (E=0.5, H=2, fixed step in z).

    Returns the signed TFCE value of each tested voxel (negative for the negative tail
    of a two-sided test) and the largest absolute TFCE value.
    """
    out = np.zeros(z.shape)
    max_stat = 0.0
    for sign, part in zip((1.0, -1.0), _signed_parts(z, alternative)):
        if alternative == "less":
            sign = -1.0
        part = np.nan_to_num(part, nan=0.0)
        top = part.max() if part.size else 0.0
        if top <= 0:
            continue
        vol = grid.volume(part, 0.0)
        acc = np.zeros(part.shape)
        for i in range(1, int(np.floor(top / step + 1e-9)) + 1):
            h = i * step
            labels_vol, n_lab = ndimage.label(vol >= h, structure=grid.structure)
            labels = labels_vol[grid.local]
            sizes = np.bincount(labels, minlength=n_lab + 1).astype(np.float64)
            sizes[0] = 0.0
            acc += sizes[labels] ** TFCE_E * h**TFCE_H * step
        out += sign * acc
        max_stat = max(max_stat, float(acc.max()))
    return out, max_stat
