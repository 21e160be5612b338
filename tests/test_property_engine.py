"""Property-based tests of :func:`lsm.vlsm` on random small cohorts (hypothesis).

Random grids, random masks (sparse, dense, full, single-voxel, empty after resampling,
duplicated), random scores (continuous, tied integers, binary, constant, missing,
infinite) and random valid analysis options. Every case must end in a
:class:`~lsm.results.VLSMResult` or a named lsm error
(:class:`~lsm.exceptions.LSMError`), and a result must

- account for every subject (analysed, or excluded with a reason; nobody silently lost),
- test exactly the voxels passing ``min_lesioned`` (recomputed here from the masks),
- carry the right lesion counts, valid p-values and a finite null of the asked length,
- for the t-tests, equal ``scipy.stats.ttest_ind`` at every tested voxel.

The oracles are computed from the masks and the score here, independently of lsm.
"""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from scipy import stats

import lsm
from lsm.cohort import Cohort
from lsm.exceptions import AnalysisError, LSMError

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MASK_KINDS = ("sparse", "dense", "full", "single", "empty", "copy")
SCORE_KINDS = ("continuous", "tied", "binary", "constant")


@st.composite
def analyses(draw):
    shape = tuple(draw(st.lists(st.integers(2, 5), min_size=3, max_size=3)))
    n = draw(st.one_of(st.integers(2, 5), st.integers(8, 24), st.integers(8, 24)))
    kinds = draw(st.lists(st.sampled_from(MASK_KINDS), min_size=n, max_size=n))
    score_kind = draw(st.sampled_from(SCORE_KINDS))
    n_missing = draw(st.sampled_from([0, 0, 0, 1, 2, 3, n]))
    n_inf = 0  # infinite scores: test_infinite_score_is_a_named_error
    method = draw(st.sampled_from(["ttest", "welch", "brunner_munzel", "regression", "liebermeister"]))
    options = {}
    if method == "regression":
        lv = draw(st.sampled_from([None, "covariate", "dtlvc"]))
        if lv:
            options["lesion_volume"] = lv
        if draw(st.booleans()):
            options["covariates"] = ["age"]
    correction = draw(st.sampled_from(["fwe", "cfwer", "fdr_bh", "fdr_by", "none", "cluster_size", "tfce"]))
    if correction == "cfwer":
        options["v"] = draw(st.integers(1, 3))
    min_lesioned = draw(st.one_of(st.integers(2, 4), st.sampled_from([0.05, 0.1, 0.25, 0.4])))
    return {
        "shape": shape,
        "kinds": kinds,
        "score_kind": score_kind,
        "n_missing": n_missing,
        "n_inf": n_inf,
        "method": method,
        "correction": correction,
        "alternative": draw(st.sampled_from(["two-sided", "greater", "less"])),
        "min_lesioned": min_lesioned,
        "n_permutations": draw(st.integers(5, 30)),
        "options": options,
        "seed": draw(st.integers(0, 2**20)),
    }


def build(spec):
    """A Cohort from random masks (flat indices) and a phenotype with the drawn score."""
    rng = np.random.default_rng(spec["seed"])
    shape = spec["shape"]
    size = int(np.prod(shape))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    indices, previous = {}, np.array([0], dtype=np.int32)
    subjects = [f"sub-{i + 1:02d}" for i in range(len(spec["kinds"]))]
    for subject, kind in zip(subjects, spec["kinds"]):
        if kind == "sparse":
            idx = np.flatnonzero(rng.random(size) < 0.2)
        elif kind == "dense":
            idx = np.flatnonzero(rng.random(size) < 0.7)
        elif kind == "full":
            idx = np.arange(size)
        elif kind == "single":
            idx = np.array([rng.integers(size)])
        elif kind == "empty":  # a lesion that vanished on resampling: kept, volume 0
            idx = np.array([], dtype=np.int64)
        else:  # "copy": the same mask as the previous subject
            idx = previous
        indices[subject] = np.sort(idx).astype(np.int32)
        previous = indices[subject]
    n = len(subjects)
    kind = spec["score_kind"]
    if kind == "continuous":
        score = rng.normal(10, 3, n)
    elif kind == "tied":
        score = rng.integers(0, 4, n).astype(float)
    elif kind == "binary":
        score = rng.integers(0, 2, n).astype(float)
    else:
        score = np.full(n, 3.0)
    order = rng.permutation(n)
    score[order[: spec["n_missing"]]] = np.nan
    score[order[spec["n_missing"] : spec["n_missing"] + spec["n_inf"]]] = np.inf
    age = rng.uniform(40, 90, n)
    age[rng.random(n) < 0.15] = np.nan
    pheno = pd.DataFrame({"score": score, "age": age}, index=pd.Index(subjects, name="participant_id"))
    return Cohort(indices, pheno, affine, shape)


