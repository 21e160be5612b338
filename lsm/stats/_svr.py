"""Support vector regression lesion-symptom mapping (SVR-LSM), arrays only.

The method of Zhang et al. (2014, Hum Brain Mapp 35:5861) as the SVR-LSM GUI
(DeMarco & Turkeltaub 2018, Hum Brain Mapp 39:4169) and LESYMAP run it: an
epsilon-SVR of the score on the lesion vectors, whose dual solution is back-projected
into voxel space (``beta = sum_i alpha_i x_i``, scikit-learn's
``dual_coef_ @ support_vectors_``), with permutation inference on ``beta``.

Engine, in the order of :func:`svr_test`:

1. voxels passing ``min_lesioned``; voxels lesioned in exactly the same subjects share
   one unique lesion pattern (:func:`lsm.stats.unique_patterns`);
2. the linear Gram matrix ``X X^T`` from the sparse patterns, each pattern counted
   once per voxel it stands for; lesion-data processing is applied to the Gram
   matrix, never to a dense lesion matrix: dTLVC scales rows (``S X``), regressing
   volume out of the lesion data is the projection ``M = I - H`` onto the residual
   space of ``[1, volume]`` (``X_proc = M S X``, ``K_lin = M S G S M``);
3. the kernel: ``K_lin`` (linear) or ``exp(-gamma * d2)`` (RBF, libsvm's
   convention) with squared distances ``d2_ij = K_ii + K_jj - 2 K_ij``;
4. one fit per permutation of the (nuisance-residualised) score on the fixed kernel
   (scikit-learn's ``SVR(kernel="precomputed")``); workers return the dual
   coefficients (chunks from :func:`lsm.stats.run_permutations`, so results never
   depend on ``n_jobs``);
5. the null ``beta`` maps, computed in blocks of patterns as a sparse product
   ``(A M S) P``, reduced to per-pattern exceedance counts (uncorrected p from each
   voxel's own null), per-pattern null standard deviations, per-permutation maxima of
   the standardised ``beta`` (FWE, v-th largest for CFWER) and supra-threshold bits
   (cluster size).
"""

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .._validation import (
    check_alpha,
    check_min_lesioned,
    check_n_permutations,
    check_option,
    check_random_state,
)
from ..exceptions import AnalysisError
from ._core import run_permutations
from ._correction import (
    Grid,
    alternative_transform,
    cluster_statistics,
    merge_top,
    permutation_pvalues,
    permutation_threshold,
    tie_lowered,
    top_values,
)
from ._patterns import unique_patterns
from ._permutation import draw_permutations

__all__ = [
    "SVRTestResult",
    "SVR_CORRECTIONS",
    "SVR_KERNELS",
    "svr_test",
    "gram_matrix",
    "svr_kernel",
    "residual_projector",
    "fit_dual",
    "memory_estimate",
    "svr_cv_search",
]

logger = logging.getLogger("lsm")

SVR_KERNELS = ("rbf", "linear")
SVR_CORRECTIONS = ("fwe", "cfwer", "cluster_size")
#: A kernel whose mean absolute off-diagonal value is below this fraction of its mean
#: diagonal value is "near-diagonal": every subject is almost only similar to itself.
NEAR_DIAGONAL = 0.01


