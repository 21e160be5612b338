"""Permutation inference of lsm.stats: brute-force equality, invariance, calibration."""

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats as ss
from scipy import ndimage

from lsm.exceptions import AnalysisError
from lsm.stats import draw_permutations, voxelwise_test


def _alt(values, alternative):
    return {"two-sided": np.abs, "greater": lambda a: a, "less": lambda a: -a}[alternative](values)


def _dense_t(les, y, cols, equal_var=True):
    """Textbook two-sample t on dense 0/1 columns (vectorised; checked against scipy below)."""
    x = les[:, cols] > 0
    n1, n0 = x.sum(0), (~x).sum(0)
    m1 = (x * y[:, None]).sum(0) / n1
    m0 = (~x * y[:, None]).sum(0) / n0
    ss1 = (x * (y[:, None] - m1) ** 2).sum(0)
    ss0 = (~x * (y[:, None] - m0) ** 2).sum(0)
    if equal_var:
        se2 = (ss1 + ss0) / (n1 + n0 - 2) * (1 / n1 + 1 / n0)
        df = n1 + n0 - 2.0
    else:
        a1, a0 = ss1 / (n1 - 1) / n1, ss0 / (n0 - 1) / n0
        se2, df = a1 + a0, (a1 + a0) ** 2 / (a1**2 / (n1 - 1) + a0**2 / (n0 - 1))
    t = (m1 - m0) / np.sqrt(se2)
    return t, np.sign(t) * ss.norm.isf(ss.t.sf(np.abs(t), df))


def test_dense_reference_matches_scipy():
    les, y = _data(0)
    cols = np.arange(les.shape[1])
    for equal_var, method in ((True, "ttest"), (False, "welch")):
        t, z = _dense_t(les, y, cols, equal_var)
        ts, zs = _scipy_stat(method, les, y, cols, dense=False)
        np.testing.assert_allclose(t, ts, rtol=1e-10)
        np.testing.assert_allclose(z, zs, rtol=1e-8)


def _scipy_stat(method, les, y, cols, dense=True):
    """Statistic and z (from scipy's own p-value) of every column, the slow way."""
    if dense and method in ("ttest", "welch"):
        return _dense_t(les, y, cols, method == "ttest")
    stat, z = [], []
    for j in cols:
        g1, g0 = y[les[:, j] > 0], y[les[:, j] == 0]
        if method == "ttest":
            r = ss.ttest_ind(g1, g0)
        elif method == "welch":
            r = ss.ttest_ind(g1, g0, equal_var=False)
        else:
            with np.errstate(all="ignore"):
                r = ss.brunnermunzel(g0, g1)
        stat.append(r.statistic)
        # signed z with the one-sided tail of the statistic (inf under complete separation)
        z.append(np.sign(r.statistic) * (np.inf if np.isinf(r.statistic) else ss.norm.isf(r.pvalue / 2)))
    return np.array(stat), np.array(z)


def _brute_p(observed, null):
    # Bounds robust to last-bit differences between implementations at exact ties.
    lo = (1 + (null[None, :] > observed[:, None] + 1e-9).sum(1)) / (1 + null.size)
    hi = (1 + (null[None, :] >= observed[:, None] - 1e-9).sum(1)) / (1 + null.size)
    return lo, hi


def _data(seed, n=24, n_vox=30, tied=True):
    rng = np.random.default_rng(seed)
    les = (rng.random((n, n_vox)) < 0.4).astype(float)
    les[:, 1:4] = les[:, [0]]
    y = rng.integers(0, 5, n).astype(float) if tied else rng.normal(size=n)
    y += 2.0 * les[:, 0]  # some signal so that p-values spread
    return les, y


