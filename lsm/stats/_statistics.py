"""Voxel-wise statistics of a binary lesion status against a score, for many scores at once.

Each statistic is computed for a block of unique lesion patterns ``X`` (a CSR matrix of
shape (n_patterns, n_subjects), rows = patterns) and a batch of permuted scores. The
score is permuted, never the lesion matrix, and every sum over lesioned subjects is a
sparse product ``X @ Y`` with ``Y`` of shape (n_subjects, n_permutations_in_batch).

Sign convention: a statistic is positive when the lesioned subjects have the higher
scores.
"""

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy import special, stats

from ..exceptions import AnalysisError

__all__ = [
    "METHODS",
    "prepare_design",
    "compute_stat",
    "t_to_z",
    "t_pvalues",
    "z_pvalues",
]

METHODS = ("ttest", "welch", "brunner_munzel", "regression", "liebermeister")

# Methods whose statistic has the same null distribution shape at every voxel: their
# permutation maxima are taken over the raw statistic. The others are compared in z.
CONSTANT_DF = ("ttest", "regression")


@dataclass
class Design:
    """Everything about the subjects (not the voxels) that a statistic needs.

    Built once in the main process by :func:`prepare_design`; small (vectors of
    length n_subjects), so it is cheap to send to workers.
    """

    method: str
    n: int
    y: np.ndarray  # (n,) the (transformed) score that gets permuted
    df: float = np.nan  # residual degrees of freedom (ttest, regression)
    basis: np.ndarray = None  # (n, k) orthonormal basis of the nuisance design (regression)
    extra: dict = field(default_factory=dict)


def _check_not_constant(y, what="score"):
    if np.ptp(y) == 0:
        raise AnalysisError(
            f"The {what} is constant across the {y.size} analysed subjects "
            f"(every value is {y[0]!r}); no test can be run. Check the column or the "
            "subject selection."
        )


def prepare_design(method, score, covariates=None):
    """Precompute the subject-level part of a statistic.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    score : ndarray of shape (n_subjects,)
        Finite scores (0/1 for ``"liebermeister"``).
    covariates : ndarray of shape (n_subjects, n_covariates) or None
        Nuisance regressors (``"regression"`` only); an intercept is always added.

    Returns
    -------
    design : Design
    """
    y = np.asarray(score, dtype=np.float64)
    n = y.size
    _check_not_constant(y)
    if method in ("ttest", "regression"):
        z = np.ones((n, 1))
        if covariates is not None and np.size(covariates):
            z = np.column_stack([z, np.asarray(covariates, dtype=np.float64)])
        q, r = np.linalg.qr(z)
        diag = np.abs(np.diag(r))
        if diag.min() <= 1e-10 * max(diag.max(), 1.0):
            raise AnalysisError(
                "The covariates are collinear (or constant) among the analysed subjects, so "
                "the nuisance model cannot be fitted. Drop a redundant covariate."
            )
        k = z.shape[1]
        df = n - k - 1
        if df < 1:
            raise AnalysisError(
                f"Too few subjects ({n}) for a regression with {k - 1} covariate(s): "
                "at least covariates + 3 subjects are needed."
            )
        # Residuals of the reduced model (Freedman-Lane): these get permuted.
        resid = y - q @ (q.T @ y)
        if np.sqrt(resid @ resid) <= 1e-10 * np.sqrt(y @ y + 1.0):
            raise AnalysisError(
                "The score is fully explained by the covariates (zero residual variance); "
                "no lesion effect can be tested."
            )
        basis = q if k > 1 else None
        extra = {}
        if basis is None and np.all(y == np.round(y)) and np.abs(y).sum() < 2**24:
            # Integer scores (NIHSS, mRS) and an intercept-only model: sums of raw scores
            # over lesioned subjects are exact in float32, which halves the sparse product.
            extra = {"exact_int": True, "y32": y.astype(np.float32), "ybar": y.mean(),
                     "ss": float(resid @ resid)}
        return Design(method, n, resid, df=float(df), basis=basis, extra=extra)
    if method == "welch":
        yc = (y - y.mean()) / y.std()
        return Design(method, n, yc, extra={"total": yc.sum(), "total_sq": (yc * yc).sum()})
    if method == "brunner_munzel":
        _, ties = np.unique(y, return_inverse=True)
        ties = ties.reshape(-1).astype(np.int64)
        counts = np.bincount(ties).astype(np.float64)
        below = np.cumsum(counts) - counts
        return Design(method, n, ties, extra={"counts": counts, "mid": below + counts / 2.0})
    if method == "liebermeister":
        values = np.unique(y)
        if values.size != 2 or not np.array_equal(values, [0.0, 1.0]):
            raise AnalysisError(
                "method='liebermeister' needs a binary score coded 0/1, but the score takes "
                f"the values {values[:10].tolist()}."
            )
        n_pos = int(y.sum())
        return Design(method, n, y, extra={"n_pos": n_pos})
    raise ValueError(f"unknown method {method!r}")