@dataclass(frozen=True)
class SVRTestResult:
    """Arrays produced by :func:`svr_test` (tested voxels in the order of the columns).

    Attributes
    ----------
    tested : ndarray of shape (n_voxels,), bool
        Columns of the input that passed ``min_lesioned``.
    n_lesioned : ndarray of shape (n_voxels,), int64
    beta : ndarray of shape (n_tested,)
        Back-projected SVR weights ``X_proc^T alpha``.
    z : ndarray of shape (n_tested,)
        ``beta`` divided by its standard deviation over the ``B + 1`` maps (observed and
        permuted; 0 where that is 0).
    p : ndarray of shape (n_tested,)
        Permutation p-value of each voxel against its own null.
    p_corrected : ndarray of shape (n_tested,)
    significant : ndarray of shape (n_tested,), bool
    threshold : float or None
        Standardised beta above which a voxel is significant (fwe, cfwer).
    null_distribution : ndarray of shape (n_permutations,)
        Per permutation, the maximum (v-th largest) standardised beta (fwe, cfwer) or
        the largest cluster size in voxels (cluster_size).
    null_sd : ndarray of shape (n_tested,)
        The standard deviation of each voxel's beta over the ``B + 1`` maps.
    dual_coef : ndarray of shape (n_subjects,)
        Observed dual coefficients (0 for non-support vectors).
    intercept : float
    pattern_index : ndarray of shape (n_tested,), int64
    n_unique_patterns, min_lesioned, n_permutations : int
    extra_maps : dict of name -> ndarray of shape (n_tested,)
    info : dict
        Diagnostics (kernel statistics, timings, memory estimate...).
    """

    tested: np.ndarray
    n_lesioned: np.ndarray
    beta: np.ndarray
    z: np.ndarray
    p: np.ndarray
    p_corrected: np.ndarray
    significant: np.ndarray
    threshold: float | None
    null_distribution: np.ndarray
    null_sd: np.ndarray
    dual_coef: np.ndarray
    intercept: float
    pattern_index: np.ndarray
    n_unique_patterns: int
    min_lesioned: int
    n_permutations: int
    extra_maps: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- kernel
def gram_matrix(patterns, counts=None, row_scale=None):
    """Linear Gram matrix ``X X^T`` of the lesion data from its unique patterns.

    Parameters
    ----------
    patterns : sparse matrix of shape (n_subjects, n_patterns)
        Unique lesion patterns (or any sparse lesion matrix).
    counts : ndarray of shape (n_patterns,), optional
        Voxels sharing each pattern: the Gram matrix of the voxel matrix is
        ``P diag(counts) P^T``.
    row_scale : ndarray of shape (n_subjects,), optional
        Per-subject factor of the lesion vector (dTLVC).

    Returns
    -------
    gram : ndarray of shape (n_subjects, n_subjects)
    """
    P = sp.csr_matrix(patterns, dtype=np.float64)
    if counts is not None:
        P = P @ sp.diags(np.sqrt(np.asarray(counts, dtype=np.float64)))
    if row_scale is not None:
        P = sp.diags(np.asarray(row_scale, dtype=np.float64)) @ P
    gram = (P @ P.T).toarray()
    return (gram + gram.T) / 2.0  # exactly symmetric


def _nuisance_basis(nuisance, n):
    """Orthonormal basis ``Q`` of ``[1, nuisance]`` (the intercept alone when None)."""
    Z = np.ones((n, 1))
    if nuisance is not None:
        Z = np.column_stack([Z, np.asarray(nuisance, dtype=np.float64).reshape(n, -1)])
    Q, R = np.linalg.qr(Z)
    rank = int(np.sum(np.abs(np.diag(R)) > 1e-10 * max(1.0, np.abs(R).max())))
    if rank < Z.shape[1]:
        raise AnalysisError(
            f"The nuisance variables (lesion volume and covariates, {Z.shape[1] - 1} column(s)) "
            "are collinear with each other or constant across the analysed subjects, so they "
            "cannot be regressed out. Drop the redundant covariate."
        )
    return Q


def residual_projector(nuisance, n):
    """``M = I - Q Q^T``: residuals of an OLS on ``[1, nuisance]`` (None: ``None``)."""
    if nuisance is None:
        return None
    Q = _nuisance_basis(nuisance, n)
    return np.eye(n) - Q @ Q.T


@dataclass(frozen=True)
class _Processed:
    """The processed problem: ``X_proc = M S X D^-1`` (never built) and the fitted score."""

    gram: np.ndarray  # X_proc X_proc^T
    y: np.ndarray
    projector: np.ndarray | None  # M
    row_scale: np.ndarray | None  # diagonal of S
    col_scale: np.ndarray | None  # diagonal of D^-1, one value per pattern


