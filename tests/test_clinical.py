"""Tests of lsm.clinical against scipy.stats, statsmodels and brute-force loops."""

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.miscmodels.ordinal_model import OrderedModel

from lsm._validation import check_random_state
from lsm.clinical import outcome_model, territory_level, territory_lsm, volume_score_correlation
from lsm.exceptions import AnalysisError, DroppedSubjectsWarning, PhenotypeError
from lsm.stats._permutation import draw_permutations

matplotlib.use("Agg")

TERR = ["ACAL", "MCAL", "PCAL", "VBL", "MCAR"]


def _make_frame(n=60, seed=0, effect="MCAL"):
    """Synthetic subjects: volume drives NIHSS; territory `effect` adds to it; mRS 0-6."""
    rng = np.random.default_rng(seed)
    vol = np.exp(rng.normal(2.5, 1.2, n))
    age = rng.uniform(40, 90, n)
    loads = rng.uniform(0, 1, (n, len(TERR))) * (rng.random((n, len(TERR))) < 0.5)
    extra = 6 * loads[:, TERR.index(effect)] if effect else 0.0
    nihss = np.clip(np.round(2 * np.log(vol) + 0.05 * (age - 65) + extra + rng.normal(0, 2, n)),
                    0, 42)
    latent = 0.4 * nihss + 0.03 * (age - 65) + rng.logistic(size=n)
    mrs = np.digitize(latent, np.quantile(latent, np.linspace(0, 1, 8)[1:-1]))
    frame = pd.DataFrame(
        {
            "lesion_volume": vol,
            "nihss": nihss,
            "age": age,
            "sex": rng.choice(["F", "M"], n),
            "mrs": mrs,
            **{t: loads[:, i] for i, t in enumerate(TERR)},
        },
        index=pd.Index([f"sub-{i:03d}" for i in range(n)], name="participant_id"),
    )
    return frame


@pytest.fixture
def frame():
    return _make_frame()


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        return func(*args, **kwargs)


# ------------------------------------------------------------------ correlations


@pytest.mark.parametrize(
    "method, ref",
    [("spearman", stats.spearmanr), ("pearson", stats.pearsonr), ("kendall", stats.kendalltau)],
)
@pytest.mark.parametrize("volume_transform", ["linear", "log"])
def test_correlation_equals_scipy(frame, method, ref, volume_transform):
    log_volume = volume_transform == "log"
    res = volume_score_correlation(frame, "nihss", method=method, volume_transform=volume_transform,
                                   n_boot=0)
    x = frame["lesion_volume"].to_numpy()
    x = np.log10(x) if log_volume else x
    expected = ref(x, frame["nihss"].to_numpy())
    assert res.r == pytest.approx(expected.statistic, rel=1e-10, abs=1e-12)
    assert res.p == pytest.approx(expected.pvalue, rel=1e-8)
    assert res.n == len(frame)
    assert np.isnan(res.ci[0]) and np.isnan(res.ci[1])


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_partial_correlation_is_residual_on_residual(frame, method):
    covs = ["age", "MCAL"]
    res = volume_score_correlation(frame, "nihss", method=method, covariates=covs, n_boot=0)
    data = frame[["lesion_volume", "nihss"] + covs].to_numpy(float)
    if method == "spearman":
        data = np.column_stack([stats.rankdata(c) for c in data.T])
    x, y, Z = data[:, 0], data[:, 1], sm.add_constant(data[:, 2:])
    rx = sm.OLS(x, Z).fit().resid
    ry = sm.OLS(y, Z).fit().resid
    assert res.r == pytest.approx(np.corrcoef(rx, ry)[0, 1], rel=1e-10)
    # the partial-correlation t test is the t test of x in y ~ x + Z
    full = sm.OLS(y, np.column_stack([Z, x])).fit()
    assert res.p == pytest.approx(full.pvalues[-1], rel=1e-8)
    assert res.partial and res.covariates == covs


def test_partial_correlation_with_a_large_offset_covariate():
    """A covariate such as 1e5 + N(0, 1): the normal equations of the raw values lost
    about 4 digits of r (2.5e-4 off); statsmodels' SVD-based residuals are the reference."""
    f = _make_frame(n=200)
    f["offset"] = 1e5 + np.random.default_rng(1).normal(size=len(f))
    res = volume_score_correlation(f, "nihss", method="pearson", covariates="offset", n_boot=0)
    Z = sm.add_constant(f["offset"].to_numpy())
    rx = sm.OLS(f["lesion_volume"].to_numpy(), Z).fit().resid
    ry = sm.OLS(f["nihss"].to_numpy(), Z).fit().resid
    assert res.r == pytest.approx(np.corrcoef(rx, ry)[0, 1], rel=1e-9)


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_bootstrap_ci_equals_scipy_bootstrap(frame, method):
    sub = frame.iloc[:40]
    res = volume_score_correlation(sub, "nihss", method=method, n_boot=300, random_state=3)
    ref_fun = {"spearman": stats.spearmanr, "pearson": stats.pearsonr,
               "kendall": stats.kendalltau}[method]
    boot = stats.bootstrap(
        (sub["lesion_volume"].to_numpy(), sub["nihss"].to_numpy()),
        lambda a, b: ref_fun(a, b).statistic,
        n_resamples=300, paired=True, vectorized=False, method="BCa",
        rng=np.random.default_rng(3),
    )
    assert res.ci[0] == pytest.approx(boot.confidence_interval.low, rel=1e-8)
    assert res.ci[1] == pytest.approx(boot.confidence_interval.high, rel=1e-8)
    assert res.ci[0] < res.r < res.ci[1]



def _reference_bca(sub, statistic):
    """scipy's BCa interval of ``statistic(volume, nihss, age)`` over 200 paired resamples
    (seed 5), the settings the tests give lsm."""
    boot = stats.bootstrap(
        (sub["lesion_volume"].to_numpy(), sub["nihss"].to_numpy(), sub["age"].to_numpy()),
        statistic, n_resamples=200, paired=True, vectorized=False, method="BCa",
        rng=np.random.default_rng(5),
    )
    return boot.confidence_interval.low, boot.confidence_interval.high

def test_partial_bootstrap_equals_scipy_bootstrap(frame):
    sub = frame.iloc[:40]
    res = volume_score_correlation(sub, "nihss", method="pearson", covariates="age",
                                   n_boot=200, random_state=5)

    def partial(a, b, c):
        Z = sm.add_constant(c)
        return np.corrcoef(sm.OLS(a, Z).fit().resid, sm.OLS(b, Z).fit().resid)[0, 1]

    assert res.ci == pytest.approx(_reference_bca(sub, partial), rel=1e-7)


