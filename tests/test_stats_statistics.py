"""Per-voxel statistics of lsm.stats against scipy.stats and statsmodels."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats as ss
import statsmodels.api as sm

from lsm.exceptions import AnalysisError
from lsm.stats import t_to_z, unique_patterns, voxelwise_test

RTOL = 1e-8


def _lesions(rng, n, n_vox, frac=0.35, n_dup=5):
    les = (rng.random((n, n_vox)) < frac).astype(np.float64)
    # Identical columns exercise the unique-pattern compression.
    les[:, 1 : 1 + n_dup] = les[:, [0]]
    return les


def _close(actual, expected, rtol=RTOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    # Infinite statistics (complete separation) must agree exactly, the rest to rtol.
    assert np.array_equal(np.isinf(actual), np.isinf(expected))
    assert np.array_equal(actual[np.isinf(actual)], expected[np.isinf(expected)])
    fin = np.isfinite(expected)
    assert np.all(np.isfinite(actual[fin]))
    scale = np.maximum(np.abs(expected[fin]), 1.0)
    np.testing.assert_array_less(np.abs(actual[fin] - expected[fin]) / scale, rtol)


def _groups(les, y, j):
    return y[les[:, j] > 0], y[les[:, j] == 0]


SCORES = {
    # Heavily tied like NIHSS / mRS, continuous, and a small-sample case.
    "tied": lambda rng, n: rng.integers(0, 7, n).astype(float),
    "continuous": lambda rng, n: rng.normal(size=n),
}


@pytest.mark.parametrize("kind", sorted(SCORES))
@pytest.mark.parametrize("n", [9, 60])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_ttest_and_welch_match_scipy(kind, n, alternative):
    rng = np.random.default_rng(n)
    les = _lesions(rng, n, 40)
    y = SCORES[kind](rng, n)
    for method, equal_var in (("ttest", True), ("welch", False)):
        res = voxelwise_test(
            sp.csr_matrix(les), y, method=method, correction="none", min_lesioned=2,
            alternative=alternative,
        )
        cols = np.flatnonzero(res.tested)
        ref = [ss.ttest_ind(*_groups(les, y, j), equal_var=equal_var, alternative=alternative)
               for j in cols]
        _close(res.stat, [r.statistic for r in ref])
        _close(res.p, [r.pvalue for r in ref])
        # z has the same tail probability as the statistic
        _close(ss.norm.sf(np.abs(res.z)) * 2, [
            ss.ttest_ind(*_groups(les, y, j), equal_var=equal_var).pvalue for j in cols])
        big = np.abs(res.stat) > 1e-8
        assert np.all(np.sign(res.z[big]) == np.sign(res.stat[big]))


@pytest.mark.parametrize("kind", sorted(SCORES))
@pytest.mark.parametrize("n", [8, 50])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_brunner_munzel_matches_scipy_with_ties(kind, n, alternative):
    rng = np.random.default_rng(100 + n)
    les = _lesions(rng, n, 40)
    y = SCORES[kind](rng, n)
    res = voxelwise_test(
        sp.csr_matrix(les), y, method="brunner_munzel", correction="none", min_lesioned=2,
        alternative=alternative,
    )
    cols = np.flatnonzero(res.tested)
    # scipy's statistic is positive when its second sample is larger, but its alternative
    # names the first sample ('greater': x tends to be larger): pass the lesioned second
    # and swap the one-sided alternatives.
    scipy_alt = {"two-sided": "two-sided", "greater": "less", "less": "greater"}[alternative]
    ref = []
    for j in cols:
        g1, g0 = _groups(les, y, j)
        with np.errstate(all="ignore"):
            ref.append(ss.brunnermunzel(g0, g1, alternative=scipy_alt))
    stat = np.array([r.statistic for r in ref])
    pval = np.array([r.pvalue for r in ref])
    _close(res.stat, stat)
    assert np.isfinite(stat).sum() >= 10
    # scipy leaves p undefined (NaN) under complete separation; lsm reports the limit.
    sep = np.isinf(stat)
    _close(res.p[~sep], pval[~sep])
    expect_sep = {"two-sided": 0.0, "greater": (stat[sep] < 0) * 1.0, "less": (stat[sep] > 0) * 1.0}
    np.testing.assert_array_equal(res.p[sep], expect_sep[alternative])


def test_brunner_munzel_many_ties_and_extreme_scores():
    # Two-valued score (the most tied case) and groups of size 2 at the edge.
    rng = np.random.default_rng(7)
    n = 12
    les = _lesions(rng, n, 60, frac=0.5)
    y = rng.integers(0, 2, n).astype(float)
    y[:2] = [0, 1]
    res = voxelwise_test(les, y, method="brunner_munzel", correction="none", min_lesioned=2)
    cols = np.flatnonzero(res.tested)
    stat = []
    for j in cols:
        g1, g0 = _groups(les, y, j)
        with np.errstate(all="ignore"):
            stat.append(ss.brunnermunzel(g0, g1).statistic)
    stat = np.asarray(stat)
    finite = np.isfinite(stat)
    assert finite.sum() > 20
    _close(res.stat[finite], stat[finite])
    # Zero variance in both groups (complete separation) gives +-inf, not NaN.
    assert not np.any(np.isnan(res.stat))


@pytest.mark.parametrize("n_cov", [0, 1, 3])
def test_regression_matches_statsmodels(n_cov):
    rng = np.random.default_rng(3 + n_cov)
    n = 45
    les = _lesions(rng, n, 30)
    cov = rng.normal(size=(n, n_cov))
    y = rng.integers(0, 20, n) + cov.sum(axis=1)
    res = voxelwise_test(
        les, y, method="regression", covariates=cov if n_cov else None,
        correction="none", min_lesioned=3,
    )
    tvals, pvals = [], []
    for j in np.flatnonzero(res.tested):
        design = sm.add_constant(np.column_stack([les[:, j], cov]))
        fit = sm.OLS(y, design).fit()
        tvals.append(fit.tvalues[1])
        pvals.append(fit.pvalues[1])
    _close(res.stat, tvals)
    _close(res.p, pvals)


def test_regression_dtlvc_matches_statsmodels():
    rng = np.random.default_rng(11)
    n = 40
    les = _lesions(rng, n, 30)
    volume = rng.uniform(1, 50, n)
    y = rng.normal(size=n)
    scale = 1 / np.sqrt(volume)
    res = voxelwise_test(les, y, method="regression", lesion_scale=scale, correction="none",
                         min_lesioned=3)
    tvals = [sm.OLS(y, sm.add_constant(les[:, j] * scale)).fit().tvalues[1]
             for j in np.flatnonzero(res.tested)]
    _close(res.stat, tvals)


def test_ttest_equals_regression_without_covariates():
    rng = np.random.default_rng(5)
    les = _lesions(rng, 30, 20)
    y = rng.normal(size=30)
    a = voxelwise_test(les, y, method="ttest", correction="none")
    b = voxelwise_test(les, y, method="regression", correction="none")
    np.testing.assert_allclose(a.stat, b.stat, rtol=1e-12)


@pytest.mark.parametrize("n", [10, 70])
def test_liebermeister_matches_fisher_exact(n):
    rng = np.random.default_rng(n)
    les = _lesions(rng, n, 40, frac=0.4)
    y = (rng.random(n) < 0.4).astype(float)
    y[:2], y[2:4] = 1, 0
    for alternative in ("greater", "less", "two-sided"):
        res = voxelwise_test(les, y, method="liebermeister", correction="none",
                             alternative=alternative, min_lesioned=2)
        p_ref, z_ref = [], []
        for j in np.flatnonzero(res.tested):
            x = les[:, j] > 0
            a, b = np.sum(x & (y == 1)), np.sum(x & (y == 0))
            c, d = np.sum(~x & (y == 1)), np.sum(~x & (y == 0))
            # Liebermeister: Fisher's one-sided test with one added to the tested diagonal.
            pg = ss.fisher_exact([[a + 1, b], [c, d + 1]], alternative="greater").pvalue
            pl = ss.fisher_exact([[a, b + 1], [c + 1, d]], alternative="less").pvalue
            p_ref.append({"greater": pg, "less": pl, "two-sided": min(1, 2 * min(pg, pl))}[alternative])
            # z: sign of the observed difference in rates (ad - bc), size from that tail
            direction = np.sign(a * d - b * c)
            z_ref.append(direction * max(ss.norm.isf(pg if direction > 0 else pl), 0.0))
        _close(res.p, p_ref)
        _close(res.stat, z_ref)
        assert np.array_equal(res.stat, res.z)


def test_liebermeister_sign_follows_the_observed_rates_near_the_null():
    """Table a, b, c, d = 1, 2, 8, 14: lesioned subjects have the lower rate of score 1
    (1/3 vs 8/22) and both +1-corrected tails exceed 0.5: the statistic must not be
    positive. Recoding the score (1 - y) mirrors every statistic."""
    def lieb(a, b, c, d):
        x = np.r_[np.ones(a + b), np.zeros(c + d)]
        y = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)]
        res = voxelwise_test(x[:, None], y, method="liebermeister", correction="none", min_lesioned=2)
        return res.stat[0], res.p[0]

    stat, p = lieb(1, 2, 8, 14)
    assert stat <= 0 and p > 0.9
    assert lieb(2, 1, 14, 8)[0] == -stat
    stat, p = lieb(1, 5, 12, 6)  # a clear effect: lesioned have the lower rate
    assert stat < -1.5 and p < 0.05
    np.testing.assert_allclose(lieb(5, 1, 6, 12), (-stat, p), rtol=1e-12)


def test_sign_convention_positive_when_lesioned_higher():
    n = 20
    les = np.zeros((n, 3))
    les[:10, :] = 1
    les[0, 1] = 0
    les[12, 2] = 1
    y = np.r_[np.full(10, 5.0), np.full(10, 1.0)] + np.linspace(0, 0.5, n)
    for method in ("ttest", "welch", "brunner_munzel", "regression"):
        res = voxelwise_test(les, y, method=method, correction="none", min_lesioned=2)
        assert np.all(res.stat > 0), method
        res = voxelwise_test(les, -y, method=method, correction="none", min_lesioned=2)
        assert np.all(res.stat < 0), method


def test_t_to_z_tail_identity_and_far_tail():
    t = np.array([-40.0, -3.0, -0.5, 0.0, 0.7, 2.0, 8.0])
    df = np.array([3.0, 10.0, 50.0, 7.0, 200.0, 5.5, 30.0])
    z = t_to_z(t, df)
    np.testing.assert_allclose(ss.norm.sf(np.abs(z)), ss.t.sf(np.abs(t), df), rtol=1e-10)
    assert np.array_equal(np.sign(z), np.sign(t))
    # Beyond the double range of stdtr the asymptotic expansion takes over smoothly.
    tt = np.geomspace(20, 5e3, 400)
    zz = t_to_z(tt, np.full(tt.size, 200.0))
    assert np.all(np.isfinite(zz)) and np.all(np.diff(zz) > 0)
    switch = np.flatnonzero(ss.t.sf(tt, 200.0) == 0)[0]
    assert abs(zz[switch] / zz[switch - 1] - 1) < 0.01


@pytest.mark.parametrize("df", [40.0, 900.0])
def test_t_to_z_far_tail_exact_for_large_df(df):
    # Welch and Brunner-Munzel df reach the number of subjects (~900 on SOOP), where
    # P(T > t) underflows already at t ~ 40. Reference: the same tail from scipy's
    # hyp2f1, I_x(a, 1/2) = x^a / (a B(a, 1/2)) 2F1(a, 1/2; a + 1; x).
    from scipy import special

    a = df / 2
    t = np.geomspace(30.0, 3e3, 500)
    x = df / (df + t * t)
    log_tail = (
        np.log(0.5) + a * np.log(x) - np.log(a) - special.betaln(a, 0.5)
        + np.log(special.hyp2f1(a, 0.5, a + 1, x))
    )
    expected = -special.ndtri_exp(log_tail)
    z = t_to_z(t, df)
    np.testing.assert_allclose(z, expected, rtol=1e-12)
    np.testing.assert_allclose(t_to_z(-t, df), -expected, rtol=1e-12)
    # Increasing in t across the switch from stdtr to the log-tail series, and finite
    # for finite t whose square overflows.
    fine = np.linspace(t[0], 80.0, 20001)
    assert np.all(np.diff(t_to_z(fine, df)) > 0)
    huge = t_to_z(np.array([1e160, 1e300]), df)
    assert np.all(np.isfinite(huge)) and huge[1] > huge[0]


@pytest.mark.parametrize("block", [7, 1 << 22])
def test_unique_patterns_roundtrip_and_collision_fallback(monkeypatch, block):
    from lsm.stats import _patterns

    monkeypatch.setattr(_patterns, "_BLOCK_NNZ", block)  # tiny blocks: column-block loop
    rng = np.random.default_rng(0)
    les = (rng.random((15, 200)) < 0.2).astype(float)
    les[:, 100:150] = les[:, [3]]
    les[:, 150:160] = 0
    pats, inv, counts = unique_patterns(sp.csr_matrix(les))
    assert np.array_equal(pats.toarray()[:, inv], les)
    assert counts.sum() == 200 and counts[inv[3]] >= 51
    assert pats.shape[1] == len({les[:, j].tobytes() for j in range(200)})
    # Force a total hash collision: the exact fallback must still group correctly.
    monkeypatch.setattr(_patterns, "_column_hash", lambda idx, ptr, w: np.zeros(ptr.size - 1, np.uint64))
    pats2, inv2, _ = unique_patterns(sp.csr_matrix(les))
    assert np.array_equal(pats2.toarray()[:, inv2], les)
    assert pats2.shape[1] == pats.shape[1]


@pytest.mark.parametrize("method", ["ttest", "welch", "brunner_munzel", "regression"])
def test_constant_score_is_an_error(method):
    les = _lesions(np.random.default_rng(0), 10, 5)
    with pytest.raises(AnalysisError, match="constant"):
        voxelwise_test(les, np.full(10, 3.0), method=method, correction="none", min_lesioned=2)


def test_liebermeister_needs_a_binary_score():
    les = _lesions(np.random.default_rng(0), 10, 5)
    with pytest.raises(AnalysisError, match="binary score"):
        voxelwise_test(les, np.arange(10.0), method="liebermeister", correction="none", min_lesioned=2)
    with pytest.raises(AnalysisError, match="binary score"):
        voxelwise_test(les, np.r_[np.zeros(9), 2.0], method="liebermeister", correction="none",
                       min_lesioned=2)


def test_explicit_zeros_and_values_other_than_one():
    # Non-zero means lesioned; stored zeros are not lesions.
    rng = np.random.default_rng(12)
    les = _lesions(rng, 30, 25)
    y = rng.normal(size=30)
    ref = voxelwise_test(les * 3.0, y, correction="none", min_lesioned=3)
    np.testing.assert_array_equal(ref.stat, voxelwise_test(les, y, correction="none", min_lesioned=3).stat)
    odd = sp.csr_matrix(les * 3.0)
    odd.data[::7] = 0.0  # explicit zeros in the structure
    odd_dense = odd.toarray()
    got = voxelwise_test(odd, y, correction="none", min_lesioned=3)
    again = voxelwise_test((odd_dense != 0).astype(float), y, correction="none", min_lesioned=3)
    np.testing.assert_array_equal(got.stat, again.stat)
    np.testing.assert_array_equal(got.n_lesioned, (odd_dense != 0).sum(0))
    assert odd.nnz > np.count_nonzero(odd_dense)  # the zeros really were stored
    assert ref.stat.size > 0


@pytest.mark.parametrize("ratio", [0.0, 1e12])  # force the sparse or the dense path
@pytest.mark.parametrize("kind", sorted(SCORES))
def test_brunner_munzel_paths_match_scipy_and_each_other(monkeypatch, ratio, kind):
    from lsm.stats import _statistics

    monkeypatch.setattr(_statistics, "_BM_SPARSE_RATIO", ratio)
    monkeypatch.setattr(_statistics, "_BM_SPARSE_NNZ", 50)  # several blocks
    rng = np.random.default_rng(21)
    n = 35
    les = _lesions(rng, n, 30)
    y = SCORES[kind](rng, n)
    res = voxelwise_test(les, y, method="brunner_munzel", correction="fwe", n_permutations=15,
                         random_state=2, min_lesioned=2)
    with np.errstate(all="ignore"):
        ref = [ss.brunnermunzel(*_groups(les, y, j)[::-1]).statistic for j in np.flatnonzero(res.tested)]
    _close(res.stat, ref)
    monkeypatch.setattr(_statistics, "_BM_SPARSE_RATIO", 1e12 - ratio)  # the other path
    other = voxelwise_test(les, y, method="brunner_munzel", correction="fwe", n_permutations=15,
                           random_state=2, min_lesioned=2)
    np.testing.assert_array_equal(res.stat, other.stat)
    np.testing.assert_array_equal(res.null_distribution, other.null_distribution)
