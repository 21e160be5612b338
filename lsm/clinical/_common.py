"""Shared helpers of the clinical analyses.

The analysis table, exclusions, lesion volume, collinearity checks, nuisance bases and
ordinal outcomes.
"""

import warnings

import numpy as np
import pandas as pd

from ..exceptions import AnalysisError, DroppedSubjectsWarning, PhenotypeError

VOLUME = "lesion_volume"
LOG_VOLUME = "log10_lesion_volume"
_COLLINEAR_TOL = 1e-8
_MAX_DUMMY_LEVELS = 20

# --------------------------------------------------------------------------------------
# Shared helpers: assembling an analysis table with exclusions
# --------------------------------------------------------------------------------------

def _is_cohort(data):
    return hasattr(data, "phenotype") and hasattr(data, "lesion_volumes")


def _territory_loads(cohort, level, measure, n_jobs, atlas="arterial"):
    """Territory loads of a cohort, one column per territory abbreviation."""
    from ..territory import OUTSIDE_COLUMN, VOLUME_COLUMN, territory_load  # lazy: nilearn

    loads = territory_load(cohort, atlas=atlas, level=level, measure=measure, n_jobs=n_jobs)
    loads = loads.drop(columns=[c for c in (OUTSIDE_COLUMN, VOLUME_COLUMN) if c in loads])
    loads.columns = [str(c) for c in loads.columns]
    loads.index = loads.index.astype(object)
    return loads


def _source_frame(data, columns, *, territory_level=None, territory_measure=None, n_jobs=1,
                  need_territories=False, allow_territories=True, atlas="arterial"):
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
    """Numeric float Series.

    An unparseable or infinite value raises naming the subject and column (NaN stays: it
    is a missing value, excluded with its reason).
    """
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


def _volume(frame, volume_transform):
    """Lesion volume (ml) as ``volume_transform`` says: ml, or log10 of ml."""
    vol = _to_numeric(frame[VOLUME], VOLUME, "lesion volume")
    if volume_transform == "linear":
        return vol
    bad = vol.notna() & (vol <= 0)
    if bad.any():
        subj = bad.index[bad.argmax()]
        raise AnalysisError(
            f"volume_transform='log' needs positive lesion volumes, but subject {subj!r} has "
            f"{vol[subj]!r} ml. Drop empty lesions or use volume_transform='linear'."
        )
    return np.log10(vol)


def _volume_name(volume_transform):
    """Column name of lesion volume in a model: ``lesion_volume`` or ``log10_lesion_volume``."""
    return LOG_VOLUME if volume_transform == "log" else VOLUME


def _check_atlas_needed(atlas, what):
    """Raise if ``atlas`` is None where territory loads are needed."""
    if atlas is None:
        raise ValueError(
            f"Invalid value for the 'atlas' parameter: {what} needs territory loads, so an "
            "atlas ('arterial' or a label image), but got None (no atlas)."
        )


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



def _fmt_p(p):
    if not np.isfinite(p):
        return "nan"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def _atlas_name(atlas):
    """How ``params`` records an atlas: "arterial", a path, or the atlas object's name."""
    if atlas is None or isinstance(atlas, str):
        return atlas
    return str(getattr(atlas, "name", type(atlas).__name__))
