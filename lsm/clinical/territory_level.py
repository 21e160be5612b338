"""Territory-level lesion-symptom mapping (:func:`territory_lsm`)."""

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .._docs import fill_doc
from .._result import Summary, TableResult, excluded_frame, make_provenance
from .._validation import (
    ALTERNATIVES,
    as_column_list,
    check_alpha,
    check_lesion_volume,
    check_min_lesioned,
    check_n_jobs,
    check_n_permutations,
    check_option,
    check_volume_transform,
    resolve_seed,
)
from ..exceptions import AnalysisError, LSMWarning
from ..stats._correction import permutation_threshold
from ..stats._freedman_lane import partial_correlation_test
from ..stats._permutation import draw_permutations
from ._common import (
    VOLUME,
    _atlas_name,
    _check_atlas_needed,
    _check_collinear,
    _complete_cases,
    _is_cohort,
    _ordinal_codes,
    _orthonormal_nuisance,
    _resid,
    _source_frame,
    _to_numeric,
    _volume,
    _volume_name,
    _warn_excluded,
)

__all__ = ["territory_lsm", "TerritoryLSMResult"]

logger = logging.getLogger("lsm")

_TLSM_METHODS = ("spearman", "regression", "ordinal")
_CORRECTIONS = ("fwe", "fdr_bh", "fdr_by", "none")

@fill_doc
@dataclass(frozen=True, repr=False)
class TerritoryLSMResult(TableResult):
    """Territory-level lesion-symptom mapping.

    Attributes
    ----------
    table : DataFrame
        One row per territory (index: abbreviation) with ``n_lesioned`` (subjects with a
        load > 0), ``mean_load``, ``tested``, ``r`` (partial correlation or ordinal score
        correlation), ``t`` (regression and Spearman), ``p_parametric`` (t test),
        ``p_uncorrected`` (permutation), ``p_fwe`` (max-statistic), ``p_fdr_bh`` and
        ``p_fdr_by`` (Benjamini–Hochberg and Benjamini–Yekutieli on the permutation
        p-values), ``p_corrected`` (the one chosen by ``correction``), ``significant``
        (p_corrected <= alpha) and ``not_tested`` (why a territory was not tested).
    score, method, measure, alternative, correction : str
    level : int or None
        Atlas level (None for table input).
    alpha : float
    covariates : list of str
        Nuisance columns (lesion volume included when requested).
    n : int
    n_permutations : int
    null_max : ndarray of shape (n_permutations,)
        Maximum statistic over territories in each permutation.
    r_critical : float
        FWE threshold from ``null_max``: a territory whose |r| (r for "greater", -r for
        "less") is above it has p_fwe <= alpha (inf when no territory can reach alpha
        with this many permutations).
    excluded : DataFrame
        Subjects left out (columns ``subject``, ``reason``).
    params : dict
        Every analysis parameter as used (``min_lesioned_count`` is the resolved count).
    provenance : dict
        Versions, seed (``random_state``), ``n_jobs``, runtime, permutation scheme.
    """

    table: pd.DataFrame
    score: str
    method: str
    level: object
    measure: str
    covariates: list
    n: int
    n_permutations: int
    alternative: str
    correction: str
    alpha: float
    null_max: np.ndarray
    r_critical: float
    excluded: pd.DataFrame
    params: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    _title = "Territory-level lesion-symptom mapping"
    _table_fields = ("table",)
    _array_fields = ("null_max",)

    @classmethod
    def _from_saved(cls, kwargs):
        kwargs["table"]["tested"] = kwargs["table"]["tested"].astype(bool)
        kwargs["table"]["significant"] = kwargs["table"]["significant"].astype(bool)
        kwargs["table"]["not_tested"] = kwargs["table"]["not_tested"].fillna("").astype(object)
        kwargs["table"].index = kwargs["table"].index.astype(str)
        return kwargs

    @property
    def significant(self):
        """Boolean Series (index: territory): significant after ``correction``."""
        return self.table["significant"].astype(bool).rename("significant")

    def summary(self):
        """Text summary of the result (a :class:`lsm.Summary`)."""
        cols = ["n_lesioned", "r", "t", "p_uncorrected", "p_fwe", "p_fdr_bh", "significant"]
        where = f"level-{self.level} territory {self.measure}" if self.level else "territory loads"
        names = list(self.table.index[self.significant.to_numpy(bool)])
        lines = [
            f"{self._title}: {self.score!r} ~ {where} (method={self.method!r}, n = {self.n})",
            f"  nuisance: {', '.join(self.covariates) if self.covariates else 'none'}"
            f"{' (Freedman-Lane)' if self.covariates else ''}",
            f"  {self.n_permutations} permutations, alternative={self.alternative!r}, "
            f"correction={self.correction!r}, alpha={self.alpha:g}, critical r = "
            f"{self.r_critical:.4f}",
            self.table[cols].to_string(float_format=lambda v: f"{v:.4g}"),
            f"  significant: {', '.join(map(str, names)) or 'none'}",
            f"  excluded subjects: {len(self.excluded)}",
        ]
        return Summary("\n".join(lines))

    def to_dataframe(self):
        """The per-territory table (a copy)."""
        return self.table.copy()

    def plot(self, ax=None, *, sort=False):
        """Bar plot of the territory statistics (r), significant bars highlighted.

        The dashed lines mark the FWE critical value ``r_critical``.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Axes to draw on (a new figure when None).
        sort : bool, default=False
            Sort the bars by r.

        Returns
        -------
        fig : matplotlib Figure
            The figure holding the plot (that of ``ax`` when given).
        """
        import matplotlib.pyplot as plt

        tab = self.table[self.table["tested"]]
        if sort:
            tab = tab.sort_values("r", ascending=False)
        if ax is None:  # constrained layout: room for the rotated labels and the y label
            _, ax = plt.subplots(figsize=(max(4, 0.35 * len(tab) + 1), 3.5), layout="constrained")
        colors = ["C3" if s else "0.6" for s in tab["significant"]]
        ax.bar(np.arange(len(tab)), tab["r"], color=colors)
        ax.set_xticks(np.arange(len(tab)), [str(i) for i in tab.index], rotation=90)
        ax.axhline(0, color="k", lw=0.8)
        if np.isfinite(self.r_critical):
            if self.alternative in ("two-sided", "greater"):
                ax.axhline(self.r_critical, color="C3", ls="--", lw=1)
            if self.alternative in ("two-sided", "less"):
                ax.axhline(-self.r_critical, color="C3", ls="--", lw=1)
        ax.set_ylabel("partial r" if self.covariates else "r")
        ax.set_title(
            f"{self.score}: {self.method} (level {self.level}); red: {self.correction} "
            f"p <= {self.alpha:g}",
            fontsize=9,
        )
        return ax.figure