def column_info(design, x, n_lesioned):
    """Per-pattern quantities that do not change under permutation.

    Parameters
    ----------
    design : Design
    x : scipy.sparse.csr_matrix of shape (n_patterns, n_subjects)
        Lesion patterns as rows (values 1, or the dTLVC-scaled lesion status).
    n_lesioned : ndarray of shape (n_patterns,)
        Number of lesioned subjects of each pattern.

    Returns
    -------
    info : dict of ndarray of shape (n_patterns,)
    """
    n1 = n_lesioned.astype(np.float64)
    info = {"n1": n1, "n0": design.n - n1}
    if design.method in ("ttest", "regression"):
        xx = np.asarray(x.multiply(x).sum(axis=1)).ravel()
        mean_part = np.asarray(x.sum(axis=1)).ravel() ** 2 / design.n
        d = xx - mean_part
        if design.basis is not None:
            proj = x @ design.basis  # (n_patterns, k) includes the intercept direction
            d = xx - (proj * proj).sum(axis=1)
        info["xtx"] = xx
        info["d"] = d
        with np.errstate(divide="ignore", invalid="ignore"):
            info["inv_sqrt_d"] = 1.0 / np.sqrt(d)
    if design.method == "liebermeister":
        info.update(_liebermeister_tables(design, n_lesioned))
    return info


def _liebermeister_tables(design, n_lesioned):
    # Liebermeister's quasi-exact test: Fisher's one-sided test on the 2x2 table with one
    # added to the two cells of the tested diagonal. Both tails are tails of the same
    # hypergeometric law (n + 2 subjects, n_pos + 1 "score 1", n1 + 1 "lesioned"):
    # P(greater) = P(A > a) and P(less) = P(A <= a), where a = #(lesioned & score 1).
    n, n_pos = design.n, design.extra["n_pos"]
    uniq, inv = np.unique(n_lesioned.astype(np.int64), return_inverse=True)
    sizes = uniq + 1
    offsets_u = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    a = np.concatenate([np.arange(s) for s in sizes])
    nn = np.repeat(uniq, sizes)
    law = stats.hypergeom(n + 2, n_pos + 1, nn + 1)
    log_greater = law.logsf(a)
    log_less = law.logcdf(a)
    # Sign from the observed table (a*n - n1*n_pos = ad - bc: lesioned subjects have the
    # higher rate of score 1 when > 0), size from the one-sided tail in that direction;
    # near the null the two +1-corrected tails can both exceed 0.5, and then z = 0
    # rather than a sign that contradicts the data.
    direction = np.sign(a * n - nn * n_pos)
    up = np.maximum(-special.ndtri_exp(log_greater), 0.0)
    down = np.maximum(-special.ndtri_exp(log_less), 0.0)
    z = np.where(direction > 0, up, np.where(direction < 0, -down, 0.0))
    return {
        "lb_offset": offsets_u[inv.reshape(-1)],
        "lb_z": z,
        "lb_p_greater": np.exp(log_greater),
        "lb_p_less": np.exp(log_less),
    }


def _permuted(vector, perms):
    """(n_subjects, n_batch) matrix of ``vector`` permuted by each row of ``perms``."""
    if perms is None:
        return vector[:, None].copy()
    return np.ascontiguousarray(vector[perms].T)


