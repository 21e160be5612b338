"""Tests of lsm.predict_score: metrics against scikit-learn, no leakage, calibrated test."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score, roc_auc_score
from sklearn.model_selection import PredefinedSplit, cross_val_predict, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import lsm
from lsm.predict import (
    _LOGISTIC_KW,
    _RIDGE_ALPHAS,
    NuisanceKernelRidge,
    NuisanceKernelSVM,
    PredictionResult,
    RowFeatures,
    _model,
    _Shared,
)
from lsm.simulate import make_synthetic_cohort


@pytest.fixture(scope="module")
def cohort():
    return make_synthetic_cohort(90, shape=(14, 16, 14), voxel_size=7.0, random_state=3)


def _volume_features(cohort, covariates=("age",)):
    ph = cohort.phenotype.loc[list(cohort.subjects)]
    return np.column_stack([ph[list(covariates)].to_numpy(float), np.asarray(cohort.lesion_volumes)])


def test_volume_model_matches_sklearn_cross_validate(cohort):
    res = lsm.predict_score(cohort, "score", covariates="age", models=("volume",), n_permutations=None,
                            random_state=0)
    X = _volume_features(cohort)
    y = cohort.phenotype.loc[list(cohort.subjects), "score"].to_numpy()
    cv = PredefinedSplit(res.predictions["fold"].to_numpy())
    ref = cross_validate(make_pipeline(StandardScaler(), RidgeCV(alphas=_RIDGE_ALPHAS)), X, y, cv=cv,
                         scoring=("r2", "neg_mean_absolute_error"))
    folds = res.folds.sort_values("fold")
    np.testing.assert_allclose(folds["r2"], ref["test_r2"], rtol=1e-10)
    np.testing.assert_allclose(folds["mae"], -ref["test_neg_mean_absolute_error"], rtol=1e-10)
    # Pearson r of each test fold, from scipy on the out-of-fold predictions
    pred = res.predictions
    for f, row in folds.set_index("fold").iterrows():
        part = pred[pred["fold"] == f]
        assert row["r"] == pytest.approx(stats.pearsonr(part["score"], part["volume"])[0], rel=1e-10)
    summ = res.summary_table()
    assert summ.loc["volume", "r2_mean"] == pytest.approx(np.mean(ref["test_r2"]))
    assert summ.loc["volume", "r2_std"] == pytest.approx(np.std(ref["test_r2"], ddof=1))


def test_binary_target_matches_sklearn(cohort):
    ph = cohort.phenotype
    ph["poor"] = np.where(ph["mrs"] > 2, "yes", "no")
    ph["poor01"] = (ph["mrs"] > 2).astype(int)
    res = lsm.predict_score(cohort, "poor01", covariates="age", models=("volume", "lesions_ridge"),
                            target="binary", n_permutations=None, random_state=1)
    assert res.params["score_coding"] == {"0": 0.0, "1": 1.0}
    X = _volume_features(cohort)
    y = ph.loc[list(cohort.subjects), "poor01"].to_numpy()
    cv = PredefinedSplit(res.predictions["fold"].to_numpy())
    est = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, cv=5, class_weight="balanced", **_LOGISTIC_KW,
                                                               scoring="roc_auc", max_iter=2000))
    proba = cross_val_predict(est, X, y, cv=cv, method="predict_proba")[:, 1]
    np.testing.assert_allclose(res.predictions["volume"], proba, rtol=1e-6, atol=1e-9)
    folds = res.folds.set_index(["model", "fold"])
    for f in range(5):
        test = res.predictions["fold"].to_numpy() == f
        assert folds.loc[("volume", f), "auc"] == pytest.approx(roc_auc_score(y[test], proba[test]))
        # balanced accuracy by hand: mean of the two class recalls at p > 0.5
        hit = (proba[test] > 0.5) == y[test].astype(bool)
        bacc = np.mean([hit[y[test] == c].mean() for c in (0, 1)])
        assert folds.loc[("volume", f), "balanced_accuracy"] == pytest.approx(bacc)
        kr = res.predictions.loc[test, "lesions_ridge"].to_numpy()
        assert folds.loc[("lesions_ridge", f), "auc"] == pytest.approx(roc_auc_score(y[test], kr))
    with pytest.raises(lsm.exceptions.AnalysisError, match="two values"):
        lsm.predict_score(cohort, "mrs", target="binary", models=("volume",), n_permutations=None)


def _toy(n=40, p=60, k=2, seed=0):
    rng = np.random.default_rng(seed)
    L = (rng.random((n, p)) < 0.2).astype(float)
    N = rng.normal(size=(n, k))
    y = N @ [1.0, -0.5] + L[:, :5].sum(1) + rng.normal(size=n)
    return L, N, y


def test_kernel_ridge_matches_primal_ridge_with_unpenalised_nuisance():
    L, N, y = _toy()
    train, test = np.arange(30), np.arange(30, 40)
    alpha = 0.7
    est = NuisanceKernelRidge(_Shared(L @ L.T), _Shared(N), alphas=(alpha,)).fit(train[:, None], y[train])
    # primal: minimise |y - Z b - X w|^2 + alpha |w|^2, X = L / sqrt(scale), Z = [1, standardised N]
    scale = np.mean(np.sum(L[train] ** 2, axis=1))
    mu, sd = N[train].mean(0), N[train].std(0)
    Z = np.column_stack([np.ones(30), (N[train] - mu) / sd])
    X = L[train] / np.sqrt(scale)
    A = np.block([[Z, X], [np.zeros((L.shape[1], Z.shape[1])), np.sqrt(alpha) * np.eye(L.shape[1])]])
    coef = np.linalg.lstsq(A, np.concatenate([y[train], np.zeros(L.shape[1])]), rcond=None)[0]
    Zt = np.column_stack([np.ones(10), (N[test] - mu) / sd])
    expected = Zt @ coef[:3] + L[test] / np.sqrt(scale) @ coef[3:]
    np.testing.assert_allclose(est.predict(test[:, None]), expected, rtol=1e-8, atol=1e-10)


def test_kernel_ridge_loo_choice_matches_brute_force():
    L, N, y = _toy(seed=1)
    alphas = (0.01, 0.3, 3.0, 30.0)
    rows = np.arange(40)
    K = _Shared(L @ L.T)
    est = NuisanceKernelRidge(K, _Shared(N), alphas=alphas).fit(rows[:, None], y)
    errors = []
    for a in alphas:
        res = []
        for i in rows:
            tr = np.delete(rows, i)
            fit = NuisanceKernelRidge(K, _Shared(N), alphas=(a,))
            # brute force LOO keeps the training fold's kernel scale and nuisance scaling fixed
            fit.fit(tr[:, None], y[tr])
            res.append(y[i] - fit.predict(np.array([[i]]))[0])
        errors.append(np.mean(np.square(res)))
    # the closed form holds for the scaling of the whole training fold; the brute force
    # rescales per left-out subject, so compare the choice, not the error to the last digit
    assert est.alpha_ == alphas[int(np.argmin(errors))]


class _Recorder(RowFeatures):
    """RowFeatures that records the rows each fit saw."""

    seen = []

    def fit(self, X, y=None):
        type(self).seen.append(np.sort(np.asarray(X).ravel()))
        return self


@pytest.mark.parametrize("name", ["volume", "territories", "lesions_ridge", "lesions_svr"])
@pytest.mark.parametrize("target", ["continuous", "binary"])
def test_no_leakage_from_test_rows(name, target):
    """A model fitted on the training rows ignores every value of the test rows."""
    L, N, y = _toy(n=60, seed=2)
    if target == "binary":
        y = (y > np.median(y)).astype(float)
    train, test = np.arange(45), np.arange(45, 60)
    T = np.column_stack([N, L[:, :8]])

    def data(spoil):
        L2, N2, T2 = L.copy(), N.copy(), T.copy()
        if spoil:
            rng = np.random.default_rng(9)
            L2[test] = (rng.random((15, L.shape[1])) < 0.9).astype(float)
            N2[test] = 1e6 * rng.normal(size=(15, N.shape[1]))
            T2[test] = 1e6 * rng.normal(size=(15, T.shape[1]))
        return {"volume": _Shared(N2), "territories": _Shared(T2), "kernel": _Shared(L2 @ L2.T)}

    preds = []
    for spoil in (False, True):
        est = _model(name, data(spoil), target, 0).fit(train[:, None], y[train])
        preds.append(est.predict(train[:, None]))
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-9, atol=1e-9)


def test_preprocessing_fitted_on_training_rows_only(cohort, monkeypatch):
    """Every scaler sees exactly the outer training rows (recorded by a pipeline step)."""
    _Recorder.seen = []
    monkeypatch.setattr("lsm.predict.RowFeatures", _Recorder)
    fitted = []
    orig = NuisanceKernelSVM.fit

    def record(self, X, y):
        fitted.append(np.sort(np.asarray(X).ravel()))
        return orig(self, X, y)

    monkeypatch.setattr(NuisanceKernelSVM, "fit", record)
    res = lsm.predict_score(cohort, "score", models=("volume", "lesions_svr"), n_permutations=None,
                            random_state=4)
    fold = res.predictions["fold"].to_numpy()
    outer = [np.flatnonzero(fold != f) for f in range(5)]
    assert len(_Recorder.seen) == 5
    for seen, tr in zip(_Recorder.seen, outer):
        np.testing.assert_array_equal(seen, tr)
    # SVM fits: 3 inner folds x 5 values of C, then the refit on the whole training fold,
    # per outer fold; inner fits only ever see rows of their outer training fold
    assert len(fitted) == 5 * (3 * 5 + 1)
    for f, tr in enumerate(outer):
        block = fitted[f * 16:(f + 1) * 16]
        assert all(np.isin(b, tr).all() for b in block)
        np.testing.assert_array_equal(block[-1], tr)


def test_reproducible_across_n_jobs_and_roundtrip(cohort, tmp_path):
    kw = dict(covariates="age", models=("volume", "territories", "lesions_ridge"), n_permutations=8,
              random_state=5)
    atlas = _grid_atlas(cohort)
    a = lsm.predict_score(cohort, "score", atlas=atlas, n_jobs=1, **kw)
    b = lsm.predict_score(cohort, "score", atlas=atlas, n_jobs=2, **kw)
    pd.testing.assert_frame_equal(a.folds, b.folds)
    assert a.test["null"] == b.test["null"] and a.test["p"] == b.test["p"]
    assert a.provenance["random_state"] == 5
    out = a.save(tmp_path / "pred")
    with pytest.raises(lsm.exceptions.OutputExistsError):
        a.save(tmp_path / "pred")
    c = PredictionResult.load(out)
    pd.testing.assert_frame_equal(c.folds, a.folds, check_dtype=False)
    assert c.test["p"] == a.test["p"] and c.params == a.params
    assert "lesions_ridge" in str(c.summary()) and "permutation p" in str(c.summary())
    assert c.significant.index.tolist() == ["lesions_ridge"]
    assert a.to_html().startswith("<!DOCTYPE html>")
    a.plot()


def _grid_atlas(cohort):
    """A two-label atlas on the cohort grid (left and right halves)."""
    import nibabel as nib

    shape = cohort.shape
    data = np.zeros(shape, dtype=np.int16)
    data[: shape[0] // 2] = 1
    data[shape[0] // 2:] = 2
    labels = pd.DataFrame({"abbrev": ["L", "R"]}, index=pd.Index([1, 2], name="index"))
    return nib.Nifti1Image(data, cohort.affine), labels


def test_bad_input_is_a_clear_error(cohort):
    with pytest.raises(ValueError, match="'models'"):
        lsm.predict_score(cohort, "score", models=("volume", "voxels"))
    with pytest.raises(ValueError, match="'target'"):
        lsm.predict_score(cohort, "score", target="count")
    with pytest.raises(lsm.exceptions.PhenotypeError, match="'nope'"):
        lsm.predict_score(cohort, "nope")
    with pytest.raises(ValueError, match="'n_splits'"):
        lsm.predict_score(cohort, "score", n_splits=1)
    ph = cohort.phenotype
    ph["score_gap"] = ph["score"]
    ph.loc[cohort.subjects[0], "score_gap"] = np.nan
    res = lsm.predict_score(cohort, "score_gap", models=("volume",), n_permutations=None, random_state=0)
    assert res.excluded["subject"].tolist() == [cohort.subjects[0]]
    assert "missing score" in res.excluded["reason"].iloc[0]


def _volume_only_cohort(seed, effect_location=0.0):
    c = make_synthetic_cohort(60, shape=(12, 14, 12), voxel_size=8.0, effect_size=0.0, random_state=seed)
    rng = np.random.default_rng(seed + 1000)
    vol = np.asarray(c.lesion_volumes)
    # location effect: left minus right lesioned voxels (linear in the lesion matrix, spread
    # over many voxels, and not a function of volume)
    ijk = np.indices(c.shape).reshape(3, -1).T
    side = np.sign((ijk @ c.affine[:3, :3].T + c.affine[:3, 3])[:, 0])
    asym = -np.asarray(c.lesion_matrix() @ side).ravel()
    c.phenotype.loc[list(c.subjects), "y"] = (0.01 * vol + effect_location * asym / asym.std()
                                              + rng.normal(size=len(vol)))
    return c


@pytest.mark.slow
def test_location_test_calibrated_under_null_and_powered():
    """Volume-only scores: p roughly uniform; a planted location effect: p small."""
    ps = []
    for seed in range(24):
        c = _volume_only_cohort(seed)
        r = lsm.predict_score(c, "y", models=("volume", "lesions_ridge"), n_permutations=19, random_state=seed)
        ps.append(r.test["p"])
    ps = np.array(ps)
    # 24 draws of a discrete uniform on {0.05, ..., 1}: rejections at 0.05 and the mean
    assert np.mean(ps <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 24)
    assert 0.35 < ps.mean() < 0.65
    assert stats.kstest(ps, "uniform").pvalue > 0.001
    power = [lsm.predict_score(_volume_only_cohort(100 + s, 2.0), "y", models=("volume", "lesions_ridge"),
                               n_permutations=19, random_state=s).test["p"] for s in range(3)]
    assert max(power) <= 0.05


def test_r2_and_mae_match_sklearn_for_kernel_models(cohort):
    res = lsm.predict_score(cohort, "score", models=("volume", "lesions_ridge", "lesions_svr"),
                            n_permutations=None, random_state=2)
    pred, folds = res.predictions, res.folds.set_index(["model", "fold"])
    for m in ("lesions_ridge", "lesions_svr"):
        for f in range(5):
            part = pred[pred["fold"] == f]
            assert folds.loc[(m, f), "r2"] == pytest.approx(r2_score(part["score"], part[m]))
            assert folds.loc[(m, f), "mae"] == pytest.approx(mean_absolute_error(part["score"], part[m]))


def test_ordinal_target_metrics_match_scipy(cohort):
    res = lsm.predict_score(cohort, "mrs", models=("volume", "territories"), target="ordinal",
                            atlas=_grid_atlas(cohort), n_permutations=None, random_state=6)
    assert set(res.metrics) == {"r2", "spearman", "mae"}
    pred, folds = res.predictions, res.folds.set_index(["model", "fold"])
    for m in ("volume", "territories"):
        for f in range(5):
            part = pred[pred["fold"] == f]
            assert folds.loc[(m, f), "spearman"] == pytest.approx(stats.spearmanr(part["score"], part[m])[0])
            assert folds.loc[(m, f), "mae"] == pytest.approx(np.mean(np.abs(part["score"] - part[m])))


def test_territory_model_on_the_default_arterial_atlas(shared_data_dir, monkeypatch):
    """atlas="arterial" (the default) feeds the territory model the loads territory_load gives."""
    import warnings

    from lsm.exceptions import LSMWarning

    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    cohort = make_synthetic_cohort(60, random_state=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LSMWarning)
        res = lsm.predict_score(cohort, "score", models=("volume", "territories"), n_permutations=None,
                                random_state=0)
        loads = lsm.territory_load(cohort)
    assert res.params["atlas"] == "arterial"
    assert set(res.folds["model"]) == {"volume", "territories"}
    assert loads.shape[1] > 0 and loads.to_numpy().any()