def test_bootstrap_is_reproducible(frame):
    a = volume_score_correlation(frame, "nihss", n_boot=200, random_state=11)
    b = volume_score_correlation(frame, "nihss", n_boot=200, random_state=11)
    c = volume_score_correlation(frame, "nihss", n_boot=200, random_state=12)
    assert a.ci == b.ci
    assert a.ci != c.ci


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_bca_coverage_near_nominal(method):
    """Bivariate normal with rho = 0.5: the 90% BCa interval covers the truth ~90%."""
    rho, n, reps = 0.5, 50, 300
    truth = rho if method == "pearson" else 6 / np.pi * np.arcsin(rho / 2)
    rng = np.random.default_rng(2024)
    cov = [[1, rho], [rho, 1]]
    hits = 0
    for _ in range(reps):
        xy = rng.multivariate_normal([0, 0], cov, size=n)
        df = pd.DataFrame({"lesion_volume": xy[:, 0], "s": xy[:, 1]})
        res = volume_score_correlation(df, "s", method=method, n_boot=999, ci=0.90,
                                       random_state=rng)
        hits += res.ci[0] <= truth <= res.ci[1]
    coverage = hits / reps
    se = np.sqrt(0.9 * 0.1 / reps)
    assert abs(coverage - 0.90) < 3.5 * se, coverage


def test_correlation_exclusions_listed(frame):
    frame = frame.copy()
    frame.loc["sub-001", "nihss"] = np.nan
    frame.loc["sub-002", "age"] = np.nan
    frame.loc["sub-003", "lesion_volume"] = np.nan
    with pytest.warns(DroppedSubjectsWarning, match="3 subject"):
        res = volume_score_correlation(frame, "nihss", covariates="age", n_boot=0)
    assert res.n == len(frame) - 3
    reasons = dict(zip(res.excluded["subject"], res.excluded["reason"]))
    assert reasons == {
        "sub-001": "missing score 'nihss'",
        "sub-002": "missing covariate 'age'",
        "sub-003": "missing lesion volume 'lesion_volume'",
    }
    assert "sub-001" not in res.data.index


def test_correlation_errors(frame):
    f = frame.copy()
    f["binary"] = (f["nihss"] > 5).astype(float)
    with pytest.raises(AnalysisError, match=r"'binary' has only 2 distinct value.*family='logistic'"):
        volume_score_correlation(f, "binary", n_boot=0)
    # the logistic-model hint is for the score, not for the lesion volume
    with pytest.raises(AnalysisError, match=r"'lesion_volume' has only 2 distinct value.*needs at least 3\.$"):
        volume_score_correlation(f.assign(lesion_volume=f["binary"] + 1), "nihss", n_boot=0)
    f["vol2"] = 2 * f["lesion_volume"] + 1
    with pytest.raises(AnalysisError, match=r"collinear.*'vol2'.*'lesion_volume'"):
        volume_score_correlation(f, "nihss", covariates="vol2", n_boot=0)
    with pytest.raises(ValueError, match="'method' parameter"):
        volume_score_correlation(f, "nihss", method="spearmann")
    with pytest.raises(AnalysisError, match="'missing_col'"):
        volume_score_correlation(f, "missing_col")
    f["age_text"] = f["age"].astype(str).astype(object)
    f.loc["sub-004", "age_text"] = "89+"
    with pytest.raises(PhenotypeError, match=r"'age_text'.*sub-004.*'89\+'"):
        volume_score_correlation(f, "nihss", covariates="age_text")
    with pytest.raises(PhenotypeError, match=r"'age_text'.*sub-004.*'89\+'"):
        volume_score_correlation(f, "nihss", method="kendall", covariates="age_text")
    f.loc["sub-005", "lesion_volume"] = 0.0
    with pytest.raises(AnalysisError, match="sub-005"):
        volume_score_correlation(f, "nihss", volume_transform="log")


def _tau(a, b):
    return stats.kendalltau(a, b).statistic


@pytest.mark.parametrize("volume_transform", ["linear", "log"])
def test_partial_kendall_one_covariate_is_kendall_1942(frame, volume_transform):
    res = volume_score_correlation(frame, "nihss", method="kendall", covariates="age",
                                   volume_transform=volume_transform, n_boot=0)
    x, y, z = (frame[c].to_numpy(float) for c in ("lesion_volume", "nihss", "age"))
    txy, txz, tyz = _tau(x, y), _tau(x, z), _tau(y, z)
    expected = (txy - txz * tyz) / np.sqrt((1 - txz**2) * (1 - tyz**2))
    assert abs(res.r - expected) < 1e-12
    assert res.partial and res.covariates == ["age"] and res.method == "kendall"
    assert "partial Kendall tau" in res.summary()


def test_partial_kendall_two_covariates_inverts_tau_matrix(frame):
    """ppcor: P = inv(T) of the 4x4 tau-b matrix, partial tau = -P01 / sqrt(P00 P11);
    p from the normal approximation at n - k subjects (ppcor's pcor, method='kendall')."""
    covs = ["age", "MCAL"]
    res = volume_score_correlation(frame, "nihss", method="kendall", covariates=covs,
                                   n_boot=0)
    cols = [frame[c].to_numpy(float) for c in ["lesion_volume", "nihss"] + covs]
    T = np.array([[_tau(a, b) for b in cols] for a in cols])
    P = np.linalg.inv(T)
    expected = -P[0, 1] / np.sqrt(P[0, 0] * P[1, 1])
    assert abs(res.r - expected) < 1e-12
    m = len(frame) - len(covs)
    z = expected / np.sqrt(2 * (2 * m + 5) / (9 * m * (m - 1)))
    assert res.p == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)
    assert res.n == len(frame)


def test_partial_kendall_known_answer_given_common_cause():
    """x = z + e1, y = z + e2 (standard normal): tau(x, y) = 2/pi asin(1/2) = 1/3 and
    tau(x, z) = tau(y, z) = 2/pi asin(1/sqrt 2) = 1/2, so the population partial tau is
    (1/3 - 1/4) / (1 - 1/4) = 1/9: far below the plain tau, but not 0 (partial Kendall tau
    is not a measure of conditional independence; the partial Pearson r is ~0 here)."""
    rng = np.random.default_rng(7)
    n = 3000
    z = rng.normal(size=n)
    df = pd.DataFrame({"lesion_volume": z + rng.normal(size=n), "s": z + rng.normal(size=n),
                       "z": z})
    plain = volume_score_correlation(df, "s", method="kendall", n_boot=0)
    partial = volume_score_correlation(df, "s", method="kendall", covariates="z", n_boot=0)
    pearson = volume_score_correlation(df, "s", method="pearson", covariates="z", n_boot=0)
    assert plain.r == pytest.approx(1 / 3, abs=0.03)
    assert partial.r == pytest.approx(1 / 9, abs=0.03)
    assert abs(pearson.r) < 0.06


