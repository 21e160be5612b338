"""Clinical outcome models: OLS, proportional-odds and logistic (:func:`outcome_model`)."""

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._docs import fill_doc
from .._result import Summary, TableResult, excluded_frame, make_provenance
from .._validation import as_column_list, check_n_jobs, check_option, check_volume_transform
from ..exceptions import AnalysisError, LSMWarning
from ._common import (
    VOLUME,
    _atlas_name,
    _check_collinear,
    _complete_cases,
    _ordinal_codes,
    _source_frame,
    _to_numeric,
    _volume,
    _volume_name,
    _warn_excluded,
)

__all__ = ["outcome_model", "OutcomeModelResult"]

_FAMILIES = ("ols", "ordinal", "logistic")
_MAX_DUMMY_LEVELS = 20



@dataclass(frozen=True, repr=False)
class OutcomeModelResult(TableResult):
    """A fitted clinical outcome model.

    Attributes
    ----------
    results : statsmodels results
        ``RegressionResults`` (ols), ``OrderedResults`` (ordinal) or ``LogitResults``
        (logistic); everything statsmodels offers (``summary()``, ``conf_int()``,
        ``predict``...) is available there (None for a result read by ``load``).
    family : {"ols", "ordinal", "logistic"}
    outcome : str
    predictors : list of str
        Design-matrix column names (dummy columns are named ``"column[level]"``; lesion
        volume is ``"log10_lesion_volume"`` with ``volume_transform="log"``).
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
    params: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    _title = "Clinical outcome model"

    @property
    def odds_ratios(self):
        """Odds ratios with confidence intervals (ordinal and logistic models)."""
        if self.family == "ols":
            raise AttributeError("odds ratios are defined for family='ordinal' or 'logistic'")
        return self.table[["odds_ratio", "or_ci_low", "or_ci_high", "p"]].copy()

    _table_fields = ("table",)
    _unsaved_fields = ("results",)

    def summary(self):
        """Text summary of the result (a :class:`lsm.Summary`)."""
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
        return Summary("\n".join(lines))

    def to_dataframe(self):
        """The coefficient table (a copy)."""
        return self.table.copy()

    def plot(self, ax=None):
        """Forest plot of odds ratios (log axis) or OLS coefficients with their CIs.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Axes to draw on (a new figure when None).

        Returns
        -------
        fig : matplotlib Figure
        """
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
        ax.set_xlabel(f"{label} ({100 * self.params.get('ci', 0.95):g}% CI)")
        ax.set_title(f"{self.outcome} ({self.family}, n = {self.n})", fontsize=9)
        return ax.figure


# --------------------------------------------------------------------------------------
# Outcome models
# --------------------------------------------------------------------------------------


def _design(frame, predictors, volume_transform):
    """Design DataFrame (no intercept): numeric columns as float, text as dummies.

    A text column with a single level among the analysed subjects raises, as a constant
    numeric column does (in :func:`_check_collinear`).
    """
    parts = []
    for col in predictors:
        s = frame[col]
        if col == VOLUME:
            parts.append(_volume(frame, volume_transform).rename(_volume_name(volume_transform)))
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


@fill_doc
def outcome_model(
    cohort,
    outcome,
    predictors,
    *,
    family="ols",
    cutoff=None,
    levels=None,
    volume_transform="linear",
    territory_level=1,
    territory_measure="territory_fraction",
    atlas="arterial",
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
    %(volume_transform)s
        With ``"log"`` the design column is ``"log10_lesion_volume"``.
    territory_level : {1, 2}
        Atlas level for territory-load predictors (Cohort input).
    territory_measure : str
        Territory-load measure passed to :func:`lsm.territory_load`.
    %(atlas)s
        Passed to :func:`lsm.territory_load` when a predictor is a territory (``None``
        is then an error).
    ci : float
        Confidence level of the intervals in the table.
    fit_kwargs : dict, optional
        Passed to the statsmodels ``fit`` (defaults: ``disp=False``, and
        ``method="bfgs", maxiter=2000`` for ordinal).
    %(n_jobs)s
        Used by :func:`lsm.territory_load`.

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
    predictors = as_column_list(predictors, "predictors")
    check_volume_transform(volume_transform)
    n_jobs = check_n_jobs(n_jobs)
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
    X = _design(frame, predictors, volume_transform)
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
        excluded=excluded_frame(excluded),
        levels=levels_used,
        cutoff=cutoff_used,
        params={"outcome": outcome, "predictors": predictors, "design_columns": names,
                "family": family, "cutoff": cutoff_used, "levels": levels_used,
                "volume_transform": volume_transform, "territory_level": territory_level,
                "territory_measure": territory_measure, "atlas": _atlas_name(atlas),
                "ci": float(ci), "fit_kwargs": fit_kwargs, "n_subjects": len(frame)},
        provenance=make_provenance(n_jobs=n_jobs, t0=t0, converged=not (
            converged and not converged.get("converged", True))),
    )