def expected_exclusions(cohort, spec):
    """Subject -> reason keyword, from the contract of lsm.vlsm."""
    pheno = cohort.phenotype
    out = {}
    for s in cohort.subjects:
        if np.isnan(pheno.loc[s, "score"]):
            out[s] = "score"
        elif "age" in spec["options"].get("covariates", []) and np.isnan(pheno.loc[s, "age"]):
            out[s] = "covariate"
        elif spec["options"].get("lesion_volume") == "dtlvc" and not cohort.lesion_volumes[s] > 0:
            # dTLVC divides by sqrt(volume); a volume covariate may be 0 (subject kept)
            out[s] = "volume"
    return out


@SETTINGS
@given(spec=analyses())
# found by hypothesis in CI: zero-volume subjects with a volume covariate are analysed
@example(spec={"shape": (2, 2, 2), "kinds": ["sparse"] * 21, "score_kind": "continuous",
               "n_missing": 0, "n_inf": 0, "method": "regression", "correction": "fwe",
               "alternative": "two-sided", "min_lesioned": 2, "n_permutations": 5,
               "options": {"lesion_volume": "covariate"}, "seed": 0})
# equal single-voxel lesions: a volume covariate equal for everyone is collinear with the intercept
@example(spec={"shape": (2, 2, 2), "kinds": ["single"] * 12, "score_kind": "continuous",
               "n_missing": 0, "n_inf": 0, "method": "regression", "correction": "fwe",
               "alternative": "two-sided", "min_lesioned": 2, "n_permutations": 5,
               "options": {"lesion_volume": "covariate"}, "seed": 3})
# whole-grid and empty lesions: lesion status is the volume covariate rescaled in every voxel
@example(spec={"shape": (2, 2, 2), "kinds": ["full", "empty"] * 6, "score_kind": "continuous",
               "n_missing": 0, "n_inf": 0, "method": "regression", "correction": "fwe",
               "alternative": "two-sided", "min_lesioned": 2, "n_permutations": 5,
               "options": {"lesion_volume": "covariate", "covariates": ["age"]}, "seed": 4})
def test_random_analyses_end_in_a_result_or_a_named_error(spec):
    cohort = build(spec)
    excluded = expected_exclusions(cohort, spec)
    analysed = [s for s in cohort.subjects if s not in excluded]
    # bugs fixed earlier, each pinned by its own regression test below
    assume(not (spec["correction"] == "tfce" and spec["score_kind"] in ("binary", "tied")))  # test_tfce_...
    assume(not analysed or _min_count(spec["min_lesioned"], len(analysed)) >= 2)  # test_fraction_min_...
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = lsm.vlsm(
                cohort,
                "score",
                method=spec["method"],
                correction=spec["correction"],
                alternative=spec["alternative"],
                min_lesioned=spec["min_lesioned"],
                n_permutations=spec["n_permutations"],
                random_state=spec["seed"],
                **spec["options"],
            )
    except LSMError as exc:
        event(f"{type(exc).__name__}: {str(exc)[:25]}")
        check_error_is_justified(exc, cohort, spec, analysed)
        return
    event("result")
    assert not expected_errors(cohort, spec, analysed), "a result where an error was due"
    check_result(result, cohort, spec, excluded, analysed)


def _min_count(min_lesioned, n):
    if isinstance(min_lesioned, float):
        return math.ceil(min_lesioned * n - 1e-9)
    return min_lesioned


def _passing(cohort, analysed, count):
    mat = cohort.lesion_matrix(analysed).toarray().astype(bool)
    n_les = mat.sum(axis=0)
    return mat, n_les, (n_les >= count) & (len(analysed) - n_les >= count)


# Each degeneracy the oracle can see -> the words of the error lsm must raise for it.
ERROR_WORDS = {
    "no subject": "No subject",
    "constant score": "constant",
    "not binary": "binary",
    "min_lesioned below 2": "min_lesioned",
    "no voxel": "No voxel",
    "fewer voxels than v": "cfwer",
    "constant covariate": "constant",
    "collinear covariates": "collinear",
    "too few subjects for the model": "Too few subjects",
    "score explained by the covariates": "fully explained",
    "no estimable voxel": "collinear",
}