def _process(patterns, counts, scores, *, lesion_scale=None, lesion_nuisance=None, score_nuisance=None,
             standardize=False, score_range=100.0):
    """Lesion data and score processing, applied to the Gram matrix of the patterns.

    Order, as the SVR-LSM GUI: dTLVC (rows scaled by ``lesion_scale``), lesion volume and
    covariates regressed out of each voxel (``M``), then each voxel column z-scored
    (``standardize``, standard deviation with ``n - 1``); nuisance variables regressed
    out of the score, which is then rescaled to a range of ``score_range``.
    """
    n = patterns.shape[0]
    y = np.asarray(scores, dtype=np.float64)
    My = residual_projector(score_nuisance, n)
    y = y if My is None else My @ y
    spread = float(np.ptp(y))
    if spread <= 1e-12 * max(1.0, float(np.abs(scores).max())):
        raise AnalysisError("The score (after removing the nuisance variables) is constant: "
                            "there is nothing to map.")
    if score_range is not None:
        y = y * (float(score_range) / spread)
    M = residual_projector(lesion_nuisance, n)
    col_scale = None
    weights = np.asarray(counts, dtype=np.float64)
    if standardize:
        if M is None:  # z-scoring centres every column
            M = residual_projector(np.zeros((n, 0)), n)
        Q = _nuisance_basis(lesion_nuisance, n)
        SP = sp.csc_matrix(patterns, dtype=np.float64)
        if lesion_scale is not None:
            SP = sp.diags(np.asarray(lesion_scale, dtype=np.float64)) @ SP
        # ||M S p_j||^2 = ||S p_j||^2 - ||Q^T S p_j||^2, from the sparse columns
        ss = np.asarray(SP.multiply(SP).sum(axis=0)).ravel() - (np.asarray(SP.T @ Q) ** 2).sum(axis=1)
        sd = np.sqrt(np.maximum(ss, 0.0) / (n - 1))
        col_scale = np.where(sd > 1e-12 * max(1.0, sd.max()), 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
        weights = weights * col_scale**2
    G = gram_matrix(patterns, weights, lesion_scale)
    if M is not None:
        G = M @ G @ M
        G = (G + G.T) / 2.0
    return _Processed(G, y, M, None if lesion_scale is None else np.asarray(lesion_scale, dtype=np.float64),
                      col_scale)


def _project(A, proc):
    """``S M alpha`` for every row of ``A``: the back-projection before ``P^T`` and ``D^-1``."""
    A = np.atleast_2d(A)
    if proc.projector is not None:
        A = A @ proc.projector
    if proc.row_scale is not None:
        A = A * proc.row_scale[None, :]
    return A


def svr_kernel(gram, kernel="rbf", gamma=5.0, projector=None):
    """Kernel of the processed lesion data from the linear Gram matrix.

    Parameters
    ----------
    gram : ndarray of shape (n, n)
        ``S X X^T S`` (:func:`gram_matrix`).
    kernel : {"rbf", "linear"}
    gamma : float
        RBF width in libsvm's convention, ``exp(-gamma * ||x_i - x_j||^2)``.
    projector : ndarray of shape (n, n), optional
        ``M`` from :func:`residual_projector` (volume regressed out of the lesion data).

    Returns
    -------
    K : ndarray of shape (n, n), C-contiguous
    """
    G = gram if projector is None else projector @ gram @ projector
    G = (G + G.T) / 2.0
    if kernel == "linear":
        return np.ascontiguousarray(G)
    d = np.diag(G)
    d2 = np.maximum(d[:, None] + d[None, :] - 2.0 * G, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.ascontiguousarray(np.exp(-gamma * d2))


def fit_dual(K, y, C, epsilon, tol=1e-3):
    """Fit an epsilon-SVR on a precomputed kernel.

    Returns
    -------
    alpha : ndarray of shape (n,)
        Dual coefficients of every subject (0 outside the support vectors).
    intercept : float
    """
    from sklearn.svm import SVR

    model = SVR(kernel="precomputed", C=C, epsilon=epsilon, tol=tol).fit(K, y)
    alpha = np.zeros(K.shape[0])
    alpha[model.support_] = model.dual_coef_[0]
    return alpha, float(model.intercept_[0])


def _fit_chunk(perms, K, y, C, epsilon, tol):
    """Dual coefficients of the fits on the permuted scores of one chunk, (c, n)."""
    perms = np.ascontiguousarray(perms)
    out = np.empty((perms.shape[0], K.shape[0]))
    for b, perm in enumerate(perms):
        out[b] = fit_dual(K, y[perm], C, epsilon, tol)[0]
    return out


# --------------------------------------------------------------------------- memory
def memory_estimate(n_subjects, n_patterns, n_permutations, correction, block_patterns):
    """Bytes the engine holds at its peak (kernel, dual coefficients, one null block)."""
    kernel = 5 * 8 * n_subjects**2  # Gram, projector, distances, kernel, one copy per fit
    duals = 2 * 8 * n_permutations * n_subjects  # stored and projected dual coefficients
    block = 4 * 8 * n_permutations * block_patterns  # null beta block and its transforms
    bits = 0
    if correction == "cluster_size":
        bits = 2 * n_permutations * n_patterns  # supra-threshold flags, both tails
    return int(kernel + duals + block + bits)


def _block_size(n_permutations, n_patterns, working_memory):
    per_pattern = 4 * 8 * max(n_permutations, 1)
    return int(np.clip(working_memory * 2**20 // per_pattern, 1, max(n_patterns, 1)))


# --------------------------------------------------------------------------- nulls
def _supra(values, cluster_forming_p):
    """Which of the ``B + 1`` maps (rows) pass ``cluster_forming_p`` at each voxel (column).

    A value passes when ``(1 + #{other maps >= it}) / (B + 1) <= cluster_forming_p``, ties
    counting as ">=": for the observed map (row 0) this is its uncorrected p-value, and
    every permuted map is judged the same way against the other ``B`` maps.
    """
    n_maps = values.shape[0]
    ordered = np.sort(values, axis=0)
    low = tie_lowered(values)
    n_ge = np.empty(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):
        n_ge[:, j] = n_maps - np.searchsorted(ordered[:, j], low[:, j], side="left")
    return n_ge <= cluster_forming_p * n_maps * (1 + 1e-12)  # n_ge counts the value itself


def _null_block(a, b, P_csc, U, col_scale, beta_obs, alternative, counts, v, cluster_forming_p, want_bits):
    """Reduce the null beta of patterns a:b (all permutations at once).

    ``U`` holds the projected dual coefficients of every permutation, (B, n), so the
    null beta of pattern j under permutation b is ``U[b] @ P[:, j]``. The standard
    deviation that standardises beta is taken over the ``B + 1`` maps, the observed one
    included, so that every map is standardised alike (with the permutations alone, a
    permuted value would inflate its own scale and the observed one would not, which
    makes the maximum-statistic test liberal with few permutations).
    """
    block = np.asarray((P_csc[:, a:b].T @ U.T).T) * col_scale[None, a:b]  # (B, nb)
    obs = beta_obs[a:b]
    out = {}
    out["exceed"] = (alternative_transform(block, alternative)
                     >= tie_lowered(alternative_transform(obs, alternative))[None, :]).sum(axis=0)
    n_maps = block.shape[0] + 1
    mean = (block.sum(axis=0) + obs) / n_maps
    sd = np.sqrt((((block - mean) ** 2).sum(axis=0) + (obs - mean) ** 2) / n_maps)
    out["sd"] = sd
    safe = np.where(sd > 0, sd, 1.0)
    zb = alternative_transform(block / safe, alternative)
    zb[:, sd == 0] = -np.inf  # a pattern whose beta never varies carries no evidence
    out["top"] = top_values(zb.T, counts[a:b], v)  # (B, v)
    if want_bits:
        both = np.vstack([obs[None, :], block])
        pos = _supra(both, cluster_forming_p) if alternative in ("two-sided", "greater") else None
        neg = _supra(-both, cluster_forming_p) if alternative in ("two-sided", "less") else None
        out["obs_sign"] = (0.0 if pos is None else pos[0].astype(float)) - (0.0 if neg is None else neg[0])
        out["pos_bits"] = None if pos is None else np.packbits(pos[1:], axis=1)
        out["neg_bits"] = None if neg is None else np.packbits(neg[1:], axis=1)
    return out


def _unpack_row(blocks, b):
    """Supra-threshold flags of permutation ``b`` over every pattern (per-block bits)."""
    return np.concatenate([np.unpackbits(bits[b], count=c) for bits, c in blocks]).astype(np.float64)


def _cluster_chunk(rows, pos_blocks, neg_blocks, inverse, grid, alternative):
    """Largest cluster (in voxels) of the supra-threshold maps of permutations ``rows``."""
    out = np.empty(len(rows))
    for i, b in enumerate(np.ascontiguousarray(rows).ravel()):
        sign = 0.0
        if pos_blocks is not None:
            sign = sign + _unpack_row(pos_blocks, b)
        if neg_blocks is not None:
            sign = sign - _unpack_row(neg_blocks, b)
        out[i] = cluster_statistics(sign[inverse], grid, 0.5, alternative, "cluster_size")[1]
    return out


# --------------------------------------------------------------------------- CV search
def svr_cv_search(lesions, scores, grid, *, kernel="rbf", epsilon=0.1, lesion_scale=None,
                  score_nuisance=None, lesion_nuisance=None, standardize=False, score_range=100.0, n_splits=5,
                  tol=1e-3, random_state=None):
    """Choose ``C`` and ``gamma`` by K-fold cross-validation on the precomputed kernel.

    The lesion and score processing of :func:`svr_test` is applied to all subjects once
    (as the peers do), then each fold fits on its training rows and columns of the
    kernel and predicts its test subjects; the score is the mean R^2 over folds. One
    RBF kernel is built per ``gamma`` from the same Gram matrix.

    Parameters
    ----------
    lesions : sparse matrix of shape (n_subjects, n_voxels)
        Lesion data of the tested voxels.
    scores : ndarray of shape (n_subjects,)
    grid : dict
        ``{"C": [...], "gamma": [...]}`` (a missing key keeps ``C=30``/``gamma=5``).
    kernel, epsilon, lesion_scale, score_nuisance, lesion_nuisance, standardize, score_range, tol
        As in :func:`svr_test`.
    n_splits : int
    random_state : None, int or numpy.random.Generator
        Shuffles the folds.

    Returns
    -------
    best : dict
        ``{"C": ..., "gamma": ..., "cv_r2": ...}``.
    table : list of dict
        Mean and standard deviation of R^2 of every (C, gamma).
    """
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.svm import SVR

    unknown = set(grid) - {"C", "gamma"}
    if unknown:
        raise ValueError(f"cv_search searches 'C' and 'gamma'; got unknown key(s) {sorted(unknown)}.")
    Cs = [float(c) for c in grid.get("C", [30.0])]
    gammas = [float(g) for g in grid.get("gamma", [5.0])] if kernel == "rbf" else [float("nan")]
    rng = check_random_state(random_state)
    seed = int(rng.integers(0, 2**31 - 1))
    patterns, _, counts = unique_patterns(lesions)
    proc = _process(patterns, counts, scores, lesion_scale=lesion_scale, lesion_nuisance=lesion_nuisance,
                    score_nuisance=score_nuisance, standardize=standardize, score_range=score_range)
    y = proc.y
    folds = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    table = []
    for g in gammas:
        K = svr_kernel(proc.gram, kernel, g)
        search = GridSearchCV(SVR(kernel="precomputed", epsilon=epsilon, tol=tol), {"C": Cs},
                              cv=folds, scoring="r2").fit(K, y)
        for c, m, sd in zip(search.cv_results_["param_C"], search.cv_results_["mean_test_score"],
                            search.cv_results_["std_test_score"]):
            table.append({"C": float(c), "gamma": None if np.isnan(g) else g,
                          "cv_r2": float(m), "cv_r2_sd": float(sd)})
    best = max(table, key=lambda row: row["cv_r2"])
    return dict(best), table


# --------------------------------------------------------------------------- engine
def svr_test(
    lesions,
    scores,
    *,
    C=30.0,
    gamma=5.0,
    epsilon=0.1,
    kernel="rbf",
    lesion_scale=None,
    score_nuisance=None,
    lesion_nuisance=None,
    standardize=False,
    score_range=100.0,
    n_permutations=5000,
    correction="fwe",
    alpha=0.05,
    v=1,
    alternative="two-sided",
    min_lesioned=0.05,
    grid_shape=None,
    voxel_index=None,
    cluster_forming_p=0.005,
    tol=1e-3,
    max_memory=4.0,
    working_memory=512,
    n_jobs=1,
    random_state=None,
    verbose=0,
):
    """SVR-LSM of a score on a sparse lesion matrix, with permutation inference.

    Parameters
    ----------
    lesions : sparse matrix of shape (n_subjects, n_voxels)
        Binary lesion matrix (non-zero = lesioned).
    scores : ndarray of shape (n_subjects,)
    C, epsilon : float
        Cost and width of the insensitive tube of the epsilon-SVR (score units).
    gamma : float
        RBF width, libsvm's convention ``exp(-gamma * ||x_i - x_j||^2)``.
    kernel : {"rbf", "linear"}
    lesion_scale : ndarray of shape (n_subjects,), optional
        Factor of each subject's lesion vector (dTLVC: ``1 / sqrt(lesion voxels)``).
    score_nuisance : ndarray of shape (n_subjects, k), optional
        Regressed (with an intercept) out of the score before the fit and the
        permutations.
    lesion_nuisance : ndarray of shape (n_subjects, k), optional
        Regressed (with an intercept) out of every voxel's lesion data.
    standardize : bool
        z-score every voxel column of the processed lesion data (standard deviation with
        ``n - 1``), as the SVR-LSM GUI's default ``Standardize`` option.
    score_range : float or None
        The processed score is rescaled to this range before the fit (Zhang et al. 2014
        and the GUI rescale it to 0-100, the scale ``C`` and ``epsilon`` refer to); None
        keeps score units.
    n_permutations : int
    correction : {"fwe", "cfwer", "cluster_size"}
        FWE and CFWER on the standardised beta (each voxel's beta over its standard
        deviation across the observed and permuted maps, so that every map is scaled
        alike and the test stays exact); cluster size with clusters of voxels whose uncorrected p
        (per tail) is below ``cluster_forming_p``.
    alpha : float
    v : int
        CFWER: voxels allowed to be false positives.
    alternative : {"two-sided", "greater", "less"}
        ``"greater"``: damage goes with a higher score (positive beta).
    min_lesioned : int or float
    grid_shape : tuple of 3 int, optional
        Needed for ``cluster_size``.
    voxel_index : ndarray of shape (n_voxels,), optional
        Flat grid index of each column (default ``arange``).
    cluster_forming_p : float
    tol : float
        Stopping tolerance of the SVR solver (libsvm's ``-e``).
    max_memory : float
        GB the engine may hold (estimated before anything large is built); above it, an
        :class:`~lsm.exceptions.AnalysisError`.
    working_memory : float
        MB of one block of null beta maps.
    n_jobs : int
    random_state : None, int or numpy.random.Generator
    verbose : int

    Returns
    -------
    result : SVRTestResult
    """
    t_start = time.perf_counter()
    check_option("kernel", kernel, SVR_KERNELS)
    check_option("correction", correction, SVR_CORRECTIONS)
    check_option("alternative", alternative, ("two-sided", "greater", "less"))
    alpha = check_alpha(alpha)
    n_permutations = check_n_permutations(n_permutations)
    cluster_forming_p = check_alpha(cluster_forming_p, "cluster_forming_p")
    for name, value in (("C", C), ("gamma", gamma), ("epsilon", epsilon), ("tol", tol)):
        if not (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
                and math.isfinite(value) and (value > 0 or (name == "epsilon" and value == 0))):
            raise ValueError(f"Invalid value for the {name!r} parameter: expected a positive number"
                             f"{' (or 0)' if name == 'epsilon' else ''}, but got {value!r} instead.")
    v = int(v) if correction == "cfwer" else 1
    if v < 1:
        raise ValueError(f"Invalid value for the 'v' parameter: expected an int >= 1, got {v!r}.")
    rng = check_random_state(random_state)

    X = sp.csc_matrix(lesions)
    n, n_vox = X.shape
    y = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.size != n:
        raise ValueError(f"scores has {y.size} values but the lesion matrix has {n} subjects (rows).")
    if not np.all(np.isfinite(y)):
        raise AnalysisError("The score has missing or infinite values; exclude those subjects first.")
    count = check_min_lesioned(min_lesioned, n)
    n_lesioned = np.diff(sp.csc_matrix(X != 0).indptr).astype(np.int64)
    tested = (n_lesioned >= count) & (n - n_lesioned >= count)
    if not tested.any():
        raise AnalysisError(
            f"No voxel has at least {count} lesioned and {count} non-lesioned subjects "
            f"(min_lesioned={min_lesioned!r}, {n} subjects; the most lesioned voxel has "
            f"{int(n_lesioned.max(initial=0))}). Lower min_lesioned or add subjects."
        )
    patterns, inverse, counts = unique_patterns(X[:, np.flatnonzero(tested)])
    q = patterns.shape[1]

    block = _block_size(n_permutations, q, working_memory)
    need = memory_estimate(n, q, n_permutations, correction, block)
    if need > max_memory * 2**30:
        raise AnalysisError(
            f"SVR-LSM of {n} subjects with {n_permutations} permutations needs about "
            f"{need / 2**30:.1f} GB (kernel {n} x {n}, dual coefficients {n_permutations} x {n}, "
            f"null blocks), above max_memory={max_memory} GB. Raise max_memory if the machine "
            "has the memory, or lower n_permutations."
        )

    t0 = time.perf_counter()
    proc = _process(patterns, counts, y, lesion_scale=lesion_scale, lesion_nuisance=lesion_nuisance,
                    score_nuisance=score_nuisance, standardize=standardize, score_range=score_range)
    y_proc = proc.y
    K = svr_kernel(proc.gram, kernel, gamma)
    t_kernel = time.perf_counter() - t0
    diag = float(np.mean(np.diag(K)))
    off = float((np.abs(K).sum() - np.abs(np.diag(K)).sum()) / max(n * (n - 1), 1))
    near_diagonal = bool(off < NEAR_DIAGONAL * diag)

    t0 = time.perf_counter()
    alpha_obs, intercept = fit_dual(K, y_proc, C, epsilon, tol)
    t_fit = time.perf_counter() - t0
    P_csc = sp.csc_matrix(patterns)
    col_scale = np.ones(q) if proc.col_scale is None else proc.col_scale
    beta_pat = np.asarray(P_csc.T @ _project(alpha_obs, proc)[0]) * col_scale

    perms = draw_permutations(n_permutations, n, rng)
    t0 = time.perf_counter()
    outs = run_permutations(_fit_chunk, perms, args=(K, y_proc, float(C), float(epsilon), float(tol)),
                            n_jobs=n_jobs, verbose=verbose, desc="SVR permutations")
    A = np.concatenate(outs, axis=0)
    t_perm = time.perf_counter() - t0
    U = np.ascontiguousarray(_project(A, proc))
    del A

    t0 = time.perf_counter()
    bounds = list(range(0, q, block)) + [q]
    want_bits = correction == "cluster_size"
    red = [_null_block(a, b, P_csc, U, col_scale, beta_pat, alternative, counts, v, cluster_forming_p, want_bits)
           for a, b in zip(bounds[:-1], bounds[1:])]
    exceed = np.concatenate([r["exceed"] for r in red])
    sd = np.concatenate([r["sd"] for r in red])
    null_top = merge_top([r["top"] for r in red], v)  # (B, v)
    t_null = time.perf_counter() - t0

    B = n_permutations
    p_pat = (1.0 + exceed) / (1.0 + B)
    z_pat = np.where(sd > 0, beta_pat / np.where(sd > 0, sd, 1.0), 0.0)
    z_t = np.where(sd > 0, alternative_transform(z_pat, alternative), -np.inf)

    threshold = None
    extra = {}
    info_extra = {}
    if correction in ("fwe", "cfwer"):
        null = null_top[:, v - 1]
        p_corr_pat = np.where(sd > 0, permutation_pvalues(z_t, null), 1.0)
        threshold = float(permutation_threshold(null, alpha))
        p_corr = p_corr_pat[inverse]
    else:
        if grid_shape is None:
            raise ValueError("correction='cluster_size' needs grid_shape (and voxel_index).")
        flat = np.arange(n_vox) if voxel_index is None else np.asarray(voxel_index)
        grid = Grid(grid_shape, flat[tested])
        sign = np.concatenate([np.broadcast_to(r["obs_sign"], r["sd"].shape) for r in red])
        sizes, _ = cluster_statistics(sign[inverse], grid, 0.5, alternative, "cluster_size")
        pos_blocks = None if red[0]["pos_bits"] is None else [(r["pos_bits"], r["sd"].size) for r in red]
        neg_blocks = None if red[0]["neg_bits"] is None else [(r["neg_bits"], r["sd"].size) for r in red]
        t1 = time.perf_counter()
        outs = run_permutations(_cluster_chunk, np.arange(B)[:, None],
                                args=(pos_blocks, neg_blocks, inverse, grid, alternative),
                                n_jobs=n_jobs, verbose=verbose, desc="cluster null")
        null = np.concatenate(outs)
        info_extra["cluster_null_s"] = time.perf_counter() - t1
        p_corr = np.where(sizes > 0, permutation_pvalues(sizes, null), 1.0)
        extra["cluster_size"] = sizes
        info_extra["cluster_forming_p"] = cluster_forming_p

    significant = p_corr <= alpha
    info = {
        "kernel_s": t_kernel,
        "fit_s": t_fit,
        "permutations_s": t_perm,
        "seconds_per_permutation": t_perm / B,
        "null_maps_s": t_null,
        "total_s": time.perf_counter() - t_start,
        "kernel_mean_diagonal": diag,
        "kernel_mean_off_diagonal": off,
        "near_diagonal_kernel": near_diagonal,
        "n_support_vectors": int(np.count_nonzero(alpha_obs)),
        "memory_estimate_bytes": need,
        "null_block_patterns": block,
        "n_subjects": n,
        **info_extra,
    }
    return SVRTestResult(
        tested=tested,
        n_lesioned=n_lesioned,
        beta=beta_pat[inverse],
        z=z_pat[inverse],
        p=p_pat[inverse],
        p_corrected=p_corr,
        significant=significant,
        threshold=threshold,
        null_distribution=null,
        null_sd=sd[inverse],
        dual_coef=alpha_obs,
        intercept=intercept,
        pattern_index=inverse,
        n_unique_patterns=q,
        min_lesioned=count,
        n_permutations=B,
        extra_maps=extra,
        info=info,
    )
