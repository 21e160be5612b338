"""The voxel-wise permutation engine (arrays only).

Flow: binary sparse lesion matrix -> voxels passing ``min_lesioned`` -> unique lesion
patterns -> observed statistic per pattern -> null distribution from permutations of
the score (drawn once, here, from one ``np.random.Generator``) -> corrected p-values ->
everything mapped back to voxels.

Max-statistic and v-th largest nulls are computed by joblib workers over chunks of
patterns: each returns, for every permutation, its ``v`` largest values; the main
process keeps the ``v`` largest of all chunks. A maximum does not depend on the order
in which chunks are merged, and each pattern's value does not depend on which chunk it
is in, so the null is bit-identical for any ``n_jobs`` and joblib backend. Cluster and
TFCE nulls need whole maps, so those workers get chunks of permutations instead.
"""

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy import special

from .._validation import check_alpha, check_min_lesioned, check_option, check_random_state
from ..exceptions import AnalysisError
from . import _statistics as st
from ._core import run_permutations
from ._correction import (
    CORRECTIONS,
    MAP_CORRECTIONS,
    PERMUTATION_CORRECTIONS,
    Grid,
    alternative_transform,
    cluster_statistics,
    fdr_correct,
    merge_top,
    permutation_pvalues,
    permutation_threshold,
    tfce_map,
    top_values,
)
from ._parallel import effective_n_jobs, parallel_map
from ._patterns import unique_patterns

__all__ = [
    "voxelwise_test",
    "VoxelwiseResult",
    "resolve_min_lesioned",
    "draw_permutations",
    "ALTERNATIVES",
]

logger = logging.getLogger("lsm")

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class VoxelwiseResult:
    """Arrays produced by :func:`voxelwise_test` (tested voxels in C-order of the grid).

    Attributes
    ----------
    tested : ndarray of shape (n_voxels,), bool
    n_lesioned : ndarray of shape (n_voxels,), int64
    stat, z, p, p_corrected : ndarray of shape (n_tested,), float64
    significant : ndarray of shape (n_tested,), bool
    df : ndarray of shape (n_tested,) or None
        Degrees of freedom of the t reference law (None for Liebermeister).
    threshold : float or None
        z (|z| when two-sided) above which a voxel is significant (fwe, cfwer).
    null_distribution : ndarray of shape (n_permutations,) or None
        Per-permutation maximum (fwe) or v-th largest (cfwer) in z units, or the maximum
        cluster size / mass or TFCE value.
    pattern_index : ndarray of shape (n_tested,), int64
        Unique lesion pattern of each tested voxel.
    n_unique_patterns, min_lesioned, n_permutations : int
    extra_maps : dict of name -> ndarray of shape (n_tested,)
    info : dict
        Diagnostics (voxels dropped as non-estimable, batch size, number of chunks...).
    """

    tested: np.ndarray
    n_lesioned: np.ndarray
    stat: np.ndarray
    z: np.ndarray
    p: np.ndarray
    p_corrected: np.ndarray
    significant: np.ndarray
    df: np.ndarray
    threshold: float
    null_distribution: np.ndarray
    pattern_index: np.ndarray
    n_unique_patterns: int
    min_lesioned: int
    n_permutations: int
    extra_maps: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def resolve_min_lesioned(min_lesioned, n_subjects):
    """Turn ``min_lesioned`` (count, or fraction of subjects) into a count.

    A fraction ``f`` in (0, 1) means at least ``f * n_subjects`` subjects, i.e.
    ``ceil(f * n_subjects)``. The count must be at least 2 so that both groups of every
    tested voxel have a variance (see ``lsm._validation.check_min_lesioned``).
    """
    return check_min_lesioned(min_lesioned, n_subjects)


def draw_permutations(n_permutations, n_subjects, random_state=None):
    """All permutations of a run, drawn at once from one generator.

    Returns
    -------
    perms : ndarray of shape (n_permutations, n_subjects), int32
        In permutation ``b``, subject ``i`` receives the score of subject ``perms[b, i]``.
    """
    rng = check_random_state(random_state)
    base = np.broadcast_to(np.arange(n_subjects, dtype=np.int32), (n_permutations, n_subjects))
    return rng.permuted(base, axis=1)


