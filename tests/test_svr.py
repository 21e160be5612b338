"""SVR-LSM: the array engine against scikit-learn's feature-space SVR and brute-force
permutation loops, the cohort wrapper, its result and command line."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage, stats
from sklearn.metrics.pairwise import linear_kernel, rbf_kernel
from sklearn.svm import SVR

from lsm.exceptions import AnalysisError
from lsm.stats import draw_permutations
from lsm.stats._svr import gram_matrix, residual_projector, svr_kernel, svr_test

C, EPS = 30.0, 0.1
#: Solver tolerance of the comparisons with scikit-learn: libsvm stops at its tolerance, and
#: at the default 1e-3 a score differing in its last bits (lstsq vs a projector) may end
#: on another point of the tolerance region.
TOL = 1e-9


def _data(n=40, p=60, seed=0, effect=True):
    rng = np.random.default_rng(seed)
    X = (rng.random((n, p)) < 0.3).astype(float)
    X[:, 10] = X[:, 11]  # two voxels sharing a lesion pattern
    X[:, 20] = X[:, 11]
    y = (X[:, :5].sum(1) if effect else 0.0) + rng.normal(size=n)
    return X, y


def _hand_processed(X, y, lesion_volume, standardize=False, score_range=100.0):
    """Lesion data and score processed by hand (numpy lstsq), as the GUI describes it."""
    n = len(y)
    vol = X.sum(1)
    Z = np.column_stack([np.ones(n), vol])
    Xp, yp = X.copy(), y.copy()
    if lesion_volume in ("dtlvc", "dtlvc+covariate"):
        Xp = Xp / np.sqrt(vol)[:, None]
    if lesion_volume in ("lesion", "both"):
        Xp = Xp - Z @ np.linalg.lstsq(Z, Xp, rcond=None)[0]
    if standardize:
        Xp = (Xp - Xp.mean(0)) / Xp.std(0, ddof=1)
    if lesion_volume in ("covariate", "both", "dtlvc+covariate"):
        yp = y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0]
    if score_range is not None:
        yp = (yp - yp.min()) * score_range / (yp.max() - yp.min())  # a shift only moves the intercept
    return Xp, yp


def _engine_args(X, lesion_volume):
    vol = X.sum(1)
    return dict(
        lesion_scale=1 / np.sqrt(vol) if lesion_volume in ("dtlvc", "dtlvc+covariate") else None,
        lesion_nuisance=vol if lesion_volume in ("lesion", "both") else None,
        score_nuisance=vol if lesion_volume in ("covariate", "both", "dtlvc+covariate") else None,
    )


LV = [None, "dtlvc", "covariate", "lesion", "both", "dtlvc+covariate"]


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
@pytest.mark.parametrize("lesion_volume", LV)
@pytest.mark.parametrize("standardize, score_range", [(False, 100.0), (True, None)])
def test_beta_equals_sklearn_back_projection(kernel, lesion_volume, standardize, score_range):
    X, y = _data()
    gamma = 0.05 if not standardize else 0.002
    res = svr_test(sp.csr_matrix(X), y, kernel=kernel, gamma=gamma, n_permutations=5, min_lesioned=2,
                   random_state=0, tol=TOL, standardize=standardize, score_range=score_range,
                   **_engine_args(X, lesion_volume))
    Xp, yp = _hand_processed(X, y, lesion_volume, standardize, score_range)
    model = SVR(kernel=kernel, gamma=gamma, C=C, epsilon=EPS, tol=TOL).fit(Xp[:, res.tested], yp)
    beta = (model.dual_coef_ @ model.support_vectors_)[0]
    np.testing.assert_allclose(res.beta, beta, rtol=1e-6, atol=1e-9 * np.abs(beta).max())
    assert res.beta[10] == res.beta[11] == res.beta[20]  # one pattern, one beta
    assert res.n_unique_patterns == 58


def test_kernel_and_residualisation_against_hand_computation():
    X, y = _data(seed=1)
    vol = X.sum(1)
    Z = np.column_stack([np.ones(len(y)), vol, np.arange(len(y)) % 3])
    M = residual_projector(Z[:, 1:], len(y))
    np.testing.assert_allclose(M @ y, y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0], atol=1e-10)
    Xr = X - Z @ np.linalg.lstsq(Z, X, rcond=None)[0]
    from lsm.stats import unique_patterns

    P, inv, counts = unique_patterns(sp.csr_matrix(X))
    scale = 1 / np.sqrt(vol)
    G = gram_matrix(P, counts, scale)
    np.testing.assert_allclose(G, linear_kernel(X * scale[:, None]), atol=1e-12)
    np.testing.assert_allclose(svr_kernel(gram_matrix(P, counts), "rbf", 0.03, M), rbf_kernel(Xr, gamma=0.03),
                               atol=1e-12)
    np.testing.assert_allclose(svr_kernel(gram_matrix(P, counts), "linear", 1.0, M), linear_kernel(Xr),
                               atol=1e-10)
    with pytest.raises(AnalysisError, match="collinear"):
        residual_projector(np.column_stack([vol, 2 * vol]), len(y))


def _brute_force_nulls(X, y, perms, kernel="rbf", gamma=0.05):
    """Null betas refitting scikit-learn's SVR in feature space for every permutation."""
    y = y * 100 / np.ptp(y)  # the default score_range
    return np.array([(lambda m: (m.dual_coef_ @ m.support_vectors_)[0])(
        SVR(kernel=kernel, gamma=gamma, C=C, epsilon=EPS, tol=TOL).fit(X, y[perm])) for perm in perms])


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_pvalues_match_brute_force_refits(alternative):
    X, y = _data(n=30, p=40, seed=2)
    B = 40
    res = svr_test(sp.csr_matrix(X), y, gamma=0.05, n_permutations=B, min_lesioned=3,
                   alternative=alternative, random_state=7, tol=TOL)
    Xt = X[:, res.tested]
    null = _brute_force_nulls(Xt, y, draw_permutations(B, len(y), 7))
    tr = {"two-sided": np.abs, "greater": lambda a: a, "less": lambda a: -a}[alternative]
    beta = res.beta
    p = (1 + (tr(null) >= tr(beta) - 1e-9 * np.abs(beta).max()).sum(0)) / (1 + B)
    np.testing.assert_allclose(res.p, p)
    sd = np.vstack([beta, null]).std(0)  # over the B + 1 maps, the observed one included
    np.testing.assert_allclose(res.null_sd, sd, rtol=1e-6)
    np.testing.assert_allclose(res.z, beta / sd, rtol=1e-6)
    null_max = tr(null / sd).max(1)
    np.testing.assert_allclose(res.null_distribution, null_max, rtol=1e-6)
    p_fwe = (1 + (null_max[None, :] >= tr(beta / sd)[:, None] - 1e-9).sum(1)) / (1 + B)
    np.testing.assert_allclose(res.p_corrected, p_fwe)
    np.testing.assert_array_equal(res.significant, res.p_corrected <= 0.05)


