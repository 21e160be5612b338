"""Lesion volume–score correlations, clinical outcome models and territory-level mapping.

Three questions, asked in this order in most stroke studies:

1. *Does lesion size explain the deficit?* :func:`volume_score_correlation` (Spearman,
   Pearson or Kendall, partial correlation given covariates, BCa bootstrap CI).
2. *What predicts outcome?* :func:`outcome_model` (OLS, proportional-odds ordinal model
   for the modified Rankin scale, or logistic regression on a documented dichotomy),
   keeping the :mod:`statsmodels` results object.
3. *Which arterial territory matters beyond size?* :func:`territory_lsm`: one test per
   territory with a max-statistic permutation family-wise error (FWE) correction across
   territories, Freedman–Lane when covariates (such as lesion volume) are given.

Each function accepts a :class:`lsm.Cohort` or a :class:`pandas.DataFrame` indexed by
subject (for a DataFrame, lesion volume is read from a ``"lesion_volume"`` column, in ml).
Subjects missing a needed value are excluded, and every exclusion is listed with its
reason in the result's ``excluded`` table. Every result follows the result contract of
:mod:`lsm._result` (``params``, ``provenance``, ``excluded``, ``summary()``, ``plot()``,
``to_html()``, ``save()`` / ``load()``).

One module per analysis: :mod:`~lsm.clinical.correlation`, :mod:`~lsm.clinical.outcome`,
:mod:`~lsm.clinical.territory_level`; :mod:`~lsm.clinical._common` holds what they share
(the analysis table and its exclusions, lesion volume, collinearity checks). The
territory-level permutations run on :func:`lsm.stats.partial_correlation_test`.
"""

from .correlation import CorrelationResult, volume_score_correlation
from .outcome import OutcomeModelResult, outcome_model
from .territory_level import TerritoryLSMResult, territory_lsm

__all__ = [
    "volume_score_correlation",
    "outcome_model",
    "territory_lsm",
    "CorrelationResult",
    "OutcomeModelResult",
    "TerritoryLSMResult",
]