# --------------------------------------------------------------------------- helpers


def _bytes_per_cell(method, design):
    """Approximate working memory of one (pattern, permutation) cell."""
    if method == "brunner_munzel":
        # packed tie-group counts (>= 6 per int64) plus a few per-pair arrays; the dense
        # (pair, tie group) arithmetic runs on fixed cache-sized blocks
        k = design.extra["counts"].size
        return 8 * (-(-k // 6) + 16)
    if method == "welch":
        return 160
    return 64


def _plan(n_patterns, n_perm, per_cell, working_memory_mb, n_workers, batch=None):
    """Permutation batch size and pattern chunks from a memory budget.

    The batch size depends only on the data and the budget (never on ``n_jobs``), so
    the permuted score matrices, hence every number, are the same for any ``n_jobs``.
    """
    budget = working_memory_mb * 2**20
    if batch is None:
        batch = int(np.clip(budget // (per_cell * max(n_patterns, 1)), 1, 128))
        batch = max(batch, min(32, n_perm))
    batch = int(min(max(batch, 1), max(n_perm, 1)))
    rows = max(1, int(budget // (per_cell * batch)))
    rows = min(rows, max(1, math.ceil(n_patterns / (4 * n_workers)) if n_workers > 1 else rows))
    bounds = list(range(0, n_patterns, rows)) + [n_patterns]
    return batch, [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _subset(info, a, b):
    out = {}
    for key, val in info.items():
        out[key] = val if key in ("lb_z", "lb_p_greater", "lb_p_less") else val[a:b]
    return out


def _to_z(method, stat, df):
    if method == "liebermeister":
        return stat
    return st.t_to_z(stat, df)


def _upper_bound(stat, alternative):
    # |z| <= |t| for a Student t (heavier tails), so t bounds the comparison value.
    if alternative == "two-sided":
        return np.abs(stat)
    if alternative == "greater":
        return np.maximum(stat, 0.0)
    return np.maximum(-stat, 0.0)


def _top_z(stat, df, alternative, weights, v):
    """Exact v largest comparison z values per permutation, converting few t to z."""
    n_rows, nb = stat.shape
    ub = _upper_bound(stat, alternative)
    m0 = min(n_rows, v + 8)
    if m0 < n_rows:
        idx = np.argpartition(-ub, m0 - 1, axis=0)[:m0]
    else:
        idx = np.broadcast_to(np.arange(n_rows)[:, None], (n_rows, nb))
    values = np.full(stat.shape, -np.inf)
    computed = np.zeros(stat.shape, dtype=bool)
    cand = alternative_transform(
        st.t_to_z(np.take_along_axis(stat, idx, 0), np.take_along_axis(df, idx, 0)), alternative
    )
    np.put_along_axis(values, idx, cand, 0)
    np.put_along_axis(computed, idx, True, 0)
    vth = top_values(values, weights, v)[:, v - 1]
    todo = (ub > vth[None, :]) & ~computed
    if todo.any():
        values[todo] = alternative_transform(st.t_to_z(stat[todo], df[todo]), alternative)
    return top_values(values, weights, v)


def _null_chunk(design, x, info, weights, perms, batch, v, alternative):
    """Worker: per-permutation ``v`` largest comparison values of one pattern chunk."""
    out = []
    x32 = x.astype(np.float32) if design.extra.get("exact_int") else None
    for b0 in range(0, perms.shape[0], batch):
        if design.method in st.CONSTANT_DF:
            # t is increasing in the proxy u: select on u, convert only the selected values.
            u, ss = st.ols_proxy(design, x, info, perms[b0 : b0 + batch], x32)
            top = top_values(alternative_transform(u, alternative), weights, v)
            sign = -1.0 if alternative == "less" else 1.0
            t = st.proxy_to_t(sign * top, ss[:, None], design.df)
            out.append(np.where(np.isneginf(top), -np.inf, sign * t))
            continue
        stat, df = st.compute_stat(design, x, info, perms[b0 : b0 + batch])
        if design.method == "liebermeister":
            out.append(top_values(alternative_transform(stat, alternative), weights, v))
        else:
            out.append(_top_z(stat, df, alternative, weights, v))
    return np.concatenate(out, axis=0)


def _z_maps(design, x, info, perms, chunks, alternative, floor):
    """Z of every pattern for a batch of permutations (NaN where it cannot exceed ``floor``)."""
    parts = []
    for a, b in chunks:
        stat, df = st.compute_stat(design, x[a:b], _subset(info, a, b), perms)
        if design.method == "liebermeister":
            parts.append(stat)
            continue
        z = np.full(stat.shape, np.nan)
        need = _upper_bound(stat, alternative) > floor
        dfv = np.broadcast_to(df, stat.shape)
        z[need] = st.t_to_z(stat[need], dfv[need])
        parts.append(z)
    return np.concatenate(parts, axis=0)


def _map_null_batch(perms, design, x, info, chunks, inverse, grid, alternative, kind, params):
    """Worker: maximum cluster statistic or TFCE value of each permutation of a batch."""
    floor = params["z_threshold"] if kind != "tfce" else 0.0
    z = _z_maps(design, x, info, perms, chunks, alternative, floor)[inverse]
    out = np.empty(perms.shape[0])
    for b in range(perms.shape[0]):
        if kind == "tfce":
            out[b] = tfce_map(z[:, b], grid, alternative, params["tfce_step"])[1]
        else:
            out[b] = cluster_statistics(z[:, b], grid, params["z_threshold"], alternative, kind)[1]
    return out


# --------------------------------------------------------------------------- checks


def _check_inputs(lesions, score, covariates, lesion_scale, method):
    if not sp.issparse(lesions):
        lesions = np.asarray(lesions)
        if lesions.ndim != 2:
            raise ValueError(
                f"lesions must be a 2D (n_subjects, n_voxels) matrix, got shape {lesions.shape}."
            )
    lesions = sp.csr_matrix(lesions)
    n = lesions.shape[0]
    y = np.asarray(score, dtype=np.float64).reshape(-1)
    if y.size != n:
        raise ValueError(f"score has {y.size} values but the lesion matrix has {n} subjects (rows).")
    if n == 0:
        raise AnalysisError("No subject to analyse (the lesion matrix has 0 rows).")
    if not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.isfinite(y))[:5].tolist()
        raise ValueError(f"score has missing or infinite values (rows {bad}); drop those subjects.")
    if covariates is not None:
        if method != "regression":
            raise ValueError(
                f"covariates are only supported with method='regression', not {method!r} "
                "(a t-test with covariates is the regression model)."
            )
        covariates = np.asarray(covariates, dtype=np.float64)
        if covariates.ndim == 1:
            covariates = covariates[:, None]
        if covariates.shape[0] != n or not np.all(np.isfinite(covariates)):
            raise ValueError(
                f"covariates must be a finite (n_subjects={n}, n_covariates) array, got shape "
                f"{covariates.shape}{'' if np.all(np.isfinite(covariates)) else ' with missing values'}."
            )
    if lesion_scale is not None:
        if method != "regression":
            raise ValueError(f"lesion_scale (dTLVC) requires method='regression', not {method!r}.")
        lesion_scale = np.asarray(lesion_scale, dtype=np.float64).reshape(-1)
        if lesion_scale.size != n or not np.all(np.isfinite(lesion_scale) & (lesion_scale > 0)):
            raise ValueError(f"lesion_scale must hold {n} finite positive values.")
    return lesions, y, covariates, lesion_scale


def voxelwise_test(
    lesions,
    score,
    *,
    method="ttest",
    covariates=None,
    lesion_scale=None,
    n_permutations=5000,
    correction="fwe",
    alpha=0.05,
    v=1,
    min_lesioned=0.05,
    alternative="two-sided",
    n_jobs=1,
    random_state=None,
    grid_shape=None,
    voxel_index=None,
    cluster_forming_p=0.001,
    connectivity=26,
    tfce_step=0.1,
    working_memory=256,
    batch_size=None,
    verbose=0,
):
    """Voxel-wise lesion-symptom test with permutation-based correction.

    Parameters
    ----------
    lesions : sparse matrix or ndarray of shape (n_subjects, n_voxels)
        Lesion status (non-zero = lesioned).
    score : ndarray of shape (n_subjects,)
        Finite scores (0/1 for ``method="liebermeister"``).
    method : {"ttest", "welch", "brunner_munzel", "regression", "liebermeister"}
        Pooled-variance t, Welch t, Brunner-Munzel (mid-ranks for ties), OLS t of the
        score on lesion status plus covariates (Freedman-Lane permutation), or
        Liebermeister's quasi-exact test (binary score).
    covariates : ndarray of shape (n_subjects, n_covariates) or None
        Nuisance regressors, ``method="regression"`` only (an intercept is added).
    lesion_scale : ndarray of shape (n_subjects,) or None
        Per-subject factor applied to lesion status (dTLVC: 1 / sqrt(lesion volume));
        ``method="regression"`` only.
    n_permutations : int
        Number of permutations of the score (ignored by fdr_bh, fdr_by and none).
    correction : {"fwe", "cfwer", "fdr_bh", "fdr_by", "cluster_size", "cluster_mass", "tfce", "none"}
    alpha : float
        Significance level.
    v : int
        For ``"cfwer"``: the v-th largest voxel statistic (counted in voxels).
    min_lesioned : int or float, default=0.05
        A voxel is tested when at least this many subjects are lesioned there and at
        least this many are not; a float in (0, 1) is a fraction ``f`` of the subjects
        (``ceil(f * n_subjects)``). The count must be at least 2.
    alternative : {"two-sided", "greater", "less"}
        ``"greater"``: lesioned subjects have higher scores.
    n_jobs : int
        joblib workers (-1: all cores). Results do not depend on it.
    random_state : None, int or numpy.random.Generator
        Seed of the permutations.
    grid_shape : tuple of 3 int or None
        Shape of the 3D grid the voxels live on (cluster and TFCE corrections).
    voxel_index : ndarray of shape (n_voxels,) or None
        C-order flat index on ``grid_shape`` of each column of ``lesions`` (default:
        ``arange(n_voxels)``, the columns are the whole grid).
    cluster_forming_p : float, default=0.001
        Uncorrected p forming clusters (per tail for two-sided tests); a p-value, not a
        cluster size.
    connectivity : {6, 18, 26}
        Voxel neighbourhood of clusters and TFCE.
    tfce_step : float
        Integration step of TFCE, in z units.
    working_memory : float
        Memory budget in MiB for one block of (patterns x permutations).
    batch_size : int or None
        Permutations per block (default: from ``working_memory``).
    verbose : int
        Progress bars when > 0.

    Returns
    -------
    result : VoxelwiseResult
    """
    t0 = time.perf_counter()
    check_option("method", method, st.METHODS)
    check_option("correction", correction, CORRECTIONS)
    check_option("alternative", alternative, ALTERNATIVES)
    alpha = check_alpha(alpha)
    check_alpha(cluster_forming_p, "cluster_forming_p")
    permuting = correction in PERMUTATION_CORRECTIONS
    if permuting and (isinstance(n_permutations, bool) or int(n_permutations) < 1):
        raise ValueError(
            f"correction={correction!r} needs n_permutations >= 1, but got {n_permutations!r}."
        )
    n_perm = int(n_permutations) if permuting else 0
    if correction == "cfwer" and (isinstance(v, bool) or int(v) < 1):
        raise ValueError(f"v must be a positive int (a number of voxels), but got {v!r}.")
    v = int(v) if correction == "cfwer" else 1
    if correction in MAP_CORRECTIONS:
        if grid_shape is None or len(grid_shape) != 3:
            raise ValueError(f"correction={correction!r} needs grid_shape, the 3D grid shape.")
        check_option("connectivity", connectivity, (6, 18, 26))
    n_workers = effective_n_jobs(n_jobs)

    lesions, y, covariates, lesion_scale = _check_inputs(
        lesions, score, covariates, lesion_scale, method
    )
    n, n_voxels = lesions.shape
    count = resolve_min_lesioned(min_lesioned, n)
    design = st.prepare_design(method, y, covariates)
    if lesion_scale is not None:
        design.extra.pop("exact_int", None)  # scaled lesion status: sums are not integers

    # Structure only (CSR: rows = subjects); explicit zeros are not lesions.
    if not lesions.data.all():
        lesions = lesions.copy()
        lesions.eliminate_zeros()
    n_lesioned = np.bincount(lesions.indices, minlength=n_voxels).astype(np.int64)
    tested = (n_lesioned >= count) & (n - n_lesioned >= count)
    if not tested.any():
        raise AnalysisError(
            f"No voxel has at least {count} lesioned and {count} non-lesioned subjects "
            f"(min_lesioned={min_lesioned!r}, {n} subjects, at most {n_lesioned.max()} "
            "lesioned in any voxel). Lower min_lesioned or add subjects."
        )
    patterns, inverse, counts = unique_patterns(lesions[:, tested])
    x = sp.csr_matrix(patterns.T)
    x.sort_indices()
    if lesion_scale is not None:
        x.data = lesion_scale[x.indices]
    n1 = np.diff(x.indptr).astype(np.int64)
    info = st.column_info(design, x, n1)

    dropped_estimable = 0
    if method == "regression":
        ok = info["d"] > 1e-9 * np.maximum(info["xtx"], 1e-300)
        if not ok.all():
            # Lesion status is (nearly) a linear function of the covariates there.
            keep_pat = np.flatnonzero(ok)
            remap = np.full(ok.size, -1)
            remap[keep_pat] = np.arange(keep_pat.size)
            tested_idx = np.flatnonzero(tested)
            keep_vox = ok[inverse]
            dropped_estimable = int((~keep_vox).sum())
            tested[tested_idx[~keep_vox]] = False
            inverse = remap[inverse[keep_vox]]
            x, counts, n1 = x[keep_pat], counts[keep_pat], n1[keep_pat]
            info = st.column_info(design, x, n1)
            logger.warning(
                "%d voxels not tested: their lesion status is collinear with the covariates",
                dropped_estimable,
            )
            if not tested.any():
                raise AnalysisError(
                    "No voxel can be tested: lesion status is collinear with the covariates "
                    "in every voxel passing min_lesioned."
                )
    n_pat = x.shape[0]
    if correction == "cfwer" and tested.sum() < v:
        raise AnalysisError(
            f"correction='cfwer' with v={v} needs at least v tested voxels, but only "
            f"{int(tested.sum())} pass min_lesioned={min_lesioned!r}."
        )
    logger.info(
        "%s: %d subjects, %d tested voxels, %d unique lesion patterns",
        method,
        n,
        int(tested.sum()),
        n_pat,
    )

    per_cell = _bytes_per_cell(method, design)
    batch, chunks = _plan(n_pat, n_perm, per_cell, working_memory, n_workers, batch_size)

    # Observed statistics (a single "permutation": the identity).
    obs_stat, obs_df = [], []
    for a, b in chunks:
        s, d = st.compute_stat(design, x[a:b], _subset(info, a, b), None)
        obs_stat.append(s[:, 0])
        obs_df.append(np.broadcast_to(d, s.shape)[:, 0] if d is not None else None)
    stat = np.concatenate(obs_stat)
    df = None if method == "liebermeister" else np.concatenate(obs_df)
    z = _to_z(method, stat, df)
    if method == "liebermeister":
        hits = np.rint(x @ design.y).astype(np.int64)
        p = st.liebermeister_pvalues(info, hits, alternative)
    else:
        p = st.t_pvalues(stat, df, alternative)

    # Permutations: all drawn here, from one generator; subject i gets score perms[b, i].
    if n_perm:
        perms = draw_permutations(n_perm, n, random_state)
    extra_maps, threshold, null = {}, None, None
    p_vox = p[inverse]
    if correction in ("fwe", "cfwer"):
        compare_t = method in st.CONSTANT_DF
        tasks = [
            (design, x[a:b], _subset(info, a, b), counts[a:b], perms, batch, v, alternative)
            for a, b in chunks
        ]
        parts = parallel_map(_null_chunk, tasks, n_jobs=n_jobs, verbose=verbose, desc="permutations")
        null_c = merge_top(parts, v)[:, v - 1]
        observed_c = alternative_transform(stat if compare_t else z, alternative)
        p_corr_pat = permutation_pvalues(observed_c, null_c)
        null = st.t_to_z(null_c, design.df) if compare_t else null_c
        threshold = permutation_threshold(null, alpha)
        p_corrected = p_corr_pat[inverse]
        significant = p_corrected <= alpha
    elif correction in MAP_CORRECTIONS:
        flat = np.flatnonzero(tested)
        if voxel_index is not None:
            flat = np.asarray(voxel_index)[flat]
        grid = Grid(grid_shape, flat, connectivity)
        tail_p = cluster_forming_p / 2 if alternative == "two-sided" else cluster_forming_p
        params = {"z_threshold": float(-special.ndtri(tail_p)), "tfce_step": float(tfce_step)}
        map_batch = max(1, min(batch, math.ceil(n_perm / (4 * n_workers))))
        parts = run_permutations(
            _map_null_batch, perms, args=(design, x, info, chunks, inverse, grid, alternative, correction, params),
            chunk_size=map_batch, n_jobs=n_jobs, verbose=verbose,
        )
        null = np.concatenate(parts)
        z_vox = z[inverse]
        if correction == "tfce":
            tfce_obs, _ = tfce_map(z_vox, grid, alternative, params["tfce_step"])
            extra_maps["tfce"] = tfce_obs
            p_corrected = permutation_pvalues(alternative_transform(tfce_obs, alternative), null)
        else:
            cl_stat, _ = cluster_statistics(z_vox, grid, params["z_threshold"], alternative, correction)
            extra_maps[correction] = cl_stat
            p_corrected = np.where(cl_stat > 0, permutation_pvalues(cl_stat, null), 1.0)
        significant = p_corrected <= alpha
    elif correction in ("fdr_bh", "fdr_by"):
        p_corrected, significant = fdr_correct(p_vox, correction, alpha)
    else:
        p_corrected = p_vox.copy()
        significant = p_corrected <= alpha

    if threshold is not None and not np.isfinite(threshold) and threshold > 0:
        logger.warning(
            "n_permutations=%d is too few to reach alpha=%g: nothing can be significant",
            n_perm,
            alpha,
        )
    run_info = {
        "n_non_estimable_voxels": dropped_estimable,
        "batch_size": batch,
        "n_chunks": len(chunks),
        "n_workers": n_workers,
        "engine_runtime_s": time.perf_counter() - t0,
    }
    if correction in MAP_CORRECTIONS:
        run_info.update(
            cluster_forming_z=float(-special.ndtri(tail_p)),
            connectivity=connectivity,
            tfce_step=tfce_step,
        )
    return VoxelwiseResult(
        tested=tested,
        n_lesioned=n_lesioned,
        stat=stat[inverse],
        z=z[inverse],
        p=p_vox,
        p_corrected=np.asarray(p_corrected, dtype=np.float64),
        significant=np.asarray(significant, dtype=bool),
        df=None if df is None else df[inverse],
        threshold=None if threshold is None else float(threshold),
        null_distribution=null,
        pattern_index=inverse,
        n_unique_patterns=int(n_pat),
        min_lesioned=count,
        n_permutations=n_perm,
        extra_maps=extra_maps,
        info=run_info,
    )