def test_cfwer_counts_voxels_of_a_shared_pattern():
    X, y = _data(n=30, p=40, seed=3)
    B = 30
    res = svr_test(sp.csr_matrix(X), y, gamma=0.05, n_permutations=B, min_lesioned=3, correction="cfwer",
                   v=3, random_state=1, tol=TOL)
    null = _brute_force_nulls(X[:, res.tested], y, draw_permutations(B, len(y), 1))
    z = np.abs(null / np.vstack([res.beta, null]).std(0))
    third = -np.sort(-z, axis=1)[:, 2]  # the third largest over voxels (duplicates counted)
    np.testing.assert_allclose(res.null_distribution, third, rtol=1e-6)


def test_cluster_size_matches_brute_force_labelling():
    rng = np.random.default_rng(4)
    shape = (6, 6, 5)
    n = 36
    vol = np.zeros((n,) + shape)
    for i in range(n):  # boxes of damage: neighbouring voxels share subjects
        c = rng.integers(0, 4, 3)
        vol[i, c[0]:c[0] + 3, c[1]:c[1] + 3, c[2]:c[2] + 2] = 1
    X = vol.reshape(n, -1)
    y = X[:, :20].sum(1) * 0.3 + rng.normal(size=n)
    B, cfp = 60, 0.05
    res = svr_test(sp.csr_matrix(X), y, gamma=0.02, n_permutations=B, min_lesioned=3, correction="cluster_size",
                   cluster_forming_p=cfp, grid_shape=shape, random_state=5, tol=TOL)
    idx = np.flatnonzero(res.tested)
    null = _brute_force_nulls(X[:, idx], y, draw_permutations(B, n, 5), gamma=0.02)
    maps = np.vstack([res.beta, null])  # observed first

    def supra(values):  # (1 + #{other maps >= value}) / (B + 1) <= cfp, voxel by voxel
        n_ge = (values[None, :, :] >= values[:, None, :] - 1e-12 * np.abs(values).max()).sum(0)
        return n_ge <= cfp * (B + 1)

    pos, neg = supra(maps), supra(-maps)

    def max_cluster(k):
        best = 0
        for flags in (pos[k], neg[k]):
            v = np.zeros(np.prod(shape), bool)
            v[idx] = flags
            lab, n_lab = ndimage.label(v.reshape(shape), structure=np.ones((3, 3, 3)))
            if n_lab:
                best = max(best, np.bincount(lab.ravel())[1:].max())
        return best

    expected = np.array([max_cluster(k) for k in range(1, B + 1)])
    np.testing.assert_array_equal(res.null_distribution, expected)
    assert res.extra_maps["cluster_size"].max() == max_cluster(0)
    assert expected.max() > 0