@pytest.mark.parametrize(
    "method,alternative,correction,v",
    [
        ("ttest", "two-sided", "fwe", 1),
        ("ttest", "greater", "cfwer", 4),
        ("ttest", "less", "fwe", 1),
        ("welch", "two-sided", "cfwer", 4),
        ("welch", "greater", "fwe", 1),
        ("brunner_munzel", "two-sided", "fwe", 1),
        ("brunner_munzel", "less", "cfwer", 4),
        ("brunner_munzel", "greater", "fwe", 1),
    ],
)
def test_corrected_p_equals_brute_force(method, alternative, correction, v):
    les, y = _data(1, n_vox=20)
    n_perm = 40
    res = voxelwise_test(
        sp.csr_matrix(les), y, method=method, correction=correction, v=v,
        n_permutations=n_perm, random_state=3, alternative=alternative, min_lesioned=3,
    )
    cols = np.flatnonzero(res.tested)
    perms = draw_permutations(n_perm, y.size, 3)
    compare_z = method != "ttest"
    null = []
    for perm in perms:
        stat, z = _scipy_stat(method, les, y[perm], cols)
        vals = np.sort(_alt(z if compare_z else stat, alternative))[::-1]
        null.append(vals[v - 1])
    null = np.array(null)
    stat, z = _scipy_stat(method, les, y, cols)
    lo, hi = _brute_p(_alt(z if compare_z else stat, alternative), null)
    assert np.all(res.p_corrected >= lo - 1e-12) and np.all(res.p_corrected <= hi + 1e-12)
    # not vacuous: most voxels have no exact tie with the null, and p-values spread
    assert np.mean(lo == hi) > 0.6 and np.ptp(res.p_corrected) > 0.3
    assert res.null_distribution.shape == (n_perm,)
    np.testing.assert_array_equal(res.significant, res.p_corrected <= 0.05)


def test_regression_freedman_lane_equals_brute_force():
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    n = 30
    les = (rng.random((n, 12)) < 0.4).astype(float)
    cov = rng.normal(size=(n, 2))
    y = cov @ [1.0, -0.5] + rng.normal(size=n) + les[:, 0]
    n_perm = 40
    res = voxelwise_test(les, y, method="regression", covariates=cov, n_permutations=n_perm,
                         random_state=9, min_lesioned=3)
    cols = np.flatnonzero(res.tested)
    zc = sm.add_constant(cov)
    fitted = sm.OLS(y, zc).fit()
    null = []
    for perm in draw_permutations(n_perm, n, 9):
        # Freedman-Lane: reduced-model fit plus permuted reduced-model residuals.
        y_star = fitted.fittedvalues + fitted.resid[perm]
        t = [sm.OLS(y_star, np.column_stack([zc, les[:, j]])).fit().tvalues[-1] for j in cols]
        null.append(np.max(np.abs(t)))
    t_obs = [sm.OLS(y, np.column_stack([zc, les[:, j]])).fit().tvalues[-1] for j in cols]
    lo, hi = _brute_p(np.abs(t_obs), np.array(null))
    assert np.all(res.p_corrected >= lo - 1e-12) and np.all(res.p_corrected <= hi + 1e-12)
    np.testing.assert_allclose(res.null_distribution, ss.norm.isf(ss.t.sf(null, n - 4)), rtol=1e-8)


def test_liebermeister_fwe_equals_brute_force():
    rng = np.random.default_rng(2)
    n = 30
    les = (rng.random((n, 15)) < 0.4).astype(float)
    y = (rng.random(n) < 0.5).astype(float)
    y[les[:, 0] > 0] = 1
    n_perm = 50
    res = voxelwise_test(les, y, method="liebermeister", n_permutations=n_perm, random_state=1)
    cols = np.flatnonzero(res.tested)

    def zmap(yy):
        out = []
        for j in cols:
            x = les[:, j] > 0
            a, b = np.sum(x & (yy == 1)), np.sum(x & (yy == 0))
            c, d = np.sum(~x & (yy == 1)), np.sum(~x & (yy == 0))
            pg = ss.fisher_exact([[a + 1, b], [c, d + 1]], alternative="greater").pvalue
            pl = ss.fisher_exact([[a, b + 1], [c + 1, d]], alternative="less").pvalue
            out.append(ss.norm.isf(pg) if pg < pl else -ss.norm.isf(pl))
        return np.abs(out)

    null = np.array([zmap(y[perm]).max() for perm in draw_permutations(n_perm, n, 1)])
    lo, hi = _brute_p(zmap(y), null)
    assert np.all(res.p_corrected >= lo - 1e-12) and np.all(res.p_corrected <= hi + 1e-12)


