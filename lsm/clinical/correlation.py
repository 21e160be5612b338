"""Correlation between lesion volume and a clinical score (:func:`volume_score_correlation`)."""

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .._docs import fill_doc
from .._result import Summary, TableResult, excluded_frame, make_provenance
from .._validation import as_column_list, check_option, check_volume_transform, resolve_seed
from ..exceptions import AnalysisError, LSMWarning
from ._common import (
    VOLUME,
    _check_collinear,
    _complete_cases,
    _fmt_p,
    _source_frame,
    _to_numeric,
    _volume,
    _volume_name,
    _warn_excluded,
)

__all__ = ["volume_score_correlation", "CorrelationResult"]

logger = logging.getLogger("lsm")

_CORR_METHODS = ("spearman", "pearson", "kendall")
# A variable whose pairwise-ordering (sign) vector keeps less than this fraction of its
# squared norm after projection on the others' makes the Kendall tau-b matrix singular.
# (Swapping one pair of subjects in an ordering of n keeps about 8 / (n (n - 1)).)
_KENDALL_SINGULAR_TOL = 1e-10



@dataclass(frozen=True, repr=False)
class CorrelationResult(TableResult):
    """Correlation between lesion volume and a score.

    Attributes
    ----------
    score : str
        The score column.
    method : {"spearman", "pearson", "kendall"}
    r : float
        Correlation coefficient (partial correlation when ``covariates`` were given).
    p : float
        Two-sided p-value (t distribution with ``n - 2 - len(covariates)`` degrees of
        freedom for Pearson and Spearman, :func:`scipy.stats.kendalltau` for Kendall, and
        for partial Kendall tau the normal approximation of R's ppcor, see
        :func:`volume_score_correlation`).
    ci : tuple of float
        Bootstrap confidence interval ``(low, high)`` (BCa, paired resampling of subjects),
        ``(nan, nan)`` when ``n_boot=0``.
    ci_level : float
    n : int
        Number of subjects analysed.
    covariates : list of str
    volume_transform : {"linear", "log"}
        Whether the volume was log10-transformed (changes Pearson r and the plot only).
    excluded : DataFrame
        Columns ``subject`` and ``reason``.
    data : DataFrame
        The analysed values: ``lesion_volume`` (ml), the score and covariates.
    params : dict
        Analysis parameters (method, covariates, volume_transform, n_boot, ci...).
    provenance : dict
        Versions, seed of the bootstrap (``random_state``), runtime.
    """

    score: str
    method: str
    r: float
    p: float
    ci: tuple
    ci_level: float
    n: int
    covariates: list
    volume_transform: str
    excluded: pd.DataFrame
    data: pd.DataFrame
    params: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    _title = "Lesion volume–score correlation"

    _table_fields = ("data",)

    @classmethod
    def _from_saved(cls, kwargs):
        kwargs["ci"] = tuple(kwargs["ci"])
        return kwargs

    @property
    def partial(self):
        """Whether this is a partial correlation (covariates were given)."""
        return bool(self.covariates)

    def summary(self):
        """Text summary of the result (a :class:`lsm.Summary`)."""
        name = {"spearman": "Spearman rho", "pearson": "Pearson r", "kendall": "Kendall tau-b"}[
            self.method
        ]
        kind = "partial " if self.partial else ""
        vol = "log10 lesion volume" if self.volume_transform == "log" else "lesion volume"
        lines = [
            f"{self._title}: {vol} vs {self.score!r}",
            f"  {kind}{name} = {self.r:.4f}   p = {_fmt_p(self.p)}   n = {self.n}",
            f"  {100 * self.ci_level:g}% CI (BCa bootstrap, {self.params.get('n_boot', 0)} "
            f"resamples): [{self.ci[0]:.4f}, {self.ci[1]:.4f}]",
        ]
        if self.covariates:
            lines.append(f"  adjusted for: {', '.join(self.covariates)}")
        lines.append(f"  excluded subjects: {len(self.excluded)}")
        return Summary("\n".join(lines))

    def to_dataframe(self):
        """One-row DataFrame of the result."""
        return pd.DataFrame(
            [
                {
                    "score": self.score,
                    "method": self.method,
                    "partial": self.partial,
                    "covariates": ", ".join(self.covariates),
                    "volume_transform": self.volume_transform,
                    "n": self.n,
                    "r": self.r,
                    "p": self.p,
                    "ci_low": self.ci[0],
                    "ci_high": self.ci[1],
                    "ci_level": self.ci_level,
                    "n_excluded": len(self.excluded),
                }
            ]
        )

    def plot(self, ax=None, *, volume_transform=None, ci=True, scatter_kws=None, line_kws=None):
        """Scatter plot of score against lesion volume with a linear fit and its CI band.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Axes to draw on (a new figure when None).
        volume_transform : {"linear", "log"}, optional
            ``"log"``: draw volume on a log axis and fit the line on log10(volume).
            Defaults to the ``volume_transform`` of the analysis.
        ci : bool
            Draw the confidence band (level ``ci_level``) of the fitted mean, from
            statsmodels OLS of the score on (log10) volume.
        scatter_kws, line_kws : dict, optional
            Passed to ``ax.scatter`` and ``ax.plot``.

        Returns
        -------
        fig : matplotlib Figure
            The figure holding the plot (that of ``ax`` when given).
        """
        import matplotlib.pyplot as plt
        import statsmodels.api as sm

        if volume_transform is None:
            volume_transform = self.volume_transform
        log_volume = check_volume_transform(volume_transform) == "log"
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4))
        vol = self.data[VOLUME].to_numpy(float)
        y = self.data[self.score].to_numpy(float)
        ax.scatter(vol, y, **{"s": 12, "alpha": 0.5, "color": "0.3", **(scatter_kws or {})})
        if log_volume and np.all(vol > 0):
            xf = np.log10(vol)
            grid = np.linspace(xf.min(), xf.max(), 200)
            xs = 10**grid
            ax.set_xscale("log")
        else:
            xf = vol
            grid = np.linspace(xf.min(), xf.max(), 200)
            xs = grid
        fit = sm.OLS(y, sm.add_constant(xf)).fit()
        pred = fit.get_prediction(sm.add_constant(grid)).summary_frame(alpha=1 - self.ci_level)
        ax.plot(xs, pred["mean"], **{"color": "C3", "lw": 2, **(line_kws or {})})
        if ci:
            ax.fill_between(
                xs, pred["mean_ci_lower"], pred["mean_ci_upper"], color="C3", alpha=0.2, lw=0
            )
        name = {"spearman": "rho", "pearson": "r", "kendall": "tau"}[self.method]
        kind = "partial " if self.partial else ""
        ax.set_title(
            f"{kind}{name} = {self.r:.2f} [{self.ci[0]:.2f}, {self.ci[1]:.2f}], "
            f"p = {_fmt_p(self.p)}, n = {self.n}",
            fontsize=9,
        )
        ax.set_xlabel("lesion volume (ml)")
        ax.set_ylabel(self.score)
        return ax.figure