def test_identical_for_any_n_jobs():
    X, y = _data(n=30, p=40, seed=5)
    runs = [svr_test(sp.csr_matrix(X), y, n_permutations=250, min_lesioned=3, random_state=3, n_jobs=j)
            for j in (1, 2)]
    for name in ("beta", "z", "p", "p_corrected", "null_distribution", "null_sd"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name), err_msg=name)


def test_identical_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    import joblib

    X, y = _data(n=30, p=40, seed=6)
    local = svr_test(sp.csr_matrix(X), y, n_permutations=250, min_lesioned=3, random_state=4)
    with distributed.Client(processes=False, dashboard_address=None) as client:
        with distributed.get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
            remote = svr_test(sp.csr_matrix(X), y, n_permutations=250, min_lesioned=3, random_state=4,
                              n_jobs=2)
    assert stream.data, "nothing ran on the Dask workers"
    for name in ("beta", "p", "p_corrected", "null_distribution"):
        np.testing.assert_array_equal(getattr(local, name), getattr(remote, name), err_msg=name)


def test_memory_refusal_and_parameter_errors():
    X, y = _data()
    with pytest.raises(AnalysisError, match="max_memory"):
        svr_test(sp.csr_matrix(X), y, n_permutations=100, min_lesioned=2, max_memory=1e-6)
    with pytest.raises(ValueError, match="'gamma'.*got -1"):
        svr_test(sp.csr_matrix(X), y, gamma=-1, min_lesioned=2)
    with pytest.raises(ValueError, match="'correction'"):
        svr_test(sp.csr_matrix(X), y, correction="tfce", min_lesioned=2)
    with pytest.raises(AnalysisError, match="No voxel"):
        svr_test(sp.csr_matrix(X), y, min_lesioned=39)


@pytest.mark.slow
def test_fwe_rate_under_the_null_is_alpha():
    """50 runs without any effect: the number with a FWE-significant voxel is binomial(50, alpha)."""
    hits = 0
    runs = 50
    for seed in range(runs):
        X, y = _data(n=40, p=80, seed=100 + seed, effect=False)
        res = svr_test(sp.csr_matrix(X), y, gamma=0.05, n_permutations=99, min_lesioned=3, random_state=seed)
        hits += bool(res.significant.any())
    lo, hi = stats.binom.ppf([0.005, 0.995], runs, 0.05)
    print(f"{hits} of {runs} null runs with a FWE-significant voxel (99% binomial range {lo:.0f}-{hi:.0f})")
    assert lo <= hits <= hi, hits


# ----------------------------------------------------------------------------- cohort level
import warnings  # noqa: E402

import lsm  # noqa: E402
from lsm.exceptions import LSMWarning, OutputExistsError  # noqa: E402
from lsm.simulate import make_synthetic_cohort  # noqa: E402


@pytest.fixture(scope="module")
def cohort():
    c = make_synthetic_cohort(50, random_state=3)
    empty = c.subjects[4]
    c._indices[empty] = np.zeros(0, dtype=np.int64)
    c._native_volumes[empty] = 0.0
    c.phenotype.loc[c.subjects[7], "score"] = np.nan
    c._indices[c.subjects[9]] = np.zeros(0, dtype=np.int64)  # a lesion that vanished on this grid
    return c


def _flat(img):
    return np.asarray(img.dataobj).reshape(-1)