def test_cfwer_counts_voxels_not_patterns():
    # 10 identical voxels: with v=5 the 5th largest voxel is that pattern, not the 5th pattern.
    les, y = _data(5, n_vox=20)
    les[:, 10:20] = les[:, [10]]
    res = voxelwise_test(les, y, correction="cfwer", v=5, n_permutations=30, random_state=0,
                         min_lesioned=3)
    perms = draw_permutations(30, y.size, 0)
    cols = np.flatnonzero(res.tested)
    null = np.array([np.sort(np.abs(_scipy_stat("ttest", les, y[p], cols)[0]))[-5] for p in perms])
    np.testing.assert_allclose(res.null_distribution, ss.norm.isf(ss.t.sf(null, y.size - 2)),
                               rtol=1e-8)


def _invariance_runs(method, correction, **kw):
    les, y = _data(7, n=30, n_vox=60)
    args = dict(method=method, correction=correction, n_permutations=40, random_state=11,
                min_lesioned=3, **kw)
    runs = [voxelwise_test(les, y, n_jobs=1, **args),
            voxelwise_test(les, y, n_jobs=2, **args),
            voxelwise_test(les, y, n_jobs=-1, **args),
            voxelwise_test(les, y, n_jobs=1, working_memory=0.01, **args)]
    for backend in ("loky", "threading", "multiprocessing"):
        with joblib.parallel_config(backend=backend):
            runs.append(voxelwise_test(les, y, n_jobs=2, **args))
    return runs


@pytest.mark.parametrize("method", ["ttest", "welch", "brunner_munzel", "regression"])
@pytest.mark.parametrize("correction", ["fwe", "cfwer"])
def test_n_jobs_and_backend_invariance(method, correction):
    runs = _invariance_runs(method, correction, v=3)
    ref = runs[0]
    for other in runs[1:]:
        for name in ("stat", "z", "p", "p_corrected", "null_distribution", "significant"):
            assert np.array_equal(getattr(ref, name), getattr(other, name)), name
    assert ref.info["n_chunks"] < runs[3].info["n_chunks"]  # the small budget did chunk


@pytest.mark.parametrize("seed", [4, 5, 6])
@pytest.mark.parametrize("v", [1, 3])
def test_exact_ties_of_tied_scores_count_as_greater_or_equal(seed, v):
    """Integer scores (like NIHSS) make exact ties between permuted and observed |t|: a
    pattern and its mirror give the same |t| along different float paths. The corrected p
    must count them, exactly as an integer-arithmetic brute force does. For the pooled t,
    |t| is monotone in the between-group sum of squares, (n*s - n1*T)^2 / (n1*n0) with s the
    lesioned sum and T the total: exact in integers (Fractions)."""
    from fractions import Fraction

    rng = np.random.default_rng(seed)
    n, n_perm = 20, 300
    les = (rng.random((n, 60)) < rng.uniform(0.15, 0.6, 60)).astype(np.int64)
    y = rng.integers(0, 4, n)
    k = les.sum(0)
    les = les[:, (k >= 2) & (n - k >= 2)]
    correction = "fwe" if v == 1 else "cfwer"
    res = voxelwise_test(les, y.astype(float), n_permutations=n_perm, random_state=seed, min_lesioned=2,
                         correction=correction, v=v)
    total, n1 = int(y.sum()), les.sum(0)

    def key(scores):
        return [Fraction(int(a) ** 2, int(m * (n - m))) for a, m in zip(n * (scores @ les) - n1 * total, n1)]

    observed = key(y)
    null = [sorted(key(y[perm]), reverse=True)[v - 1] for perm in draw_permutations(n_perm, n, seed)]
    exact = np.array([(1 + sum(m >= o for m in null)) / (1 + n_perm) for o in observed])
    np.testing.assert_array_equal(res.p_corrected, exact)


def test_n_jobs_accepts_numpy_integers_and_rejects_the_rest():
    les, y = _data(3, n=30, n_vox=40)
    args = dict(n_permutations=20, random_state=0, min_lesioned=3)
    ref = voxelwise_test(les, y, n_jobs=2, **args)
    got = voxelwise_test(les, y, n_jobs=np.int64(2), **args)
    assert np.array_equal(ref.null_distribution, got.null_distribution)
    for bad in (0, 1.5, "2", True, np.bool_(True)):
        with pytest.raises(ValueError, match="'n_jobs' parameter"):
            voxelwise_test(les, y, n_jobs=bad, **args)