def test_partial_kendall_collinear_covariates_are_an_error(frame):
    f = frame.assign(age2=frame["age"] ** 2, age_lin=2 * frame["age"] + 1,
                     vol_sq=frame["lesion_volume"] ** 2, age3=frame["age"] ** 3)
    # same orderings (monotone transform): singular tau-b matrix
    with pytest.raises(AnalysisError, match=r"collinear covariate orderings.*'age2'.*'age'"):
        volume_score_correlation(f, "nihss", method="kendall", covariates=["age", "age2"],
                                 n_boot=0)
    with pytest.raises(AnalysisError, match=r"collinear covariate orderings.*'vol_sq'.*"
                                            r"'lesion_volume'"):
        volume_score_correlation(f, "nihss", method="kendall", covariates=["vol_sq"],
                                 n_boot=0)
    # linearly collinear values: the error every method gives
    with pytest.raises(AnalysisError, match=r"Perfectly collinear covariates: 'age_lin'.*'age'"):
        volume_score_correlation(f, "nihss", method="kendall", covariates=["age", "age_lin"],
                                 n_boot=0)
    # a score ordered exactly as a covariate leaves nothing to correlate
    with pytest.raises(AnalysisError, match=r"score 'age3'.*'age'.*undefined"):
        volume_score_correlation(f, "age3", method="kendall", covariates=["age"], n_boot=0)


def test_partial_kendall_bootstrap(frame):
    sub = frame.iloc[:40]
    kw = dict(method="kendall", covariates="age", n_boot=200)
    a = volume_score_correlation(sub, "nihss", random_state=5, **kw)
    b = volume_score_correlation(sub, "nihss", random_state=5, **kw)
    c = volume_score_correlation(sub, "nihss", random_state=6, **kw)
    assert a.ci == b.ci and a.ci != c.ci
    assert a.ci[0] < a.r < a.ci[1]

    def partial(x, y, z):  # Kendall (1942), recomputed on each resample
        txy, txz, tyz = _tau(x, y), _tau(x, z), _tau(y, z)
        return (txy - txz * tyz) / np.sqrt((1 - txz**2) * (1 - tyz**2))

    assert a.ci == pytest.approx(_reference_bca(sub, partial), rel=1e-7)


def test_spearman_covariates_collinear_on_ranks_are_an_error(frame):
    """age and age**2 (age > 0) are not collinear, but their ranks are identical: the
    partial Spearman correlation (computed on ranks) cannot adjust for both. Before, the
    rank-deficient nuisance basis changed territory r and the p-values' degrees of freedom."""
    f = frame.assign(age2=frame["age"] ** 2)
    assert np.array_equal(stats.rankdata(f["age"]), stats.rankdata(f["age2"]))
    with pytest.raises(AnalysisError, match=r"collinear covariate ranks: 'age2'.*'age'"):
        volume_score_correlation(f, "nihss", covariates=["age", "age2"], n_boot=0)
    with pytest.raises(AnalysisError, match=r"collinear covariate ranks: 'age2'.*'age'"):
        territory_lsm(f, "nihss", territories=TERR, covariates=["age", "age2"], n_permutations=10)
    # Pearson and regression work on the values themselves, which are not collinear.
    res = volume_score_correlation(f, "nihss", method="pearson", covariates=["age", "age2"],
                                   n_boot=0)
    Z = sm.add_constant(f[["age", "age2"]].to_numpy(float))
    rx = sm.OLS(f["lesion_volume"].to_numpy(float), Z).fit().resid
    ry = sm.OLS(f["nihss"].to_numpy(float), Z).fit().resid
    assert res.r == pytest.approx(np.corrcoef(rx, ry)[0, 1], rel=1e-10)
    territory_lsm(f, "nihss", territories=TERR, method="regression", covariates=["age", "age2"],
                  n_permutations=10)


def test_infinite_values_are_an_error_naming_the_subject(frame):
    """An infinite score, covariate or predictor used to give r = nan silently
    (correlation), a misleading 'fully explained' error (territory_lsm) or a statsmodels
    MissingDataError (outcome_model)."""
    f = frame.copy()
    f.loc["sub-003", "age"] = np.inf
    match = r"'age' has infinite values for subject\(s\) \['sub-003'\]"
    with pytest.raises(PhenotypeError, match=match):
        volume_score_correlation(f, "nihss", method="pearson", covariates="age", n_boot=0)
    with pytest.raises(PhenotypeError, match=match):
        territory_lsm(f, "nihss", territories=TERR, covariates="age", n_permutations=10)
    with pytest.raises(PhenotypeError, match=match):
        outcome_model(f, "nihss", ["age"])
    g = frame.assign(nihss=frame["nihss"].astype(str).astype(object))
    g.loc["sub-007", "nihss"] = "-inf"  # text parsed as a number
    with pytest.raises(PhenotypeError, match=r"score column 'nihss' has infinite values.*sub-007"):
        volume_score_correlation(g, "nihss", n_boot=0)


def test_correlation_result_api(frame):
    res = volume_score_correlation(frame, "nihss", n_boot=100, random_state=0, volume_transform="log")
    df = res.to_dataframe()
    assert df.loc[0, "r"] == res.r and df.loc[0, "ci_low"] == res.ci[0]
    assert "Spearman" in res.summary() and str(res.n) in res.summary()
    assert res.provenance["random_state"] == 0 and res.provenance["versions"]["scipy"]
    assert res.params["n_boot"] == 100 and res.params["volume_transform"] == "log"
    assert "<pre>" in res._repr_html_()
    ax = res.plot().axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.collections) == 2  # scatter + CI band
    ax2 = res.plot(volume_transform="linear", ci=False).axes[0]
    assert ax2.get_xscale() == "linear" and len(ax2.collections) == 1
    matplotlib.pyplot.close("all")


# ------------------------------------------------------------------ outcome models


