"""Lesion volume–score correlations, clinical outcome models and territory-level mapping.

Three questions, asked in this order in most stroke studies:

1. *Does lesion size explain the deficit?* :func:`volume_score_correlation` (Spearman,
   Pearson or Kendall, partial correlation given covariates, BCa bootstrap CI).
2. *What predicts outcome?* :func:`outcome_model` (OLS, proportional-odds ordinal model
   for the modified Rankin scale, or logistic regression on a documented dichotomy),
   returning the :mod:`statsmodels` results object.
3. *Which arterial territory matters beyond size?* :func:`territory_lsm`: one test per
   territory with a max-statistic permutation family-wise error (FWE) correction across
   territories, Freedman–Lane when covariates (such as lesion volume) are given.

Each function accepts a :class:`lsm.Cohort` or a :class:`pandas.DataFrame` indexed by
subject (for a DataFrame, lesion volume is read from a ``"lesion_volume"`` column, in ml).
Subjects missing a needed value are excluded, and every exclusion is listed with its
reason in the result's ``excluded`` table.
"""

import html
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ._utils import check_option, check_random_state
from .exceptions import AnalysisError, DroppedSubjectsWarning, LSMWarning, PhenotypeError
from .stats._correction import alternative_transform, permutation_pvalues, permutation_threshold, tie_lowered
from .stats._parallel import parallel_map
from .stats._permutation import draw_permutations

__all__ = [
    "volume_score_correlation",
    "outcome_model",
    "territory_lsm",
    "CorrelationResult",
    "OutcomeModelResult",
    "TerritoryLSMResult",
]

logger = logging.getLogger("lsm")

VOLUME = "lesion_volume"
LOG_VOLUME = "log10_lesion_volume"
_CORR_METHODS = ("spearman", "pearson", "kendall")
_FAMILIES = ("ols", "ordinal", "logistic")
_TLSM_METHODS = ("spearman", "regression", "ordinal")
_ALTERNATIVES = ("two-sided", "greater", "less")
_CORRECTIONS = ("fwe", "fdr", "none")
# Permutations are processed in chunks of this fixed size whatever n_jobs is, so every
# chunk does the same floating-point work and the results do not depend on n_jobs.
_PERM_CHUNK = 256
_COLLINEAR_TOL = 1e-8
# A variable whose pairwise-ordering (sign) vector keeps less than this fraction of its
# squared norm after projection on the others' makes the Kendall tau-b matrix singular.
# (Swapping one pair of subjects in an ordering of n keeps about 8 / (n (n - 1)).)
_KENDALL_SINGULAR_TOL = 1e-10
_MAX_DUMMY_LEVELS = 20


# --------------------------------------------------------------------------------------
# Shared helpers: assembling an analysis table with exclusions
# --------------------------------------------------------------------------------------


def _versions():
    import scipy
    import statsmodels

    from . import __version__

    return {"lsm": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "pandas": pd.__version__, "statsmodels": statsmodels.__version__}


def _is_cohort(data):
    return hasattr(data, "phenotype") and hasattr(data, "lesion_volumes")


def _as_list(value, name):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        out = list(value)
    except TypeError:
        raise TypeError(f"{name} must be a column name or a list of column names, got {value!r}")
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{name} must contain column names (str), got {v!r}")
    return out


def _territory_loads(cohort, level, measure, n_jobs, atlas=None):
    """Territory loads of a cohort, one column per territory abbreviation."""
    from .territory import OUTSIDE_COLUMN, VOLUME_COLUMN, territory_load  # lazy: nilearn

    loads = territory_load(cohort, atlas=atlas, level=level, measure=measure, n_jobs=n_jobs)
    loads = loads.drop(columns=[c for c in (OUTSIDE_COLUMN, VOLUME_COLUMN) if c in loads])
    loads.columns = [str(c) for c in loads.columns]
    loads.index = loads.index.astype(object)
    return loads


def _source_frame(data, columns, *, territory_level=None, territory_measure=None, n_jobs=1,
                  need_territories=False, allow_territories=True, atlas=None):
    """Return (frame indexed by subject, territory column names).

    ``columns`` are the phenotype columns and/or ``"lesion_volume"`` that are needed.
    For a Cohort, territory loads are joined when ``need_territories`` is true or when a
    requested column is neither a phenotype column nor ``"lesion_volume"`` (and
    ``allow_territories`` is true).
    """
    if isinstance(data, pd.DataFrame):
        frame = data.copy()
        frame.index = frame.index.astype(object)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise AnalysisError(
                f"Column(s) {missing} not found in the data table. Available columns: "
                f"{list(map(str, frame.columns))}. Lesion volume (ml) must be given as a "
                f"{VOLUME!r} column."
            )
        return frame, []
    if not _is_cohort(data):
        raise TypeError(
            "data must be an lsm.Cohort or a pandas.DataFrame indexed by subject, got "
            f"{type(data).__name__}"
        )
    subjects = list(data.subjects)
    index = pd.Index(subjects, dtype=object, name="participant_id")
    pheno = data.phenotype.copy()
    pheno.index = pheno.index.astype(object)
    pheno = pheno.reindex(index)
    frame = pd.DataFrame(index=index)
    vols = data.lesion_volumes.copy()
    vols.index = vols.index.astype(object)
    frame[VOLUME] = vols.reindex(index).astype(float)
    if VOLUME in pheno.columns and VOLUME in columns:
        warnings.warn(
            f"The phenotype has a {VOLUME!r} column; the cohort's own lesion volumes (ml, "
            f"measured on the masks) are used for {VOLUME!r}. Rename the phenotype column "
            "to use its values.",
            UserWarning,
            stacklevel=4,
        )
    for col in pheno.columns:
        if col != VOLUME:
            frame[col] = pheno[col]
    unknown = [c for c in columns if c not in frame.columns]
    if unknown and not allow_territories:
        raise AnalysisError(
            f"Column(s) {unknown} not found in the cohort's phenotype. Phenotype columns: "
            f"{list(map(str, pheno.columns))}; lesion volume is {VOLUME!r}."
        )
    territories = []
    if unknown or need_territories:
        loads = _territory_loads(data, territory_level, territory_measure, n_jobs, atlas)
        territories = [str(c) for c in loads.columns]
        still = [c for c in unknown if c not in territories]
        if still:
            raise AnalysisError(
                f"Column(s) {still} are neither phenotype columns, {VOLUME!r}, nor level-"
                f"{territory_level} territory abbreviations. Phenotype columns: "
                f"{list(map(str, pheno.columns))}; territories: {territories}."
            )
        clash = [c for c in territories if c in pheno.columns and c in columns]
        if clash:
            raise AnalysisError(
                f"{clash} name both phenotype column(s) and level-{territory_level} territories; "
                "rename the phenotype column(s) so it is clear which one is meant."
            )
        loads = loads.reindex(index)
        for c in loads.columns:
            frame[str(c)] = loads[c].astype(float)
    return frame, territories