def compute_stat(design, x, info, perms=None):
    """Statistic of every pattern for a batch of permutations.

    Parameters
    ----------
    design : Design
    x : scipy.sparse.csr_matrix of shape (n_patterns, n_subjects)
    info : dict
        From :func:`column_info` for these rows.
    perms : ndarray of shape (n_batch, n_subjects) or None
        Permutations of the subjects (``None``: the observed data, a batch of 1).
        Subject ``i`` receives the score of subject ``perms[b, i]``.

    Returns
    -------
    stat : ndarray of shape (n_patterns, n_batch)
        t (ttest, regression), Welch t, Brunner-Munzel statistic, or signed
        Liebermeister z.
    df : float, ndarray of shape (n_patterns, n_batch), or None
        Degrees of freedom of the t reference law (None for Liebermeister).
    """
    method = design.method
    if method in ("ttest", "regression"):
        return _ols_t(design, x, info, perms), design.df
    if method == "welch":
        return _welch(design, x, info, perms)
    if method == "brunner_munzel":
        return _brunner_munzel(design, x, info, perms)
    if method == "liebermeister":
        y = _permuted(design.y, perms)
        hits = np.rint(x @ y).astype(np.int64)
        return info["lb_z"][info["lb_offset"][:, None] + hits], None
    raise ValueError(f"unknown method {method!r}")


def ols_proxy(design, x, info, perms, x32=None):
    """Monotone proxy of the OLS t: ``u = x'R_Z y* / sqrt(x'R_Z x)`` and ``||R_Z y*||^2``.

    For each permutation, t is an increasing function of u (see :func:`proxy_to_t`), so
    the permutation maxima are found on u and only the selected values are turned into t.

    ``x32`` (``x`` as float32) may be passed to avoid converting it for every batch.

    Returns
    -------
    u : ndarray of shape (n_patterns, n_batch)
    ss : ndarray of shape (n_batch,)
    """
    if design.extra.get("exact_int"):
        # x' (y* - ybar) = (sum of integer scores over lesioned subjects) - n1 ybar.
        x32 = x.astype(np.float32) if x32 is None else x32
        s = np.asarray(x32 @ _permuted(design.extra["y32"], perms), dtype=np.float64)
        u = s - info["n1"][:, None] * design.extra["ybar"]
        u *= info["inv_sqrt_d"][:, None]
        return u, np.full(u.shape[1], design.extra["ss"])
    # Freedman-Lane: permuted residuals of the reduced model, residualised again on Z.
    # For a binary (or scaled) lesion column x: x' R_Z y* = x' (R_Z y*), a sparse product.
    e = _permuted(design.y, perms)
    if design.basis is not None and perms is not None:
        e -= design.basis @ (design.basis.T @ e)
    ss = np.einsum("ij,ij->j", e, e)
    u = np.asarray(x @ e)
    u *= info["inv_sqrt_d"][:, None]
    return u, ss