def test_ols_equals_statsmodels(frame):
    res = outcome_model(frame, "nihss", ["lesion_volume", "age", "sex"], family="ols")
    X = sm.add_constant(
        np.column_stack([frame["lesion_volume"], frame["age"], frame["sex"] == "M"]).astype(float)
    )
    ref = sm.OLS(frame["nihss"].to_numpy(float), X).fit()
    assert res.predictors == ["lesion_volume", "age", "sex[M]"]
    np.testing.assert_allclose(res.table["coef"], ref.params[1:], rtol=1e-10)
    np.testing.assert_allclose(res.table["se"], ref.bse[1:], rtol=1e-10)
    np.testing.assert_allclose(res.table["p"], ref.pvalues[1:], rtol=1e-8)
    np.testing.assert_allclose(res.results.params.to_numpy(), ref.params, rtol=1e-10)
    np.testing.assert_allclose(res.table[["ci_low", "ci_high"]], ref.conf_int()[1:], rtol=1e-10)
    with pytest.raises(AttributeError):
        res.odds_ratios


def test_ordinal_equals_orderedmodel(frame):
    res = outcome_model(frame, "mrs", ["nihss", "age", "lesion_volume"], family="ordinal",
                        volume_transform="log")
    X = pd.DataFrame(
        {"nihss": frame["nihss"], "age": frame["age"],
         "logv": np.log10(frame["lesion_volume"])}
    )
    y = pd.Series(pd.Categorical(frame["mrs"], categories=range(7), ordered=True))
    ref = OrderedModel(y.to_numpy(), X.to_numpy(), distr="logit").fit(
        method="bfgs", maxiter=2000, disp=False
    )
    assert res.levels == list(range(7))
    assert res.predictors == ["nihss", "age", "log10_lesion_volume"]
    np.testing.assert_allclose(res.table["coef"], ref.params[:3], rtol=1e-6)
    np.testing.assert_allclose(res.table["se"], ref.bse[:3], rtol=1e-4)
    ors = res.odds_ratios
    np.testing.assert_allclose(ors["odds_ratio"], np.exp(ref.params[:3]), rtol=1e-6)
    np.testing.assert_allclose(ors[["or_ci_low", "or_ci_high"]], np.exp(ref.conf_int()[:3]),
                               rtol=1e-4)
    assert res.table.loc["nihss", "odds_ratio"] > 1  # higher NIHSS, worse mRS


def test_logistic_dichotomy_equals_logit(frame):
    res = outcome_model(frame, "mrs", ["nihss", "age"], family="logistic", cutoff=2)
    y = (frame["mrs"] >= 3).astype(float)  # mRS 0-2 vs 3-6
    ref = sm.Logit(y.to_numpy(), sm.add_constant(frame[["nihss", "age"]].to_numpy())).fit(disp=0)
    np.testing.assert_allclose(res.table["coef"], ref.params[1:], rtol=1e-6)
    np.testing.assert_allclose(res.table["p"], ref.pvalues[1:], rtol=1e-5)
    np.testing.assert_allclose(res.odds_ratios["or_ci_low"], np.exp(ref.conf_int()[1:, 0]),
                               rtol=1e-6)
    assert res.cutoff == 2 and "mrs > 2" in res.summary()
    # an outcome already coded 0/1 needs no cutoff
    f = frame.assign(poor=y)
    res2 = outcome_model(f, "poor", ["nihss", "age"], family="logistic")
    np.testing.assert_allclose(res2.table["coef"], res.table["coef"], rtol=1e-8)


def test_outcome_model_errors(frame):
    f = frame.copy()
    f.loc[f["mrs"] == 3, "mrs"] = 4
    with pytest.raises(AnalysisError, match=r"'mrs' has no subject at level\(s\) \[3\]"):
        outcome_model(f, "mrs", ["nihss"], family="ordinal")
    # declared levels with an empty one
    with pytest.raises(AnalysisError, match=r"level\(s\) \[7\]"):
        outcome_model(frame, "mrs", ["nihss"], family="ordinal", levels=list(range(8)))
    # a value outside the declared levels is named as the user wrote it, without relying
    # on pandas' deprecated Categorical construction from values outside the categories
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AnalysisError, match=r"'mrs' has value [3-6], which is not one of the levels \[0, 1, 2\]"):
            outcome_model(frame, "mrs", ["nihss"], family="ordinal", levels=[0, 1, 2])
    f2 = frame.assign(nihss2=frame["nihss"] * 3 - 1)
    with pytest.raises(AnalysisError, match=r"collinear predictors: 'nihss2'.*'nihss'"):
        outcome_model(f2, "mrs", ["nihss", "age", "nihss2"], family="ordinal")
    f3 = frame.assign(tot=frame["MCAL"] + frame["ACAL"])
    with pytest.raises(AnalysisError, match=r"'tot' is a linear combination of 'ACAL', 'MCAL'"):
        outcome_model(f3, "nihss", ["ACAL", "MCAL", "tot"])
    with pytest.raises(AnalysisError, match="cutoff=2"):
        outcome_model(frame, "mrs", ["nihss"], family="logistic")
    with pytest.raises(AnalysisError, match="constant"):
        outcome_model(frame.assign(k=1.0), "nihss", ["age", "k"])
    with pytest.raises(ValueError, match="'family' parameter"):
        outcome_model(frame, "nihss", ["age"], family="poisson")


def test_single_level_text_predictor_is_an_error(frame):
    """A text predictor with one level among the analysed subjects is constant, as a
    constant numeric one is: an error naming it and its level, not a silently dropped term."""
    with pytest.raises(AnalysisError, match=r"predictor 'site' is constant \(every analysed subject has "
                                            r"'A', its only level\).*Remove it"):
        outcome_model(frame.assign(site="A"), "nihss", ["age", "site"])
    # one level left after the exclusion of the subjects with a missing value
    f = frame.assign(sex2=np.where(frame["sex"] == "F", "F", None))
    for family in ("ols", "ordinal", "logistic"):
        with pytest.warns(DroppedSubjectsWarning), pytest.raises(AnalysisError, match="'sex2' is constant"):
            outcome_model(f, "mrs", ["nihss", "sex2"], family=family, cutoff=2 if family == "logistic" else None)
    # two levels: a dummy column, as before
    res = outcome_model(frame, "nihss", ["age", "sex"])
    assert res.predictors == ["age", "sex[M]"]


