"""Multivariate lesion-symptom mapping by support vector regression on a cohort.

:func:`svr_lsm` selects the analysable subjects, builds the sparse lesion matrix of the
voxels passing ``min_lesioned``, runs the array-only engine :func:`lsm.stats.svr_test`
and wraps its arrays into an :class:`~lsm.SVRLSMResult` on the cohort grid.
"""

import logging
import time
import warnings

import numpy as np
import pandas as pd

from ._docs import fill_doc
from ._result import excluded_frame, make_provenance
from ._validation import (
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
from ._vlsm import _candidate_matrix, _covariate_frame, _numeric
from .exceptions import AnalysisError, LSMWarning, PhenotypeError, SpaceError

__all__ = ["svr_lsm", "SVR_LESION_VOLUME"]

logger = logging.getLogger("lsm")

#: Lesion-volume controls of SVR-LSM (DeMarco & Turkeltaub 2018; LESYMAP).
SVR_LESION_VOLUME = (None, "dtlvc", "covariate", "lesion", "both", "dtlvc+covariate")
_DTLVC = ("dtlvc", "dtlvc+covariate")
_SCORE_VOLUME = ("covariate", "both", "dtlvc+covariate")
_LESION_VOLUME = ("lesion", "both")


def check_svr_options(kernel, correction, alternative, lesion_volume, covariates, volume_transform):
    """Check the options of :func:`svr_lsm` that need no data; return the covariates as a list."""
    from .stats._svr import SVR_CORRECTIONS, SVR_KERNELS

    check_option("kernel", kernel, SVR_KERNELS)
    check_option("correction", correction, SVR_CORRECTIONS)
    check_option("alternative", alternative, ALTERNATIVES)
    check_lesion_volume(lesion_volume, allowed=SVR_LESION_VOLUME)
    check_volume_transform(volume_transform)
    return as_column_list(covariates, "covariates")


def _select_subjects(cohort, score, covariates, lesion_volume, volume_transform):
    """Analysed subjects, score, covariate matrix, volumes (ml) and the exclusion table."""
    phenotype = cohort.phenotype.loc[list(cohort.subjects)]
    if score not in phenotype.columns:
        raise PhenotypeError(f"Score column {score!r} is not in the phenotype; available columns: "
                             f"{list(phenotype.columns)}.")
    y = _numeric(phenotype[score], score, "score")
    cov = _covariate_frame(phenotype, covariates)
    volumes = pd.Series(np.asarray(cohort.lesion_volumes, dtype=np.float64), index=phenotype.index)
    voxels = cohort.lesion_voxel_counts.reindex(phenotype.index)
    needs_volume = volume_transform == "log" and lesion_volume not in (None, "dtlvc")
    excluded, keep = [], []
    for subject in phenotype.index:
        missing = [c for c in cov.columns if not np.isfinite(cov.at[subject, c])]
        if not np.isfinite(y[subject]):
            reason = f"missing score {score!r}"
        elif missing:
            reason = f"missing covariate {', '.join(sorted({repr(c.split('[')[0]) for c in missing}))}"
        elif lesion_volume in _DTLVC and not voxels[subject] > 0:
            # 1 / sqrt(0): an empty mask, or a lesion that vanished when resampled to this grid
            reason = f"zero lesion volume on the analysis grid (lesion_volume={lesion_volume!r})"
        elif needs_volume and not volumes[subject] > 0:
            reason = "zero lesion volume (volume_transform='log')"
        else:
            keep.append(subject)
            continue
        excluded.append((subject, reason))
    if len(keep) < 4:
        raise AnalysisError(f"Only {len(keep)} subject(s) left to analyse {score!r} after exclusions "
                            f"(first reasons: {[r for _, r in excluded[:3]]}); SVR-LSM needs more.")
    if excluded and cov.shape[1]:
        cov = _covariate_frame(phenotype.loc[keep], covariates)  # levels of the analysed subjects
    cov_matrix = cov.loc[keep].to_numpy(dtype=np.float64) if cov.shape[1] else None
    return keep, y[keep].to_numpy(), cov_matrix, list(cov.columns), volumes[keep].to_numpy(), excluded


@fill_doc
def svr_lsm(
    cohort,
    score,
    *,
    C=30.0,
    gamma=5.0,
    epsilon=0.1,
    kernel="rbf",
    standardize=False,
    score_range=100.0,
    lesion_volume="both",
    volume_transform="linear",
    covariates=None,
    n_permutations=5000,
    correction="fwe",
    alpha=0.05,
    v=1,
    cluster_forming_p=0.005,
    min_lesioned=0.05,
    alternative="two-sided",
    cv_search=None,
    tol=1e-3,
    max_memory=4.0,
    n_jobs=1,
    random_state=None,
    verbose=0,
):
    """Multivariate lesion-symptom mapping by support vector regression (SVR-LSM).

    The method of Zhang et al. (2014) as the SVR-LSM GUI (DeMarco & Turkeltaub 2018)
    runs it: an epsilon-SVR of the score on all lesion vectors at once, whose weights
    are back-projected into voxel space (``beta = sum_i alpha_i x_i``), then tested by
    permutation of the score. Report it beside the voxel-wise map of :func:`lsm.vlsm`:
    with the published settings the kernel is often near-diagonal and ``beta`` then
    behaves almost like a voxel-wise statistic; it does not by itself correct the
    misplacement of lesion-symptom maps.

    Parameters
    ----------
    cohort : Cohort
        Lesion masks and phenotype on a common grid (``space="MNI"``).
    %(score)s
    C : float, default=30.0
        SVR cost (Zhang et al. 2014; the GUI's default).
    gamma : float, default=5.0
        RBF width in libsvm's convention, ``K(x_i, x_j) = exp(-gamma * ||x_i - x_j||^2)``,
        as Zhang et al. (2014) and the GUI's libsvm option. MATLAB's ``KernelScale``
        sigma means ``exp(-||x_i - x_j||^2 / sigma^2)``, i.e. ``gamma = 1 / sigma^2``:
        the GUI's current ``sigma = 1 / sqrt(5) = 0.447`` is ``gamma = 5``, while its
        early versions set ``sigma = sqrt(1 / (2 * gamma)) = 0.316``, i.e. ``gamma = 10``
        here: pass ``gamma=10`` to reproduce maps made that way. The value used is
        recorded in ``params["gamma"]``.
    epsilon : float, default=0.1
        Half-width of the insensitive tube, in units of the (processed) score.
    kernel : {"rbf", "linear"}, default="rbf"
    standardize : bool, default=False
        z-score every voxel column of the (processed) lesion data, standard deviation
        with ``n - 1``: the SVR-LSM GUI's default ``Standardize`` option and LESYMAP's
        scaling. With binary lesion maps the RBF kernel then comes close to the
        identity, and beta close to a voxel-wise statistic. False keeps the lesion values (binary,
        or dTLVC-scaled, or volume-residualised).
    score_range : float or None, default=100.0
        The score, after the nuisance variables are regressed out, is rescaled to this
        range before the fit: Zhang et al. (2014) and the GUI rescale it to 0-100, the
        scale their ``C`` and ``epsilon`` refer to (the GUI's code adds the minimum
        where it means to subtract it, so it matches exactly when the minimum is 0; a
        shift of the score only moves the SVR intercept). None keeps score units.
    %(lesion_volume_multivariate)s
    %(volume_transform)s
    covariates : str or list of str, optional
        Phenotype columns regressed out of the score with lesion volume (the GUI's
        nuisance model); text columns are dummy-coded.
    %(n_permutations)s
    correction : {"fwe", "cfwer", "cluster_size"}, default="fwe"
        ``"fwe"``: maximum over voxels of the standardised beta (each voxel's beta over
        its standard deviation across the observed and the permuted maps). ``"cfwer"``: its v-th
        largest. ``"cluster_size"``: clusters (26-connectivity) of voxels whose
        uncorrected p (per tail, from the voxel's own null) is below
        ``cluster_forming_p``, the GUI's scheme; every permuted map is thresholded the
        same way, against the other maps. An uncorrected map alone is never
        given; ``p`` holds the uncorrected p-values beside the corrected ones.
    %(alpha)s
    v : int, default=1
        CFWER: number of voxels allowed to be false positives.
    cluster_forming_p : float, default=0.005
        Uncorrected p forming clusters (per tail when two-sided); the GUI's default.
    %(min_lesioned)s
    %(alternative)s
    cv_search : dict, optional
        ``{"C": [...], "gamma": [...]}``: choose ``C`` and ``gamma`` by 5-fold
        cross-validation (R^2) on the precomputed kernel before the analysis; the
        choice and the table are recorded in ``provenance``. The permutation null does
        not repeat the search.
    tol : float, default=1e-3
        Stopping tolerance of the SVR solver (libsvm's and scikit-learn's default).
        The solution is only determined up to it: scores differing in their last bits
        can give betas differing by about ``tol`` (relative).
    max_memory : float, default=4.0
        GB the analysis may hold (kernel, stored dual coefficients, null blocks),
        estimated before anything large is built; above it, an AnalysisError.
    %(n_jobs)s
    %(random_state)s
    %(verbose)s

    Returns
    -------
    result : SVRLSMResult

    Notes
    -----
    Lesion data are binary and, unless ``standardize=True``, no voxel is z-scored. Only
    the voxels passing ``min_lesioned`` enter the model, as the GUI's minimum-overlap
    mask does. The kernel is built once
    from the sparse Gram matrix ``X X^T`` of the unique lesion patterns and every
    processing step (dTLVC, volume regressed out of the lesion data) is applied to it,
    so no dense lesion matrix is ever built; each permutation refits the dual problem
    only. References: Zhang Y, et al. Hum Brain Mapp 35:5861 (2014); DeMarco AT,
    Turkeltaub PE. Hum Brain Mapp 39:4169 (2018).
    """
    t0 = time.perf_counter()
    from ._svr_result import SVRLSMResult
    from .stats._svr import svr_cv_search, svr_test

    covariates = check_svr_options(kernel, correction, alternative, lesion_volume, covariates, volume_transform)
    alpha = check_alpha(alpha)
    cluster_forming_p = check_alpha(cluster_forming_p, "cluster_forming_p")
    n_permutations = check_n_permutations(n_permutations)
    n_jobs = check_n_jobs(n_jobs)
    check_min_lesioned(min_lesioned)
    if not isinstance(score, str):
        raise TypeError(f"score must be the name of a phenotype column, got {score!r}.")
    if getattr(cohort, "space", "MNI") != "MNI":
        raise SpaceError(f"SVR-LSM needs masks in a common standard space, but this cohort is in "
                         f"{cohort.space!r} space: register the masks to MNI first.")
    if cv_search is not None and not isinstance(cv_search, dict):
        raise TypeError(f"cv_search must be None or a dict {{'C': [...], 'gamma': [...]}}, got {cv_search!r}.")
    seed, rng = resolve_seed(random_state)

    keep, y, cov, cov_names, volume_ml, excluded = _select_subjects(
        cohort, score, covariates, lesion_volume, volume_transform)
    vol = np.log10(volume_ml) if volume_transform == "log" else volume_ml
    lesion_scale = None
    if lesion_volume in _DTLVC:
        voxels = cohort.lesion_voxel_counts.loc[keep].to_numpy(dtype=np.float64)
        lesion_scale = 1.0 / np.sqrt(voxels)  # unit-norm lesion vectors
    score_nuisance = None
    if lesion_volume in _SCORE_VOLUME or cov is not None:
        parts = ([cov] if cov is not None else []) + ([vol[:, None]] if lesion_volume in _SCORE_VOLUME else [])
        score_nuisance = np.column_stack(parts)
    lesion_nuisance = vol[:, None] if lesion_volume in _LESION_VOLUME else None

    lesions, voxel_index, n_lesioned = _candidate_matrix(cohort, keep, min_lesioned)
    common = dict(kernel=kernel, epsilon=epsilon, tol=tol, standardize=bool(standardize), score_range=score_range,
                  lesion_scale=lesion_scale,
                  score_nuisance=score_nuisance, lesion_nuisance=lesion_nuisance)
    cv_best = cv_table = None
    if cv_search is not None:
        if voxel_index.size == 0:
            raise AnalysisError(f"No voxel passes min_lesioned={min_lesioned!r}: nothing to cross-validate.")
        cv_best, cv_table = svr_cv_search(lesions, y, cv_search, random_state=rng, **common)
        C = cv_best["C"]
        gamma = gamma if cv_best["gamma"] is None else cv_best["gamma"]
    engine = svr_test(lesions, y, C=C, gamma=gamma, n_permutations=n_permutations, correction=correction,
                      alpha=alpha, v=v, alternative=alternative, min_lesioned=min_lesioned,
                      grid_shape=cohort.shape, voxel_index=voxel_index, cluster_forming_p=cluster_forming_p,
                      max_memory=max_memory, n_jobs=n_jobs, random_state=rng, verbose=verbose, **common)
    info = engine.info
    if info["near_diagonal_kernel"]:
        warnings.warn(
            f"The SVR kernel is near-diagonal (mean off-diagonal {info['kernel_mean_off_diagonal']:.3g} vs "
            f"diagonal {info['kernel_mean_diagonal']:.3g}; kernel={kernel!r}, gamma={gamma}): each subject is "
            "almost only similar to itself, so beta is close to a voxel-wise (mass-univariate) statistic "
            "and adds little multivariate information. Report it beside the voxel-wise map; a smaller "
            "gamma or lesion_volume='dtlvc' gives a less diagonal RBF kernel.", LSMWarning, stacklevel=2)

    tested = np.zeros(n_lesioned.size, dtype=bool)
    tested[voxel_index[engine.tested]] = True
    peak = np.abs(engine.beta).max(initial=0.0)
    maps = {"beta": engine.beta, "beta_scaled": 10.0 * engine.beta / peak if peak > 0 else engine.beta,
            "z": engine.z, "p": engine.p, "p_corrected": engine.p_corrected, "significant": engine.significant}
    params = {
        "score": score, "method": "svr", "kernel": kernel, "C": float(C), "gamma": float(gamma),
        "gamma_convention": "libsvm: exp(-gamma * ||x_i - x_j||^2)", "epsilon": float(epsilon),
        "standardize": bool(standardize), "score_range": score_range,
        "tol": float(tol), "lesion_volume": lesion_volume, "volume_transform": volume_transform,
        "covariates": covariates, "n_permutations": n_permutations, "correction": correction, "alpha": alpha,
        "v": int(v) if correction == "cfwer" else 1, "alternative": alternative,
        "cluster_forming_p": cluster_forming_p, "min_lesioned": min_lesioned,
        "min_lesioned_count": engine.min_lesioned, "cv_search": cv_search, "random_state": seed,
        "n_jobs": n_jobs,
    }
    null_statistic = ("max_cluster_size_voxels" if correction == "cluster_size" else
                      ("max" if correction == "fwe" else f"v{v}th_largest") + "_standardised_beta")
    provenance = make_provenance(
        seed=seed, n_jobs=n_jobs, t0=t0, n_subjects=len(keep), subjects=list(keep),
        n_voxels_tested=int(tested.sum()), n_unique_patterns=engine.n_unique_patterns,
        n_support_vectors=info["n_support_vectors"], intercept=engine.intercept,
        kernel_mean_diagonal=info["kernel_mean_diagonal"],
        kernel_mean_off_diagonal=info["kernel_mean_off_diagonal"],
        near_diagonal_kernel=info["near_diagonal_kernel"], null_statistic=null_statistic,
        score_nuisance_columns=cov_names + (["lesion_volume"] if lesion_volume in _SCORE_VOLUME else []),
        lesion_scale="1/sqrt(lesioned voxels)" if lesion_scale is not None else None,
        memory_estimate_bytes=info["memory_estimate_bytes"], cv_best=cv_best, cv_table=cv_table,
        timings={k: info[k] for k in ("kernel_s", "fit_s", "permutations_s", "seconds_per_permutation",
                                      "null_maps_s")},
    )
    return SVRLSMResult.from_arrays(
        affine=cohort.affine, shape=cohort.shape, tested=tested, maps=maps, n_lesioned=n_lesioned,
        extra_maps=engine.extra_maps, threshold=engine.threshold, null_distribution=engine.null_distribution,
        params=params, provenance=provenance, excluded=excluded_frame(excluded))