def proxy_to_t(u, ss, df):
    """T = u sqrt(df) / sqrt(ss - u^2), increasing in u; +-inf for a perfect fit."""
    resid = np.maximum(ss - u * u, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = u * np.sqrt(df) / np.sqrt(resid)
    return _fix_zero_variance(t, u, resid <= 1e-12 * ss)


def _ols_t(design, x, info, perms):
    u, ss = ols_proxy(design, x, info, perms)
    return proxy_to_t(u, ss[None, :], design.df)


def _fix_zero_variance(t, numerator, zero_var):
    # A perfect separation gives a zero residual variance: +-inf (0 if no difference).
    if np.any(zero_var):
        with np.errstate(invalid="ignore"):
            t = np.where(zero_var, np.sign(numerator) * np.inf, t)
        t = np.where(zero_var & (numerator == 0), 0.0, t)
    return t


def _welch(design, x, info, perms):
    y = _permuted(design.y, perms)
    nb = y.shape[1]
    prod = np.asarray(x @ np.concatenate([y, y * y], axis=1))
    s1, q1 = prod[:, :nb], prod[:, nb:]
    total, total_sq = design.extra["total"], design.extra["total_sq"]
    n1, n0 = info["n1"][:, None], info["n0"][:, None]
    m1 = s1 / n1
    m0 = (total - s1) / n0
    tol = 1e-12 * total_sq / design.n
    v1 = (q1 - s1 * m1) / (n1 - 1)
    v0 = ((total_sq - q1) - (total - s1) * m0) / (n0 - 1)
    v1 = np.where(v1 <= tol, 0.0, v1)
    v0 = np.where(v0 <= tol, 0.0, v0)
    a1, a0 = v1 / n1, v0 / n0
    se2 = a1 + a0
    diff = m1 - m0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / np.sqrt(se2)
        df = se2 * se2 / (a1 * a1 / (n1 - 1) + a0 * a0 / (n0 - 1))
    zero = se2 <= 0
    t = _fix_zero_variance(t, diff, zero)
    df = np.where(zero, 1.0, df)
    return t, df


def bm_packed_counts(design, x, perms):
    """Lesioned subjects per (pattern, permutation, tie group), packed as bit fields.

    Subject i contributes ``1 << (w * (t % d))`` to packed column ``t // d`` of the tie
    group t of its permuted score, so one exact int64 sparse product ``X @ H`` counts
    every tie group of every permutation at once; a count never exceeds ``2**w - 1``, so
    fields never carry.

    Returns
    -------
    packed : ndarray of shape (n_patterns * n_batch, n_packed), int64
    width : int
        Bits per count.
    per_col : int
        Counts per packed column.
    """
    ties = _permuted(design.y, perms)  # (n, nb) tie group of each subject's permuted score
    k = design.extra["counts"].size
    n, nb = ties.shape
    width = max(1, int(np.diff(x.indptr).max(initial=1)).bit_length())
    per_col = 63 // width
    n_cols = -(-k // per_col)
    packed = np.zeros((n, nb, n_cols), dtype=np.int64)
    np.put_along_axis(
        packed,
        (ties // per_col)[:, :, None],
        np.left_shift(1, width * (ties % per_col))[:, :, None],
        axis=2,
    )
    xi = sp.csr_matrix((np.ones(x.nnz, dtype=np.int64), x.indices, x.indptr), shape=x.shape)
    sums = np.asarray(xi @ packed.reshape(n, nb * n_cols))
    return sums.reshape(x.shape[0] * nb, n_cols), width, per_col


def bm_counts(design, x, perms):
    """Dense (n_patterns, n_batch, n_tie_groups) counts (for tests and small inputs)."""
    packed, width, per_col = bm_packed_counts(design, x, perms)
    k = design.extra["counts"].size
    nb = 1 if perms is None else perms.shape[0]
    return _unpack_t(packed, width, per_col, k).T.reshape(x.shape[0], nb, k)


def _unpack_t(packed, width, per_col, k):
    """Counts of a block of packed rows, transposed: (n_tie_groups, n_rows) float64."""
    shifts = (width * np.arange(per_col, dtype=np.int64))[None, :, None]
    digits = np.bitwise_and(np.right_shift(packed.T[:, None, :], shifts), (1 << width) - 1)
    return digits.reshape(-1, packed.shape[0])[:k].astype(np.float64)


_BM_BLOCK = 8192  # (pattern, permutation) pairs per cache-sized block


def _bm_sums(design, packed, width, per_col):
    """Sums of squared placements of both groups, block by block (small reused buffers).

    With g_t lesioned subjects in tie group t (c_t subjects, mid_t = #below + c_t/2) and
    A_t = sum_{s<t} g_s + g_t/2 (prefix counts over the score order), a lesioned subject
    in group t has placement mid_t - A_t among the non-lesioned, a non-lesioned one has
    placement A_t among the lesioned. Every term is a multiple of 1/4 and every sum stays
    far below 2**50, so all sums are exact whatever the summation order. Blocks are laid
    out (tie group, pair) so that the prefix sums run over contiguous rows.
    """
    counts, mid = design.extra["counts"], design.extra["mid"]
    mid2 = mid * mid
    k = counts.size
    m = packed.shape[0]
    sp_, sp2, sq2 = np.empty(m), np.empty(m), np.empty(m)
    a = np.empty((k, min(m, _BM_BLOCK)))
    tmp = np.empty_like(a)
    for s in range(0, m, _BM_BLOCK):
        e = min(m, s + _BM_BLOCK)
        g = _unpack_t(packed[s:e], width, per_col, k)
        ab, tb = a[:, : e - s], tmp[:, : e - s]
        ab[0] = g[0]
        for t in range(1, k):  # prefix sums row by row (numpy's axis-0 cumsum is slow)
            np.add(ab[t - 1], g[t], out=ab[t])
        np.multiply(g, 0.5, out=tb)
        ab -= tb
        np.multiply(g, ab, out=tb)  # g * A
        sga = tb.sum(axis=0)
        sgaa = np.einsum("ij,ij->j", tb, ab)
        sgam = mid @ tb
        sp_[s:e] = mid @ g - sga
        sp2[s:e] = mid2 @ g - 2.0 * sgam + sgaa
        np.multiply(ab, ab, out=tb)
        sq2[s:e] = counts @ tb - sgaa
    return sp_, sp2, sq2


# Above this many tie groups per lesioned entry, the sparse (per entry) path is cheaper.
_BM_SPARSE_RATIO = 2.5
_BM_SPARSE_NNZ = 1 << 20  # lesioned entries per block of the sparse path


def _bm_sums_sparse(design, x, perms):
    """Same sums as :func:`_bm_sums`, from the lesioned entries in permuted score order.

    For each permutation, the subjects are reordered by their permuted score (one CSR row
    gather) and converted to CSC, which lists the lesioned subjects of every pattern in
    score order (a counting sort, O(nnz)). Runs of lesioned subjects sharing a tie group
    t give g_t and the number B of lesioned subjects below the run; the non-lesioned
    subjects between two runs all have the same placement. Every term is a multiple of
    1/4, so the sums are exact and equal to those of the dense path.
    """
    counts, ties = design.extra["counts"], design.y
    below = np.cumsum(counts) - counts
    ties_sorted = np.sort(ties)
    n = design.n
    nb = 1 if perms is None else perms.shape[0]
    n_rows = x.shape[0]
    out = np.empty((3, n_rows, nb))
    lengths = np.diff(x.indptr)
    bounds = [0]
    while bounds[-1] < n_rows:
        target = x.indptr[bounds[-1]] + _BM_SPARSE_NNZ
        nxt = int(np.searchsorted(x.indptr, target, side="right")) - 1
        bounds.append(min(n_rows, max(nxt, bounds[-1] + 1)))
    for a, b in zip(bounds[:-1], bounds[1:]):
        xt = sp.csr_matrix(x[a:b].T)  # subjects x patterns
        m = b - a
        n1 = lengths[a:b].astype(np.float64)
        col = np.repeat(np.arange(m), lengths[a:b])
        start = np.repeat(x.indptr[a:b] - x.indptr[a], lengths[a:b])
        within = np.arange(col.size) - start  # lesioned subjects before, within the column
        col_change = np.ones(col.size, dtype=bool)
        col_change[1:] = col[1:] != col[:-1]
        for j in range(nb):
            # order[r] = subject with the r-th smallest permuted score
            permuted = ties if perms is None else ties[perms[j]]
            order = np.argsort(permuted, kind="stable")
            ranks = sp.csr_matrix(xt[order]).tocsc().indices  # sorted within each pattern
            t = ties_sorted[ranks]
            new_run = col_change.copy()
            new_run[1:] |= t[1:] != t[:-1]
            starts = np.flatnonzero(new_run)
            g = np.diff(np.append(starts, col.size)).astype(np.float64)
            rc, rt = col[starts], t[starts]
            b_run = within[starts].astype(np.float64)
            c, lo = counts[rt], below[rt]
            place1 = lo - b_run + (c - g) / 2.0  # placement of the lesioned of the run
            a_run = b_run + g / 2.0  # placement of the non-lesioned tied with the run
            end_prev = np.empty_like(lo)
            end_prev[0] = 0.0
            end_prev[1:] = lo[:-1] + c[:-1]
            gap = lo - end_prev  # non-lesioned strictly between runs: placement b_run
            last = np.append(np.flatnonzero(rc[1:] != rc[:-1]), rc.size - 1)
            tail = n - (lo[last] + c[last])  # non-lesioned above the last run: placement n1
            out[0, a:b, j] = np.bincount(rc, weights=g * place1, minlength=m)
            out[1, a:b, j] = np.bincount(rc, weights=g * place1 * place1, minlength=m)
            sq2 = np.bincount(rc, weights=(c - g) * a_run * a_run + gap * b_run * b_run, minlength=m)
            out[2, a:b, j] = sq2 + tail * n1 * n1
    return out[0], out[1], out[2]


def _brunner_munzel(design, x, info, perms):
    # Placements: for a lesioned subject j, P_j = #(non-lesioned below) + #(tied)/2; for a
    # non-lesioned k, Q_k = #(lesioned below) + #(tied)/2 (overall minus within-group
    # mid-ranks). Their group variances are the Brunner-Munzel variance estimates.
    nb = 1 if perms is None else perms.shape[0]
    shape = (x.shape[0], nb)
    k = design.extra["counts"].size
    if x.shape[0] * k > _BM_SPARSE_RATIO * max(x.nnz, 1):
        # Many distinct scores (continuous): work per lesioned entry, not per tie group.
        sp_, sp2, sq2 = _bm_sums_sparse(design, x, perms)
    else:
        packed, width, per_col = bm_packed_counts(design, x, perms)
        sp_, sp2, sq2 = (v.reshape(shape) for v in _bm_sums(design, packed, width, per_col))
    n1, n0 = info["n1"][:, None], info["n0"][:, None]
    n = design.n
    sq = n1 * n0 - sp_
    diff = (sp_ / n1 + (n1 + 1) / 2) - (sq / n0 + (n0 + 1) / 2)
    var1 = np.maximum(sp2 - sp_ * sp_ / n1, 0.0) / (n1 - 1)
    var0 = np.maximum(sq2 - sq * sq / n0, 0.0) / (n0 - 1)
    v = n1 * var1 + n0 * var0
    with np.errstate(divide="ignore", invalid="ignore"):
        w = n1 * n0 * diff / (n * np.sqrt(v))
        df = v * v / ((n1 * var1) ** 2 / (n1 - 1) + (n0 * var0) ** 2 / (n0 - 1))
    zero = v <= 0
    w = _fix_zero_variance(w, diff, zero)
    df = np.where(zero, 1.0, df)
    return w, df


def _log_t_tail(t_abs, df):
    # log P(T > |t|) for a Student t where stdtr underflows. With x = df / (df + t^2) and
    # a = df / 2, P = I_x(a, 1/2) / 2 and, exactly,
    # I_x(a, 1/2) = x^a / (a B(a, 1/2)) * sum_k a / (a + k) * (1/2)_k / k! * x^k
    # (the hypergeometric series of 2F1(a, 1/2; a + 1; x)). Its terms are positive and at
    # most x^k, so it is summed until the remainder is below double precision; a two-term
    # truncation is off by ~1e-3 in z once df is in the hundreds (Welch, Brunner-Munzel).
    a = df / 2.0
    log_x = np.log(df) - np.logaddexp(np.log(df), 2.0 * np.log(t_abs))  # no overflow of t^2
    x = np.exp(log_x)
    total = np.ones_like(x)
    coef = np.ones_like(x)
    for k in range(1, 1_000_000):
        coef *= (k - 0.5) / k * x
        total += a / (a + k) * coef
        if np.all(coef * x <= 1e-17 * (1.0 - x) * total):
            break
    return np.log(0.5) + a * log_x - np.log(a) - special.betaln(a, 0.5) + np.log(total)


# Tail probabilities below this use the log-tail series: stdtr loses relative precision
# in subnormal doubles (and returns 0 below them), which would put a step in z.
_TINY_TAIL = 1e-290


def t_to_z(t, df):
    """Signed z with the same tail probability as ``t`` under Student t with ``df``.

    ``Phi(-|z|) = P(T > |t|)``, so p-values of every alternative are unchanged.
    Far tails (p < 1e-290) are computed in log space, so z stays finite, accurate and
    increasing in |t| where the p-value underflows.
    """
    t = np.asarray(t, dtype=np.float64)
    df = np.broadcast_to(np.asarray(df, dtype=np.float64), t.shape)
    tail = special.stdtr(df, -np.abs(t))
    z = -special.ndtri(tail)
    under = (tail < _TINY_TAIL) & np.isfinite(t)
    if np.any(under):
        z[under] = -special.ndtri_exp(_log_t_tail(np.abs(t[under]), df[under]))
    z = np.where(np.isinf(t), np.inf, z)
    return np.copysign(z, t) * (t != 0)


def t_pvalues(t, df, alternative):
    """Parametric p-values of Student t statistics."""
    t = np.asarray(t, dtype=np.float64)
    if alternative == "two-sided":
        return np.minimum(2.0 * special.stdtr(df, -np.abs(t)), 1.0)
    if alternative == "greater":
        return special.stdtr(df, -t)
    return special.stdtr(df, t)


def z_pvalues(z, alternative):
    """p-values of standard normal z statistics."""
    z = np.asarray(z, dtype=np.float64)
    if alternative == "two-sided":
        return np.minimum(2.0 * special.ndtr(-np.abs(z)), 1.0)
    if alternative == "greater":
        return special.ndtr(-z)
    return special.ndtr(z)


def liebermeister_pvalues(info, hits, alternative):
    """Liebermeister p-values for observed counts ``hits`` (n_patterns,)."""
    pos = info["lb_offset"] + hits
    greater, less = info["lb_p_greater"][pos], info["lb_p_less"][pos]
    if alternative == "greater":
        return greater
    if alternative == "less":
        return less
    return np.minimum(2.0 * np.minimum(greater, less), 1.0)