@pytest.mark.parametrize("lesion_volume, covariates", [("both", None), ("dtlvc+covariate", ["age"]),
                                                        ("lesion", None), (None, ["age"])])
def test_svr_lsm_beta_equals_sklearn_on_the_cohort(cohort, lesion_volume, covariates):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LSMWarning)
        res = lsm.svr_lsm(cohort, "score", lesion_volume=lesion_volume, covariates=covariates, gamma=0.02,
                          n_permutations=20, min_lesioned=3, random_state=0, tol=TOL)
    kept = res.provenance["subjects"]
    dtlvc = lesion_volume == "dtlvc+covariate"
    excluded = dict(zip(res.excluded["subject"], res.excluded["reason"]))
    assert "missing score" in excluded[cohort.subjects[7]]
    for empty in (cohort.subjects[4], cohort.subjects[9]):
        assert (empty in excluded) == dtlvc
        if dtlvc:
            assert "zero lesion volume on the analysis grid" in excluded[empty]
    assert len(kept) + len(excluded) == len(cohort)
    tested = _flat(res.mask_img).astype(bool)
    X = cohort.lesion_matrix(subjects=kept).toarray().astype(float)
    y = cohort.phenotype.loc[kept, "score"].to_numpy(float)
    vol = cohort.lesion_volumes.loc[kept].to_numpy(float)
    n = len(y)
    if dtlvc:
        X = X / np.sqrt(X.sum(1))[:, None]  # whole-lesion unit norm
    X = X[:, tested]
    Z = np.column_stack([np.ones(n), vol])
    if lesion_volume in ("lesion", "both"):
        X = X - Z @ np.linalg.lstsq(Z, X, rcond=None)[0]
    Zy = np.column_stack([np.ones(n)] + ([cohort.phenotype.loc[kept, "age"].to_numpy(float)] if covariates else [])
                         + ([vol] if lesion_volume in ("both", "dtlvc+covariate") else []))
    if Zy.shape[1] > 1:
        y = y - Zy @ np.linalg.lstsq(Zy, y, rcond=None)[0]
    y = y * 100 / np.ptp(y)  # score_range=100
    model = SVR(kernel="rbf", gamma=0.02, C=30, epsilon=0.1, tol=TOL).fit(X, y)
    beta = (model.dual_coef_ @ model.support_vectors_)[0]
    np.testing.assert_allclose(_flat(res.beta)[tested], beta, rtol=1e-6, atol=1e-9 * np.abs(beta).max())
    np.testing.assert_allclose(_flat(res.beta_scaled)[tested], 10 * beta / np.abs(beta).max(), rtol=1e-6,
                               atol=1e-9)
    n_les = (cohort.lesion_matrix(subjects=kept).toarray() > 0).sum(0)
    np.testing.assert_array_equal(tested, (n_les >= 3) & (n - n_les >= 3))
    assert res.params["min_lesioned_count"] == 3 and res.params["gamma"] == 0.02


def test_contract_save_load_plot_and_warning(cohort, tmp_path):
    with pytest.warns(LSMWarning, match="near-diagonal"):
        res = lsm.svr_lsm(cohort, "score", n_permutations=30, correction="cluster_size", random_state=None)
    assert isinstance(res.provenance["random_state"], int) and res.params["random_state"] is not None
    for key in ("lsm_version", "versions", "n_jobs", "runtime_s", "created"):
        assert key in res.provenance
    assert res.params["cluster_forming_p"] == 0.005 and res.params["lesion_volume"] == "both"
    assert list(res.excluded.columns[:2]) == ["subject", "reason"]
    p, pc, sig = _flat(res.p), _flat(res.p_corrected), _flat(res.significant).astype(bool)
    np.testing.assert_array_equal(sig, pc <= 0.05)
    assert p.min() >= 1 / 31 and "cluster_size" in res.extra_maps
    with pytest.warns(LSMWarning, match="near-diagonal"):
        again = lsm.svr_lsm(cohort, "score", n_permutations=30, correction="cluster_size",
                            random_state=res.provenance["random_state"])
    np.testing.assert_array_equal(_flat(again.p_corrected), pc)
    res.save(tmp_path / "out")
    with pytest.raises(OutputExistsError):
        res.save(tmp_path / "out")
    back = lsm.SVRLSMResult.load(tmp_path / "out")
    for name in ("beta", "beta_scaled", "z", "p", "p_corrected", "significant", "mask_img", "n_lesioned"):
        np.testing.assert_array_equal(_flat(getattr(back, name)), _flat(getattr(res, name)), err_msg=name)
    np.testing.assert_array_equal(back.null_distribution, res.null_distribution)
    assert back.params == res.params
    assert back.excluded.equals(res.excluded.astype(str))
    assert "SVR-LSM of 'score'" in str(res.summary()) and "near-diagonal" in str(res.summary())
    page = res.to_html(tmp_path / "r.html")
    assert "<html>" in page and page.count("<img") == 2 and cohort.subjects[7] in page
    import matplotlib

    matplotlib.use("Agg")
    assert res.plot() is not None
    with pytest.raises(ValueError, match="'lesion_volume'.*'log'"):
        lsm.svr_lsm(cohort, "score", lesion_volume="log")
    with pytest.raises(ValueError, match="'correction'.*'tfce'"):
        lsm.svr_lsm(cohort, "score", correction="tfce")