def _psr(codes, cum):
    """Probability-scale residuals P(Y < y) - P(Y > y) (Li & Shepherd 2012).

    ``cum`` (n, K): fitted P(Y <= level k). For the logit proportional-odds model this is
    also the score of the linear predictor, d log L_i / d eta_i, at the fitted null model.
    """
    idx = np.arange(len(codes))
    upper = cum[idx, codes]
    lower = np.where(codes > 0, cum[idx, np.maximum(codes - 1, 0)], 0.0)
    return upper + lower - 1.0


def _ordinal_residuals(codes, Z, K):
    """PSRs of the null proportional-odds model of ``codes`` on ``Z`` (n, k)."""
    n = len(codes)
    if Z.shape[1] == 0:
        # thresholds-only MLE: the fitted cumulative probabilities are the empirical ones
        cum_levels = np.cumsum(np.bincount(codes, minlength=K)) / n
        cum = np.broadcast_to(cum_levels, (n, K))
    else:
        from statsmodels.miscmodels.ordinal_model import OrderedModel

        endog = pd.Categorical.from_codes(codes, categories=list(range(K)), ordered=True)
        res = OrderedModel(pd.Series(endog), Z, distr="logit").fit(
            method="bfgs", maxiter=2000, disp=False
        )
        if not res.mle_retvals.get("converged", True):
            warnings.warn("The null proportional-odds model did not converge.", LSMWarning,
                          stacklevel=4)
        cum = np.cumsum(np.asarray(res.predict()), axis=1)
    return _psr(codes, cum)