# --------------------------------------------------------------------------------------
# Correlation
# --------------------------------------------------------------------------------------


def _pearson_batched(x, y):
    """Pearson r along the last axis."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(-1) / np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))


def _partial_batched(x, y, Z):
    """Partial Pearson r of x and y given Z, batched.

    x, y : (..., n); Z : (..., n, k). Residualises x and y on [1, Z] (pseudo-inverse, so a
    degenerate bootstrap resample gives a finite or nan value rather than an error).
    Z is centred and scaled first (same column space with the intercept): the normal
    equations of a raw covariate with a large offset (e.g. 1e5 +- 1) lose most digits.
    """
    Z = Z - Z.mean(axis=-2, keepdims=True)
    norm = np.sqrt((Z * Z).sum(axis=-2, keepdims=True))
    Z = Z / np.where(norm > 0, norm, 1.0)
    ones = np.ones(Z.shape[:-1] + (1,))
    D = np.concatenate([ones, Z], axis=-1)
    Dt = np.swapaxes(D, -1, -2)
    pinv = np.linalg.pinv(Dt @ D)
    xy = np.stack([x, y], axis=-1)  # (..., n, 2)
    beta = pinv @ (Dt @ xy)
    res = xy - D @ beta
    return _pearson_batched(res[..., 0], res[..., 1])


def _make_corr_statistic(method, k):
    """Vectorised statistic for scipy.stats.bootstrap: arrays (x, y, z_1..z_k)."""

    def statistic(*arrays, axis=-1):
        arrays = [np.moveaxis(np.asarray(a, float), axis, -1) for a in arrays]
        if method == "spearman":
            arrays = [stats.rankdata(a, axis=-1) for a in arrays]
        x, y = arrays[0], arrays[1]
        if k == 0:
            return _pearson_batched(x, y)
        return _partial_batched(x, y, np.stack(arrays[2:], axis=-1))

    return statistic


def _kendall_matrix(columns):
    """Kendall tau-b matrix of the 1-d arrays ``columns`` (entries from scipy.stats.kendalltau)."""
    p = len(columns)
    T = np.eye(p)
    for i in range(p):
        for j in range(i + 1, p):
            T[i, j] = T[j, i] = stats.kendalltau(columns[i], columns[j]).statistic
    return T


def _partial_kendall(T):
    """Partial Kendall tau of variables 0 and 1 given variables 2.. from their tau-b matrix.

    This is the estimate of R's ppcor, ``-P[0, 1] / sqrt(P[0, 0] P[1, 1])`` with
    ``P = inv(T)``, computed through the Schur complement: the top-left 2x2 block of
    ``inv(T)`` is the inverse of ``C = T[:2, :2] - T[:2, 2:] inv(T[2:, 2:]) T[2:, :2]``, so
    the estimate is ``C[0, 1] / sqrt(C[0, 0] C[1, 1])``. Only the covariate block is
    inverted, so the value stays defined (+-1) when T itself is singular because the score's
    orderings are fixed by those of volume and covariates. The pseudo-inverse is used only
    for a singular covariate block, which only a degenerate bootstrap resample can give (the
    analysed data are checked by :func:`_check_kendall_singular`).
    """
    if not np.all(np.isfinite(T)):  # a constant variable in a bootstrap resample
        return np.nan
    A, B, D = T[:2, :2], T[:2, 2:], T[2:, 2:]
    try:
        sol = np.linalg.solve(D, B.T)
    except np.linalg.LinAlgError:
        sol = np.linalg.pinv(D) @ B.T
    C = A - B @ sol
    with np.errstate(invalid="ignore", divide="ignore"):
        r = C[0, 1] / np.sqrt(C[0, 0] * C[1, 1])
    return float(np.clip(r, -1.0, 1.0))


def _partial_kendall_statistic(*arrays):
    """Bootstrap statistic: partial Kendall tau of arrays[0] and arrays[1] given the rest."""
    return _partial_kendall(_kendall_matrix(arrays))


def _check_kendall_singular(T, names, n):
    """Raise if the partial Kendall tau from the tau-b matrix ``T`` is undefined.

    ``T`` and ``names`` are ordered (volume, score, covariates...). A tau-b matrix is the
    Gram matrix of the variables' normalised vectors of pairwise orderings (the signs of
    all subject-pair differences), so it is singular when one such vector is a linear
    combination of others: a covariate that orders the subjects as another one does (a
    monotone transform of it, for example), or as volume does. The check runs in the
    order of :func:`_check_collinear` (volume, then each covariate against the earlier
    ones), then asks whether the covariates fix the orderings of the score.
    """
    order = [0] + list(range(2, len(T)))
    for pos in range(1, len(order)):
        j, prev = order[pos], order[:pos]
        g = T[prev, j]
        coef = np.linalg.solve(T[np.ix_(prev, prev)], g)
        if T[j, j] - g @ coef < _KENDALL_SINGULAR_TOL:
            involved = [names[i] for i, c in zip(prev, coef) if abs(c) > 1e-6]
            combo = ", ".join(repr(v) for v in involved) or "the other variables"
            raise AnalysisError(
                f"Perfectly collinear covariate orderings (singular Kendall tau-b matrix): the "
                f"pairwise orderings of {names[j]!r} are a linear combination of those of "
                f"{combo} among the {n} analysed subjects (for example a monotone transform "
                f"of it), so the partial Kendall tau is undefined. Remove {names[j]!r} or one "
                f"of {combo}."
            )
    covs = list(range(2, len(T)))
    g = T[covs, 1]
    if T[1, 1] - g @ np.linalg.solve(T[np.ix_(covs, covs)], g) < _KENDALL_SINGULAR_TOL:
        raise AnalysisError(
            f"The pairwise orderings of the score {names[1]!r} are a linear combination of "
            f"those of the covariates {', '.join(repr(names[i]) for i in covs)} among the {n} "
            "analysed subjects (for example a monotone function of one of them): nothing is "
            "left to correlate with lesion volume, so the partial Kendall tau is undefined."
        )


def _partial_kendall_p(r, n, k):
    """Two-sided p-value of a partial Kendall tau as in R's ppcor.

    Normal approximation with the null variance of Kendall's tau (no ties) at the sample
    size ``n - k``.
    """
    m = n - k
    z = r / np.sqrt(2.0 * (2 * m + 5) / (9.0 * m * (m - 1)))
    return float(2 * stats.norm.sf(abs(z)))


def _corr_point(x, y, Z, method, tau=None):
    """(r, p) for x, y of shape (n,) and covariates Z of shape (n, k).

    ``tau``: the tau-b matrix of (x, y, covariates) when already computed (partial Kendall).
    """
    n, k = len(x), Z.shape[1]
    if method == "kendall":
        if k:
            r = _partial_kendall(tau if tau is not None else _kendall_matrix([x, y, *Z.T]))
            return r, _partial_kendall_p(r, n, k)
        res = stats.kendalltau(x, y)
        return float(res.statistic), float(res.pvalue)
    r = float(_make_corr_statistic(method, k)(x, y, *Z.T))
    df = n - 2 - k
    r = float(np.clip(r, -1.0, 1.0))
    if abs(r) == 1.0:
        return r, 0.0
    t = r * np.sqrt(df / (1.0 - r * r))
    return r, float(2 * stats.t.sf(abs(t), df))


def _check_distinct(values, column, minimum=3, hint=""):
    uniq = np.unique(values)
    if len(uniq) < minimum:
        shown = ", ".join(f"{u:g}" for u in uniq[:5])
        raise AnalysisError(
            f"Column {column!r} has only {len(uniq)} distinct value(s) ({shown}) among the "
            f"{len(values)} analysed subjects; a correlation needs at least {minimum}.{hint}"
        )


def _correlation_frame(frame, score, covariates, method, volume_transform, n_boot, ci, rng):
    """Array-level core of :func:`volume_score_correlation` on an assembled table."""
    x = frame[VOLUME].to_numpy(float)
    y = frame[score].to_numpy(float)
    Z = frame[covariates].to_numpy(float) if covariates else np.empty((len(x), 0))
    _check_distinct(y, score, hint=" For a binary outcome use outcome_model(..., family='logistic').")
    _check_distinct(x, VOLUME)
    n, k = len(x), Z.shape[1]
    if n - 2 - k < 1:
        raise AnalysisError(
            f"Only {n} subject(s) with {k} covariate(s): a {'partial ' if k else ''}"
            f"correlation needs at least {k + 3}."
        )
    tau = None
    if k:
        names = ["const", _volume_name(volume_transform)] + covariates
        _check_collinear(np.column_stack([np.ones(n), x, Z]), names, what="covariates")
        if method == "spearman":  # the partial correlation is computed on ranks
            ranks = stats.rankdata(np.column_stack([x, Z]), axis=0)
            _check_collinear(np.column_stack([np.ones(n), ranks]), names, what="covariate ranks")
        if method == "kendall":  # the partial tau inverts the covariates' tau-b matrix
            tau = _kendall_matrix([x, y, *Z.T])
            _check_kendall_singular(tau, [names[1], score] + covariates, n)
    r, p = _corr_point(x, y, Z, method, tau)
    ci_bounds = (np.nan, np.nan)
    if n_boot:
        if method == "kendall" and k:
            statistic, vectorized = _partial_kendall_statistic, False
        elif method == "kendall":

            def statistic(a, b):
                return stats.kendalltau(a, b).statistic

            vectorized = False
        else:
            statistic, vectorized = _make_corr_statistic(method, k), True
        # fixed batch (depends on n only) bounds memory; same draws whatever the machine
        batch = int(max(1, min(n_boot, 4_000_000 // (n * (2 + k)))))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            boot = stats.bootstrap(
                (x, y, *Z.T),
                statistic,
                n_resamples=n_boot,
                batch=batch,
                vectorized=vectorized,
                paired=True,
                confidence_level=ci,
                method="BCa",
                rng=rng,
            )
        ci_bounds = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
        if not np.all(np.isfinite(ci_bounds)):
            warnings.warn(
                "The BCa bootstrap interval is not finite (degenerate resamples: too few "
                "subjects or distinct values).",
                LSMWarning,
                stacklevel=3,
            )
    return r, p, ci_bounds


@fill_doc
def volume_score_correlation(
    cohort,
    score,
    *,
    method="spearman",
    covariates=None,
    volume_transform="linear",
    n_boot=2000,
    ci=0.95,
    random_state=None,
):
    """Correlation between lesion volume and a clinical score.

    Parameters
    ----------
    cohort : Cohort or DataFrame
        A :class:`lsm.Cohort`, or a table indexed by subject holding the score, the
        covariates and a ``"lesion_volume"`` column (ml).
    score : str
        Score column (e.g. ``"nihss"``); it needs at least 3 distinct values.
    method : {"spearman", "pearson", "kendall"}
        Spearman's rho, Pearson's r or Kendall's tau-b.
    covariates : str or list of str, optional
        Phenotype columns (numeric) to partial out. For Pearson and Spearman the partial
        correlation is the correlation of the residuals of volume and score after
        regressing each on the covariates (and an intercept); for Spearman every variable
        is first rank-transformed. Its p-value uses a t distribution with
        ``n - 2 - len(covariates)`` degrees of freedom (the same test as the volume
        coefficient in OLS of score on volume and covariates). For Kendall it is the
        partial Kendall tau of the Kendall tau-b matrix (see Notes).
    %(volume_transform)s
        Changes Pearson r; rank correlations are unchanged. With ``"log"`` the plot
        uses a log axis.
    n_boot : int
        Bootstrap resamples for the confidence interval (0 to skip it). Subjects are
        resampled with their values (paired); the interval is bias-corrected and
        accelerated (BCa, :func:`scipy.stats.bootstrap`).
    ci : float
        Confidence level of the interval, in (0, 1).
    %(random_state)s

    Returns
    -------
    result : CorrelationResult
        ``r``, ``p``, ``ci``, ``n``, ``excluded`` (subjects missing the score, a
        covariate or the volume, with the reason), ``summary()``, ``plot()``.

    Notes
    -----
    Partial Kendall tau (``method="kendall"`` with covariates) follows R's ppcor package
    (Kim, Commun Stat Appl Methods 22:665-674, 2015): ``T`` is the matrix of Kendall's
    tau-b (:func:`scipy.stats.kendalltau`) between every pair of (log10) volume, score and
    covariates, ``P`` its inverse, and the partial tau is
    ``-P[0, 1] / sqrt(P[0, 0] * P[1, 1])``. With one covariate z this is Kendall's (1942)
    ``(tau_xy - tau_xz tau_yz) / sqrt((1 - tau_xz**2) (1 - tau_yz**2))``. A covariate
    that orders the subjects as another covariate or volume does (a monotone transform of
    it, for example) makes ``T`` singular and raises an
    :class:`~lsm.exceptions.AnalysisError`, as linearly collinear covariates do for every
    method. The p-value is ppcor's, and approximate: the
    partial tau divided by the standard deviation of Kendall's tau under independence
    without ties, ``sqrt(2 (2 m + 5) / (9 m (m - 1)))`` with ``m = n - len(covariates)``,
    compared with the standard normal distribution (two-sided). The partial tau has no
    exact null distribution and ties are not corrected for, so treat p-values near a
    threshold with care; the bootstrap interval recomputes the partial tau on each
    resample. Unlike the partial Pearson correlation of normal data, a partial tau of zero
    is not what conditional independence gives: for standard normal z and
    x = z + e1, y = z + e2 (independent N(0, 1) errors), x and y are independent given z,
    yet the partial tau is 1/9 (Kendall's tau of x and y is 1/3), and with many subjects
    its p-value is small. Its test is therefore not a test of conditional independence;
    the residual-based partial Pearson or Spearman correlation is the usual choice for
    "does volume relate to the score beyond the covariates".
    """
    t0 = time.perf_counter()
    check_option("method", method, _CORR_METHODS)
    covariates = as_column_list(covariates, "covariates")
    check_volume_transform(volume_transform)
    if not 0 < ci < 1:
        raise ValueError(f"Invalid value for the 'ci' parameter: must be in (0, 1), got {ci!r}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if score in covariates or VOLUME in covariates:
        raise ValueError(f"covariates {covariates} must not include the score or {VOLUME!r}")
    seed, rng = resolve_seed(random_state)

    frame, _ = _source_frame(cohort, [score, VOLUME] + covariates, allow_territories=False)
    table = pd.DataFrame(index=frame.index)
    table[VOLUME] = _to_numeric(frame[VOLUME], VOLUME, "lesion volume")
    table[score] = _to_numeric(frame[score], score, "score")
    for c in covariates:
        table[c] = _to_numeric(frame[c], c, "covariate")
    roles = [(score, "score"), *[(c, "covariate") for c in covariates], (VOLUME, "lesion volume")]
    table, excluded = _complete_cases(table, roles)
    _warn_excluded(excluded, "correlation")
    work = table.copy()
    if volume_transform == "log":
        work[VOLUME] = _volume(work, "log")
    r, p, ci_bounds = _correlation_frame(
        work, score, covariates, method, volume_transform, int(n_boot), ci, rng
    )
    logger.info("volume_score_correlation %s %s: r=%.4f p=%.3g n=%d", method, score, r, p,
                len(table))
    return CorrelationResult(
        score=score,
        method=method,
        r=r,
        p=p,
        ci=ci_bounds,
        ci_level=float(ci),
        n=len(table),
        covariates=covariates,
        volume_transform=volume_transform,
        excluded=excluded_frame(excluded),
        data=table,
        params={"score": score, "method": method, "covariates": covariates,
                "volume_transform": volume_transform, "n_boot": int(n_boot), "ci": float(ci),
                "ci_method": "BCa", "n_subjects": len(table)},
        provenance=make_provenance(seed=seed, t0=t0),
    )

