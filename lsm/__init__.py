"""lsm: lesion-symptom mapping for stroke research.

Data flow is one way: cohort -> lesion matrix -> array-only statistics engine
(:mod:`lsm.stats`) -> result objects -> maps, plots and reports.
"""

import importlib
import logging

__version__ = "0.2.0.dev0"

logging.getLogger("lsm").addHandler(logging.NullHandler())

# Public names, imported lazily so that ``import lsm`` stays fast and a heavy
# optional dependency (matplotlib, dask) is only imported when used.
_LAZY = {
    "Cohort": "lsm.cohort",
    "load_cohort": "lsm.cohort",
    "DataDictionary": "lsm.dictionary",
    "load_dictionary": "lsm.dictionary",
    "vlsm": "lsm._vlsm",
    "VLSMResult": "lsm.results",
    "Summary": "lsm._result",
    "AnalysisResult": "lsm._result",
    "TableResult": "lsm._result",
    "svr_lsm": "lsm._svr",
    "SVRLSMResult": "lsm._svr_result",
    "territory_load": "lsm.territory",
    "lesion_descriptors": "lsm.territory",
    "overlap_map": "lsm.territory",
    "territory_summary": "lsm.territory",
    "TerritorySummary": "lsm.territory",
    "plot_territory_summary": "lsm.territory",
    "volume_score_correlation": "lsm.clinical",
    "outcome_model": "lsm.clinical",
    "territory_lsm": "lsm.clinical",
    "CorrelationResult": "lsm.clinical",
    "OutcomeModelResult": "lsm.clinical",
    "TerritoryLSMResult": "lsm.clinical",
    "predict_score": "lsm.predict",
    "PredictionResult": "lsm.predict",
    "localization_check": "lsm.localization",
    "LocalizationResult": "lsm.localization",
    "datasets": "lsm.datasets",
    "plotting": "lsm.plotting",
    "report": "lsm.report",
    "simulate": "lsm.simulate",
    "run_demo": "lsm.demo",
    "exceptions": "lsm.exceptions",
    "stats": "lsm.stats",
    "register_lesions": "lsm.registration",
    "RegistrationResult": "lsm.registration",
    "registration": "lsm.registration",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = getattr(module, name) if hasattr(module, name) else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lsm' has no attribute {name!r}")


def __dir__():
    return __all__