def test_outcome_model_exclusions_and_plot(frame):
    f = frame.copy()
    f.loc["sub-010", "mrs"] = np.nan
    f.loc["sub-011", "age"] = np.nan
    with pytest.warns(DroppedSubjectsWarning):
        res = outcome_model(f, "mrs", ["nihss", "age"], family="ordinal")
    assert res.n == len(f) - 2
    assert list(res.excluded["reason"]) == ["missing outcome 'mrs'", "missing predictor 'age'"]
    assert res.to_dataframe().shape[0] == 2
    ax = res.plot().axes[0]
    assert ax.get_xscale() == "log"
    assert "<table" in res._repr_html_()
    matplotlib.pyplot.close("all")


# ------------------------------------------------------------------ territory LSM


def _brute_force(y, X, Z, perms, alternative="two-sided"):
    """FL max-|t| permutation test, one statsmodels OLS fit per permutation and column."""
    n, p = X.shape
    Zc = sm.add_constant(Z, has_constant="add") if Z.shape[1] else np.ones((n, 1))
    reduced = sm.OLS(y, Zc).fit()

    def tvals(yy):
        out = []
        for j in range(p):
            out.append(sm.OLS(yy, np.column_stack([Zc, X[:, j]])).fit().tvalues[-1])
        t = np.array(out)
        return {"two-sided": np.abs(t), "greater": t, "less": -t}[alternative]

    obs = tvals(y)
    null = np.array([tvals(reduced.fittedvalues + reduced.resid[pi]) for pi in perms])
    B = len(perms)
    p_unc = (1 + (null >= obs - 1e-9).sum(0)) / (1 + B)
    p_fwe = (1 + (null.max(1)[:, None] >= obs - 1e-9).sum(0)) / (1 + B)
    return obs, p_unc, p_fwe


def _data(n=30, seed=1):
    f = _make_frame(n=n, seed=seed)
    return f["nihss"].to_numpy(float), f[TERR].to_numpy(float), f


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("covariates", [False, True])
def test_regression_fwe_equals_brute_force(covariates, alternative):
    y, X, f = _data()
    Z = f[["age", "lesion_volume"]].to_numpy(float) if covariates else np.empty((len(y), 0))
    B = 60
    perms = draw_permutations(B, len(y), check_random_state(0))
    res = territory_level._territory_lsm_arrays(
        y, X, Z, method="regression", n_permutations=B, rng=None, alternative=alternative,
        n_jobs=1, permutations=perms,
    )
    t, p_unc, p_fwe = _brute_force(y, X, Z, perms, alternative)
    signed_t = {"two-sided": np.abs(res["t"]), "greater": res["t"], "less": -res["t"]}
    np.testing.assert_allclose(signed_t[alternative], t, rtol=1e-8)
    np.testing.assert_array_equal(res["p_uncorrected"], p_unc)
    np.testing.assert_array_equal(res["p_fwe"], p_fwe)
    # parametric p-value of the unpermuted test is statsmodels' t test
    Zc = sm.add_constant(Z, has_constant="add") if covariates else np.ones((len(y), 1))
    if alternative == "two-sided":
        p_sm = [sm.OLS(y, np.column_stack([Zc, X[:, j]])).fit().pvalues[-1] for j in range(5)]
        np.testing.assert_allclose(res["p_parametric"], p_sm, rtol=1e-8)


def test_spearman_fwe_equals_brute_force_on_ranks():
    y, X, f = _data()
    B = 60
    perms = draw_permutations(B, len(y), check_random_state(1))
    res = territory_level._territory_lsm_arrays(
        y, X, np.empty((len(y), 0)), method="spearman", n_permutations=B, rng=None,
        alternative="two-sided", n_jobs=1, permutations=perms,
    )
    rho = np.array([stats.spearmanr(X[:, j], y).statistic for j in range(X.shape[1])])
    np.testing.assert_allclose(res["r"], rho, rtol=1e-10)
    null = np.array(
        [[abs(stats.spearmanr(X[:, j], y[pi]).statistic) for j in range(X.shape[1])]
         for pi in perms]
    )
    p_fwe = (1 + (null.max(1)[:, None] >= np.abs(rho) - 1e-9).sum(0)) / (1 + B)
    np.testing.assert_array_equal(res["p_fwe"], p_fwe)
    # with covariates: Freedman-Lane on ranks of every variable
    Z = f[["age", "lesion_volume"]].to_numpy(float)
    res = territory_level._territory_lsm_arrays(
        y, X, Z, method="spearman", n_permutations=B, rng=None, alternative="two-sided",
        n_jobs=1, permutations=perms,
    )
    rk = lambda a: stats.rankdata(a, axis=0)  # noqa: E731
    _, p_unc, p_fwe = _brute_force(rk(y), rk(X), rk(Z), perms)
    np.testing.assert_array_equal(res["p_uncorrected"], p_unc)
    np.testing.assert_array_equal(res["p_fwe"], p_fwe)


def _psr_reference(codes, Z):
    """Probability-scale residuals from statsmodels' fitted category probabilities."""
    K = codes.max() + 1
    y = pd.Categorical.from_codes(codes, categories=list(range(K)), ordered=True)
    res = OrderedModel(pd.Series(y), Z, distr="logit").fit(method="bfgs", maxiter=2000,
                                                           disp=False)
    prob = res.predict()
    idx = np.arange(len(codes))
    below = np.array([prob[i, : codes[i]].sum() for i in idx])
    above = np.array([prob[i, codes[i] + 1 :].sum() for i in idx])
    return below - above, res


def test_ordinal_statistic_is_proportional_odds_score():
    """The PSR is the PO score d logL/d eta: x'PSR equals statsmodels' score for beta_x."""
    _, X, f = _data(n=80, seed=4)
    codes = f["mrs"].to_numpy()
    Z = f[["age"]].to_numpy(float)
    psr, null = _psr_reference(codes, Z)
    np.testing.assert_allclose(territory_level._ordinal_residuals(codes, Z, 7), psr, atol=1e-6)
    K = 7
    y = pd.Categorical.from_codes(codes, categories=list(range(K)), ordered=True)
    for j in range(X.shape[1]):
        full = OrderedModel(pd.Series(y), np.column_stack([Z, X[:, j]]), distr="logit")
        params = np.concatenate([null.params[:1], [0.0], null.params[1:]])
        score = full.score(params)[1]
        assert X[:, j] @ psr == pytest.approx(score, rel=1e-4, abs=1e-4)


def test_ordinal_without_covariates_is_rank_test():
    """Without nuisance the PO score statistic is the correlation with the mid-ranks."""
    _, X, f = _data(n=50, seed=5)
    codes = f["mrs"].to_numpy()
    res = territory_level._territory_lsm_arrays(
        codes.astype(float), X, np.empty((50, 0)), method="ordinal", n_permutations=20,
        rng=check_random_state(0), alternative="two-sided", n_jobs=1, ordinal_codes=codes,
    )
    expected = [stats.pearsonr(X[:, j], stats.rankdata(codes)).statistic for j in range(5)]
    np.testing.assert_allclose(res["r"], expected, rtol=1e-10)