def test_cluster_null_invariance():
    les, y = _grid_data(0)
    args = dict(correction="cluster_size", n_permutations=20, random_state=1, grid_shape=(6, 6, 6))
    a = voxelwise_test(les, y, n_jobs=1, **args)
    b = voxelwise_test(les, y, n_jobs=2, **args)
    with joblib.parallel_config(backend="threading"):
        c = voxelwise_test(les, y, n_jobs=2, **args)
    assert np.array_equal(a.null_distribution, b.null_distribution)
    assert np.array_equal(a.null_distribution, c.null_distribution)


def test_dask_backend_gives_the_same_null():
    distributed = pytest.importorskip("distributed")
    les, y = _data(7, n=30, n_vox=60)
    args = dict(n_permutations=30, random_state=2, min_lesioned=3)
    ref = voxelwise_test(les, y, n_jobs=1, **args)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        with joblib.parallel_config(backend="dask"):
            got = voxelwise_test(les, y, n_jobs=2, **args)
    assert np.array_equal(ref.null_distribution, got.null_distribution)


def _grid_data(seed, shape=(6, 6, 6), n=30, effect=0.0):
    rng = np.random.default_rng(seed)
    vols = ndimage.gaussian_filter(rng.normal(size=(n,) + shape), sigma=(0, 1.2, 1.2, 1.2))
    les = (vols > 0.05).reshape(n, -1).astype(float)
    y = rng.normal(size=n) + effect * les[:, 0]
    return les, y


def _ref_clusters(z, shape, tested, thr, kind):
    vol = np.zeros(shape)
    vol.flat[np.flatnonzero(tested)] = z
    best = 0.0
    for part in (vol, -vol):
        lab, k = ndimage.label(part > thr, structure=np.ones((3, 3, 3)))
        for i in range(1, k + 1):
            m = lab == i
            best = max(best, m.sum() if kind == "cluster_size" else part[m].sum())
    return best


def _ref_tfce(z, shape, tested, step):
    vol = np.zeros(shape)
    vol.flat[np.flatnonzero(tested)] = z
    out = np.zeros(shape)
    for sign, part in ((1, vol), (-1, -vol)):
        h = step
        while h <= part.max() + 1e-12:
            lab, k = ndimage.label(part >= h - 1e-12, structure=np.ones((3, 3, 3)))
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            out += sign * sizes[lab] ** 0.5 * h**2 * step
            h += step
    return out.flat[np.flatnonzero(tested)]


@pytest.mark.parametrize("kind", ["cluster_size", "cluster_mass", "tfce"])
def test_cluster_and_tfce_equal_brute_force(kind):
    shape = (6, 6, 6)
    les, y = _grid_data(3, shape, effect=1.5)
    n_perm = 15
    res = voxelwise_test(les, y, correction=kind, n_permutations=n_perm, random_state=4,
                         grid_shape=shape, cluster_forming_p=0.05, tfce_step=0.2, min_lesioned=3)
    cols = np.flatnonzero(res.tested)
    thr = ss.norm.isf(0.025)
    null = []
    for perm in draw_permutations(n_perm, y.size, 4):
        z = _scipy_stat("ttest", les, y[perm], cols)[1]
        if kind == "tfce":
            null.append(np.abs(_ref_tfce(z, shape, res.tested, 0.2)).max())
        else:
            null.append(_ref_clusters(z, shape, res.tested, thr, kind))
    np.testing.assert_allclose(res.null_distribution, null, rtol=1e-8)
    assert np.ptp(null) > 0
    if kind == "tfce":
        z_obs = _scipy_stat("ttest", les, y, cols)[1]
        np.testing.assert_allclose(res.extra_maps["tfce"], _ref_tfce(z_obs, shape, res.tested, 0.2),
                                   rtol=1e-8, atol=1e-10)
        lo, hi = _brute_p(np.abs(res.extra_maps["tfce"]), np.array(null))
        assert np.all((res.p_corrected >= lo - 1e-12) & (res.p_corrected <= hi + 1e-12))