def _nuisance(cohort, spec, analysed):
    """The regression's nuisance design (intercept, age, lesion volume) on the analysed subjects."""
    options = spec["options"]
    columns = [np.ones(len(analysed))]
    if "age" in options.get("covariates", []):
        columns.append(cohort.phenotype.loc[analysed, "age"].to_numpy(dtype=float))
    if options.get("lesion_volume") == "covariate":
        columns.append(cohort.lesion_volumes[analysed].to_numpy(dtype=float))
    return np.column_stack(columns)


def _residual_fraction(design, x):
    """||x - projection of x on the columns of design||^2 / ||x||^2 (least squares)."""
    fitted = design @ np.linalg.lstsq(design, x, rcond=None)[0]
    return float(np.sum((x - fitted) ** 2) / max(np.sum(x ** 2), 1e-300))


def non_estimable(cohort, spec, analysed, mat, passing):
    """Passing voxels where lesion status (dTLVC-scaled) is a linear function of the nuisance design."""
    out = np.zeros(passing.shape, bool)
    if spec["method"] != "regression":
        return out
    design = _nuisance(cohort, spec, analysed)
    scale = np.ones(len(analysed))
    if spec["options"].get("lesion_volume") == "dtlvc":
        scale = 1.0 / np.sqrt(cohort.lesion_volumes[analysed].to_numpy(dtype=float))
    for v in np.flatnonzero(passing):
        out[v] = _residual_fraction(design, mat[:, v] * scale) < 1e-8
    return out


def expected_errors(cohort, spec, analysed):
    """The degeneracies of this input that make lsm.vlsm raise (empty: a result is due)."""
    if not analysed:
        return ["no subject"]
    y = cohort.phenotype.loc[analysed, "score"].to_numpy()
    reasons = []
    if np.ptp(y) == 0:
        reasons.append("constant score")
    if spec["method"] == "liebermeister" and np.unique(y).size != 2:
        reasons.append("not binary")
    if spec["method"] in ("ttest", "regression"):
        design = _nuisance(cohort, spec, analysed) if spec["method"] == "regression" else np.ones((len(y), 1))
        if design.shape[1] > 1 and np.any(np.ptp(design[:, 1:], axis=0) == 0):
            reasons.append("constant covariate")
        if np.linalg.matrix_rank(design) < design.shape[1]:
            reasons.append("collinear covariates")
        elif len(y) - design.shape[1] - 1 < 1:
            reasons.append("too few subjects for the model")
        elif np.ptp(y) > 0 and _residual_fraction(design, y) < 1e-16:
            reasons.append("score explained by the covariates")
    count = _min_count(spec["min_lesioned"], len(analysed))
    if count < 2:
        return reasons + ["min_lesioned below 2"]
    mat, _, passing = _passing(cohort, analysed, count)
    if not passing.any():
        return reasons + ["no voxel"]
    if not reasons:  # estimability is only checked once the model could be fitted
        testable = passing & ~non_estimable(cohort, spec, analysed, mat, passing)
        if not testable.any():
            reasons.append("no estimable voxel")
        elif spec["correction"] == "cfwer" and testable.sum() < spec["options"]["v"]:
            reasons.append("fewer voxels than v")
    return reasons


def check_error_is_justified(exc, cohort, spec, analysed):
    """A named error must come from a degeneracy the oracle sees, and say which one."""
    msg = str(exc)
    reasons = expected_errors(cohort, spec, analysed)
    assert reasons, f"{type(exc).__name__} without a degenerate input: {msg}"
    assert any(ERROR_WORDS[r] in msg for r in reasons), (reasons, msg)