def test_ordinal_fwe_equals_brute_force():
    _, X, f = _data(n=40, seed=6)
    codes = f["mrs"].to_numpy()
    Z = f[["age", "lesion_volume"]].to_numpy(float)
    B = 40
    perms = draw_permutations(B, 40, check_random_state(2))
    res = territory_level._territory_lsm_arrays(
        codes.astype(float), X, Z, method="ordinal", n_permutations=B, rng=None,
        alternative="two-sided", n_jobs=1, ordinal_codes=codes, permutations=perms,
    )
    psr, _ = _psr_reference(codes, Z)
    _, p_unc, p_fwe = _brute_force(psr, X, Z, perms)
    np.testing.assert_array_equal(res["p_uncorrected"], p_unc)
    np.testing.assert_array_equal(res["p_fwe"], p_fwe)


def test_territory_lsm_identical_for_any_n_jobs(frame):
    kw = dict(territories=TERR, lesion_volume="covariate", volume_transform="log", covariates="age",
              n_permutations=600,
              random_state=7)
    a = territory_lsm(frame, "nihss", n_jobs=1, **kw)
    b = territory_lsm(frame, "nihss", n_jobs=2, **kw)
    np.testing.assert_array_equal(a.null_max, b.null_max)
    pd.testing.assert_frame_equal(a.table, b.table)


def test_territory_lsm_table_and_planted_effect(frame):
    f = frame.copy()
    f["EMPTY"] = 0.0
    f.loc[f.index[:3], "EMPTY"] = 0.5  # lesioned in 3 < min_lesioned subjects
    res = territory_lsm(f, "nihss", territories=TERR + ["EMPTY"], method="regression",
                        lesion_volume="covariate", n_permutations=999, random_state=0, min_lesioned=5)
    tab = res.table
    assert not tab.loc["EMPTY", "tested"] and np.isnan(tab.loc["EMPTY", "p_fwe"])
    assert "fewer than 5" in tab.loc["EMPTY", "not_tested"]
    assert list(res.significant.index[res.significant]) == ["MCAL"]
    assert res.significant.dtype == bool and list(res.significant.index) == TERR + ["EMPTY"]
    assert res.params["min_lesioned_count"] == 5 and res.provenance["random_state"] == 0
    assert (tab.loc[TERR, "p_fwe"] >= tab.loc[TERR, "p_uncorrected"]).all()
    assert res.n_permutations == len(res.null_max) == 999
    assert res.covariates == ["lesion_volume"]
    np.testing.assert_array_equal(tab["n_lesioned"].to_numpy(), (f[tab.index] > 0).sum().to_numpy())
    fdr = stats.false_discovery_control(tab.loc[TERR, "p_uncorrected"])
    np.testing.assert_allclose(tab.loc[TERR, "p_fdr_bh"], fdr)
    fdr_by = stats.false_discovery_control(tab.loc[TERR, "p_uncorrected"], method="by")
    np.testing.assert_allclose(tab.loc[TERR, "p_fdr_by"], fdr_by)
    above = tab.loc[TERR, "r"].abs() > res.r_critical
    np.testing.assert_array_equal(above, tab.loc[TERR, "p_fwe"] <= 0.05)
    ax = res.plot().axes[0]
    assert len(ax.patches) == len(TERR)
    assert "MCAL" in res.summary() and "<pre>" in res._repr_html_()
    matplotlib.pyplot.close("all")


def test_territory_lsm_plot_labels_fit_in_the_figure(frame):
    """The rotated territory names, the y ticks and the y label lie inside the saved figure
    (they were cut off at the bottom and left edges)."""
    import io

    res = territory_lsm(frame, "nihss", territories=TERR, covariates="age", n_permutations=99,
                        random_state=0)
    ax = res.plot().axes[0]
    fig = ax.figure
    fig.savefig(io.BytesIO(), format="png", bbox_inches=None)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    lo, hi = ax.get_ylim()
    y_ticks = [t for t, y in zip(ax.get_yticklabels(), ax.get_yticks()) if lo <= y <= hi]  # drawn
    texts = [*ax.get_xticklabels(), *y_ticks, ax.yaxis.label, ax.title]
    assert [t.get_text() for t in ax.get_xticklabels()] == TERR
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (text.get_text(), box)
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize(
    "method, reps",
    [("regression", 200), ("spearman", 200),
     pytest.param("ordinal", 300, marks=pytest.mark.slow)],
)
def test_territory_lsm_fwe_calibrated_under_null(method, reps):
    """No effect given the nuisance (which drives the score and correlates with the loads):
    the family-wise rejection rate is at most alpha, within Monte Carlo error."""
    rng = np.random.default_rng(99)
    rejections = 0
    for _ in range(reps):
        n = 50
        z = rng.normal(size=n)
        X = rng.uniform(0, 1, (n, 5)) * (rng.random((n, 5)) < 0.5) + 0.3 * np.abs(z)[:, None]
        latent = z + rng.logistic(size=n)
        codes = np.digitize(latent, np.quantile(latent, [0.2, 0.4, 0.6, 0.8]))
        y = codes.astype(float) if method == "ordinal" else latent
        res = territory_level._territory_lsm_arrays(
            y, X, z[:, None], method=method, n_permutations=99, rng=rng,
            alternative="two-sided", n_jobs=1, ordinal_codes=codes,
        )
        rejections += (res["p_fwe"] <= 0.05).any()
    rate = rejections / reps
    assert rate < 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps), rate


def test_territory_lsm_errors_and_exclusions(frame):
    f = frame.copy()
    f.loc["sub-000", "nihss"] = np.nan
    with pytest.warns(DroppedSubjectsWarning):
        res = territory_lsm(f, "nihss", territories=TERR, n_permutations=50, random_state=0)
    assert list(res.excluded["subject"]) == ["sub-000"] and res.n == len(f) - 1
    with pytest.raises(ValueError, match="territories"):
        territory_lsm(frame, "nihss")
    with pytest.raises(ValueError, match="'lesion_volume' parameter"):
        territory_lsm(frame, "nihss", territories=TERR, lesion_volume="cubic")
    g = frame.assign(v2=frame["lesion_volume"] * 2)
    with pytest.raises(AnalysisError, match="collinear covariates: 'lesion_volume'"):
        territory_lsm(g, "nihss", territories=TERR, covariates="v2", lesion_volume="covariate")
    h = frame.copy()
    h.loc[h["mrs"] == 5, "mrs"] = 6
    with pytest.raises(AnalysisError, match=r"no subject at level\(s\) \[5\]"):
        territory_lsm(h, "mrs", territories=TERR, method="ordinal")