def test_fdr_matches_benjamini_hochberg():
    les, y = _data(8, n=40, n_vox=80, tied=False)
    res = voxelwise_test(les, y, correction="fdr_bh", min_lesioned=3)
    p = res.p
    m = p.size
    order = np.argsort(p)
    adj = np.minimum.accumulate((p[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    expected = np.empty(m)
    expected[order] = np.minimum(adj, 1)
    np.testing.assert_allclose(res.p_corrected, expected, rtol=1e-12)
    by = voxelwise_test(les, y, correction="fdr_by", min_lesioned=3)
    np.testing.assert_allclose(by.p_corrected, np.minimum(expected * np.sum(1 / np.arange(1, m + 1)), 1),
                               rtol=1e-12)
    assert res.null_distribution is None and res.threshold is None


def test_threshold_separates_significant_voxels():
    les, y = _data(9, n=40, n_vox=50)
    y = y + 3 * les[:, 5]
    res = voxelwise_test(les, y, n_permutations=99, random_state=0, min_lesioned=3)
    assert res.significant.any() and not res.significant.all()
    np.testing.assert_array_equal(res.significant, np.abs(res.z) > res.threshold)


@pytest.mark.parametrize("method", ["ttest", "brunner_munzel"])
def test_fwe_is_calibrated_under_the_null(method):
    # Family-wise error over many small null data sets: the permutation p-value is
    # valid, so P(any voxel p_FWE <= alpha) <= alpha, and it should be close to alpha.
    rng = np.random.default_rng(123)
    n_runs, hits = 300, 0
    for run in range(n_runs):
        les = (rng.random((20, 25)) < 0.4).astype(float)
        y = rng.integers(0, 6, 20).astype(float)
        res = voxelwise_test(les, y, method=method, n_permutations=39, random_state=run,
                             min_lesioned=3)
        hits += res.significant.any()
    rate = hits / n_runs
    se = np.sqrt(0.05 * 0.95 / n_runs)
    assert 0.05 - 3.5 * se < rate < 0.05 + 3.5 * se, rate


def test_degenerate_inputs_raise_clear_errors():
    les, y = _data(0, n=10, n_vox=5)
    with pytest.raises(AnalysisError, match="No voxel has at least 6 lesioned"):
        voxelwise_test(les, y, min_lesioned=6)
    with pytest.raises(ValueError, match="at least 2 lesioned"):
        voxelwise_test(les, y, min_lesioned=1)
    with pytest.raises(ValueError, match="fraction"):
        voxelwise_test(les, y, min_lesioned=1.5)
    with pytest.raises(AnalysisError, match="0 rows"):
        voxelwise_test(np.zeros((0, 5)), np.zeros(0))
    with pytest.raises(ValueError, match="'correction'"):
        voxelwise_test(les, y, correction="bonferroni")
    with pytest.raises(ValueError, match="only supported with method='regression'"):
        voxelwise_test(les, y, covariates=np.ones((10, 1)))
    with pytest.raises(ValueError, match="missing"):
        voxelwise_test(les, np.r_[np.nan, y[1:]])
    with pytest.raises(ValueError, match="grid_shape"):
        voxelwise_test(les, y, correction="tfce")
    with pytest.raises(AnalysisError, match="v=50"):
        voxelwise_test(les, y, correction="cfwer", v=50, min_lesioned=2)


def test_min_lesioned_fraction_is_ceil():
    les = np.zeros((20, 3))
    les[:3, 0] = 1  # 3 lesioned
    les[:4, 1] = 1  # 4 lesioned
    les[:17, 2] = 1  # 3 not lesioned
    y = np.arange(20.0)
    res = voxelwise_test(les, y, correction="none", min_lesioned=0.16)  # 3.2 -> 4
    assert res.min_lesioned == 4
    np.testing.assert_array_equal(res.tested, [False, True, False])
    res = voxelwise_test(les, y, correction="none", min_lesioned=0.15)  # exactly 3
    assert res.min_lesioned == 3 and res.tested.all()


def test_regression_drops_voxels_collinear_with_covariates():
    les, y = _data(13, n=30, n_vox=12)
    cov = les[:, [5]].copy()  # voxel 5's lesion status is itself a covariate
    res = voxelwise_test(les, y, method="regression", covariates=cov, correction="fwe",
                         n_permutations=20, random_state=0, min_lesioned=3)
    base = voxelwise_test(les, y, method="ttest", correction="none", min_lesioned=3)
    assert not res.tested[5] and base.tested[5]
    assert res.info["n_non_estimable_voxels"] >= 1
    assert np.all(np.isfinite(res.stat)) and res.tested.sum() == base.tested.sum() - res.info["n_non_estimable_voxels"]
