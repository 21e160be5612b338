"""lsm.vlsm on Cohorts: subject selection, options, provenance and recovery of known effects."""

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats as ss
import statsmodels.api as sm

import lsm
from lsm.exceptions import AnalysisError, PhenotypeError, SpaceError
from lsm.simulate import make_synthetic_cohort
from lsm.stats import voxelwise_test


@pytest.fixture(scope="module")
def cohort():
    return make_synthetic_cohort(70, effect_size=1.5, random_state=0)


def _flat(img):
    return np.asarray(img.dataobj).reshape(-1)


def test_vlsm_wraps_the_engine(cohort):
    res = lsm.vlsm(cohort, "score", n_permutations=50, random_state=3, min_lesioned=0.1)
    y = cohort.phenotype["score"].to_numpy(float)
    eng = voxelwise_test(cohort.lesion_matrix(), y, n_permutations=50, random_state=3,
                         min_lesioned=0.1)
    tested = _flat(res.mask_img).astype(bool)
    np.testing.assert_array_equal(tested, eng.tested)
    np.testing.assert_array_equal(_flat(res.stat)[tested], eng.stat)
    np.testing.assert_array_equal(_flat(res.p_corrected)[tested], eng.p_corrected)
    np.testing.assert_array_equal(res.null_distribution, eng.null_distribution)
    np.testing.assert_array_equal(_flat(res.n_lesioned), eng.n_lesioned)
    prov = res.provenance
    assert prov["n_subjects"] == len(cohort) and res.excluded.empty
    assert list(res.excluded.columns) == ["subject", "reason"]
    assert prov["random_state"] == 3 and res.params["min_lesioned"] == 0.1
    assert prov["n_voxels_tested"] == eng.tested.sum()
    assert prov["n_unique_patterns"] == eng.n_unique_patterns < eng.tested.sum()
    assert res.params["min_lesioned_count"] == int(np.ceil(0.1 * len(cohort)))
    assert res.params["random_state"] == 3 and res.threshold == eng.threshold
    assert {"numpy", "scipy", "nibabel", "nilearn", "lsm"} <= set(prov["versions"])


@pytest.mark.parametrize("correction", ["cluster_mass", "cfwer"])
def test_vlsm_never_builds_the_full_lesion_matrix(cohort, monkeypatch, correction):
    # Only the columns passing min_lesioned are built (memory at 1 mm); the result is
    # bit-identical to the engine on the full matrix, clusters placed on the same grid.
    y = cohort.phenotype["score"].to_numpy(float)
    args = dict(correction=correction, v=4, n_permutations=20, random_state=5, min_lesioned=6)
    eng = voxelwise_test(cohort.lesion_matrix(), y, grid_shape=cohort.shape, **args)

    def refuse(*_, **__):
        raise AssertionError("the full lesion matrix was built")

    monkeypatch.setattr(type(cohort), "lesion_matrix", refuse)
    res = lsm.vlsm(cohort, "score", **args)
    tested = _flat(res.mask_img).astype(bool)
    np.testing.assert_array_equal(tested, eng.tested)
    np.testing.assert_array_equal(_flat(res.n_lesioned), eng.n_lesioned)
    for name in ("stat", "z", "p", "p_corrected"):
        np.testing.assert_array_equal(_flat(getattr(res, name))[tested], getattr(eng, name))
    np.testing.assert_array_equal(res.null_distribution, eng.null_distribution)
    assert res.provenance["n_unique_patterns"] == eng.n_unique_patterns


def test_planted_effect_is_recovered(cohort):
    res = lsm.vlsm(cohort, "score", n_permutations=200, random_state=0)
    truth = np.asarray(cohort.metadata["truth_mask"], dtype=bool)
    z = np.asarray(res.z.dataobj)
    peak = np.unravel_index(np.argmax(z), z.shape)
    # The peak lies in the planted region or touches it (lesions are large spheres).
    lo = np.maximum(np.array(peak) - 1, 0)
    assert truth[lo[0] : peak[0] + 2, lo[1] : peak[1] + 2, lo[2] : peak[2] + 2].any()
    assert z[peak] > 0  # higher score when lesioned: positive statistic
    assert res.n_significant > 0