# ------------------------------------------------------------------ Cohort input


@pytest.fixture(scope="module")
def cohort():
    from lsm.simulate import make_synthetic_cohort

    return make_synthetic_cohort(40, random_state=0)


def test_cohort_input_matches_arrays(cohort):
    res = volume_score_correlation(cohort, "nihss", method="pearson", covariates="age",
                                   n_boot=0)
    vol = cohort.lesion_volumes.reindex(cohort.subjects).to_numpy()
    ph = cohort.phenotype.reindex(cohort.subjects)
    Z = sm.add_constant(ph["age"].to_numpy(float))
    rx = sm.OLS(vol, Z).fit().resid
    ry = sm.OLS(ph["nihss"].to_numpy(float), Z).fit().resid
    assert res.r == pytest.approx(np.corrcoef(rx, ry)[0, 1], rel=1e-10)
    assert res.n == len(cohort.subjects)
    with pytest.raises(AnalysisError, match=r"\['nihs'\] not found in the cohort's phenotype"):
        volume_score_correlation(cohort, "nihs")
    om = outcome_model(cohort, "mrs", ["age", "lesion_volume", "sex"], family="ordinal")
    assert om.n == len(cohort.subjects) and om.predictors[-1].startswith("sex[")
    ref = OrderedModel(
        ph["mrs"].to_numpy(int),
        np.column_stack([ph["age"], vol, ph["sex"] == om.predictors[-1][4]]).astype(float),
        distr="logit",
    ).fit(method="bfgs", maxiter=2000, disp=False)
    np.testing.assert_allclose(om.table["coef"], ref.params[:3], rtol=1e-6)