def _territory_lsm_arrays(y, X, Z, *, method, n_permutations, rng, alternative, n_jobs,
                          ordinal_codes=None, permutations=None, verbose=0):
    """Array core of :func:`territory_lsm`.

    y : (n,) score; X : (n, p) territory loads (all columns testable); Z : (n, k).
    Returns dict with r, t, p_parametric, p_uncorrected, p_fwe, null_max, df.
    """
    n, k = len(y), Z.shape[1]
    if method == "spearman":
        y = stats.rankdata(y)
        X = stats.rankdata(X, axis=0)
        Z = stats.rankdata(Z, axis=0) if k else Z
    Q = _orthonormal_nuisance(Z)
    Xr = _resid(X, Q)
    if method == "ordinal":
        K = int(ordinal_codes.max()) + 1
        e = _resid(_ordinal_residuals(ordinal_codes, Z, K), Q)
    else:
        e = _resid(y.astype(float), Q)
    if not np.linalg.norm(e) > 0:
        raise AnalysisError("The score is fully explained by the covariates (zero residual).")
    if permutations is None:
        permutations = draw_permutations(n_permutations, n, rng)
    test = partial_correlation_test(Xr, e, Q, permutations, alternative=alternative,
                                    n_jobs=n_jobs, verbose=verbose)
    r, p_unc, p_fwe, null_max = test.observed, test.p_uncorrected, test.p_fwe, test.null_max
    df = n - Q.shape[1] - 1
    if method == "ordinal":
        t = np.full_like(r, np.nan)
        p_par = np.full_like(r, np.nan)
    else:
        rc = np.clip(r, -1 + 1e-15, 1 - 1e-15)
        t = rc * np.sqrt(df / (1 - rc * rc))
        if alternative == "two-sided":
            p_par = 2 * stats.t.sf(np.abs(t), df)
        elif alternative == "greater":
            p_par = stats.t.sf(t, df)
        else:
            p_par = stats.t.cdf(t, df)
    return {"r": r, "t": t, "p_parametric": p_par, "p_uncorrected": p_unc, "p_fwe": p_fwe,
            "null_max": null_max, "df": df}