def test_missing_scores_and_covariates_are_excluded_and_listed():
    c = make_synthetic_cohort(40, random_state=1)
    subs = c.subjects
    c.phenotype.loc[subs[:3], "score"] = np.nan
    c.phenotype.loc[subs[3:5], "age"] = np.nan
    res = lsm.vlsm(c, "score", method="regression", covariates=["age"], n_permutations=20,
                   random_state=0, min_lesioned=3)
    excluded = dict(zip(res.excluded["subject"], res.excluded["reason"]))
    assert set(excluded) == set(subs[:5])
    assert all("missing score 'score'" == excluded[s] for s in subs[:3])
    assert all("age" in excluded[s] for s in subs[3:5])
    assert res.provenance["subjects"] == subs[5:]
    assert res.provenance["n_subjects"] == 35


def test_all_subjects_excluded_is_an_error():
    c = make_synthetic_cohort(20, random_state=2)
    c.phenotype["score"] = np.nan
    with pytest.raises(AnalysisError, match="No subject left"):
        lsm.vlsm(c, "score", n_permutations=10)


def test_degenerate_inputs(cohort):
    c = copy.deepcopy(cohort)
    c.phenotype["score"] = 4.0
    with pytest.raises(AnalysisError, match="constant"):
        lsm.vlsm(c, "score", n_permutations=10)
    with pytest.raises(AnalysisError, match="No voxel has at least"):
        lsm.vlsm(cohort, "score", n_permutations=10, min_lesioned=0.49)
    with pytest.raises(ValueError, match="at least 2 lesioned"):
        lsm.vlsm(cohort, "score", n_permutations=10, min_lesioned=1)
    with pytest.raises(PhenotypeError, match="not in the phenotype"):
        lsm.vlsm(cohort, "nope", n_permutations=10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "ttest", "covariates": ["age"]}, "only supported with method='regression'"),
        ({"method": "brunner_munzel", "lesion_volume": "dtlvc"}, "only supported with method='regression'"),
        ({"method": "welch", "lesion_volume": "covariate"}, "only supported with method='regression'"),
        ({"lesion_volume": "log"}, "'lesion_volume'"),
        ({"method": "anova"}, "'method'"),
        ({"correction": "holm"}, "'correction'"),
        ({"alternative": "two_sided"}, "'alternative'"),
    ],
)
def test_invalid_combinations_are_refused(cohort, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lsm.vlsm(cohort, "score", n_permutations=10, **kwargs)


def test_native_space_is_refused(cohort):
    c = copy.copy(cohort)
    c.space = "native"
    with pytest.raises(SpaceError, match="native"):
        lsm.vlsm(c, "score", n_permutations=10)


def _ols_t(y, x, covs):
    return sm.OLS(y, sm.add_constant(np.column_stack([x] + covs))).fit().tvalues[1]


def test_regression_with_categorical_covariate_matches_statsmodels(cohort):
    res = lsm.vlsm(cohort, "score", method="regression", covariates=["age", "sex"],
                   correction="none", min_lesioned=5)
    les = cohort.lesion_matrix().toarray()
    ph = cohort.phenotype
    y = ph["score"].to_numpy(float)
    sex = (ph["sex"].astype(str) == sorted(ph["sex"].astype(str).unique())[1]).to_numpy(float)
    tested = np.flatnonzero(_flat(res.mask_img))
    stat = _flat(res.stat)
    for j in tested[:: max(1, tested.size // 15)]:
        ref = _ols_t(y, les[:, j], [ph["age"].to_numpy(float), sex])
        np.testing.assert_allclose(stat[j], ref, rtol=1e-8)
    assert res.provenance["covariate_columns"][0] == "age"


def test_constant_covariate_is_named():
    c = make_synthetic_cohort(30, random_state=4)
    c.phenotype["centre"] = 2.0
    c.phenotype.loc[c.subjects[0], "centre"] = 3.0  # differs only for an excluded subject
    c.phenotype.loc[c.subjects[0], "score"] = np.nan
    with pytest.raises(AnalysisError, match=r"\['centre'\] are constant across the 29"):
        lsm.vlsm(c, "score", method="regression", covariates=["age", "centre"],
                 correction="none", min_lesioned=3)


@pytest.mark.parametrize("only_excluded", ["C", "A0"])
def test_categorical_levels_of_excluded_subjects_are_not_coded(only_excluded):
    # A level carried only by subjects without a score (a new level, or the first level,
    # the reference) must not enter the model as an all-zero or all-one dummy.
    c = make_synthetic_cohort(40, random_state=1)
    subs = c.subjects
    c.phenotype["site"] = ["A", "B"] * 20
    c.phenotype.loc[subs[:2], "site"] = only_excluded
    c.phenotype.loc[subs[:2], "score"] = np.nan
    res = lsm.vlsm(c, "score", method="regression", covariates=["site"], correction="none",
                   min_lesioned=3)
    assert res.provenance["covariate_columns"] == ["site[B]"]
    kept = subs[2:]
    les = c.lesion_matrix(subjects=kept).toarray()
    ph = c.phenotype.loc[kept]
    y = ph["score"].to_numpy(float)
    site_b = (ph["site"] == "B").to_numpy(float)
    tested = np.flatnonzero(_flat(res.mask_img))
    stat = _flat(res.stat)
    for j in tested[:: max(1, tested.size // 10)]:
        np.testing.assert_allclose(stat[j], _ols_t(y, les[:, j], [site_b]), rtol=1e-8)


def _check_volume_control(res, les, y, vol, mode):
    """Sampled tested voxels equal statsmodels with the volume covariate or dTLVC scaling."""
    tested = np.flatnonzero(_flat(res.mask_img))
    stat = _flat(res.stat)
    for j in tested[:: max(1, tested.size // 15)]:
        if mode == "covariate":
            ref = _ols_t(y, les[:, j], [vol])
        else:
            ref = _ols_t(y, les[:, j] / np.sqrt(vol), [])
        np.testing.assert_allclose(stat[j], ref, rtol=1e-8)


@pytest.mark.parametrize("mode", ["covariate", "dtlvc"])
def test_lesion_volume_control_matches_statsmodels(cohort, mode):
    res = lsm.vlsm(cohort, "score", method="regression", lesion_volume=mode,
                   correction="none", min_lesioned=5)
    les = cohort.lesion_matrix().toarray().astype(float)
    y = cohort.phenotype["score"].to_numpy(float)
    vol = cohort.lesion_volumes.to_numpy(float)
    _check_volume_control(res, les, y, vol, mode)


@pytest.mark.parametrize("mode", ["covariate", "dtlvc"])
def test_subject_without_lesion_and_lesion_volume_control(mode):
    # A lesion volume of 0 is a valid covariate value; only dTLVC (1 / sqrt(volume))
    # must exclude the subject, and say why.
    c = make_synthetic_cohort(40, random_state=3)
    empty = c.subjects[4]
    c._indices[empty] = np.zeros(0, dtype=np.int64)
    c._native_volumes[empty] = 0.0
    res = lsm.vlsm(c, "score", method="regression", lesion_volume=mode, correction="none",
                   min_lesioned=3)
    excluded = dict(zip(res.excluded["subject"], res.excluded["reason"]))
    kept = [s for s in c.subjects if mode == "covariate" or s != empty]
    assert res.provenance["subjects"] == kept
    assert (empty in excluded) == (mode == "dtlvc")
    if mode == "dtlvc":
        assert "zero lesion volume" in excluded[empty]
    les = c.lesion_matrix(subjects=kept).toarray().astype(float)
    y = c.phenotype.loc[kept, "score"].to_numpy(float)
    vol = c.lesion_volumes.loc[kept].to_numpy(float)
    _check_volume_control(res, les, y, vol, mode)


def test_liebermeister_on_a_dichotomised_score(cohort):
    c = copy.deepcopy(cohort)
    c.phenotype["poor"] = (c.phenotype["mrs"] > 2).astype(float)
    res = lsm.vlsm(c, "poor", method="liebermeister", n_permutations=50, random_state=0)
    assert res.provenance["score_coding"] == {"0": 0.0, "1": 1.0}
    with pytest.raises(AnalysisError, match="binary score"):
        lsm.vlsm(c, "mrs", method="liebermeister", n_permutations=10)


def test_seed_is_drawn_and_recorded_when_none(cohort):
    a = lsm.vlsm(cohort, "score", n_permutations=30)
    seed = a.provenance["random_state"]
    assert isinstance(seed, int) and a.params["random_state"] is None
    b = lsm.vlsm(cohort, "score", n_permutations=30, random_state=seed)
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    # A numpy integer seed (e.g. read from a table) is recorded like an int.
    c = lsm.vlsm(cohort, "score", n_permutations=30, random_state=np.int64(seed))
    assert c.params["random_state"] == seed and type(c.params["random_state"]) is int
    np.testing.assert_array_equal(a.null_distribution, c.null_distribution)


@pytest.mark.parametrize("correction", ["cfwer", "fdr_bh", "cluster_size", "tfce", "none"])
def test_every_correction_builds_a_result(cohort, correction):
    res = lsm.vlsm(cohort, "score", correction=correction, n_permutations=20, v=10,
                   random_state=0)
    p_corr = _flat(res.p_corrected)
    assert np.all((p_corr >= 0) & (p_corr <= 1))
    np.testing.assert_array_equal(_flat(res.significant).astype(bool), p_corr <= 0.05)
    if correction in ("fdr_bh", "none"):
        assert res.null_distribution is None and res.null_statistic is None
    else:
        assert res.null_distribution.shape == (20,) and res.observed is not None
    if correction == "tfce":
        assert "tfce" in res.extra_maps


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_lesymap_truth_parcel_is_recovered(shared_data_dir):
    import nibabel as nib

    from lsm.datasets import load_lesymap_example

    cohort = load_lesymap_example(data_dir=shared_data_dir)  # 1 mm, 131 subjects
    parcels_img = nib.load(shared_data_dir / "lesymap" / "template" / "Parcellation_403areas.nii.gz")
    assert parcels_img.shape == cohort.shape and np.allclose(parcels_img.affine, cohort.affine)
    parcels = np.asarray(parcels_img.dataobj).astype(int).reshape(-1)
    y = cohort.phenotype["score"].to_numpy(float)
    # Which parcel drives the score? The one whose lesion load correlates most negatively
    # with it (LESYMAP simulated the score from the lesion load of parcel 101).
    les = cohort.lesion_matrix().tocsc()
    inside = np.flatnonzero(parcels > 0)
    labels, col = np.unique(parcels[inside], return_inverse=True)
    member = sp.csr_matrix((np.ones(inside.size), (inside, col)), shape=(parcels.size, labels.size))
    load = np.asarray((les @ member).todense()) / np.asarray(member.sum(0))
    r = np.array([np.corrcoef(load[:, k], y)[0, 1] if load[:, k].std() > 0 else 0
                  for k in range(labels.size)])
    truth = labels[np.argmin(r)]
    assert truth == 101 == cohort.metadata["truth_label"]

    for method in ("ttest", "brunner_munzel"):
        res = lsm.vlsm(cohort, "score", method=method, correction="none", min_lesioned=0.1)
        z = _flat(res.z)
        peak = np.argmin(z)  # more load, lower score: the truth has negative statistics
        assert parcels[peak] == truth, method


def test_soop_brunner_munzel_matches_scipy_on_real_ties(soop_nihss_2mm):
    cohort = soop_nihss_2mm
    res = lsm.vlsm(cohort, "nihss", method="brunner_munzel", correction="none")
    les = cohort.lesion_matrix().tocsc()
    y = cohort.phenotype["nihss"].to_numpy(float)
    tested = np.flatnonzero(_flat(res.mask_img))
    stat = _flat(res.stat)
    rng = np.random.default_rng(0)
    for j in rng.choice(tested, 40, replace=False):
        x = les[:, j].toarray().ravel() > 0
        ref = ss.brunnermunzel(y[~x], y[x]).statistic
        np.testing.assert_allclose(stat[j], ref, rtol=1e-8)
    assert res.params["min_lesioned_count"] == int(np.ceil(0.05 * len(cohort)))