def check_result(result, cohort, spec, excluded, analysed):
    prov = result.provenance
    # ---- every subject accounted for
    assert prov["subjects"] == analysed
    got_excluded = dict(zip(result.excluded["subject"], result.excluded["reason"]))
    assert set(got_excluded) == set(excluded)
    for subject, keyword in excluded.items():
        assert keyword in got_excluded[subject], (subject, got_excluded[subject])
    assert prov["n_subjects"] + len(result.excluded) == len(cohort)
    # ---- not degenerate
    y = cohort.phenotype.loc[analysed, "score"].to_numpy()
    assert np.all(np.isfinite(y)), "an infinite score was analysed"
    assert np.ptp(y) > 0
    # ---- tested voxels are exactly those passing min_lesioned (unless non-estimable)
    count = _min_count(spec["min_lesioned"], len(analysed))
    assert count >= 2
    mat, n_les, passing = _passing(cohort, analysed, count)
    tested = np.asarray(result.mask_img.dataobj).reshape(-1).astype(bool)
    n_non_estimable = prov.get("n_non_estimable_voxels", 0)
    assert not (tested & ~passing).any()
    np.testing.assert_array_equal(passing & ~tested, non_estimable(cohort, spec, analysed, mat, passing))
    assert (passing & ~tested).sum() == n_non_estimable
    np.testing.assert_array_equal(np.asarray(result.n_lesioned.dataobj).reshape(-1), n_les)
    # ---- maps: finite, p in [0, 1], untested voxels neutral, significance = p_corr <= alpha
    stat = result.stat.get_fdata().reshape(-1)
    z = result.z.get_fdata().reshape(-1)
    p = result.p.get_fdata().reshape(-1)
    pc = result.p_corrected.get_fdata().reshape(-1)
    sig = np.asarray(result.significant.dataobj).reshape(-1).astype(bool)
    # never NaN; +-inf is the limit of a t whose groups are both constant (perfect
    # separation by a binary score), a legitimate value
    for name, arr in (("stat", stat), ("z", z), ("p", p), ("p_corrected", pc)):
        assert not np.isnan(arr).any(), name
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(pc))
    assert np.all((p >= 0) & (p <= 1)) and np.all((pc >= 0) & (pc <= 1))
    assert np.all(stat[~tested] == 0) and np.all(p[~tested] == 1) and not sig[~tested].any()
    if spec["correction"] in ("fwe", "cfwer", "cluster_size", "tfce"):
        null = np.asarray(result.null_distribution)
        assert null.shape == (spec["n_permutations"],)
        assert not np.isnan(null).any()
        assert np.all(pc[tested] >= 1.0 / (spec["n_permutations"] + 1) - 1e-12)
    if spec["correction"] != "cluster_size":
        np.testing.assert_array_equal(sig[tested], pc[tested] <= 0.05)
    # ---- the statistic itself, against scipy (t-tests)
    if spec["method"] in ("ttest", "welch"):
        for v in np.flatnonzero(tested):
            les, spared = y[mat[:, v]], y[~mat[:, v]]
            ref = stats.ttest_ind(les, spared, equal_var=spec["method"] == "ttest")
            if np.isfinite(ref.statistic):
                assert stat[v] == pytest.approx(ref.statistic, rel=1e-8, abs=1e-10), v
            elif np.isinf(ref.statistic):
                assert stat[v] == ref.statistic, v


# ------------------------------------------------------------ regressions, by hand
def test_infinite_score_is_a_named_error():
    """An infinite score (e.g. "inf" typed in a table) must be a named lsm error that
    names the subject, not a bare ValueError from inside the engine."""
    spec = {
        "shape": (3, 3, 3), "kinds": ["sparse", "dense"] * 5, "score_kind": "continuous",
        "n_missing": 0, "n_inf": 1, "seed": 1,
    }
    cohort = build(spec)
    bad = cohort.phenotype.index[np.isinf(cohort.phenotype["score"])][0]
    with pytest.raises(LSMError, match=bad):
        lsm.vlsm(cohort, "score", min_lesioned=2, n_permutations=10, random_state=0)


def test_fraction_min_lesioned_below_two_subjects_is_an_analysis_error():
    """min_lesioned=0.05 on 10 subjects means 1 subject: a data-size problem, so an
    AnalysisError (a ValueError subclass) rather than a bare ValueError."""
    spec = {"shape": (3, 3, 3), "kinds": ["sparse", "dense"] * 5, "score_kind": "continuous",
            "n_missing": 0, "n_inf": 0, "seed": 2}
    cohort = build(spec)
    with pytest.raises(AnalysisError, match="min_lesioned"):
        lsm.vlsm(cohort, "score", min_lesioned=0.05, n_permutations=10, random_state=0)


def test_tfce_with_perfectly_separating_permutations():
    """A binary score on few subjects: some permutations separate the groups perfectly,
    so t = +-inf; TFCE must still give a result (it raised OverflowError when
    integrating up to an infinite height)."""
    shape = (2, 1, 1)
    les = {f"sub-{i}": np.array([0], np.int32) if i < 4 else np.array([], np.int32) for i in range(8)}
    for i in (0, 1, 4, 5):
        les[f"sub-{i}"] = np.union1d(les[f"sub-{i}"], [1]).astype(np.int32)
    score = np.array([0, 0, 1, 1, 0, 1, 0, 1], float)
    pheno = pd.DataFrame({"score": score}, index=pd.Index(list(les), name="participant_id"))
    cohort = Cohort(les, pheno, np.eye(4), shape)
    res = lsm.vlsm(cohort, "score", correction="tfce", min_lesioned=2, n_permutations=20, random_state=0)
    assert not np.isnan(res.null_distribution).any()
    assert np.all(np.isfinite(res.p_corrected.get_fdata()))