def _to_numeric(series, column, role):
    """Numeric float Series; an unparseable or infinite value raises naming the subject
    and column (NaN stays: it is a missing value, excluded with its reason)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        out = series.astype(float)
    else:
        conv = pd.to_numeric(series, errors="coerce")
        bad = series.notna() & conv.isna()
        if bad.any():
            subj = bad.index[bad.argmax()]
            raise PhenotypeError(
                f"The {role} column {column!r} is not numeric: subject {subj!r} has value "
                f"{series[subj]!r} ({int(bad.sum())} such value(s)). Convert the column (for "
                "example load the cohort with a data dictionary or coerce=True) or drop it."
            )
        out = conv.astype(float)
    infinite = np.isinf(out.to_numpy(dtype=float, na_value=np.nan))
    if infinite.any():
        raise PhenotypeError(
            f"The {role} column {column!r} has infinite values for subject(s) "
            f"{list(out.index[infinite][:5])}. Fix or blank these values in the phenotype table."
        )
    return out


def _complete_cases(frame, roles):
    """Keep rows with every needed value present.

    ``roles`` is a list of (column, role) in the order used to word the exclusion reason.
    Returns (kept frame, excluded DataFrame with columns subject and reason).
    """
    cols = [c for c, _ in roles]
    missing = frame[cols].isna().to_numpy()
    bad = missing.any(axis=1)
    first = missing.argmax(axis=1)
    rows = [
        (subj, f"missing {roles[j][1]} {roles[j][0]!r}")
        for subj, j in zip(frame.index[bad], first[bad])
    ]
    keep = ~bad
    excluded = pd.DataFrame(rows, columns=["subject", "reason"])
    return frame.loc[keep], excluded


def _warn_excluded(excluded, what, stacklevel=3):
    if len(excluded):
        counts = excluded["reason"].value_counts()
        detail = "; ".join(f"{n} {r}" for r, n in counts.items())
        warnings.warn(
            f"{len(excluded)} subject(s) excluded from the {what} ({detail}); see the "
            "result's `excluded` table.",
            DroppedSubjectsWarning,
            stacklevel=stacklevel,
        )


def _volume(frame, log_volume):
    vol = _to_numeric(frame[VOLUME], VOLUME, "lesion volume")
    if not log_volume:
        return vol
    bad = vol.notna() & (vol <= 0)
    if bad.any():
        subj = bad.index[bad.argmax()]
        raise AnalysisError(
            f"log_volume=True needs positive lesion volumes, but subject {subj!r} has "
            f"{vol[subj]!r} ml. Drop empty lesions or use log_volume=False."
        )
    return np.log10(vol)


def _check_collinear(design, names, what="predictors"):
    """Raise if a column of ``design`` (n, p) is constant or a combination of earlier ones.

    ``names[0]`` must be the intercept ("const").
    """
    design = np.asarray(design, dtype=float)
    n, p = design.shape
    if n <= p:
        raise AnalysisError(
            f"Only {n} subject(s) for {p} model parameters ({', '.join(names)}); "
            "at least one more subject than parameters is needed."
        )
    for j in range(1, p):
        col = design[:, j]
        if np.ptp(col) == 0:
            raise AnalysisError(
                f"The {what[:-1] if what.endswith('s') else what} {names[j]!r} is constant "
                f"(every analysed subject has {col[0]:g}); it cannot be estimated. Remove it."
            )
    norms = np.linalg.norm(design, axis=0)
    scaled = design / norms
    for j in range(1, p):
        coef, *_ = np.linalg.lstsq(scaled[:, :j], scaled[:, j], rcond=None)
        resid = scaled[:, j] - scaled[:, :j] @ coef
        if np.linalg.norm(resid) < _COLLINEAR_TOL:
            involved = [names[i] for i in range(j) if abs(coef[i]) > 1e-6]
            others = [v for v in involved if v != "const"]
            combo = ", ".join(repr(v) for v in others) if others else "the intercept"
            raise AnalysisError(
                f"Perfectly collinear {what}: {names[j]!r} is a linear combination of "
                f"{combo} among the {n} analysed subjects. Remove {names[j]!r} or one of "
                f"{combo}."
            )


def _orthonormal_nuisance(Z):
    """Orthonormal basis (n, q) of [1, Z]."""
    n = Z.shape[0]
    D = np.column_stack([np.ones(n), Z])
    Q, _ = np.linalg.qr(D)
    return Q


def _resid(A, Q):
    return A - Q @ (Q.T @ A)


def _ordinal_codes(values, column, levels=None):
    """Integer codes 0..K-1 and the ordered levels of an ordinal outcome.

    Levels are ``levels`` if given, else the categories of an ordered categorical, else
    every integer from the minimum to the maximum observed value (for scales such as the
    mRS, a gap means an empty level). Every level must have at least one subject.
    """
    values = pd.Series(values)
    if levels is None:
        if isinstance(values.dtype, pd.CategoricalDtype) and values.dtype.ordered:
            levels = list(values.dtype.categories)
        else:
            num = _to_numeric(values, column, "outcome")
            if not np.all(np.mod(num, 1) == 0):
                raise AnalysisError(
                    f"The ordinal outcome {column!r} has non-integer values (e.g. "
                    f"{float(num[np.mod(num, 1) != 0].iloc[0])!r}). Pass levels=[...] listing the "
                    "ordered levels, or use family='ols'."
                )
            levels = list(range(int(num.min()), int(num.max()) + 1))
            values = num.astype(int)
    levels = list(levels)
    # Checked before building the Categorical: pandas deprecates (and will reject) values
    # outside the categories.
    outside = ~values.isin(levels).to_numpy(dtype=bool)
    if outside.any():
        bad = values[outside].iloc[0]
        bad = bad.item() if isinstance(bad, np.generic) else bad  # 5, not np.int64(5)
        raise AnalysisError(
            f"The ordinal outcome {column!r} has value {bad!r}, which is not one of the "
            f"levels {levels}."
        )
    cat = pd.Categorical(values, categories=levels, ordered=True)
    counts = np.bincount(cat.codes, minlength=len(levels))
    if len(levels) < 2:
        raise AnalysisError(f"The ordinal outcome {column!r} has a single level {levels}.")
    empty = [lev for lev, c in zip(levels, counts) if c == 0]
    if empty:
        table = ", ".join(f"{lev}: {c}" for lev, c in zip(levels, counts))
        raise AnalysisError(
            f"The ordinal outcome {column!r} has no subject at level(s) {empty} (subjects "
            f"per level: {table}). A proportional-odds model cannot estimate a threshold "
            "for an empty level: merge it with a neighbour (recode the column) or pass "
            "levels=[...] listing only levels that occur."
        )
    return np.asarray(cat.codes, dtype=int), levels, counts


# --------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------


class _ResultMixin:
    """`_repr_html_` and `__repr__` built from `summary()` and `to_dataframe()`."""

    _title = "Result"

    def __repr__(self):
        return self.summary()

    def _repr_html_(self):
        table = self.to_dataframe().to_html(float_format=lambda v: f"{v:.4g}")
        return (
            f"<div><strong>{html.escape(self._title)}</strong>"
            f"<pre>{html.escape(self.summary())}</pre>{table}</div>"
        )


def _fmt_p(p):
    if not np.isfinite(p):
        return "nan"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


@dataclass(frozen=True, repr=False)
class CorrelationResult(_ResultMixin):
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
    log_volume : bool
        Whether the volume was log10-transformed (changes Pearson r and the plot only).
    excluded : DataFrame
        Columns ``subject`` and ``reason``.
    data : DataFrame
        The analysed values: ``lesion_volume`` (ml), the score and covariates.
    info : dict
        Parameters, seed, bootstrap settings and runtime.
    """

    score: str
    method: str
    r: float
    p: float
    ci: tuple
    ci_level: float
    n: int
    covariates: list
    log_volume: bool
    excluded: pd.DataFrame
    data: pd.DataFrame
    info: dict = field(default_factory=dict)

    _title = "Lesion volume–score correlation"

    @property
    def partial(self):
        """Whether this is a partial correlation (covariates were given)."""
        return bool(self.covariates)

    def summary(self):
        name = {"spearman": "Spearman rho", "pearson": "Pearson r", "kendall": "Kendall tau-b"}[
            self.method
        ]
        kind = "partial " if self.partial else ""
        vol = "log10 lesion volume" if self.log_volume else "lesion volume"
        lines = [
            f"{self._title}: {vol} vs {self.score!r}",
            f"  {kind}{name} = {self.r:.4f}   p = {_fmt_p(self.p)}   n = {self.n}",
            f"  {100 * self.ci_level:g}% CI (BCa bootstrap, {self.info.get('n_boot', 0)} "
            f"resamples): [{self.ci[0]:.4f}, {self.ci[1]:.4f}]",
        ]
        if self.covariates:
            lines.append(f"  adjusted for: {', '.join(self.covariates)}")
        lines.append(f"  excluded subjects: {len(self.excluded)}")
        return "\n".join(lines)

    def to_dataframe(self):
        """One-row DataFrame of the result."""
        return pd.DataFrame(
            [
                {
                    "score": self.score,
                    "method": self.method,
                    "partial": self.partial,
                    "covariates": ", ".join(self.covariates),
                    "log_volume": self.log_volume,
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

    def plot(self, ax=None, *, log_volume=None, ci=True, scatter_kws=None, line_kws=None):
        """Scatter plot of score against lesion volume with a linear fit and its CI band.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Axes to draw on (a new figure when None).
        log_volume : bool, optional
            Draw volume on a log axis and fit the line on log10(volume). Defaults to the
            ``log_volume`` used for the analysis.
        ci : bool
            Draw the confidence band (level ``ci_level``) of the fitted mean, from
            statsmodels OLS of the score on (log10) volume.
        scatter_kws, line_kws : dict, optional
            Passed to ``ax.scatter`` and ``ax.plot``.

        Returns
        -------
        ax : matplotlib Axes
        """
        import matplotlib.pyplot as plt
        import statsmodels.api as sm

        log_volume = self.log_volume if log_volume is None else bool(log_volume)
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
        return ax


@dataclass(frozen=True, repr=False)
class OutcomeModelResult(_ResultMixin):
    """A fitted clinical outcome model.

    Attributes
    ----------
    results : statsmodels results
        ``RegressionResults`` (ols), ``OrderedResults`` (ordinal) or ``LogitResults``
        (logistic); everything statsmodels offers (``summary()``, ``conf_int()``,
        ``predict``...) is available there.
    family : {"ols", "ordinal", "logistic"}
    outcome : str
    predictors : list of str
        Design-matrix column names (dummy columns are named ``"column[level]"``; lesion
        volume is ``"log10_lesion_volume"`` with ``log_volume=True``).
    n : int
    table : DataFrame
        One row per predictor: coef, se, stat, p, ci_low, ci_high, and for ordinal and
        logistic models odds_ratio, or_ci_low, or_ci_high.
    excluded : DataFrame
        Columns ``subject`` and ``reason``.
    levels : list or None
        Ordered levels of an ordinal outcome.
    cutoff : float or None
        Logistic dichotomy: outcome > cutoff is the event (1).
    info : dict
    """

    results: object
    family: str
    outcome: str
    predictors: list
    n: int
    table: pd.DataFrame
    excluded: pd.DataFrame
    levels: list = None
    cutoff: float = None
    info: dict = field(default_factory=dict)

    _title = "Clinical outcome model"

    @property
    def odds_ratios(self):
        """Odds ratios with confidence intervals (ordinal and logistic models)."""
        if self.family == "ols":
            raise AttributeError("odds ratios are defined for family='ordinal' or 'logistic'")
        return self.table[["odds_ratio", "or_ci_low", "or_ci_high", "p"]].copy()

    def summary(self):
        head = {
            "ols": "OLS",
            "ordinal": "proportional-odds (ordered logit)",
            "logistic": "logistic",
        }[self.family]
        lines = [f"{self._title}: {head} model of {self.outcome!r} (n = {self.n})"]
        if self.family == "ordinal":
            lines.append(f"  levels: {self.levels}; odds ratios are for a higher level")
        if self.family == "logistic":
            lines.append(
                f"  event: {self.outcome} > {self.cutoff:g}" if self.cutoff is not None
                else f"  event: {self.outcome} == 1"
            )
        lines.append(self.table.to_string(float_format=lambda v: f"{v:.4g}"))
        lines.append(f"  excluded subjects: {len(self.excluded)}")
        return "\n".join(lines)

    def to_dataframe(self):
        """The coefficient table (a copy)."""
        return self.table.copy()

    def plot(self, ax=None):
        """Forest plot of odds ratios (log axis) or OLS coefficients with their CIs."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * len(self.table)))
        tab = self.table
        ypos = np.arange(len(tab))[::-1]
        if self.family == "ols":
            est, lo, hi, ref, label = tab["coef"], tab["ci_low"], tab["ci_high"], 0.0, "coefficient"
        else:
            est, lo, hi = tab["odds_ratio"], tab["or_ci_low"], tab["or_ci_high"]
            ref, label = 1.0, "odds ratio"
            ax.set_xscale("log")
        ax.errorbar(
            est, ypos, xerr=[est - lo, hi - est], fmt="o", color="C0", capsize=3
        )
        ax.axvline(ref, color="0.5", ls="--", lw=1)
        ax.set_yticks(ypos, [str(i) for i in tab.index])
        ax.set_xlabel(f"{label} ({100 * self.info.get('ci_level', 0.95):g}% CI)")
        ax.set_title(f"{self.outcome} ({self.family}, n = {self.n})", fontsize=9)
        return ax


@dataclass(frozen=True, repr=False)
class TerritoryLSMResult(_ResultMixin):
    """Territory-level lesion-symptom mapping.

    Attributes
    ----------
    table : DataFrame
        One row per territory (index: abbreviation) with ``n_lesioned`` (subjects with a
        load > 0), ``mean_load``, ``tested``, ``r`` (partial correlation or ordinal score
        correlation), ``t`` (regression and Spearman), ``p_parametric`` (t test),
        ``p_uncorrected`` (permutation), ``p_fwe`` (max-statistic), ``p_fdr``
        (Benjamini–Hochberg on the permutation p-values), ``p_corrected`` (the one
        chosen by ``correction``) and ``significant`` (p_corrected <= alpha).
    score, method, level, measure, alternative, correction : str
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
    info : dict
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
    info: dict = field(default_factory=dict)

    _title = "Territory-level lesion-symptom mapping"

    @property
    def significant(self):
        """Abbreviations of the territories significant after ``correction``."""
        return list(self.table.index[self.table["significant"].to_numpy(bool)])

    def summary(self):
        cols = ["n_lesioned", "r", "t", "p_uncorrected", "p_fwe", "p_fdr", "significant"]
        where = f"level-{self.level} territory {self.measure}" if self.level else "territory loads"
        lines = [
            f"{self._title}: {self.score!r} ~ {where} (method={self.method!r}, n = {self.n})",
            f"  nuisance: {', '.join(self.covariates) if self.covariates else 'none'}"
            f"{' (Freedman-Lane)' if self.covariates else ''}",
            f"  {self.n_permutations} permutations, alternative={self.alternative!r}, "
            f"correction={self.correction!r}, alpha={self.alpha:g}, critical r = "
            f"{self.r_critical:.4f}",
            self.table[cols].to_string(float_format=lambda v: f"{v:.4g}"),
            f"  significant: {', '.join(self.significant) or 'none'}",
            f"  excluded subjects: {len(self.excluded)}",
        ]
        return "\n".join(lines)

    def to_dataframe(self):
        """The per-territory table (a copy)."""
        return self.table.copy()

    def plot(self, ax=None, *, sort=False):
        """Bar plot of the territory statistics (r), significant bars highlighted.

        The dashed lines mark the FWE critical value ``r_critical``.
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
        return ax


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
    """Two-sided p-value of a partial Kendall tau as in R's ppcor: normal approximation with
    the null variance of Kendall's tau (no ties) at the sample size ``n - k``."""
    m = n - k
    z = r / np.sqrt(2.0 * (2 * m + 5) / (9.0 * m * (m - 1)))
    return float(2 * stats.norm.sf(abs(z)))


def _corr_point(x, y, Z, method, tau=None):
    """(r, p) for x, y of shape (n,) and covariates Z of shape (n, k); ``tau``: the tau-b
    matrix of (x, y, covariates) when already computed (partial Kendall)."""
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


def _correlation_frame(frame, score, covariates, method, log_volume, n_boot, ci, rng):
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
        names = ["const", LOG_VOLUME if log_volume else VOLUME] + covariates
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


def volume_score_correlation(
    cohort,
    score,
    *,
    method="spearman",
    covariates=None,
    log_volume=False,
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
    log_volume : bool
        Use log10(volume) (ml). Changes Pearson r; rank correlations are unchanged.
        The plot then uses a log axis.
    n_boot : int
        Bootstrap resamples for the confidence interval (0 to skip it). Subjects are
        resampled with their values (paired); the interval is bias-corrected and
        accelerated (BCa, :func:`scipy.stats.bootstrap`).
    ci : float
        Confidence level of the interval, in (0, 1).
    random_state : None, int or numpy.random.Generator
        Seed of the bootstrap.

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
    covariates = _as_list(covariates, "covariates")
    if not 0 < ci < 1:
        raise ValueError(f"Invalid value for the 'ci' parameter: must be in (0, 1), got {ci!r}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if score in covariates or VOLUME in covariates:
        raise ValueError(f"covariates {covariates} must not include the score or {VOLUME!r}")
    seed = random_state if isinstance(random_state, (int, np.integer)) else None
    rng = check_random_state(random_state)

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
    if log_volume:
        work[VOLUME] = _volume(work, True)
    r, p, ci_bounds = _correlation_frame(
        work, score, covariates, method, log_volume, int(n_boot), ci, rng
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
        log_volume=bool(log_volume),
        excluded=excluded,
        data=table,
        info={
            "n_boot": int(n_boot),
            "ci_method": "BCa",
            "random_state": seed,
            "runtime_s": time.perf_counter() - t0,
            "versions": _versions(),
        },
    )


# --------------------------------------------------------------------------------------
# Outcome models
# --------------------------------------------------------------------------------------


def _design(frame, predictors, log_volume):
    """Design DataFrame (no intercept): numeric columns as float, text as dummies.

    A text column with a single level among the analysed subjects raises, as a constant
    numeric column does (in :func:`_check_collinear`).
    """
    parts = []
    for col in predictors:
        s = frame[col]
        if col == VOLUME:
            parts.append(_volume(frame, log_volume).rename(LOG_VOLUME if log_volume else VOLUME))
        elif pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            parts.append(_to_numeric(s, col, "predictor"))
        else:
            conv = pd.to_numeric(s, errors="coerce")
            if (conv.notna() | s.isna()).all():
                parts.append(_to_numeric(s, col, "predictor"))
                continue
            levels = sorted(s.dropna().unique(), key=str)
            if len(levels) > _MAX_DUMMY_LEVELS:
                _to_numeric(s, col, "predictor")  # raises, naming a bad value
            if len(levels) == 1:  # no dummy column: as a constant numeric predictor
                raise AnalysisError(
                    f"The predictor {col!r} is constant (every analysed subject has "
                    f"{levels[0]!r}, its only level); it cannot be estimated. Remove it."
                )
            for lev in levels[1:]:
                parts.append((s == lev).astype(float).rename(f"{col}[{lev}]"))
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)


def _coef_table(res, names, family, ci_level):
    alpha = 1 - ci_level
    ci = np.asarray(res.conf_int(alpha=alpha))
    params = np.asarray(res.params)
    all_names = list(res.model.exog_names) if family != "ordinal" else list(res.params.index)
    idx = [all_names.index(n) for n in names]
    tab = pd.DataFrame(
        {
            "coef": params[idx],
            "se": np.asarray(res.bse)[idx],
            "stat": np.asarray(res.tvalues)[idx],
            "p": np.asarray(res.pvalues)[idx],
            "ci_low": ci[idx, 0],
            "ci_high": ci[idx, 1],
        },
        index=pd.Index(names, name="predictor"),
    )
    if family != "ols":
        tab["odds_ratio"] = np.exp(tab["coef"])
        tab["or_ci_low"] = np.exp(tab["ci_low"])
        tab["or_ci_high"] = np.exp(tab["ci_high"])
    return tab


def outcome_model(
    cohort,
    outcome,
    predictors,
    *,
    family="ols",
    cutoff=None,
    levels=None,
    log_volume=False,
    territory_level=1,
    territory_measure="territory_fraction",
    atlas=None,
    ci=0.95,
    fit_kwargs=None,
    n_jobs=1,
):
    """Regress a clinical outcome on phenotype columns, lesion volume and territory loads.

    Parameters
    ----------
    cohort : Cohort or DataFrame
        A :class:`lsm.Cohort`, or a table indexed by subject (lesion volume in ml as a
        ``"lesion_volume"`` column, territory loads as columns).
    outcome : str
        Outcome column (e.g. ``"gs_rankin_6isdeath"`` for the 90-day mRS).
    predictors : str or list of str
        Phenotype columns, ``"lesion_volume"`` and/or territory abbreviations (for a
        Cohort, loads from :func:`lsm.territory_load` at ``territory_level``). Numeric
        columns enter as they are; a text column (e.g. sex) is dummy-coded against its
        first level, giving columns named ``"sex[M]"``. ``"lesion_volume"`` is always the
        cohort's measured volume (ml; a phenotype column of that name is not used, with a
        warning). A name that is both a phenotype column and a territory is the phenotype
        column, unless territory loads are needed for another predictor, which is an error
        (rename the phenotype column).
    family : {"ols", "ordinal", "logistic"}
        ``"ols"``: linear regression (:class:`statsmodels.regression.linear_model.OLS`).
        ``"ordinal"``: proportional-odds (cumulative logit) model,
        :class:`statsmodels.miscmodels.ordinal_model.OrderedModel` with ``distr="logit"``
        fitted by BFGS; exp(coef) is the odds ratio of a *higher* outcome level per unit
        of the predictor. ``"logistic"``: :class:`statsmodels.discrete.discrete_model.Logit`
        of the event ``outcome > cutoff``.
    cutoff : float, optional
        Logistic dichotomy. For the mRS the usual choice is ``cutoff=2``: 0–2 (functional
        independence) is 0 and 3–6 (dependence or death) is 1, so odds ratios are for a
        poor outcome. Without a cutoff the outcome must already be coded 0/1.
    levels : list, optional
        Ordered levels of an ordinal outcome. By default the categories of an ordered
        categorical column, else every integer from the minimum to the maximum observed
        value. Every level must have a subject (else an error names the empty level).
    log_volume : bool
        Enter lesion volume as log10(ml) (column ``"log10_lesion_volume"``).
    territory_level : {1, 2}
        Atlas level for territory-load predictors (Cohort input).
    territory_measure : str
        Territory-load measure passed to :func:`lsm.territory_load`.
    atlas : optional
        Label atlas passed to :func:`lsm.territory_load` (default: the arterial atlas).
    ci : float
        Confidence level of the intervals in the table.
    fit_kwargs : dict, optional
        Passed to the statsmodels ``fit`` (defaults: ``disp=False``, and
        ``method="bfgs", maxiter=2000`` for ordinal).
    n_jobs : int
        Passed to :func:`lsm.territory_load`.

    Returns
    -------
    result : OutcomeModelResult
        ``results`` (the statsmodels results object), ``table`` (coefficients, CIs and,
        for ordinal/logistic, odds ratios with CIs), ``odds_ratios``, ``excluded``.
    """
    import statsmodels.api as sm
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    t0 = time.perf_counter()
    check_option("family", family, _FAMILIES)
    predictors = _as_list(predictors, "predictors")
    if not predictors:
        raise ValueError("predictors must name at least one column")
    if outcome in predictors:
        raise ValueError(f"The outcome {outcome!r} cannot also be a predictor.")
    if len(set(predictors)) != len(predictors):
        raise ValueError(f"predictors contains duplicates: {predictors}")
    if not 0 < ci < 1:
        raise ValueError(f"Invalid value for the 'ci' parameter: must be in (0, 1), got {ci!r}")
    if cutoff is not None and family != "logistic":
        raise ValueError("cutoff is only used with family='logistic'")
    if levels is not None and family != "ordinal":
        raise ValueError("levels is only used with family='ordinal'")

    frame, _ = _source_frame(
        cohort,
        [outcome] + predictors,
        territory_level=territory_level,
        territory_measure=territory_measure,
        n_jobs=n_jobs,
        atlas=atlas,
    )
    roles = [(outcome, "outcome")] + [
        (p, "lesion volume" if p == VOLUME else "predictor") for p in predictors
    ]
    frame = frame[[outcome] + predictors]
    frame, excluded = _complete_cases(frame, roles)
    _warn_excluded(excluded, f"{family} model of {outcome!r}")
    X = _design(frame, predictors, log_volume)
    names = list(X.columns)
    _check_collinear(
        np.column_stack([np.ones(len(X)), X.to_numpy(float)]), ["const"] + names, "predictors"
    )
    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.setdefault("disp", False)
    cutoff_used = None
    levels_used = None
    if family == "ols":
        y = _to_numeric(frame[outcome], outcome, "outcome")
        res = sm.OLS(y, sm.add_constant(X, has_constant="add")).fit(
            **{k: v for k, v in fit_kwargs.items() if k != "disp"}
        )
    elif family == "logistic":
        y = _to_numeric(frame[outcome], outcome, "outcome")
        if cutoff is None:
            vals = set(np.unique(y))
            if not vals <= {0.0, 1.0}:
                raise AnalysisError(
                    f"family='logistic' needs a binary outcome, but {outcome!r} has values "
                    f"{sorted(vals)[:8]}. Pass cutoff= to dichotomise (event = outcome > "
                    "cutoff; for the mRS, cutoff=2 gives 0-2 vs 3-6)."
                )
            event = y
        else:
            cutoff_used = float(cutoff)
            event = (y > cutoff_used).astype(float)
        n_event = int(event.sum())
        if n_event in (0, len(event)):
            raise AnalysisError(
                f"The logistic outcome ({outcome!r}"
                f"{f' > {cutoff_used:g}' if cutoff_used is not None else ''}) has "
                f"{n_event} event(s) among {len(event)} subjects; both classes are needed."
            )
        res = sm.Logit(event, sm.add_constant(X, has_constant="add")).fit(**fit_kwargs)
    else:
        codes, levels_used, _ = _ordinal_codes(frame[outcome], outcome, levels)
        endog = pd.Series(
            pd.Categorical.from_codes(codes, categories=levels_used, ordered=True),
            index=frame.index,
            name=outcome,
        )
        fit_kwargs.setdefault("method", "bfgs")
        fit_kwargs.setdefault("maxiter", 2000)
        res = OrderedModel(endog, X, distr="logit").fit(**fit_kwargs)
    converged = getattr(res, "mle_retvals", {}) or {}
    if converged and not converged.get("converged", True):
        warnings.warn(
            f"The {family} model of {outcome!r} did not converge; check the predictors "
            "(scale, separation) or pass fit_kwargs.",
            LSMWarning,
            stacklevel=2,
        )
    table = _coef_table(res, names, family, ci)
    return OutcomeModelResult(
        results=res,
        family=family,
        outcome=outcome,
        predictors=names,
        n=len(frame),
        table=table,
        excluded=excluded,
        levels=levels_used,
        cutoff=cutoff_used,
        info={"ci_level": float(ci), "runtime_s": time.perf_counter() - t0,
              "log_volume": bool(log_volume), "fit_kwargs": fit_kwargs,
              "versions": _versions()},
    )


# --------------------------------------------------------------------------------------
# Territory-level LSM: array-level max-statistic permutation engine
# --------------------------------------------------------------------------------------


def _perm_chunk(Xn, e, Q, perms, stat_obs, alternative):
    """Null statistics for one chunk of permutations.

    Xn : (n, p) territory columns residualised on Q, unit norm. e : (n,) residual vector
    (orthogonal to Q). The Freedman–Lane permuted outcome is ``fitted + e[perm]``; its
    partial correlation with column j is ``Xn_j' e_perm / ||R_Q e_perm||`` because Xn_j
    is orthogonal to Q.

    Returns (max statistic per permutation (c,), exceedance counts per territory (p,)).
    """
    # einsum without `optimize` runs numpy's own loops, not a (multi-threaded) BLAS whose
    # last bits can depend on the thread count: worker and main process agree exactly.
    # C order whatever the layout of `perms` (pickling to a worker makes it C-contiguous)
    E = np.ascontiguousarray(e[np.ascontiguousarray(perms)])  # (c, n)
    num = np.einsum("np,cn->pc", Xn, E)
    proj = np.einsum("nq,cn->qc", Q, E)
    den = np.sqrt(np.maximum(np.einsum("cn,cn->c", E, E) - np.einsum("qc,qc->c", proj, proj),
                             0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    s = alternative_transform(r, alternative)
    s = np.where(np.isfinite(s), s, -np.inf)
    # null statistics tied with the observed one (last-bit differences) count as ">="
    counts = (s >= tie_lowered(stat_obs)[:, None]).sum(1)
    return s.max(0), counts


def _permutation_test(X, e, Q, n_permutations, rng, *, alternative="two-sided", n_jobs=1,
                      permutations=None, verbose=0):
    """Max-statistic permutation test of the columns of X against a residual vector.

    Parameters
    ----------
    X : ndarray of shape (n_subjects, n_tests)
        Predictors, already residualised on the nuisance basis ``Q`` (columns with zero
        norm must be removed beforehand).
    e : ndarray of shape (n_subjects,)
        Outcome residuals of the reduced model (orthogonal to ``Q``).
    Q : ndarray of shape (n_subjects, q)
        Orthonormal basis of the nuisance space (intercept and covariates).
    n_permutations : int
    rng : numpy.random.Generator
        Every permutation is drawn from it up front, in the calling process.
    alternative : {"two-sided", "greater", "less"}
    n_jobs : int
        Chunks of a fixed size are spread over joblib workers; results do not depend on
        ``n_jobs``.
    verbose : int
        > 0 shows a progress bar.
    permutations : ndarray of shape (n_permutations, n_subjects), optional
        Use these permutations instead of drawing them.

    Returns
    -------
    r : ndarray of shape (n_tests,)
        Observed partial correlations.
    p_uncorrected, p_fwe : ndarray of shape (n_tests,)
        ``(1 + #{null >= observed}) / (1 + n_permutations)``; the FWE null is the maximum
        statistic over tests in each permutation.
    null_max : ndarray of shape (n_permutations,)
    """
    n = X.shape[0]
    Xn = X / np.linalg.norm(X, axis=0)
    den = np.sqrt(max(float(e @ e) - float(np.sum((Q.T @ e) ** 2)), 0.0))
    r = (Xn.T @ e) / den
    stat_obs = alternative_transform(r, alternative)
    if permutations is None:
        permutations = draw_permutations(n_permutations, n, rng)
    starts = range(0, len(permutations), _PERM_CHUNK)
    chunks = [permutations[s : s + _PERM_CHUNK] for s in starts]
    out = parallel_map(
        _perm_chunk,
        [(Xn, e, Q, c, stat_obs, alternative) for c in chunks],
        n_jobs=n_jobs,
        verbose=verbose,
        desc="permutations",
    )
    null_max = np.concatenate([o[0] for o in out]) if out else np.empty(0)
    counts = np.sum([o[1] for o in out], axis=0) if out else np.zeros(X.shape[1])
    B = len(permutations)
    p_unc = (1 + counts) / (1 + B)
    p_fwe = permutation_pvalues(stat_obs, null_max)
    return r, p_unc, p_fwe, null_max


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
    r, p_unc, p_fwe, null_max = _permutation_test(
        Xr, e, Q, n_permutations, rng, alternative=alternative, n_jobs=n_jobs,
        permutations=permutations, verbose=verbose,
    )
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


def territory_lsm(
    cohort,
    score,
    *,
    level=1,
    measure="territory_fraction",
    atlas=None,
    method="spearman",
    covariates=None,
    lesion_volume=None,
    n_permutations=5000,
    correction="fwe",
    alternative="two-sided",
    alpha=0.05,
    min_lesioned=5,
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
    score : str
        Score column.
    level : {1, 2}
        Arterial atlas level (Cohort input).
    measure : {"territory_fraction", "lesion_fraction", "ml"}
        Territory-load measure passed to :func:`lsm.territory_load` (Cohort input).
    atlas : optional
        Label atlas passed to :func:`lsm.territory_load` (default: the arterial atlas).
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
    covariates : str or list of str, optional
        Nuisance phenotype columns.
    lesion_volume : {None, False, True, "linear", "log"}
        Add lesion volume (ml, or log10 ml with ``"log"``) to the nuisance variables:
        "which territory matters beyond size".
    n_permutations : int
        Number of random permutations (drawn once, up front, from ``random_state``).
    correction : {"fwe", "fdr", "none"}
        Which p-value decides ``significant``: max-statistic FWE, Benjamini–Hochberg on
        the permutation p-values, or uncorrected. All three are in the table.
    alternative : {"two-sided", "greater", "less"}
    alpha : float
        Significance level.
    min_lesioned : int
        Territories lesioned (load > 0) in fewer subjects are not tested (their rows have
        ``tested=False``), and neither are loads collinear with the nuisance variables.
    territories : list of str, optional
        Territory columns; required for DataFrame input, a subset for a Cohort.
    random_state : None, int or numpy.random.Generator
    n_jobs : int
        joblib workers for the permutations (and the territory loads); the result does
        not depend on it.
    verbose : int
        > 0 shows a progress bar over permutation chunks.

    Returns
    -------
    result : TerritoryLSMResult
        ``table`` (one row per territory), ``significant``, ``null_max``, ``plot()``.

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
    check_option("alternative", alternative, _ALTERNATIVES)
    check_option("lesion_volume", lesion_volume, (None, False, True, "linear", "log"))
    covariates = _as_list(covariates, "covariates")
    if int(n_permutations) != n_permutations or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    seed = random_state if isinstance(random_state, (int, np.integer)) else None
    rng = check_random_state(random_state)
    use_volume = lesion_volume not in (None, False)
    territories = _as_list(territories, "territories") if territories is not None else None
    if isinstance(cohort, pd.DataFrame) and territories is None:
        raise ValueError("territories must name the territory columns when data is a DataFrame")

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
        vname = LOG_VOLUME if lesion_volume == "log" else VOLUME
        table[vname] = _volume(frame, lesion_volume == "log")
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
    reason[(reason == "") & (n_lesioned < min_lesioned)] = (
        f"lesioned in fewer than {min_lesioned} subjects"
    )
    reason[(reason == "") & (resid_norm < 1e-8)] = "collinear with the nuisance variables"
    tested = reason == ""
    if n - Q.shape[1] - 1 < 1:
        raise AnalysisError(f"Only {n} subjects for {Q.shape[1]} nuisance parameters.")
    cols = ["r", "t", "p_parametric", "p_uncorrected", "p_fwe"]
    out = {c: np.full(len(territories), np.nan) for c in cols}
    null_max = np.empty(0)
    if tested.any():
        res = _territory_lsm_arrays(
            y, X_all[:, tested], Z, method=method, n_permutations=int(n_permutations),
            rng=rng, alternative=alternative, n_jobs=n_jobs, ordinal_codes=ordinal_codes,
            verbose=verbose,
        )
        for c in cols:
            out[c][tested] = res[c]
        null_max = res["null_max"]
    else:
        warnings.warn("No territory could be tested (see the 'not_tested' column).",
                      LSMWarning, stacklevel=2)
    p_fdr = np.full(len(territories), np.nan)
    if tested.any():
        p_fdr[tested] = stats.false_discovery_control(out["p_uncorrected"][tested])
    result_table = pd.DataFrame(
        {
            "n_lesioned": n_lesioned,
            "mean_load": X_all.mean(0),
            "tested": tested,
            **out,
            "p_fdr": p_fdr,
        },
        index=pd.Index(territories, name="territory"),
    )
    chosen = {"fwe": "p_fwe", "fdr": "p_fdr", "none": "p_uncorrected"}[correction]
    result_table["p_corrected"] = result_table[chosen]
    result_table["significant"] = (result_table["p_corrected"] <= alpha).to_numpy(bool)
    result_table["not_tested"] = reason
    r_crit = permutation_threshold(null_max, alpha) if len(null_max) else np.nan
    logger.info("territory_lsm %s %s: %d territories tested, %d significant (%s)", method,
                score, int(tested.sum()), int(result_table["significant"].sum()), correction)
    return TerritoryLSMResult(
        table=result_table,
        score=score,
        method=method,
        level=level if _is_cohort(cohort) else None,
        measure=measure if _is_cohort(cohort) else "given",
        covariates=nuisance,
        n=n,
        n_permutations=int(n_permutations),
        alternative=alternative,
        correction=correction,
        alpha=float(alpha),
        null_max=null_max,
        r_critical=r_crit,
        excluded=excluded,
        info={"random_state": seed, "n_jobs": n_jobs, "min_lesioned": min_lesioned,
              "runtime_s": time.perf_counter() - t0, "versions": _versions(),
              "permutation_scheme": "Freedman-Lane" if nuisance else "permute score"},
    )
