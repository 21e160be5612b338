"""A small VLSMResult on a synthetic cohort's grid, for the plotting and report tests.

The statistics are a plain scipy pooled-variance t-test per voxel (not the lsm engine), so
these tests do not depend on lsm.vlsm; the maps only need to look like a real analysis.
"""

import numpy as np
from scipy import stats

from lsm.results import VLSMResult
from lsm.simulate import make_synthetic_cohort


def synthetic_cohort(n_subjects=60, seed=0):
    return make_synthetic_cohort(n_subjects, random_state=seed)


def synthetic_result(cohort, *, z_threshold=3.5, significant=True, params=None, provenance=None):
    lesions = cohort.lesion_matrix().toarray().astype(bool)
    score = cohort.phenotype["score"].to_numpy(dtype=float)
    n_lesioned = lesions.sum(axis=0)
    tested = (n_lesioned >= 3) & (n_lesioned <= len(score) - 3)
    les = lesions[:, tested]
    t, p = stats.ttest_ind(np.where(les, score[:, None], np.nan),
                           np.where(~les, score[:, None], np.nan), axis=0, nan_policy="omit")
    t, p = np.asarray(t, dtype=float), np.asarray(p, dtype=float)
    z = np.sign(t) * stats.norm.isf(p / 2)
    sig = (np.abs(z) > z_threshold) if significant else np.zeros(z.size, bool)
    null = np.sort(np.abs(np.random.default_rng(0).normal(size=199))) + 2.0
    base_params = {"score": "score", "method": "ttest", "covariates": None, "correction": "fwe",
                   "alpha": 0.05, "alternative": "two-sided", "n_permutations": null.size,
                   "random_state": 0, "min_lesioned": 3, "n_jobs": 1, "lesion_volume": None}
    base_prov = {"n_subjects": len(cohort), "subjects": list(cohort.subjects),
                 "n_voxels_tested": int(tested.sum()), "n_unique_patterns": 99,
                 "numpy": np.__version__, "runtime_s": 0.25, "created": "2026-01-01T00:00:00"}
    base_params.update(params or {})
    base_prov.update(provenance or {})
    return VLSMResult.from_arrays(
        affine=cohort.affine, shape=cohort.shape, tested=tested, stat=t, z=z, p=p,
        p_corrected=np.minimum(p * tested.sum(), 1.0), significant=sig, n_lesioned=n_lesioned,
        threshold=z_threshold, null_distribution=null, params=base_params, provenance=base_prov,
        excluded=[{"subject": "sub-missing01", "reason": "missing score 'score'"}],
    )