def test_cv_search_records_its_choice(cohort):
    res = lsm.svr_lsm(cohort, "score", lesion_volume="dtlvc", n_permutations=10, min_lesioned=3,
                      cv_search={"C": [1.0, 30.0], "gamma": [0.1, 1.0]}, random_state=2)
    best, table = res.provenance["cv_best"], res.provenance["cv_table"]
    assert len(table) == 4 and best == max(table, key=lambda r: r["cv_r2"])
    assert (res.params["C"], res.params["gamma"]) == (best["C"], best["gamma"])


@pytest.mark.slow
def test_soop_shuffled_scores_give_no_fwe_voxel(soop_nihss_2mm):
    """Real lesions, a score unrelated to them: FWE finds nothing in at least 2 of 3 runs."""
    cohort = soop_nihss_2mm
    rng = np.random.default_rng(2026)
    hits = []
    for run in range(3):
        c = cohort.select("nihss")  # a new cohort: the session fixture stays untouched
        c.phenotype["shuffled"] = rng.permutation(c.phenotype["nihss"].to_numpy(float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LSMWarning)
            res = lsm.svr_lsm(c, "shuffled", n_permutations=200, random_state=run, n_jobs=2)
        hits.append(res.n_significant)
    print(f"significant voxels in 3 shuffled-score runs: {hits}")
    assert sum(h == 0 for h in hits) >= 2, hits


def test_cli_svr_lsm_matches_the_library(tmp_path):
    import nibabel as nib
    import pandas as pd

    from cli_helpers import error_line, run_lsm

    c = make_synthetic_cohort(40, random_state=3)
    (tmp_path / "lesions").mkdir()
    for subject in c.subjects:
        nib.save(c.lesion_img(subject), tmp_path / "lesions" / f"{subject}_lesion.nii.gz")
    c.phenotype.to_csv(tmp_path / "participants.tsv", sep="\t", na_rep="n/a")
    out = tmp_path / "svr"
    args = ["svr-lsm", "-l", tmp_path / "lesions", "-p", tmp_path / "participants.tsv", "--score", "score",
            "--lesion-volume", "dtlvc", "--gamma", "0.5", "--n-permutations", "50", "--random-state", "3",
            "--min-lesioned", "4", "--correction", "cluster_size", "--cluster-forming-p", "0.01", "-o", out]
    proc = run_lsm(*args)
    assert proc.returncode == 0, proc.stderr
    assert "SVR-LSM of 'score'" in proc.stdout
    saved = lsm.SVRLSMResult.load(out)
    direct = lsm.svr_lsm(c, "score", lesion_volume="dtlvc", gamma=0.5, n_permutations=50, random_state=3,
                         min_lesioned=4, correction="cluster_size", cluster_forming_p=0.01)
    for name in ("beta", "p", "p_corrected", "significant"):
        np.testing.assert_array_equal(_flat(getattr(saved, name)), _flat(getattr(direct, name)), err_msg=name)
    for name in ("report.html", "excluded.tsv", "dataset_description.json", "svrlsm_null.tsv"):
        assert (out / name).is_file(), name
    assert pd.read_csv(out / "excluded.tsv", sep="\t").empty
    proc = run_lsm(*args)
    assert proc.returncode == 1 and "--overwrite" in error_line(proc)
    proc = run_lsm(*args[:-1], tmp_path / "other", "--lesion-volume", "log")
    assert proc.returncode == 1 and "lesion-volume" in error_line(proc)