@fill_doc
def territory_lsm(
    cohort,
    score,
    *,
    level=1,
    measure="territory_fraction",
    atlas="arterial",
    method="spearman",
    covariates=None,
    lesion_volume=None,
    volume_transform="linear",
    n_permutations=5000,
    correction="fwe",
    alternative="two-sided",
    alpha=0.05,
    min_lesioned=0.05,
    territories=None,
    random_state=None,
    n_jobs=1,
    verbose=0,
):
    """Test each arterial territory's lesion load against a score, FWE-corrected.

    For every territory the statistic is the (partial) correlation between its load and
    the score; the family-wise error across territories is controlled with the maximum
    statistic over territories in each permutation of the score. With nuisance variables
    (``covariates`` and/or ``lesion_volume``) the permutation scheme is Freedman–Lane:
    residuals of the score on the nuisance model are permuted and added back to its
    fitted values.

    Parameters
    ----------
    cohort : Cohort or DataFrame
        A :class:`lsm.Cohort` (territory loads from :func:`lsm.territory_load`), or a
        table indexed by subject holding the score, the covariates, ``"lesion_volume"``
        (ml) when used, and the territory columns named in ``territories``.
    %(score)s
    %(level)s
        Used for Cohort input.
    measure : {"territory_fraction", "lesion_fraction", "ml"}
        Territory-load measure passed to :func:`lsm.territory_load` (Cohort input).
    %(atlas)s
        Passed to :func:`lsm.territory_load` (Cohort input; ``None`` is an error).
    method : {"spearman", "regression", "ordinal"}
        ``"regression"``: OLS t of the load in ``score ~ 1 + nuisance + load``.
        ``"spearman"``: the same on ranks of every variable (partial Spearman).
        ``"ordinal"``: for an ordinal score (mRS). A proportional-odds (logit) model of the
        score on the nuisance variables is fitted once; the statistic is the correlation
        of each (nuisance-residualised) load with the model's probability-scale residuals
        P(Y < y) - P(Y > y) (Li & Shepherd 2012). For the logit link these residuals are
        the derivative of each subject's log-likelihood with respect to the linear
        predictor, so the numerator ``sum_i load_i * residual_i`` is exactly the
        proportional-odds score for the load's coefficient at zero: the statistic is that
        score test, standardised by the norms of the load and the residuals (Liu et al.
        2018 build a covariate-adjusted Spearman correlation from such residuals of both
        variables; here the load keeps its OLS residual). Without nuisance variables
        the residuals are a linear function of the mid-ranks of the score, so the test is
        the exact permutation version of the Wilcoxon-type score test. With nuisance
        variables the residuals are permuted Freedman–Lane style (exact only
        asymptotically, as Freedman–Lane for OLS). Refitting a proportional-odds model per
        territory and permutation instead would cost ``n_permutations * n_territories``
        fits.
    %(covariates)s
    lesion_volume : {None, "covariate"}, default=None
        ``"covariate"``: lesion volume is a nuisance variable (entered as
        ``volume_transform`` says), "which territory matters beyond size". ``"dtlvc"``
        is not offered: territory loads are already normalised measures.
    %(volume_transform)s
    %(n_permutations)s
    correction : {"fwe", "fdr_bh", "fdr_by", "none"}, default="fwe"
        Which p-value decides ``significant``: max-statistic FWE, Benjamini–Hochberg or
        Benjamini–Yekutieli on the permutation p-values, or uncorrected. All are in the
        table.
    %(alternative)s
    %(alpha)s
    %(min_lesioned)s
        Territories failing it (load > 0 counts as lesioned) are not tested (their rows
        have ``tested=False``), and neither are loads collinear with the nuisance
        variables.
    territories : list of str, optional
        Territory columns; required for DataFrame input, a subset for a Cohort.
    %(random_state)s
    %(n_jobs)s
    %(verbose)s

    Returns
    -------
    result : TerritoryLSMResult
        ``table`` (one row per territory), ``significant``, ``null_max``, ``plot()``,
        ``params``, ``provenance``, ``excluded``.

    References
    ----------
    Freedman D, Lane D (1983). A nonstochastic interpretation of reported significance
    levels. J Bus Econ Stat 1:292-298. Winkler AM et al. (2014). Permutation inference for
    the general linear model. NeuroImage 92:381-397. Li C, Shepherd BE (2012). A new
    residual for ordinal outcomes. Biometrika 99:473-480. Liu Q, Li C, Wanga V, Shepherd BE
    (2018). Covariate-adjusted Spearman's rank correlation with probability-scale
    residuals. Biometrics 74:595-605.
    """
    t0 = time.perf_counter()
    check_option("method", method, _TLSM_METHODS)
    check_option("correction", correction, _CORRECTIONS)
    check_option("alternative", alternative, ALTERNATIVES)
    check_lesion_volume(lesion_volume, (None, "covariate"))
    check_volume_transform(volume_transform)
    check_min_lesioned(min_lesioned)
    covariates = as_column_list(covariates, "covariates")
    n_permutations = check_n_permutations(n_permutations)
    alpha = check_alpha(alpha)
    n_jobs = check_n_jobs(n_jobs)
    seed, rng = resolve_seed(random_state)
    use_volume = lesion_volume == "covariate"
    territories = as_column_list(territories, "territories") if territories is not None else None
    if isinstance(cohort, pd.DataFrame) and territories is None:
        raise ValueError("territories must name the territory columns when data is a DataFrame")
    if _is_cohort(cohort) and territories is None:
        _check_atlas_needed(atlas, "territory_lsm")

    needed = [score] + covariates + ([VOLUME] if use_volume else [])
    frame, terr_cols = _source_frame(
        cohort,
        needed + (territories or []),
        territory_level=level,
        territory_measure=measure,
        n_jobs=n_jobs,
        need_territories=True,
        atlas=atlas,
    )
    if territories is None:
        territories = terr_cols
    if not territories:
        raise AnalysisError("No territory columns to test.")

    table = pd.DataFrame(index=frame.index)
    table[score] = _to_numeric(frame[score], score, "score") if method != "ordinal" else frame[score]
    for c in covariates:
        table[c] = _to_numeric(frame[c], c, "covariate")
    nuisance = list(covariates)
    if use_volume:
        vname = _volume_name(volume_transform)
        table[vname] = _volume(frame, volume_transform)
        nuisance.append(vname)
    for c in territories:
        table[c] = _to_numeric(frame[c], c, "territory load")
    roles = [(score, "score"), *[(c, "covariate") for c in covariates]]
    if use_volume:
        roles.append((nuisance[-1], "lesion volume"))
    undefined = [c for c in territories if table[c].isna().all()]
    roles += [(c, "territory load") for c in territories if c not in undefined]
    table, excluded = _complete_cases(table, roles)
    _warn_excluded(excluded, "territory analysis")
    n = len(table)

    ordinal_codes = None
    if method == "ordinal":
        ordinal_codes, _, _ = _ordinal_codes(table[score], score)
        y = ordinal_codes.astype(float)
    else:
        y = table[score].to_numpy(float)
        if len(np.unique(y)) < 2:
            raise AnalysisError(f"The score {score!r} is constant among the {n} subjects.")
    Z = table[nuisance].to_numpy(float) if nuisance else np.empty((n, 0))
    if nuisance:
        _check_collinear(np.column_stack([np.ones(n), Z]), ["const"] + nuisance, "covariates")
        if method == "spearman":  # the nuisance model is fitted on ranks
            _check_collinear(np.column_stack([np.ones(n), stats.rankdata(Z, axis=0)]),
                             ["const"] + nuisance, "covariate ranks")
    X_all = table[territories].fillna(0.0).to_numpy(float)  # only all-NaN columns had NaN
    n_lesioned = (X_all > 0).sum(0)
    if method == "spearman":
        Q = _orthonormal_nuisance(stats.rankdata(Z, axis=0) if nuisance else Z)
        Xt = stats.rankdata(X_all, axis=0)
    else:
        Q, Xt = _orthonormal_nuisance(Z), X_all
    resid_norm = np.linalg.norm(_resid(Xt, Q), axis=0) / np.maximum(
        np.linalg.norm(Xt - Xt.mean(0), axis=0), 1e-300)
    reason = np.full(len(territories), "", dtype=object)
    reason[np.isin(territories, undefined)] = "load undefined (territory of zero volume)"
    count = check_min_lesioned(min_lesioned, n)
    reason[(reason == "") & (n_lesioned < count)] = f"lesioned in fewer than {count} subjects"
    reason[(reason == "") & (n - n_lesioned < count)] = f"spared in fewer than {count} subjects"
    reason[(reason == "") & (resid_norm < 1e-8)] = "collinear with the nuisance variables"
    tested = reason == ""
    if n - Q.shape[1] - 1 < 1:
        raise AnalysisError(f"Only {n} subjects for {Q.shape[1]} nuisance parameters.")
    cols = ["r", "t", "p_parametric", "p_uncorrected", "p_fwe"]
    out = {c: np.full(len(territories), np.nan) for c in cols}
    null_max = np.empty(0)
    if tested.any():
        res = _territory_lsm_arrays(
            y, X_all[:, tested], Z, method=method, n_permutations=n_permutations,
            rng=rng, alternative=alternative, n_jobs=n_jobs, ordinal_codes=ordinal_codes,
            verbose=verbose,
        )
        for c in cols:
            out[c][tested] = res[c]
        null_max = res["null_max"]
    else:
        warnings.warn("No territory could be tested (see the 'not_tested' column).",
                      LSMWarning, stacklevel=2)
    p_fdr = {m: np.full(len(territories), np.nan) for m in ("bh", "by")}
    if tested.any():
        for m, p in p_fdr.items():
            p[tested] = stats.false_discovery_control(out["p_uncorrected"][tested], method=m)
    result_table = pd.DataFrame(
        {
            "n_lesioned": n_lesioned,
            "mean_load": X_all.mean(0),
            "tested": tested,
            **out,
            "p_fdr_bh": p_fdr["bh"],
            "p_fdr_by": p_fdr["by"],
        },
        index=pd.Index(territories, name="territory"),
    )
    chosen = {"fwe": "p_fwe", "fdr_bh": "p_fdr_bh", "fdr_by": "p_fdr_by", "none": "p_uncorrected"}[correction]
    result_table["p_corrected"] = result_table[chosen]
    result_table["significant"] = (result_table["p_corrected"] <= alpha).to_numpy(bool)
    result_table["not_tested"] = reason
    r_crit = permutation_threshold(null_max, alpha) if len(null_max) else np.nan
    logger.info("territory_lsm %s %s: %d territories tested, %d significant (%s)", method,
                score, int(tested.sum()), int(result_table["significant"].sum()), correction)
    level_used = level if _is_cohort(cohort) else None
    measure_used = measure if _is_cohort(cohort) else "given"
    params = {
        "score": score, "method": method, "level": level_used, "measure": measure_used,
        "atlas": _atlas_name(atlas) if _is_cohort(cohort) else None,
        "covariates": covariates, "lesion_volume": lesion_volume,
        "volume_transform": volume_transform, "nuisance": nuisance,
        "n_permutations": n_permutations, "correction": correction, "alternative": alternative,
        "alpha": alpha, "min_lesioned": min_lesioned, "min_lesioned_count": count,
        "territories": list(territories), "n_subjects": n,
    }
    provenance = make_provenance(
        seed=seed, n_jobs=n_jobs, t0=t0,
        permutation_scheme="Freedman-Lane" if nuisance else "permute score",
    )
    return TerritoryLSMResult(
        table=result_table,
        score=score,
        method=method,
        level=level_used,
        measure=measure_used,
        covariates=nuisance,
        n=n,
        n_permutations=n_permutations,
        alternative=alternative,
        correction=correction,
        alpha=alpha,
        null_max=null_max,
        r_critical=float(r_crit),
        excluded=excluded_frame(excluded),
        params=params,
        provenance=provenance,
    )
