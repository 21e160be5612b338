"""Tests of lsm.localization_check: metrics by hand, recovery of a planted region, FPR."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lsm
from lsm import localization
from lsm.localization import _map_metrics
from lsm.simulate import make_synthetic_cohort


def test_map_metrics_by_hand():
    z = np.array([5.0, 4.0, 3.0, 0.5, 2.5, -1.0])
    member = np.array([True, False, True, False, True, False])
    sig = np.array([True, True, False, False, False, False])
    xyz = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [5, 5, 5], [0, 0, 10], [9, 9, 9]], dtype=float)
    centroid = np.array([1.0, 2.0, 3.0])
    m = _map_metrics(z, sig, member, xyz, centroid)
    assert m["peak_in_region"] is True
    assert m["dice"] == pytest.approx(2 * 1 / (2 + 3))
    assert m["displacement_mm"] == pytest.approx(np.linalg.norm([5 - 1, 0 - 2, 0 - 3]))
    # top-3 by z: voxels 0, 1, 2; two of them in the region
    assert m["topk_dice"] == pytest.approx(2 / 3)
    assert m["topk_displacement_mm"] == pytest.approx(np.linalg.norm(np.array([10 / 3, 10 / 3, 0]) - centroid))
    # AUC = Mann-Whitney U / (n1 n0)
    u = stats.mannwhitneyu(z[member], z[~member]).statistic
    assert m["auc"] == pytest.approx(u / (3 * 3))
    none = _map_metrics(z, np.zeros(6, bool), member, xyz, centroid)
    assert np.isnan(none["displacement_mm"]) and none["dice"] == 0 and none["n_significant"] == 0


@pytest.fixture(scope="module")
def planted():
    """A cohort whose two-region label image has region 'truth' = the planted effect sphere."""
    c = make_synthetic_cohort(120, shape=(16, 18, 16), voxel_size=6.0, random_state=1)
    truth = c.metadata["truth_mask"]
    data = np.zeros(c.shape, dtype=np.int16)
    data[truth] = 1
    # a sphere of the same radius in the other hemisphere
    ijk = np.indices(c.shape).reshape(3, -1).T
    xyz = ijk @ c.affine[:3, :3].T + c.affine[:3, 3]
    other = (((xyz - [20.0, -20.0, 8.0]) ** 2).sum(axis=1) <= 12.0**2).reshape(c.shape)
    data[other & ~truth] = 2
    labels = pd.DataFrame({"abbrev": ["truth", "other"]}, index=pd.Index([1, 2], name="index"))
    return c, (nib.Nifti1Image(data, c.affine), labels), data


def test_planted_regions_recovered_by_ttest(planted):
    c, atlas, data = planted
    res = lsm.localization_check(c, regions=atlas, effect_size=2.0, methods=("ttest",), n_permutations=50,
                                 n_null=0, random_state=0)
    table = res.table.set_index("region")
    assert table["peak_in_region"].all()
    assert (table["auc"] > 0.9).all()
    assert (table["n_significant"] > 0).all()
    # the table's region bookkeeping, by hand
    for k, name in ((1, "truth"), (2, "other")):
        assert table.loc[name, "region_voxels"] == (data == k).sum()
        lesioned = sum(bool((c.lesion_mask(s) & (data == k)).any()) for s in c.subjects)
        assert table.loc[name, "lesioned_subjects"] == lesioned
    assert res.summary_table().loc["ttest", "peak_in_region"] == 1.0
    assert len(res.null_runs) == 0


def test_simulated_scores_and_fpr_bookkeeping(planted, monkeypatch):
    c, atlas, data = planted
    calls = []
    real = localization._run_method

    def spy(lesions, score, method, *args):
        tested, z, sig = real(lesions, score, method, *args)
        calls.append((method, score.copy()))
        # fake significance on every third call: the FPR must count exactly those
        fake = np.zeros_like(sig)
        fake[: len(calls) % 3 == 0] = True
        return tested, z, fake

    monkeypatch.setattr(localization, "_run_method", spy)
    res = lsm.localization_check(c, regions=atlas, effect_size=3.0, methods=("ttest", "regression+covariate"),
                                 n_permutations=20, n_null=5, random_state=7)
    assert len(calls) == 2 * (2 + 5)
    expected_any = [(i + 1) % 3 == 0 for i in range(len(calls))]
    per_method = {m: [a for (mm, _), a in zip(calls, expected_any) if mm == m][2:] for m in ("ttest",
                                                                                          "regression+covariate")}
    summ = res.summary_table()
    for m, flags in per_method.items():
        assert summ.loc[m, "fpr"] == pytest.approx(np.mean(flags))
        assert res.null_runs.loc[res.null_runs["method"] == m, "any_significant"].tolist() == flags
    # simulated scores: the same for every method, effect on the hand-computed region load
    t_scores = [s for m, s in calls if m == "ttest"]
    r_scores = [s for m, s in calls if m == "regression+covariate"]
    for a, b in zip(t_scores, r_scores):
        np.testing.assert_array_equal(a, b)
    load = np.array([(c.lesion_mask(s) & (data == 1)).sum() / (data == 1).sum() for s in c.subjects])
    zload = (load - load.mean()) / load.std()
    noise = t_scores[0] - 3.0 * zload
    assert abs(noise.mean()) < 0.35 and 0.75 < noise.std() < 1.25
    assert stats.pearsonr(noise, zload)[0] == pytest.approx(0, abs=0.3)
    # null runs: shuffles of the regions' simulated scores, in turn
    for j, s in enumerate(t_scores[2:]):
        source = t_scores[j % 2]
        np.testing.assert_array_equal(np.sort(s), np.sort(source))
        assert not np.array_equal(s, source)


def test_reproducible_and_roundtrip(planted, tmp_path):
    c, atlas, _ = planted
    kw = dict(regions=atlas, methods=("ttest", "regression+dtlvc"), n_permutations=20, n_null=2, random_state=3)
    a = lsm.localization_check(c, n_jobs=1, **kw)
    b = lsm.localization_check(c, n_jobs=2, **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.null_runs, b.null_runs)
    out = a.save(tmp_path / "loc")
    back = lsm.LocalizationResult.load(out)
    pd.testing.assert_frame_equal(back.table, a.table, check_dtype=False)
    assert back.params == a.params
    assert "ttest" in str(back.summary())
    assert a.significant.index.names == ["method", "region"]
    a.plot()
    assert "<table" in a.to_html()


def test_bad_input_is_a_clear_error(planted):
    c, atlas, _ = planted
    with pytest.raises(ValueError, match="'methods'"):
        lsm.localization_check(c, regions=atlas, methods=("svm",))
    with pytest.raises(ValueError, match="'n_null'"):
        lsm.localization_check(c, regions=atlas, n_null=-1)
    with pytest.raises(ValueError, match="'effect_size'"):
        lsm.localization_check(c, regions=atlas, effect_size="big")


def test_svr_method_is_svr_lsm(planted, monkeypatch):
    """The "svr" rows are the metrics of lsm.svr_lsm's map of the same simulated score."""
    import warnings

    c, atlas, data = planted
    seen = {}
    real = localization._run_method

    def spy(lesions, score, method, volume, n_permutations, alpha, min_lesioned, seed, *args):
        seen.setdefault(method, (score.copy(), seed))
        return real(lesions, score, method, volume, n_permutations, alpha, min_lesioned, seed, *args)

    monkeypatch.setattr(localization, "_run_method", spy)
    res = lsm.localization_check(c, regions=atlas, effect_size=2.0, methods=("svr",), n_permutations=30,
                                 n_null=0, random_state=2)
    score, seed = seen["svr"]
    c.phenotype.loc[list(c.subjects), "sim"] = score
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lsm.svr_lsm(c, "sim", n_permutations=30, random_state=seed)
    tested = np.asarray(ref.mask_img.dataobj).astype(bool).ravel()
    z = np.asarray(ref.z.dataobj).ravel()[tested]
    sig = np.asarray(ref.significant.dataobj).astype(bool).ravel()[tested]
    ijk = np.array(np.unravel_index(np.flatnonzero(tested), c.shape)).T
    xyz = ijk @ c.affine[:3, :3].T + c.affine[:3, 3]
    all_ijk = np.argwhere(data == 1)
    centroid = (all_ijk @ c.affine[:3, :3].T + c.affine[:3, 3]).mean(axis=0)
    expected = _map_metrics(z, sig, data.ravel()[tested] == 1, xyz, centroid)
    row = res.table.set_index("region").loc["truth"]
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, nan_ok=True), key


def test_default_regions_are_the_arterial_territories(shared_data_dir, monkeypatch):
    """regions="arterial" (the default) plants deficits in the arterial territories."""
    import warnings

    from lsm.exceptions import LSMWarning
    from lsm.simulate import make_synthetic_cohort

    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    cohort = make_synthetic_cohort(80, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LSMWarning)
        res = lsm.localization_check(cohort, methods=("ttest",), n_permutations=20, n_null=1, random_state=0)
    names = set(res.table["region"]) | set(res.skipped["region"])
    labels = lsm.datasets.fetch_arterial_atlas(level=1).labels
    assert names and names <= set(labels["abbrev"])