def test_cohort_territory_lsm_equals_table_input(cohort, shared_data_dir, monkeypatch):
    """The Cohort wrapper joins territory_load's columns and the phenotype correctly."""
    from lsm.territory import territory_load

    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = territory_lsm(cohort, "nihss", level=2, lesion_volume="covariate",
                            volume_transform="log", n_permutations=99, random_state=0,
                            min_lesioned=2)
        loads = territory_load(cohort, level=2)
    terr = [c for c in loads.columns if c not in ("outside_ml", "lesion_volume_ml")]
    table = cohort.phenotype.join(loads[terr]).assign(lesion_volume=cohort.lesion_volumes)
    ref = territory_lsm(table, "nihss", territories=terr, lesion_volume="covariate",
                        volume_transform="log", n_permutations=99, random_state=0, min_lesioned=2)
    assert list(res.table.index) == terr and res.level == 2
    pd.testing.assert_frame_equal(res.table, ref.table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = outcome_model(cohort, "nihss", ["MCAL", "lesion_volume"], territory_level=2)
    np.testing.assert_allclose(
        om.table["coef"],
        sm.OLS(table["nihss"], sm.add_constant(table[["MCAL", "lesion_volume"]])).fit().params[1:],
        rtol=1e-10,
    )


def test_phenotype_column_named_like_a_territory_or_the_volume(cohort, shared_data_dir, monkeypatch):
    """A phenotype column 'MCAL' must not be silently replaced by the MCAL territory load;
    a phenotype 'lesion_volume' column is not used, and the user is told."""
    import lsm

    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    images = {s: cohort.lesion_img(s) for s in cohort.subjects}
    rng = np.random.default_rng(0)
    pheno = cohort.phenotype.assign(MCAL=rng.normal(size=len(cohort)), lesion_volume=5.0)
    pheno.index.name = "participant_id"
    twin = lsm.load_cohort(images, pheno.reset_index())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # territory loads are needed (ACAL): 'MCAL' is then ambiguous
        with pytest.raises(AnalysisError, match=r"\['MCAL'\] name both phenotype column"):
            outcome_model(twin, "nihss", ["MCAL", "ACAL"], territory_level=2)
        # no territory needed: 'MCAL' is the phenotype column
        only = outcome_model(twin, "nihss", ["MCAL"], territory_level=2)
    ph = twin.phenotype.loc[twin.subjects]
    ref = sm.OLS(ph["nihss"].to_numpy(float), sm.add_constant(ph["MCAL"].to_numpy(float))).fit()
    assert only.table["coef"].iloc[0] == pytest.approx(ref.params[1], rel=1e-10)
    with pytest.warns(UserWarning, match="cohort's own lesion volumes"):
        res = outcome_model(twin, "nihss", ["lesion_volume"])
    vol = twin.lesion_volumes.reindex(twin.subjects).to_numpy()
    ref = sm.OLS(twin.phenotype.loc[twin.subjects, "nihss"].to_numpy(float), sm.add_constant(vol)).fit()
    assert res.table["coef"].iloc[0] == pytest.approx(ref.params[1], rel=1e-10)


# ------------------------------------------------------------------ real data


def test_soop_correlation_equals_scipy(shared_data_dir):
    soop = shared_data_dir / "soop"
    ph = pd.read_csv(soop / "participants.tsv", sep="\t", na_values="n/a",
                     index_col="participant_id")
    ref = pd.read_csv(soop / "artery_reference.tsv", sep="\t", index_col="participant_id")
    data = ph.join(ref[["lesion_volume"]] / 1000.0, how="inner")  # 1 mm voxels -> ml
    with pytest.warns(DroppedSubjectsWarning):
        res = volume_score_correlation(data, "nihss", n_boot=200, random_state=0)
    ok = data[["lesion_volume", "nihss"]].dropna()
    assert res.n == len(ok) > 500
    expected = stats.spearmanr(ok["lesion_volume"], ok["nihss"])
    assert res.r == pytest.approx(expected.statistic, rel=1e-10)
    assert res.ci[0] < res.r < res.ci[1]


@pytest.mark.parametrize("correction, column", [("fdr_bh", "p_fdr_bh"), ("fdr_by", "p_fdr_by"),
                                                ("none", "p_uncorrected")])
def test_territory_lsm_correction_choice(frame, correction, column):
    res = territory_lsm(frame, "nihss", territories=TERR, correction=correction, alpha=0.1,
                        n_permutations=199, random_state=1)
    np.testing.assert_array_equal(res.table["p_corrected"], res.table[column])
    np.testing.assert_array_equal(res.table["significant"], res.table[column] <= 0.1)
    # the same permutations whatever the correction: only the decision column changes
    fwe = territory_lsm(frame, "nihss", territories=TERR, n_permutations=199, random_state=1)
    np.testing.assert_array_equal(res.null_max, fwe.null_max)
    ax = res.plot(sort=True).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(
        res.table.sort_values("r", ascending=False).index
    )
    matplotlib.pyplot.close("all")


def test_soop_cohort_matches_independent_join(soop_cohort, shared_data_dir):
    """Cohort path on the real data: the same r as scipy on participants.tsv joined with the
    reference lesion volumes (artery_reference.tsv, voxels of 1 mm^3), read without lsm."""
    soop = shared_data_dir / "soop"
    ph = pd.read_csv(soop / "participants.tsv", sep="\t", na_values="n/a",
                     index_col="participant_id")
    ref = pd.read_csv(soop / "artery_reference.tsv", sep="\t", index_col="participant_id")
    data = ph.join(ref["lesion_volume"] / 1000.0, how="inner")[["lesion_volume", "nihss", "age"]]
    with pytest.warns(DroppedSubjectsWarning):
        res = volume_score_correlation(soop_cohort, "nihss", method="pearson", n_boot=0)
    ok = data[["lesion_volume", "nihss"]].dropna()
    assert res.n == len(ok)
    expected = stats.pearsonr(ok["lesion_volume"], ok["nihss"])
    assert res.r == pytest.approx(expected.statistic, rel=1e-9)
    assert sorted(res.excluded["subject"]) == sorted(set(data.index) - set(ok.index))


# ------------------------------------------------------------------ shared vocabulary and result contract


@pytest.mark.parametrize("old, hint", [("log", "volume_transform='log'"), (True, "'covariate'"),
                                       ("linear", "volume_transform='linear'")])
def test_territory_lsm_old_lesion_volume_values_are_refused_with_a_hint(frame, old, hint):
    with pytest.raises(ValueError, match=f"'lesion_volume' parameter.*got {old!r}.*{hint}"):
        territory_lsm(frame, "nihss", territories=TERR, lesion_volume=old, n_permutations=10)
    with pytest.raises(ValueError, match="'correction' parameter.*'fdr'.*Did you mean 'fdr_bh'"):
        territory_lsm(frame, "nihss", territories=TERR, correction="fdr", n_permutations=10)
    with pytest.raises(ValueError, match="'lesion_volume' parameter.*'dtlvc'"):
        territory_lsm(frame, "nihss", territories=TERR, lesion_volume="dtlvc", n_permutations=10)


def test_territory_lsm_min_lesioned_fraction_and_count(frame):
    """min_lesioned=0.05 is a fraction (ceil(0.05 * 40) = 2), never a count; 1 subject is refused."""
    f = frame.iloc[:40].copy()
    f["ONE"] = 0.0
    f.loc[f.index[0], "ONE"] = 0.7
    f["TWO"] = 0.0
    f.loc[f.index[:2], "TWO"] = 0.4
    res = territory_lsm(f, "nihss", territories=TERR + ["ONE", "TWO"], n_permutations=20, random_state=0)
    assert res.params["min_lesioned_count"] == 2
    assert not res.table.loc["ONE", "tested"] and res.table.loc["TWO", "tested"]
    assert res.table.loc["ONE", "not_tested"] == "lesioned in fewer than 2 subjects"
    res = territory_lsm(f, "nihss", territories=TERR + ["ONE", "TWO"], n_permutations=20, random_state=0,
                        min_lesioned=0.1)
    assert res.params["min_lesioned_count"] == 4 and not res.table.loc["TWO", "tested"]
    with pytest.raises(AnalysisError, match="min_lesioned=0.01 means 1 subject"):
        territory_lsm(f, "nihss", territories=TERR, min_lesioned=0.01, n_permutations=10)
    with pytest.raises(ValueError, match="'min_lesioned' parameter"):
        territory_lsm(f, "nihss", territories=TERR, min_lesioned=1.5, n_permutations=10)


def test_territory_lsm_seed_recorded_and_reused(frame):
    a = territory_lsm(frame, "nihss", territories=TERR, n_permutations=50)
    seed = a.provenance["random_state"]
    assert isinstance(seed, int)
    b = territory_lsm(frame, "nihss", territories=TERR, n_permutations=50, random_state=seed)
    np.testing.assert_array_equal(a.null_max, b.null_max)
    for key in ("lsm_version", "versions", "n_jobs", "runtime_s", "created"):
        assert key in a.provenance


def test_table_results_save_load_round_trip(frame, tmp_path):
    from lsm._result import AnalysisResult, Summary
    from lsm.exceptions import OutputExistsError

    f = frame.copy()
    f.loc["sub-000", "nihss"] = np.nan
    with pytest.warns(DroppedSubjectsWarning):
        tl = territory_lsm(f, "nihss", territories=TERR, n_permutations=30, random_state=0,
                           lesion_volume="covariate")
        corr = volume_score_correlation(f, "nihss", n_boot=50, random_state=0)
        om = outcome_model(f, "nihss", ["age", "lesion_volume"])
    for res in (tl, corr, om):
        assert isinstance(res, AnalysisResult) and isinstance(res.summary(), Summary)
        assert list(res.excluded.columns) == ["subject", "reason"]
        assert list(res.excluded["subject"]) == ["sub-000"]
        assert "<html>" in res.to_html() and "<pre>" in res._repr_html_()
        path = tmp_path / type(res).__name__
        res.save(path)
        with pytest.raises(OutputExistsError):
            res.save(path)
        back = type(res).load(path)
        pd.testing.assert_frame_equal(back.to_dataframe(), res.to_dataframe(), check_dtype=False)
        pd.testing.assert_frame_equal(back.excluded, res.excluded, check_dtype=False)
        assert back.params == json_roundtrip(res.params)
        assert str(back.summary()) == str(res.summary())
    np.testing.assert_array_equal(type(tl).load(tmp_path / type(tl).__name__).null_max, tl.null_max)
    assert type(om).load(tmp_path / type(om).__name__).results is None


def json_roundtrip(obj):
    import json

    return json.loads(json.dumps(obj))


def test_territory_lsm_needs_an_atlas_for_a_cohort(cohort):
    with pytest.raises(ValueError, match="'atlas' parameter.*got None"):
        territory_lsm(cohort, "nihss", atlas=None, n_permutations=10)
