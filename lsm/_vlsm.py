"""Voxel-based lesion-symptom mapping on a :class:`~lsm.cohort.Cohort`.

:func:`vlsm` selects the analysable subjects, builds the sparse lesion matrix, runs the
array-only engine :func:`lsm.stats.voxelwise_test` and wraps its arrays into a
:class:`~lsm.results.VLSMResult` on the cohort grid.
"""

import logging
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._docs import fill_doc
from ._result import make_provenance
from ._validation import (
    ALTERNATIVES,
    CORRECTIONS,
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
from .exceptions import AnalysisError, PhenotypeError, SpaceError
from .stats import METHODS, resolve_min_lesioned, voxelwise_test

__all__ = ["vlsm", "LESION_VOLUME_OPTIONS"]

logger = logging.getLogger("lsm")

LESION_VOLUME_OPTIONS = (None, "covariate", "dtlvc")


def _numeric(values, column, what):
    """Column as float, refusing text that is not a number (missing stays NaN)."""
    present = values.notna()
    as_num = pd.to_numeric(values[present].astype(object), errors="coerce")
    bad = as_num.isna()
    if bad.any():
        examples = ", ".join(f"{s}={v!r}" for s, v in values[present][bad].head(3).items())
        raise PhenotypeError(
            f"The {what} column {column!r} has non-numeric values ({examples}). Recode them, "
            "or declare them missing in the phenotype table."
        )
    out = pd.Series(np.nan, index=values.index, dtype="float64")
    out[present] = as_num.astype("float64")
    return out


def _covariate_frame(phenotype, covariates):
    """Numeric covariate matrix; text columns are dummy-coded (first level dropped)."""
    columns = []
    for name in covariates:
        if name not in phenotype.columns:
            raise PhenotypeError(
                f"Covariate {name!r} is not in the phenotype; available columns: "
                f"{list(phenotype.columns)}."
            )
        col = phenotype[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            columns.append(_numeric(col, name, "covariate").rename(name))
            continue
        as_num = pd.to_numeric(col.dropna().astype(object), errors="coerce")
        if not as_num.isna().any():
            columns.append(_numeric(col, name, "covariate").rename(name))
            continue
        levels = sorted(col.dropna().astype(str).unique())
        logger.info("covariate %r is categorical: dummy-coded against level %r", name, levels[0])
        for level in levels[1:]:
            dummy = (col.astype(object) == level).astype("float64").rename(f"{name}[{level}]")
            dummy[col.isna()] = np.nan
            columns.append(dummy)
    return pd.concat(columns, axis=1) if columns else pd.DataFrame(index=phenotype.index)


def _check_combination(method, covariates, lesion_volume):
    if covariates and method != "regression":
        raise ValueError(
            f"covariates are only supported with method='regression' (OLS with Freedman-Lane "
            f"permutations), not method={method!r}. Use method='regression' to adjust for "
            f"{list(covariates)}."
        )
    if lesion_volume is not None and method != "regression":
        raise ValueError(
            f"lesion_volume={lesion_volume!r} is only supported with method='regression', not "
            f"method={method!r}: lesion volume enters the regression model ('covariate') or "
            "rescales lesion status ('dtlvc'), which rank and count tests cannot do."
        )


def _candidate_matrix(cohort, subjects, min_lesioned):
    """Lesion matrix of the voxels passing ``min_lesioned`` only, never the whole grid's.

    Lesioned subjects are counted per voxel from each subject's lesion indices, and only
    the columns of voxels with enough lesioned and non-lesioned subjects are built, so
    the full (subjects x grid) matrix is never held (the largest array at 1 mm).

    Returns
    -------
    lesions : scipy.sparse.csr_matrix of shape (n_subjects, n_candidates)
    voxel_index : ndarray of shape (n_candidates,)
        Flat grid index of each column.
    n_lesioned : ndarray of shape (n_grid_voxels,), int64
        Lesioned subjects in every grid voxel.
    """
    rows = [cohort.lesion_indices(s) for s in subjects]
    count = resolve_min_lesioned(min_lesioned, len(rows))
    n_lesioned = np.zeros(int(np.prod(cohort.shape)), dtype=np.int64)
    for r in rows:
        np.add.at(n_lesioned, r, 1)
    candidate = (n_lesioned >= count) & (len(rows) - n_lesioned >= count)
    voxel_index = np.flatnonzero(candidate)
    cols = [np.searchsorted(voxel_index, r[candidate[r]]) for r in rows]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([c.size for c in cols], out=indptr[1:])
    indices = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    lesions = sp.csr_matrix(
        (np.ones(indices.size, dtype=np.uint8), indices, indptr), shape=(len(rows), voxel_index.size)
    )
    return lesions, voxel_index, n_lesioned


def _null_statistic(correction, alternative, v):
    if correction in ("cluster_size", "cluster_mass"):
        return f"max_{correction}"
    if correction == "tfce":
        return "max_abs_tfce" if alternative == "two-sided" else "max_tfce"
    side = {"two-sided": "abs_z", "greater": "z", "less": "neg_z"}[alternative]
    return f"max_{side}" if correction == "fwe" else f"v{v}th_largest_{side}"


def check_vlsm_options(method, correction, alternative, lesion_volume, covariates,
                       volume_transform="linear", min_lesioned=0.05, alpha=0.05,
                       n_permutations=5000, cluster_forming_p=0.001):
    """Check the analysis options of :func:`vlsm` that need no data.

    Returns the covariates as a list. (The command line calls this before reading any mask.)
    """
    check_option("method", method, METHODS)
    check_option("correction", correction, CORRECTIONS)
    check_option("alternative", alternative, ALTERNATIVES)
    check_lesion_volume(lesion_volume, LESION_VOLUME_OPTIONS)
    check_volume_transform(volume_transform)
    check_min_lesioned(min_lesioned)
    check_alpha(alpha)
    check_alpha(cluster_forming_p, "cluster_forming_p")
    check_n_permutations(n_permutations)
    covariates = as_column_list(covariates, "covariates")
    _check_combination(method, covariates, lesion_volume)
    return covariates


@fill_doc
def vlsm(
    cohort,
    score,
    *,
    method="ttest",
    covariates=None,
    lesion_volume=None,
    volume_transform="linear",
    n_permutations=5000,
    correction="fwe",
    alpha=0.05,
    v=1,
    min_lesioned=0.05,
    alternative="two-sided",
    n_jobs=1,
    random_state=None,
    verbose=0,
    cluster_forming_p=0.001,
):
    """Voxel-based lesion-symptom mapping with permutation inference.

    Parameters
    ----------
    cohort : Cohort
        Lesion masks and phenotype on a common grid (``space="MNI"``).
    %(score)s
    method : {"ttest", "welch", "brunner_munzel", "regression", "liebermeister"}
        ``"ttest"``: pooled-variance t. ``"welch"``: unequal-variance t.
        ``"brunner_munzel"``: rank test with exact mid-ranks for tied scores (NIHSS, mRS).
        ``"regression"``: OLS t of the score on lesion status plus covariates,
        Freedman-Lane permutations. ``"liebermeister"``: binary score (two values; the
        larger is coded 1) against lesion status, Liebermeister's quasi-exact test.
    %(covariates)s
        ``method="regression"`` only.
    %(lesion_volume)s
        ``method="regression"`` only: any other method with a lesion-volume control,
        and covariates with any method but regression, raise ``ValueError``.
    %(volume_transform)s
        Used with ``lesion_volume="covariate"`` (with ``"log"``, subjects without a
        lesion are excluded and listed).
    %(n_permutations)s
        Not used by ``fdr_bh``, ``fdr_by`` and ``none``.
    correction : {"fwe", "cfwer", "fdr_bh", "fdr_by", "cluster_size", "cluster_mass", "tfce", "none"}
        ``"fwe"``: max statistic; ``"cfwer"``: v-th largest statistic (v voxels,
        Mirman et al. 2018); ``"fdr_bh"``/``"fdr_by"``: FDR on the parametric p-values;
        ``"cluster_size"``/``"cluster_mass"``: cluster-level inference with clusters
        formed at ``cluster_forming_p`` (26-connectivity); ``"tfce"``: threshold-free
        cluster enhancement of the z map (E=0.5, H=2, step 0.1); ``"none"``.
        Where the degrees of freedom differ between voxels (Welch, Brunner-Munzel) the
        permutation maxima are taken over z.
    %(alpha)s
    v : int
        Number of voxels allowed to be false positives for ``"cfwer"``.
    %(min_lesioned)s
    %(alternative)s
    %(n_jobs)s
    %(random_state)s
    %(verbose)s
    %(cluster_forming_p)s

    Returns
    -------
    result : VLSMResult
        Maps on the cohort grid, the null distribution, ``params``, ``provenance``
        (seed, versions, analysed subjects, tested voxels, unique lesion patterns...) and
        ``excluded`` (subjects left out, with the reason).

    Raises
    ------
    AnalysisError
        No subject left, constant score, no voxel passing ``min_lesioned``...
    """
    t0 = time.perf_counter()
    from .results import VLSMResult

    covariates = check_vlsm_options(method, correction, alternative, lesion_volume, covariates,
                                    volume_transform, min_lesioned, alpha, n_permutations,
                                    cluster_forming_p)
    n_jobs = check_n_jobs(n_jobs)
    if getattr(cohort, "space", "MNI") != "MNI":
        raise SpaceError(
            f"Voxel-wise analyses need masks in a common standard space, but this cohort is in "
            f"{cohort.space!r} space (e.g. ISLES'24 native CT masks): voxels do not correspond "
            "across subjects. Register the masks to MNI first (for ISLES'24: "
            "load_isles24(..., mni_lesions=...)); lesion volumes are valid as they are, so "
            "volume_score_correlation and outcome_model with 'lesion_volume' work on this cohort."
        )
    if not isinstance(score, str):
        raise TypeError(f"score must be the name of a phenotype column, got {score!r}.")

    phenotype = cohort.phenotype.loc[list(cohort.subjects)]
    if score not in phenotype.columns:
        raise PhenotypeError(
            f"Score column {score!r} is not in the phenotype; available columns: "
            f"{list(phenotype.columns)}."
        )
    y = _numeric(phenotype[score], score, "score")
    cov = _covariate_frame(phenotype, covariates)
    volumes = None
    if lesion_volume is not None:
        volumes = pd.Series(np.asarray(cohort.lesion_volumes, dtype=np.float64), index=phenotype.index)

    for name, frame in ((score, y.to_frame()), ("covariate", cov)):
        infinite = frame.index[np.isinf(frame.to_numpy(dtype=np.float64)).any(axis=1)]
        if len(infinite):
            what = f"score {score!r}" if name == score else f"covariates {list(frame.columns)}"
            raise PhenotypeError(
                f"The {what} has infinite values for subject(s) {list(infinite[:5])}. "
                "Fix or blank these values in the phenotype table."
            )
    excluded, keep = [], []
    for subject in phenotype.index:
        if np.isnan(y[subject]):
            excluded.append({"subject": subject, "reason": f"missing score {score!r}"})
            continue
        missing = [c for c in cov.columns if np.isnan(cov.at[subject, c])]
        if missing:
            names = sorted({c.split("[")[0] for c in missing})
            excluded.append({"subject": subject, "reason": f"missing covariate {', '.join(map(repr, names))}"})
            continue
        if lesion_volume == "dtlvc" and not volumes[subject] > 0:
            # 1 / sqrt(0): dTLVC cannot scale an empty lesion (a volume covariate can be 0).
            excluded.append({"subject": subject, "reason": "zero lesion volume (lesion_volume='dtlvc')"})
            continue
        if lesion_volume == "covariate" and volume_transform == "log" and not volumes[subject] > 0:
            excluded.append({"subject": subject, "reason": "zero lesion volume (volume_transform='log')"})
            continue
        keep.append(subject)
    if excluded:
        logger.info("%d subject(s) excluded from the analysis of %r", len(excluded), score)
    if not keep:
        raise AnalysisError(
            f"No subject left to analyse {score!r}: all {len(excluded)} subjects were excluded "
            f"(first reasons: {[e['reason'] for e in excluded[:3]]})."
        )

    if excluded and cov.shape[1]:
        # Dummy-code categorical covariates on the analysed subjects only: a level seen only
        # among excluded subjects would give an all-zero column (a collinear model).
        cov = _covariate_frame(phenotype.loc[keep], covariates)
    scores = y[keep].to_numpy()
    if method == "liebermeister":
        levels = np.unique(scores)
        if levels.size != 2:
            raise AnalysisError(
                f"method='liebermeister' needs a binary score, but {score!r} takes {levels.size} "
                f"distinct value(s) among the analysed subjects ({levels[:6].tolist()}). "
                "Dichotomise it first (e.g. mRS > 2)."
            )
        scores = (scores == levels[1]).astype(np.float64)
    cov_matrix = cov.loc[keep].to_numpy(dtype=np.float64) if cov.shape[1] else None
    if cov_matrix is not None and np.any(np.ptp(cov_matrix, axis=0) == 0):
        constant = [c for c, d in zip(cov.columns, np.ptp(cov_matrix, axis=0)) if d == 0]
        raise AnalysisError(
            f"Covariate(s) {constant} are constant across the {len(keep)} analysed subjects, "
            "so their effect cannot be separated from the intercept. Drop them from covariates."
        )
    lesion_scale = None
    if lesion_volume == "covariate":
        vol = volumes[keep].to_numpy()[:, None]
        if volume_transform == "log":
            vol = np.log10(vol)
        cov_matrix = vol if cov_matrix is None else np.column_stack([cov_matrix, vol])
    elif lesion_volume == "dtlvc":
        lesion_scale = 1.0 / np.sqrt(volumes[keep].to_numpy())

    seed, rng = resolve_seed(random_state)

    lesions, voxel_index, n_lesioned = _candidate_matrix(cohort, keep, min_lesioned)
    if voxel_index.size == 0:
        # Nothing passes min_lesioned: the engine raises, saying how many were lesioned.
        lesions, voxel_index = cohort.lesion_matrix(subjects=keep), None
    engine = voxelwise_test(
        lesions,
        scores,
        method=method,
        covariates=cov_matrix,
        lesion_scale=lesion_scale,
        n_permutations=n_permutations,
        correction=correction,
        alpha=alpha,
        v=v,
        min_lesioned=min_lesioned,
        alternative=alternative,
        n_jobs=n_jobs,
        random_state=rng,
        grid_shape=cohort.shape,
        voxel_index=voxel_index,
        cluster_forming_p=cluster_forming_p,
        verbose=verbose,
    )

    tested = np.zeros(n_lesioned.size, dtype=bool)
    tested[voxel_index[engine.tested]] = True

    observed = None
    if engine.null_distribution is not None:
        if correction in ("fwe", "cfwer"):
            side = {"two-sided": np.abs, "greater": lambda a: a, "less": lambda a: -a}[alternative]
            k = v if correction == "cfwer" else 1
            observed = float(np.sort(side(engine.z))[::-1][min(k, engine.z.size) - 1])
        elif correction == "tfce":
            tf = engine.extra_maps["tfce"]
            observed = float(np.max(np.abs(tf))) if tf.size else 0.0
        else:
            observed = float(engine.extra_maps[correction].max(initial=0.0))

    params = {
        "score": score,
        "method": method,
        "covariates": covariates,
        "lesion_volume": lesion_volume,
        "volume_transform": volume_transform,
        "n_permutations": engine.n_permutations,
        "correction": correction,
        "alpha": alpha,
        "v": v,
        "min_lesioned": min_lesioned,
        "min_lesioned_count": engine.min_lesioned,
        "alternative": alternative,
        "random_state": random_state if isinstance(random_state, (int, np.integer)) else None,
    }
    if correction in ("cluster_size", "cluster_mass", "tfce"):
        params.update(
            cluster_forming_p=cluster_forming_p,
            cluster_forming_z=engine.info["cluster_forming_z"],
            connectivity=26,
            tfce_step=engine.info["tfce_step"],
        )
    volume_column = "log10_lesion_volume_ml" if volume_transform == "log" else "lesion_volume_ml"
    provenance = make_provenance(
        seed=seed,
        n_jobs=n_jobs,
        t0=t0,
        packages=("statsmodels", "joblib", "nibabel", "nilearn"),
        n_subjects=len(keep),
        subjects=list(keep),
        n_voxels_tested=int(tested.sum()),
        n_unique_patterns=engine.n_unique_patterns,
        n_non_estimable_voxels=engine.info["n_non_estimable_voxels"],
        null_units="z" if correction in ("fwe", "cfwer") else correction,
        covariate_columns=list(cov.columns) + ([volume_column] if lesion_volume == "covariate" else []),
        score_coding=(
            {"0": float(levels[0]), "1": float(levels[1])} if method == "liebermeister" else None
        ),
        engine={k: engine.info[k] for k in ("batch_size", "n_chunks", "n_workers")},
    )
    extra = dict(engine.extra_maps)
    return VLSMResult.from_arrays(
        affine=cohort.affine,
        shape=cohort.shape,
        tested=tested,
        stat=engine.stat,
        z=engine.z,
        p=engine.p,
        p_corrected=engine.p_corrected,
        significant=engine.significant,
        n_lesioned=n_lesioned,
        threshold=engine.threshold,
        null_distribution=engine.null_distribution,
        params=params,
        provenance=provenance,
        extra_maps=extra,
        observed=observed,
        null_statistic=None if engine.null_distribution is None else _null_statistic(correction, alternative, v),
        excluded=excluded,
    )
